"""Builds one cabb_tf TFDS dataset: `python -m cabb_tf.datasets.build`.

    python -m cabb_tf.datasets.build --dataset=cabb_synthetic/small \
        --data_dir=$HOME/tensorflow_datasets
    python -m cabb_tf.datasets.build --dataset=taobao_user_behavior \
        --data_dir=$HOME/tensorflow_datasets --manual_dir=/data/taobao

The same as `tfds build`, whose command line needs packages (mlcroissant)
that cabb_tf does not install.
"""

from typing import Optional, Sequence

from absl import app
from absl import flags
from absl import logging
import tensorflow_datasets as tfds

import cabb_tf.datasets  # pylint: disable=unused-import  (registers builders)
from cabb_tf.datasets import locking

_DATASET = flags.DEFINE_string(
    "dataset", None, "Dataset and config, e.g. cabb_synthetic/small, "
    "rees46/oct_2019, taobao_user_behavior.", required=True)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "TFDS data directory (default: TFDS's, usually "
    "~/tensorflow_datasets).")
_MANUAL_DIR = flags.DEFINE_string(
    "manual_dir", None, "Directory holding the manually downloaded source "
    "file (rees46, taobao_user_behavior); default <data_dir>/downloads/manual.")


def build(dataset: str, data_dir: Optional[str] = None,
          manual_dir: Optional[str] = None) -> tfds.core.DatasetBuilder:
  """Prepares `dataset` (name/config) and returns its builder.

  Args:
    dataset: e.g. 'cabb_synthetic/small'.
    data_dir: TFDS data directory.
    manual_dir: directory with the manually downloaded file.

  Returns:
    The prepared builder.
  """
  return locking.prepared_builder(
      dataset, data_dir, tfds.download.DownloadConfig(manual_dir=manual_dir))


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  builder = build(_DATASET.value, _DATA_DIR.value, _MANUAL_DIR.value)
  logging.info("%s in %s: %s", builder.info.full_name, builder.data_path,
               {name: split.num_examples
                for name, split in builder.info.splits.items()})
  print(builder.data_path)


if __name__ == "__main__":
  app.run(main)
