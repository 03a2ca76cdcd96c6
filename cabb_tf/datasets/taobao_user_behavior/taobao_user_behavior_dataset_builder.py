"""TFDS builder `taobao_user_behavior`: click examples from Taobao."""

import dataclasses
from typing import Any, Callable, Optional, Sequence, Tuple

from etils import epath
import gin
import tensorflow_datasets as tfds

from cabb_tf.data import loaders
from cabb_tf.datasets import click_examples

_HOMEPAGE = "https://tianchi.aliyun.com/dataset/649"

# The dataset's nominal period: 2017-11-25 00:00 to 2017-12-04 00:00 China
# time (UTC+8), i.e. 2017-11-24 16:00 to 2017-12-03 16:00 UTC, in ms. The
# end is exclusive.
TIME_RANGE_MS: Tuple[int, int] = (1_511_539_200_000, 1_512_316_800_000)


@gin.configurable
def taobao_manual_file(name: Optional[str] = None) -> Optional[str]:
  """The file to read instead of the builder config's `file_name`.

  Bind `taobao_manual_file.name` in gin to read a file of any name: a bare
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
class TaobaoConfig(click_examples.ClickExamplesConfig):
  """How the UserBehavior file is read.

  Attributes:
    file_name: the CSV file expected in the manual directory.
    fav_as: the canonical event type of `fav` events, or 'drop'.
  """
  file_name: str = "UserBehavior.csv"
  fav_as: str = "add_to_cart"


class Builder(click_examples.ClickExamplesBuilder):
  """Click examples from Taobao UserBehavior (Tianchi; manual download).

  The CSV is read by `cabb_tf.data.loaders.load_taobao`: `pv` → click,
  `cart` → add_to_cart, `buy` → purchase, `fav` → the config's `fav_as`;
  category paths are `(category_id,)`; sessions are split at gaps longer than
  30 minutes. Events outside the nominal period `TIME_RANGE_MS` are dropped
  and counted in the data report as `out_of_time_range`.
  """

  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Download "User Behavior Data from Taobao for Recommendation" from Alibaba
  Tianchi (a free account is needed):
    https://tianchi.aliyun.com/dataset/649
  unzip the download and put UserBehavior.csv (about 100 million rows, no
  header; columns user_id,item_id,category_id,behavior_type,
  timestamp with behavior_type one of pv, cart, fav, buy and timestamp in unix
  seconds), uncompressed and unrenamed, into the manual directory
  (`--manual_dir`, default `<download_dir>/manual/`).
  Check the dataset's terms on its Tianchi page before redistributing
  anything derived from it.
  """

  BUILDER_CONFIGS = [
      TaobaoConfig(name="default", file_name="UserBehavior.csv",
                   fav_as="add_to_cart",
                   description="UserBehavior.csv with fav read as "
                               "add_to_cart."),
      TaobaoConfig(name="head_sample",
                   file_name="UserBehavior_head_by_user.csv",
                   fav_as="add_to_cart",
                   description="A public head of UserBehavior.csv (the "
                               "complete histories of its first users) "
                               "saved as UserBehavior_head_by_user.csv; fav "
                               "read as add_to_cart."),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "default"

  def _homepage(self) -> Optional[str]:
    return _HOMEPAGE

  def _time_range(self) -> Optional[Tuple[int, int]]:
    return TIME_RANGE_MS

  def _gin_configurables(self) -> Sequence[Callable[..., Any]]:
    return tuple(super()._gin_configurables()) + (loaders.load_csv,
                                                   taobao_manual_file)

  def source_path(self) -> Optional[str]:
    """The file a build would read now (`manual_source`)."""
    return self.manual_source(taobao_manual_file(),
                              self.builder_config.file_name)

  def _load_log(self, dl_manager: tfds.download.DownloadManager):
    path = self.read_manual_file(taobao_manual_file(), dl_manager,
                                 "taobao_manual_file.name")
    return loaders.load_taobao(path, fav_as=self.builder_config.fav_as,
                               name=epath.Path(path).name)

  def _beam_source(self, dl_manager: tfds.download.DownloadManager,
                   staging_dir: str) -> click_examples.BeamSource:
    del staging_dir  # The CSV is read as it is.
    return self.manual_csv_source(
        taobao_manual_file(), dl_manager, "taobao_manual_file.name",
        loaders.taobao_options(self.builder_config.fav_as))
