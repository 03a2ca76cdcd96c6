"""Tests for cabb_tf.pipelines.prepare_beam: equal to the in-memory path.

Small logs on the DirectRunner: the Beam preparation's examples (read back
from its TFRecords) equal `pipeline.prepare_examples`' row for row, its
statistics `fit_feature_statistics`', its report's counts the in-memory
report's and its similarity `category_similarity` (1e-9), whatever the
numbers of user buckets and time blocks.
"""

import glob
import json
import math
import os

from absl.testing import absltest
from absl.testing import parameterized
import gin
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cabb_tf.data import loaders
from cabb_tf.data import pipeline
from cabb_tf.data import schema
from cabb_tf.data import simulator
from cabb_tf.datasets import click_examples
from cabb_tf.pipelines import prepare_beam
from cabb_tf.similarity import category_cf
from tests import shared_data

_DIRECT = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]
# Fields that identify a row in both outputs: the session ids of derived
# sessions and the click ids are numbered differently (checked apart).
_KEY = ["user_id", "timestamp", "item_a", "item_b"]
_IDS = ["session_id", "click_id"]


def assert_same_grouping(test, got, want, columns):
  """Each id column groups the (aligned) rows of `got` as `want`'s does:
  its ids correspond one to one."""
  for column in columns:
    pairs = pd.DataFrame({"got": got[column], "want": want[column]})
    pairs = pairs.drop_duplicates()
    test.assertEqual(pairs["got"].nunique(), len(pairs), column)
    test.assertEqual(pairs["want"].nunique(), len(pairs), column)


def _read_tfrecords(output_dir):
  """The Beam output's example rows, as the builders' field values."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  spec = click_examples.example_features()
  rows = {}
  for split in click_examples.SPLITS:
    paths = sorted(glob.glob(os.path.join(
        output_dir, f"click_examples-{split}.tfrecord-*")))
    records = [r.numpy() for r in tf.data.TFRecordDataset(paths)]
    rows[split] = [spec.deserialize_example_np(r) for r in records]
    # The fast encoder's bytes are the builders' serializer's.
    for record, row in zip(records, rows[split]):
      assert spec.serialize_example(row) == record
  frames = []
  for split, values in rows.items():
    frame = pd.DataFrame(values)
    frame["split"] = split
    frames.append(frame)
  frame = pd.concat(frames, ignore_index=True)
  for column in frame.columns:
    if frame[column].dtype == object and len(frame) and isinstance(
        frame[column].iloc[0], bytes):
      frame[column] = frame[column].map(lambda b: b.decode("utf-8"))
  return frame


def _expected_rows(examples):
  """The in-memory examples as the builders would write them."""
  readers = click_examples.example_columns(examples)
  rows = np.arange(len(examples))
  frame = pd.DataFrame({name: read(rows) for name, read in readers.items()})
  frame["split"] = examples["split"].astype(str).to_numpy()
  return frame


def _sorted(frame, key):
  frame = frame.copy()
  for column in key:
    frame[column] = frame[column].astype(str)
  return frame.sort_values(key, kind="stable").reset_index(drop=True)


class PrepareBeamTest(parameterized.TestCase):

  def _check(self, prepared, output_dir, report, train_events, catalog,
             source_sessions=True):
    """Compares a Beam run with the in-memory preparation."""
    # Source session ids are kept as they are; derived ones are numbered
    # differently (only the grouping must agree).
    key = (["session_id"] if source_sessions else []) + _KEY
    ids = ["click_id"] if source_sessions else _IDS
    got = _sorted(_read_tfrecords(output_dir), key)
    want = _sorted(_expected_rows(prepared.examples), key)
    self.assertEqual(len(got), len(want))
    self.assertFalse(want.duplicated(key).any())
    for column in want.columns:
      if column in ids:
        continue
      np.testing.assert_array_equal(
          got[column].to_numpy(), want[column].to_numpy(), err_msg=column)
    # Ids: the same grouping of rows (a bijection), clicks dense from 0.
    assert_same_grouping(self, got, want, _IDS)
    self.assertEqual(sorted(got["click_id"].unique()),
                     list(range(prepared.report["click_examples"])))

    # The report: every count equal (derived sessions' ids aside).
    want_report = json.loads(json.dumps(prepared.report, default=float))
    for key in ("rows_in", "rows_kept", "dropped", "events", "event_counts",
                "users", "items", "sessions", "clicks", "click_examples",
                "examples", "caba_positives", "cabb_positive_rows",
                "last_click_positives", "purchases",
                "purchases_without_prior_click", "items_unknown_category",
                "click_examples_by_split", "attribution_window_s"):
      self.assertEqual(report[key], want_report[key], key)
    for key, value in want_report["purchase_attribution"].items():
      got_value = report["purchase_attribution"][key]
      if isinstance(value, float) and math.isnan(value):
        self.assertTrue(math.isnan(got_value), key)
      else:
        self.assertEqual(got_value, value, key)
    with open(os.path.join(output_dir, "data_report.json")) as f:
      self.assertEqual(json.load(f)["examples"], want_report["examples"])

    # Statistics: vocabularies exactly, moments to float rounding.
    with open(os.path.join(output_dir, "feature_statistics.json")) as f:
      statistics = json.load(f)
    want_stats = prepared.feature_statistics
    self.assertEqual(statistics["vocabulary"], want_stats["vocabulary"])
    self.assertEqual(statistics["num_examples"], want_stats["num_examples"])
    self.assertEqual(sorted(statistics["numeric"]),
                     sorted(want_stats["numeric"]))
    for name, moments in want_stats["numeric"].items():
      for key, value in moments.items():
        self.assertAlmostEqual(statistics["numeric"][name][key], value,
                               delta=1e-9 * max(1.0, abs(value)),
                               msg=f"{name}.{key}")

    # Side files: the train events and the catalog.
    got_train = pd.read_parquet(os.path.join(output_dir,
                                             "train_events.parquet"))
    self.assertEqual(len(got_train), len(train_events))
    columns = (["session_id"] if source_sessions else []) + [
        "user_id", "timestamp", "item_id", "event_type", "leaf"]
    left = got_train[columns].astype(str).sort_values(columns)
    right = train_events[columns].astype(str).sort_values(columns)
    np.testing.assert_array_equal(left.to_numpy(), right.to_numpy())
    got_catalog = pd.read_parquet(os.path.join(output_dir, "catalog.parquet"))
    np.testing.assert_array_equal(got_catalog["item_id"].astype(str),
                                  catalog["item_id"].astype(str))
    np.testing.assert_array_equal(got_catalog["leaf"], catalog["leaf"])

    # The similarity of Eq. (1)-(2) on the training events.
    train_events = train_events.assign(event_type=pd.Categorical(
        train_events["event_type"], dtype=schema.EVENT_TYPE_DTYPE))
    want_sim = category_cf.category_similarity(train_events, catalog)
    got_sim = category_cf.CategorySimilarity.load(
        os.path.join(output_dir, "category_similarity.npz"))
    self.assertEqual(list(got_sim.leaves), list(want_sim.leaves))
    np.testing.assert_allclose(got_sim.matrix.toarray(),
                               want_sim.matrix.toarray(), atol=1e-9)

  @parameterized.parameters((1, 1, None), (3, 4, None), (2, 5, 3600.0))
  def test_simulated_parquet_shards(self, num_buckets, num_blocks, window):
    directory = self.create_tempdir().full_path
    log = simulator.simulate(num_users=300, seed=0)
    events, catalog = log.events, log.catalog
    if window is not None:
      # Derived sessions and an attribution window bound in gin.
      events = events.drop(columns=["session_id"])
      gin.bind_parameter("cabb_tf.data.labels.label_clicks."
                         "attribution_window_s", window)
      self.addCleanup(gin.clear_config)
    for i, part in enumerate(np.array_split(np.arange(len(events)), 3)):
      pq.write_table(pa.Table.from_pandas(events.iloc[part],
                                          preserve_index=False),
                     os.path.join(directory, f"events-{i}.parquet"))
    side = catalog.copy()
    side["category_path"] = [list(p) for p in side["category_path"]]
    catalog_path = os.path.join(directory, "catalog.parquet")
    pq.write_table(pa.Table.from_pandas(side, preserve_index=False),
                   catalog_path)
    output_dir = os.path.join(directory, "out")
    report = prepare_beam.run(
        os.path.join(directory, "events-*.parquet"), output_dir,
        catalog_path=catalog_path, num_buckets=num_buckets,
        num_blocks=num_blocks, pipeline_args=_DIRECT)
    prepared = pipeline.prepare_examples(events, catalog)
    _, validation_start = _boundaries(prepared)
    if window is not None:
      self.assertEqual(report["attribution_window_s"], window)
      from cabb_tf.data import sessions  # pylint: disable=g-import-not-at-top
      events = sessions.assign_sessions(events)
    train = click_examples.training_events(events, catalog, validation_start)
    self._check(prepared, output_dir, report, train, catalog,
                source_sessions=window is None)
    self.assertFalse(os.path.exists(os.path.join(output_dir, "tmp")))

    # The output is a TFDS dataset that training opens as it is.
    from cabb_tf import input_pipeline  # pylint: disable=g-import-not-at-top
    data = input_pipeline.load_data(prepared_dir=output_dir)
    self.assertEqual(data.num_examples, click_examples.num_rows(
        prepared.examples))
    self.assertEqual(data.feature_statistics["vocabulary"],
                     prepared.feature_statistics["vocabulary"])
    self.assertEqual(data.builder.info.metadata["data_report"]["examples"],
                     prepared.report["examples"])
    # Every shard reads (buckets without test rows have empty files).
    self.assertLen(list(data.test.as_numpy_iterator()),
                   click_examples.num_rows(prepared.examples)["test"])


  def _check_csv(self, source, preset, load, num_buckets, num_blocks,
                 header, time_range=None, max_lines=None):
    directory = self.create_tempdir().full_path
    pattern, whole = _split_csv(source, directory, preset, 3, header,
                                max_lines)
    output_dir = os.path.join(directory, "out")
    report = prepare_beam.run(pattern, output_dir, csv_preset=preset,
                              num_buckets=num_buckets, num_blocks=num_blocks,
                              time_range=time_range, pipeline_args=_DIRECT)
    events, catalog, loaded_report = load(whole)
    self.assertEqual(loaded_report["dropped"].get("duplicate", 0) >= 1, True)
    prepared = pipeline.prepare_examples(events, catalog, loaded_report,
                                         time_range=time_range)
    if time_range is not None:
      events = events[click_examples.in_time_range(events, time_range)]
    _, validation_start = _boundaries(prepared)
    from cabb_tf.data import sessions  # pylint: disable=g-import-not-at-top
    train = click_examples.training_events(
        sessions.assign_sessions(events.reset_index(drop=True)), catalog,
        validation_start)
    self._check(prepared, output_dir, report, train, catalog,
                source_sessions=preset == "rees46")
    self.assertEqual(report["duplicate_key"], loaded_report["duplicate_key"])
    self.assertEqual(report["timestamp_resolution"],
                     loaded_report["timestamp_resolution"])

  @parameterized.parameters((1, 1), (4, 3))
  def test_taobao_sample_csv_shards(self, num_buckets, num_blocks):
    source = shared_data.require(shared_data.TAOBAO)
    from cabb_tf.datasets.taobao_user_behavior import taobao_user_behavior_dataset_builder as taobao  # pylint: disable=g-import-not-at-top,line-too-long
    # The first 12,000 lines (whole users: the sample is by user) keep the
    # test fast; derived sessions, a time range and a duplicate across
    # shards are what this log adds.
    self._check_csv(source, "taobao", loaders.load_taobao, num_buckets,
                    num_blocks, header=False, time_range=taobao.TIME_RANGE_MS,
                    max_lines=12_000)

  @parameterized.parameters((1, 1), (4, 3))
  def test_rees46_sample_csv_shards(self, num_buckets, num_blocks):
    source = shared_data.require(shared_data.REES46)
    self._check_csv(source, "rees46", loaders.load_rees46, num_buckets,
                    num_blocks, header=True)


class CommandLineTest(absltest.TestCase):

  def test_command_line_with_gin_on_the_in_process_runner(self):
    """A fresh `python -m cabb_tf.pipelines.prepare_beam` with a gin binding
    (gin locks its config) on the default in-process runner, whose workers
    import the builders only then."""
    import subprocess  # pylint: disable=g-import-not-at-top
    import sys  # pylint: disable=g-import-not-at-top
    directory = self.create_tempdir().full_path
    log = simulator.simulate(num_users=150, seed=1)
    pq.write_table(pa.Table.from_pandas(log.events, preserve_index=False),
                   os.path.join(directory, "events-0.parquet"))
    side = log.catalog.copy()
    side["category_path"] = [list(p) for p in side["category_path"]]
    pq.write_table(pa.Table.from_pandas(side, preserve_index=False),
                   os.path.join(directory, "catalog.parquet"))
    output_dir = os.path.join(directory, "out")
    window = 1800.0
    result = subprocess.run(
        [sys.executable, "-m", "cabb_tf.pipelines.prepare_beam",
         f"--input_pattern={directory}/events-*.parquet",
         f"--catalog_path={directory}/catalog.parquet",
         f"--output_dir={output_dir}", "--num_buckets=2", "--num_blocks=2",
         "--gin_bindings=cabb_tf.data.labels.label_clicks."
         f"attribution_window_s = {window}"],
        capture_output=True, text=True, check=False,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    with open(os.path.join(output_dir, "data_report.json")) as f:
      report = json.load(f)
    gin.bind_parameter(
        "cabb_tf.data.labels.label_clicks.attribution_window_s", window)
    self.addCleanup(gin.clear_config)
    prepared = pipeline.prepare_examples(log.events, log.catalog)
    self.assertEqual(report["attribution_window_s"], window)
    self.assertEqual(report["examples"], prepared.report["examples"])
    self.assertEqual(report["cabb_positive_rows"],
                     prepared.report["cabb_positive_rows"])


def _split_csv(source, directory, name, num_shards, header, max_lines=None):
  """Cuts a CSV into shards in file order (each with the header), repeats
  one row of the first shard in the second (a cross-shard duplicate) and
  writes the concatenation as the in-memory reference; returns
  (shards glob, reference path)."""
  with open(source, "rb") as f:
    lines = f.read().splitlines(keepends=True)
  head, body = (lines[:1], lines[1:]) if header else ([], lines)
  body = body[:max_lines]
  cuts = np.array_split(np.arange(len(body)), num_shards)
  parts = [[body[i] for i in cut] for cut in cuts]
  parts[1].insert(len(parts[1]) // 2, parts[0][len(parts[0]) // 2])
  for i, part in enumerate(parts):
    with open(os.path.join(directory, f"{name}-{i}.csv"), "wb") as f:
      f.writelines(head + part)
  whole = os.path.join(directory, f"{name}.whole")
  with open(whole, "wb") as f:
    f.writelines(head + [line for part in parts for line in part])
  return os.path.join(directory, f"{name}-*.csv"), whole


def _boundaries(prepared):
  from cabb_tf.data import features  # pylint: disable=g-import-not-at-top
  return features.split_boundaries(prepared.time_range, 0.1, 0.2)


if __name__ == "__main__":
  absltest.main()
