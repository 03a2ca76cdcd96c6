"""Tests of the training benchmark's inputs: against NumPy gathers, and the
streaming path's batch parsing against per-record decoding."""

import numpy as np
import tensorflow as tf

import cabb_tf  # pylint: disable=unused-import
from cabb_tf import input_pipeline
from cabb_tf import train_benchmark
from cabb_tf.inputs import weighting
from cabb_tf.models import factory

ROWS = 10


def _split():
  rng = np.random.default_rng(0)
  features = {"leaf_a": rng.choice(np.array(["a", "b" * 30]), ROWS),
              "price_a": rng.normal(size=ROWS).astype(np.float32)}
  labels = {"caba": rng.integers(0, 2, (ROWS, 1)).astype(np.float32)}
  weights = {"caba": rng.uniform(size=ROWS).astype(np.float32)}
  return features, labels, weights


class TrainBenchmarkTest(tf.test.TestCase):

  def test_in_memory_batches_are_one_epochs_full_batches(self):
    split = _split()
    batches = train_benchmark.in_memory_batches(
        tf.nest.map_structure(tf.constant, split), batch_size=3, seed=5)
    order = np.random.default_rng(5).permutation(ROWS)
    for a, e in zip(tf.nest.flatten(batches), tf.nest.flatten(split)):
      # Three full batches of the epoch; the last row is left out.
      self.assertAllEqual(a, e[order[:9]].reshape((3, 3) + e.shape[1:]))

  def test_batch_numbers_cycle_the_batches(self):
    split = _split()
    numbers = train_benchmark.BatchNumbers(train_benchmark.in_memory_batches(
        tf.nest.map_structure(tf.constant, split), batch_size=3, seed=5))
    order = np.random.default_rng(5).permutation(ROWS)
    # Each iterator starts over: batches 0, 1, 2, 0, 1.
    got = [numbers(i) for i in numbers.dataset().take(5)]
    for k, rows in enumerate(got):
      index = order[3 * (k % 3):3 * (k % 3) + 3]
      self.assertAllEqual(rows[0]["price_a"], split[0]["price_a"][index])
      self.assertAllEqual(rows[0]["leaf_a"],
                          split[0]["leaf_a"][index].astype(bytes))
      self.assertAllEqual(rows[2]["caba"], split[2]["caba"][index])

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
      self.assertAllEqual(element["order"],
                          np.random.default_rng(seed).permutation(ROWS))
      self.assertAllEqual(element["batch"],
                          [seed, 4 * (i % 3), min(4 * (i % 3) + 4, ROWS)])

  def test_batch_parsing_streams_the_rows_of_per_record_decoding(self):
    data = input_pipeline.load_data(
        "cabb_synthetic/tiny", data_dir=self.create_tempdir().full_path)
    statistics = data.feature_statistics
    example_fn = input_pipeline.make_example_fn(
        "multitask", factory.input_dtypes(factory.build_model(statistics)),
        id_lookups=factory.id_lookups(statistics))
    alpha_fn = weighting.make_alpha_fn("taxonomy_cf", data.builder)
    # A buffer of one row shuffles nothing: both feeds give file order.
    fields = input_pipeline.example_fields(
        factory.input_dtypes(factory.build_model(statistics)),
        weighting.KEYS["taxonomy_cf"])
    self.assertLess(len(fields), len(data.builder.info.features))
    feeds = train_benchmark.streaming_feeds(data, example_fn, alpha_fn,
                                            batch_size=64, shuffle_buffer=1,
                                            fields=fields)
    got = list(feeds["streaming"].take(5))
    want = list(feeds["per_record"].take(5))
    for a, b in zip(got, want):
      tf.nest.assert_same_structure(a, b)
      for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b)):
        self.assertEqual(x.dtype, y.dtype)
        self.assertAllEqual(x, y)
    # α reached the CABB weights: some positive rows weigh less than 1.
    w_cabb = np.concatenate([w["cabb"].numpy() for _, _, w in got])
    self.assertTrue(np.any((w_cabb > 0) & (w_cabb < 1)))

  def test_markdown_table(self):
    out = {"dataset": "d", "train_rows": 1000, "cpu_count": 2, "results": [
        {"batch_size": 1024, "pipeline_examples_per_s": 900.0,
         "in_memory_examples_per_s": 1000.0, "ratio": 0.9,
         "paired_ratio": 0.91, "cpu_time_ratio": 0.93,
         "no_reload_ratio": 0.96, "window_steps": 30}],
           "early_stopping": {"wall_time_s": 61.4}}
    table = train_benchmark.markdown_table(out)
    self.assertIn("| 1,024 | 900 | 1,000 | 0.90 | 0.91 | 0.93 | 0.96 | 30 |",
                  table)
    self.assertIn("61 s wall time", table)


if __name__ == "__main__":
  tf.test.main()
