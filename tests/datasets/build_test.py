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

  def test_command_line_prepares_with_beam_under_gin(self):
    """`--beam_pipeline_options` on the command line, with a gin binding
    (gin locks its config before the builder imports the pipeline)."""
    try:
      import apache_beam  # pylint: disable=g-import-not-at-top,unused-import
    except ImportError:
      self.skipTest("apache-beam is not installed (the beam extra)")
    import os  # pylint: disable=g-import-not-at-top
    import subprocess  # pylint: disable=g-import-not-at-top
    import sys  # pylint: disable=g-import-not-at-top
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    data_dir = self.create_tempdir().full_path
    result = subprocess.run(
        [sys.executable, "-m", "cabb_tf.datasets.build",
         "--dataset=cabb_synthetic/tiny", f"--data_dir={data_dir}",
         "--beam_pipeline_options=runner=DirectRunner,direct_num_workers=1",
         "--gin_bindings=beam_work_units.num_buckets = 3"],
        capture_output=True, text=True, check=False,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    with_beam = tfds.builder("cabb_synthetic/tiny", data_dir=data_dir)
    in_memory = build.build("cabb_synthetic/tiny",
                            data_dir=self.create_tempdir().full_path)
    for split, info in in_memory.info.splits.items():
      self.assertEqual(with_beam.info.splits[split].num_examples,
                       info.num_examples, split)
      # One shard per user bucket, as bound in gin.
      self.assertLen(with_beam.info.splits[split].shard_lengths, 3)


if __name__ == "__main__":
  tf.test.main()
