"""TFDS builder `rees46`: click examples from the REES46 store log."""

import dataclasses
from typing import Any, Callable, Optional, Sequence

from etils import epath
import gin
import tensorflow_datasets as tfds

from cabb_tf.data import loaders
from cabb_tf.datasets import click_examples

_HOMEPAGE = ("https://www.kaggle.com/datasets/mkechinov/"
             "ecommerce-behavior-data-from-multi-category-store")


@gin.configurable
def rees46_manual_file(name: Optional[str] = None) -> Optional[str]:
  """The file to read instead of the builder config's `file_name`.

  Bind `rees46_manual_file.name` in gin to read a file of any name: a bare
  name is looked up in the manual directory, a path (with a '/') is read as
  it is. The build records the binding, so a build made from one file is
  not reused for another (`click_examples.binding_mismatches`).

  Args:
    name: the file name or path; None reads the config's `file_name`.

  Returns:
    `name`.
  """
  return name


@dataclasses.dataclass(eq=False)
class Rees46Config(click_examples.ClickExamplesConfig):
  """One monthly file of the REES46 log.

  Attributes:
    file_name: the CSV file expected in the manual directory.
  """
  file_name: str = "2019-Oct.csv"


class Builder(click_examples.ClickExamplesBuilder):
  """Click examples from the REES46 eCommerce behavior log (manual download).

  The CSV is read by `cabb_tf.data.loaders.load_rees46`: `view` → click,
  `cart` → add_to_cart, `purchase` → purchase, `remove_from_cart` dropped;
  sessions are `user_session`; an item's category path is its
  `category_code` split on '.', or `(category_id,)` without one.
  """

  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Download the REES46 "eCommerce behavior data from multi category store" log
  from Kaggle:
    https://www.kaggle.com/datasets/mkechinov/ecommerce-behavior-data-from-multi-category-store
  (for example with the Kaggle command-line client),
  unzip it and put the monthly CSV of the config, uncompressed, into the
  manual directory (`--manual_dir`, default `<download_dir>/manual/`), under
  the config's name or any name you bind to `rees46_manual_file.name` in gin
  (a bare name in the manual directory, or a path):
    config oct_2019: 2019-Oct.csv  (about 42 million events)
    config nov_2019: 2019-Nov.csv  (about 67 million events)
  The header must be
    event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session
  Check the dataset's terms on its Kaggle page before redistributing anything
  derived from it.
  """

  BUILDER_CONFIGS = [
      Rees46Config(name="oct_2019", file_name="2019-Oct.csv",
                   description="The October 2019 file, 2019-Oct.csv."),
      Rees46Config(name="nov_2019", file_name="2019-Nov.csv",
                   description="The November 2019 file, 2019-Nov.csv."),
      Rees46Config(name="oct_2019_head", file_name="2019-Oct_head.csv",
                   description="A public head of 2019-Oct.csv (its first "
                               "rows) saved as 2019-Oct_head.csv."),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "oct_2019"

  def _homepage(self) -> Optional[str]:
    return _HOMEPAGE

  def _gin_configurables(self) -> Sequence[Callable[..., Any]]:
    return tuple(super()._gin_configurables()) + (loaders.load_csv,
                                                   rees46_manual_file)

  def source_path(self) -> Optional[str]:
    """The file a build would read now (`manual_source`)."""
    return self.manual_source(rees46_manual_file(),
                              self.builder_config.file_name)

  def _load_log(self, dl_manager: tfds.download.DownloadManager):
    path = self.read_manual_file(rees46_manual_file(), dl_manager,
                                 "rees46_manual_file.name")
    return loaders.load_rees46(path, name=epath.Path(path).name)

  def _beam_source(self, dl_manager: tfds.download.DownloadManager,
                   staging_dir: str) -> click_examples.BeamSource:
    del staging_dir  # The CSV is read as it is.
    return self.manual_csv_source(rees46_manual_file(), dl_manager,
                                  "rees46_manual_file.name", loaders.rees46_options())
