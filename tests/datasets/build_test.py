"""Tests for cabb_tf.datasets.build (the build command)."""

import tensorflow as tf

from cabb_tf.datasets import build
from tests.datasets import builder_testing


class BuildTest(tf.test.TestCase):

  def test_builds_a_manual_dataset_from_its_manual_dir(self):
    data_dir = self.create_tempdir().full_path
    builder = build.build(
        "rees46/oct_2019", data_dir=data_dir,
        manual_dir=str(builder_testing.DATASETS_DIR / "rees46" / "dummy_data"))
    self.assertEqual(
        {name: split.num_examples for name, split in
         builder.info.splits.items()},
        {"train": 7, "validation": 2, "test": 2})
    self.assertStartsWith(str(builder.data_path), data_dir)

  def test_a_missing_manual_file_says_where_to_get_it(self):
    manual_dir = self.create_tempdir()
    manual_dir.create_file("README.txt", "empty\n")
    with self.assertRaisesRegex(ValueError, "kaggle.com"):
      build.build("rees46/oct_2019", data_dir=self.create_tempdir().full_path,
                  manual_dir=manual_dir.full_path)


if __name__ == "__main__":
  tf.test.main()
