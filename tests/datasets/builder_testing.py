"""What the dataset tests share: TFDS's builder test case and a build helper.

`tfds.testing.DatasetBuilderTestCase` imports `dill`, which tensorflow-datasets
lists only under its `tests-all` extra. Without it the builder test cases are
replaced by one that skips and says why; the hand-derived tests, which build
the datasets directly, run either way.
"""

import pathlib
from typing import Optional, Type

import tensorflow as tf
import tensorflow_datasets as tfds

DATASETS_DIR = (pathlib.Path(__file__).resolve().parents[2] / "cabb_tf" /
                "datasets")

try:
  DatasetBuilderTestCase = tfds.testing.DatasetBuilderTestCase
  SKIP_REASON = None
except ImportError as error:  # tfds.testing imports dill.
  SKIP_REASON = (f"tfds.testing is unavailable ({error}); install dill to run "
                 "the TFDS builder test cases.")

  class DatasetBuilderTestCase(tf.test.TestCase):
    """Stands in for `tfds.testing.DatasetBuilderTestCase` and skips."""

    DATASET_CLASS = None
    SPLITS = None
    BUILDER_CONFIG_NAMES_TO_TEST = None

    def test_download_and_prepare_as_dataset(self):
      self.skipTest(SKIP_REASON)


def prepare(builder_class: Type[tfds.core.DatasetBuilder], config,
            data_dir: str,
            manual_dir: Optional[pathlib.Path] = None
            ) -> tfds.core.DatasetBuilder:
  """Builds one config of a dataset into `data_dir` and returns its builder."""
  builder = builder_class(data_dir=data_dir, config=config)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=None if manual_dir is None else str(manual_dir)))
  return builder


def rows(builder: tfds.core.DatasetBuilder, split: str) -> list:
  """All records of one split as dicts of NumPy values."""
  return list(tfds.as_numpy(builder.as_dataset(split=split)))
