"""Tests of the sharded Parquet log: the shards are the simulate_chunks logs."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

from absl.testing import absltest
import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from cabb_tf.data import schema
from cabb_tf.data import simulate_shards
from cabb_tf.data import simulator

REPO = pathlib.Path(__file__).resolve().parents[2]
_ARGS = dict(num_events=24_000, chunk_events=8_000, seed=3)
_SIMULATE = dict(num_days=7)


class ShardedLogTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.dir = tempfile.mkdtemp()
    cls.record = simulate_shards.write_sharded_log(
        cls.dir, row_group_rows=3_000, simulate_kwargs=_SIMULATE, **_ARGS)
    cls.chunks = list(simulator.simulate_chunks(
        _ARGS["num_events"], _ARGS["chunk_events"], seed=_ARGS["seed"],
        **_SIMULATE))
    cls.expected = pd.concat([c.events for c in cls.chunks],
                             ignore_index=True)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.dir, ignore_errors=True)
    super().tearDownClass()

  def test_shards_are_the_chunks_concatenated(self):
    self.assertLen(self.record["shards"], len(self.chunks))
    self.assertGreater(len(self.chunks), 1)
    events, _ = simulate_shards.read_sharded_log(self.dir, sort_by_time=False)
    pd.testing.assert_frame_equal(events, self.expected)
    # Plain readers see the same rows and dtypes, in shard order.
    events_dir = os.path.join(self.dir, simulate_shards.EVENTS_DIR)
    pd.testing.assert_frame_equal(pd.read_parquet(events_dir), self.expected)
    table = ds.dataset(events_dir, format="parquet").to_table()
    self.assertEqual(table.num_rows, len(self.expected))
    self.assertEqual(table.column_names, list(schema.EVENT_COLUMNS))

  def test_sorted_read_is_the_stable_time_sort(self):
    events, _ = simulate_shards.read_sharded_log(self.dir)
    order = np.argsort(self.expected["timestamp"].to_numpy(), kind="stable")
    pd.testing.assert_frame_equal(
        events, self.expected.iloc[order].reset_index(drop=True))
    self.assertTrue(events["timestamp"].is_monotonic_increasing)
    schema.validate_events(events)
    # Blocks have increasing session ids: ties are in session order.
    ties = events["timestamp"].duplicated(keep=False).to_numpy()
    tied = events[ties]
    same_time = tied["timestamp"].to_numpy()
    sessions = tied["session_id"].to_numpy()
    self.assertTrue(np.all((np.diff(same_time) > 0) | (np.diff(sessions) >= 0)))

  def test_catalog_is_the_shared_one(self):
    _, catalog = simulate_shards.read_sharded_log(self.dir)
    for chunk in self.chunks:
      pd.testing.assert_frame_equal(catalog, chunk.catalog)
    self.assertEqual(self.record["catalog"]["rows"], len(catalog))

  def test_record_counts_equal_the_files(self):
    events_dir = os.path.join(self.dir, simulate_shards.EVENTS_DIR)
    count = len(self.chunks)
    names = [f"events-{i:05d}-of-{count:05d}.parquet" for i in range(count)]
    self.assertEqual(sorted(os.listdir(events_dir)), names)
    self.assertEqual([s["file"] for s in self.record["shards"]],
                     [f"events/{n}" for n in names])
    on_disk = simulate_shards.read_record(self.dir)
    self.assertEqual(on_disk["shards"], self.record["shards"])
    for shard, chunk in zip(on_disk["shards"], self.chunks):
      metadata = pq.ParquetFile(os.path.join(self.dir,
                                             shard["file"])).metadata
      self.assertEqual(shard["rows"], metadata.num_rows)
      self.assertEqual(shard["rows"], len(chunk.events))
      self.assertEqual(shard["users"], chunk.events["user_id"].nunique())
      self.assertEqual(shard["sessions"], chunk.events["session_id"].nunique())
      self.assertGreater(metadata.num_row_groups, 1)
      for group in range(metadata.num_row_groups):
        self.assertLessEqual(metadata.row_group(group).num_rows, 3_000)
    self.assertEqual(on_disk["events"], len(self.expected))
    self.assertEqual(on_disk["users"], self.expected["user_id"].nunique())
    self.assertEqual(on_disk["seed"], _ARGS["seed"])
    self.assertEqual(on_disk["simulate_arguments"]["num_days"], 7)
    self.assertNotIn("num_users", on_disk["simulate_arguments"])
    self.assertGreater(on_disk["peak_rss_bytes"], 0)
    self.assertGreater(on_disk["wall_seconds"], 0)

  def test_user_and_session_ids_never_repeat_across_shards(self):
    seen_users, seen_sessions = set(), set()
    for shard in self.record["shards"]:
      frame = pd.read_parquet(os.path.join(self.dir, shard["file"]),
                              columns=["user_id", "session_id"])
      users = set(frame["user_id"].unique().tolist())
      sessions = set(frame["session_id"].unique().tolist())
      self.assertFalse(users & seen_users)
      self.assertFalse(sessions & seen_sessions)
      self.assertEqual((min(users), max(users)),
                       (shard["first_user_id"], shard["last_user_id"]))
      seen_users |= users
      seen_sessions |= sessions

  def test_beam_similarity_reads_the_shards(self):
    from cabb_tf.pipelines import similarity_beam  # pylint: disable=g-import-not-at-top
    from cabb_tf.similarity import category_cf  # pylint: disable=g-import-not-at-top
    out = self.create_tempdir().full_path
    events, catalog = simulate_shards.read_sharded_log(self.dir)
    catalog[["item_id", "leaf"]].to_csv(os.path.join(out, "catalog.csv"),
                                        index=False)
    beam = similarity_beam.run(
        os.path.join(self.dir, simulate_shards.EVENTS_DIR, "*.parquet"),
        os.path.join(out, "catalog.csv"), os.path.join(out, "beam"))
    memory = category_cf.category_similarity(events, catalog)
    np.testing.assert_array_equal(beam.keys, memory.keys)
    np.testing.assert_allclose(beam.matrix.toarray(), memory.matrix.toarray(),
                               atol=1e-12)

  def test_rewrite_replaces_the_shards(self):
    directory = self.create_tempdir().full_path
    simulate_shards.write_sharded_log(directory, num_events=6_000,
                                      chunk_events=2_000,
                                      simulate_kwargs=_SIMULATE)
    simulate_shards.write_sharded_log(directory, num_events=6_000,
                                      chunk_events=3_000,
                                      simulate_kwargs=_SIMULATE)
    names = os.listdir(os.path.join(directory, simulate_shards.EVENTS_DIR))
    self.assertEqual(sorted(names), ["events-00000-of-00002.parquet",
                                     "events-00001-of-00002.parquet"])
    self.assertEqual(sorted(os.listdir(directory)),
                     ["catalog.parquet", "events", "simulate_log.json"])

  def test_reserved_arguments(self):
    with self.assertRaisesRegex(ValueError, "num_users"):
      simulate_shards.write_sharded_log(
          self.create_tempdir().full_path, num_events=1_000,
          simulate_kwargs=dict(num_users=5))


class BinaryTest(absltest.TestCase):

  def test_simulate_log_binary(self):
    base_dir = self.create_tempdir().full_path
    done = subprocess.run(
        [sys.executable, str(REPO / "experiments" / "simulate_log.py"),
         f"--base_dir={base_dir}",
         "--gin_bindings=write_sharded_log.num_events = 4000",
         "--gin_bindings=write_sharded_log.chunk_events = 2000",
         "--gin_bindings=simulate.num_days = 5"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    self.assertEqual(done.returncode, 0, done.stderr[-3000:])
    with open(os.path.join(base_dir, simulate_shards.RECORD_FILE)) as f:
      record = json.load(f)
    self.assertLen(record["shards"], 2)
    self.assertEqual(record["simulate_arguments"]["num_days"], 5)
    events, _ = simulate_shards.read_sharded_log(base_dir)
    self.assertLen(events, record["events"])
    self.assertTrue(os.path.exists(os.path.join(base_dir, "config.gin")))


if __name__ == "__main__":
  absltest.main()
