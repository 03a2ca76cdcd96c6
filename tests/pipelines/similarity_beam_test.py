"""Tests for cabb_tf.pipelines.similarity_beam on the DirectRunner."""

import os

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cabb_tf.data import schema
from cabb_tf.pipelines import similarity_beam
from cabb_tf.similarity import category_cf
from tests.similarity import random_log

_WEIGHTS = {"click": 1.0, "add_to_cart": 2.5, "purchase": 4.0,
            "impression": 0.0}
_DIRECT = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]


def _write_catalog(catalog, path):
  catalog[["item_id", "leaf"]].to_csv(path, index=False)


def _write_events(events, directory, fmt):
  """Writes `events` as two shards of `fmt`; returns the glob."""
  halves = [events.iloc[:len(events) // 2], events.iloc[len(events) // 2:]]
  for shard, part in enumerate(halves):
    stem = os.path.join(directory, f"events-{shard}")
    if fmt == "csv":
      part.to_csv(stem + ".csv", index=False)
    elif fmt == "parquet":
      pq.write_table(pa.Table.from_pandas(part, preserve_index=False),
                     stem + ".parquet")
    else:
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      with tf.io.TFRecordWriter(stem + ".tfrecord") as writer:
        for user, item, ts, code in zip(part["user_id"], part["item_id"],
                                        part["timestamp"],
                                        part["event_type"].cat.codes):
          # Users as bytes, types as int64 codes: both encodings allowed.
          feature = {
              "user_id": tf.train.Feature(bytes_list=tf.train.BytesList(
                  value=[str(user).encode()])),
              "item_id": tf.train.Feature(int64_list=tf.train.Int64List(
                  value=[int(item)])),
              "timestamp": tf.train.Feature(int64_list=tf.train.Int64List(
                  value=[int(ts)])),
              "event_type": tf.train.Feature(int64_list=tf.train.Int64List(
                  value=[int(code)])),
          }
          writer.write(tf.train.Example(features=tf.train.Features(
              feature=feature)).SerializeToString())
  return os.path.join(directory, f"events-*.{fmt}")


class SimilarityBeamTest(parameterized.TestCase):

  def _inputs(self, fmt="csv", seed=0, num_events=3000):
    events, catalog = random_log.random_log(seed=seed, num_events=num_events)
    root = self.create_tempdir().full_path
    os.makedirs(os.path.join(root, "in"))
    pattern = _write_events(events, os.path.join(root, "in"), fmt)
    catalog_path = os.path.join(root, "catalog.csv")
    _write_catalog(catalog, catalog_path)
    return events, catalog, pattern, catalog_path, os.path.join(root, "out")

  def _assert_agrees(self, got, expected):
    np.testing.assert_array_equal(got.leaves, expected.leaves)
    diff = abs(got.matrix - expected.matrix)
    self.assertLessEqual(diff.max() if diff.nnz else 0.0, 1e-9)
    self.assertEqual(got.matrix.nnz, expected.matrix.nnz)

  @parameterized.parameters("csv", "tfrecord", "parquet")
  def test_agrees_with_category_similarity(self, fmt):
    events, catalog, pattern, catalog_path, out = self._inputs(fmt)
    got = similarity_beam.run(pattern, catalog_path, out, _WEIGHTS,
                              pipeline_args=_DIRECT, fallback=0.2)
    expected = category_cf.category_similarity(events, catalog, _WEIGHTS)
    self._assert_agrees(got, expected)
    self.assertEqual(got.alpha("x", "y"), 0.2)
    self.assertEqual(got.stats["events_read"], len(events))
    self.assertEqual(got.stats["events_used"],
                     expected.stats["events_used"])
    self.assertEqual(got.stats["dropped_zero_weight"],
                     expected.stats["dropped"]["zero_weight"])
    self.assertEqual(got.stats["dropped_unknown_leaf"],
                     expected.stats["dropped"]["unknown_leaf"])
    loaded = category_cf.CategorySimilarity.load(
        os.path.join(out, similarity_beam.NPZ_NAME))
    self._assert_agrees(loaded, expected)
    self.assertTrue(os.path.exists(os.path.join(out,
                                                similarity_beam.STATS_NAME)))

  def test_time_range_and_default_weights(self):
    events, catalog, pattern, catalog_path, out = self._inputs(seed=1)
    lo, hi = 500_000, 2_000_000
    got = similarity_beam.run(pattern, catalog_path, out,
                              pipeline_args=_DIRECT, min_timestamp=lo,
                              max_timestamp=hi)
    train = events[(events["timestamp"] >= lo) & (events["timestamp"] < hi)]
    self._assert_agrees(got, category_cf.category_similarity(train, catalog))
    self.assertEqual(got.stats["dropped_out_of_range"],
                     len(events) - len(train))

  def test_cap_of_one_leaf_per_user_leaves_no_pairs(self):
    _, _, pattern, catalog_path, out = self._inputs(seed=2, num_events=800)
    got = similarity_beam.run(pattern, catalog_path, out, _WEIGHTS,
                              pipeline_args=_DIRECT, max_leaves_per_user=1)
    self.assertEqual(got.matrix.nnz, len(got))  # Only the diagonal.
    self.assertGreater(got.stats["users_capped"], 0)

  def test_unknown_event_type_fails_naming_it(self):
    root = self.create_tempdir().full_path
    pd.DataFrame({"user_id": [1], "item_id": [100], "event_type": ["view"],
                  "timestamp": [0]}).to_csv(os.path.join(root, "e.csv"),
                                            index=False)
    catalog = schema.make_catalog([100], [("a",)])
    _write_catalog(catalog, os.path.join(root, "c.csv"))
    with self.assertRaisesRegex(Exception, "unknown event type 'view'"):
      similarity_beam.run(os.path.join(root, "e.csv"),
                          os.path.join(root, "c.csv"),
                          os.path.join(root, "out"), pipeline_args=_DIRECT)

  def test_repeated_catalog_item_fails(self):
    events, catalog, pattern, catalog_path, out = self._inputs(num_events=50)
    del events
    pd.concat([catalog, catalog.iloc[:1]])[["item_id", "leaf"]].to_csv(
        catalog_path, index=False)
    with self.assertRaisesRegex(Exception, "appears 2 times"):
      similarity_beam.run(pattern, catalog_path, out, pipeline_args=_DIRECT)

  def test_header_and_option_errors(self):
    root = self.create_tempdir().full_path
    pd.DataFrame({"user": [1], "item_id": [1], "event_type": ["click"]}
                ).to_csv(os.path.join(root, "e.csv"), index=False)
    _write_catalog(schema.make_catalog([1], [("a",)]),
                   os.path.join(root, "c.csv"))
    with self.assertRaisesRegex(ValueError, "lacks column"):
      similarity_beam.run(os.path.join(root, "e.csv"),
                          os.path.join(root, "c.csv"), root)
    with self.assertRaisesRegex(ValueError, "no file matches"):
      similarity_beam.run(os.path.join(root, "none-*.csv"),
                          os.path.join(root, "c.csv"), root)
    with self.assertRaisesRegex(ValueError, "cannot tell the format"):
      similarity_beam.format_of("events.json")
    with self.assertRaisesRegex(ValueError, "max_leaves_per_user"):
      similarity_beam.run(os.path.join(root, "e.csv"),
                          os.path.join(root, "c.csv"), root,
                          max_leaves_per_user=0)


if __name__ == "__main__":
  absltest.main()
