"""Tests of the training benchmark's two inputs against NumPy gathers."""

import numpy as np
import tensorflow as tf

import cabb_tf  # pylint: disable=unused-import
from cabb_tf import train_benchmark

ROWS = 10


def _split():
  rng = np.random.default_rng(0)
  features = {"leaf_a": rng.choice(np.array(["a", "b" * 30]), ROWS),
              "price_a": rng.normal(size=ROWS).astype(np.float32)}
  labels = {"caba": rng.integers(0, 2, (ROWS, 1)).astype(np.float32)}
  weights = {"caba": rng.uniform(size=ROWS).astype(np.float32)}
  return features, labels, weights


class TrainBenchmarkTest(tf.test.TestCase):

  def test_in_memory_batches_cycle_one_epochs_full_batches(self):
    split = _split()
    dataset = train_benchmark.in_memory_batches(
        tf.nest.map_structure(tf.constant, split), batch_size=3, seed=5)
    order = np.random.default_rng(5).permutation(ROWS)
    got = list(dataset.take(7))
    for i, batch in enumerate(got):
      # Three full batches of the epoch (the last row is left out), cycled.
      index = order[3 * (i % 3):3 * (i % 3) + 3]
      for a, e in zip(tf.nest.flatten(batch), tf.nest.flatten(split)):
        self.assertAllEqual(a, e[index])

  def test_in_memory_batches_need_a_full_batch(self):
    with self.assertRaisesRegex(ValueError, "exceeds"):
      train_benchmark.in_memory_batches(
          tf.nest.map_structure(tf.constant, _split()), batch_size=ROWS + 1,
          seed=0)

  def test_pipeline_epochs_are_train_runs_epochs_back_to_back(self):
    elements = list(train_benchmark.pipeline_epochs(ROWS, 4, seeds=(2, 9)))
    self.assertLen(elements, 6)  # 4 + 4 + 2 rows per epoch
    for i, element in enumerate(elements):
      seed = (2, 9)[i // 3]
      self.assertEqual(int(element["seed"]), seed)
      self.assertAllEqual(element["order"],
                          np.random.default_rng(seed).permutation(ROWS))
      self.assertEqual(int(element["start"]), 4 * (i % 3))

  def test_markdown_table(self):
    out = {"dataset": "d", "train_rows": 1000, "cpu_count": 2, "results": [
        {"batch_size": 1024, "pipeline_examples_per_s": 900.0,
         "in_memory_examples_per_s": 1000.0, "ratio": 0.9,
         "paired_ratio": 0.91, "window_steps": 30}],
           "early_stopping": {"wall_time_s": 61.4}}
    table = train_benchmark.markdown_table(out)
    self.assertIn("| 1,024 | 900 | 1,000 | 0.90 | 0.91 | 30 |", table)
    self.assertIn("61 s wall time", table)


if __name__ == "__main__":
  tf.test.main()
