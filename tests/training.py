"""A short training run on the tiny simulated dataset, for the tests of runs
and of their exports (tests/train_test.py, tests/data/online_test.py)."""

import os

from absl.testing import absltest
import gin

from cabb_tf import gin_utils
from cabb_tf import train

# The tiny dataset is built once here and shared by the tests that train.
TINY_DATASET = "cabb_synthetic/tiny"
TINY_EVENTS = 5_000  # its log: simulator.simulate_events(5_000, seed=0)


def data_dir() -> str:
  """The TFDS directory of the tiny dataset (built on first use)."""
  return os.path.join(absltest.get_default_test_tmpdir(), "tfds_train_test")


def tiny_run(base_dir: str, *gin_files: str, bindings=()):
  """`train.run(base_dir)` on the tiny dataset: 3 epochs of 8 steps.

  Args:
    base_dir: the run directory.
    *gin_files: the run's gin files (e.g. "multitask.gin").
    bindings: further bindings, after the tiny ones (they may override
      them).

  Returns:
    The run's metrics.
  """
  gin.clear_config()
  gin_utils.parse(
      list(gin_files),
      [f"load_data.data_dir = '{data_dir()}'",
       f"SYNTHETIC_DATASET = '{TINY_DATASET}'",
       "train.run.max_epochs = 3", "train.run.patience = 10",
       "train.run.max_steps_per_epoch = 8", "train.run.batch_size = 256",
       "train.run.eval_batch_size = 4096"] + list(bindings))
  return train.run(base_dir)
