"""Tests for the `taobao_user_behavior` TFDS builder.

`cabb_tf/datasets/taobao_user_behavior/dummy_data/UserBehavior.csv` (no
header, sorted by user like the real file) holds 26 rows. T0 = 1511539200 s
is 2017-11-25 00:00 China time, the start of the nominal period. Three rows
lie outside [T0, 1512316800): one exactly at the exclusive end, one after it,
one before T0; they are dropped as `out_of_time_range`. One exact duplicate
row is dropped by the loader. The 22 events left span T0 .. T0 + 10 h; sessions
are split at gaps of more than 30 minutes:

* user 1, T0 .. T0+240 s: pv 101, pv 102, fav 101 (an add-to-cart), buy 101,
  buy 102. Click 101: A bought, B = 102 → 1 row. Click 102: A bought,
  B = 101 → 1 row; both buys follow the pv of 102 (last click).
* user 1, T0+3600 .. T0+3700 (a new session): pv 103 (and its duplicate),
  cart 103, pv 104, no purchase → 2 rows.
* user 2, T0+7200 .. T0+7400: buy 105 (no click before it), pv 105, pv 106,
  buy 106 and buy 107 in the same second. Click 105: B = 106, 107 → 2 rows.
  Click 106: A bought, B = 107 → 1 row.
* user 3, T0+25800 .. T0+27000 (validation, from T0 + 7 h): pv 101, pv 108,
  buy 108 → 2 rows.
* user 4, T0+30600 .. T0+33000 (test, from T0 + 8 h): pv 102 twice, cart 102,
  pv 104, buy 104 → 2 rows.
* user 5, T0+36000: pv 110 → 1 row (test).

So train 2 + 2 + 3 = 7 rows, validation 2, test 3.
"""

import gin
import numpy as np
import pandas as pd
import tensorflow as tf

from cabb_tf.data import loaders
from cabb_tf.data import pipeline
from cabb_tf.datasets import click_examples
from cabb_tf.datasets import taobao_user_behavior
from tests import shared_data
from tests.datasets import builder_testing

_DUMMY_DATA = (builder_testing.DATASETS_DIR / "taobao_user_behavior" /
               "dummy_data")
_T0_MS = 1_511_539_200_000
_HOUR = 3_600_000
_rows = builder_testing.rows


class TaobaoBuilderTest(builder_testing.DatasetBuilderTestCase):
  """TFDS's checks of `taobao_user_behavior` on the dummy CSV."""

  DATASET_CLASS = taobao_user_behavior.Builder
  SPLITS = {"train": 7, "validation": 2, "test": 3}


class TaobaoExamplesTest(tf.test.TestCase):
  """The emitted examples against the hand derivation above."""

  def _prepare(self, manual_dir=_DUMMY_DATA):
    return builder_testing.prepare(taobao_user_behavior.Builder, "default",
                                   self.create_tempdir().full_path,
                                   manual_dir)

  def test_time_range_is_the_nominal_period_in_china_time(self):
    start, end = taobao_user_behavior.TIME_RANGE_MS
    self.assertEqual(
        pd.Timestamp(start, unit="ms", tz="UTC").tz_convert("Asia/Shanghai"),
        pd.Timestamp("2017-11-25 00:00", tz="Asia/Shanghai"))
    self.assertEqual(
        pd.Timestamp(end, unit="ms", tz="UTC").tz_convert("Asia/Shanghai"),
        pd.Timestamp("2017-12-04 00:00", tz="Asia/Shanghai"))

  def test_labels_derived_by_hand(self):
    builder = self._prepare()
    got = set()
    for split in click_examples.SPLITS:
      for ex in _rows(builder, split):
        got.add((split, ex["user_id"].decode(), ex["item_a"].decode(),
                 ex["item_b"].decode(), int(ex["y_caba"]), int(ex["y_cabb"]),
                 int(ex["y_last_click"]), float(ex["w_caba"])))
    # (split, user, A, B, y_caba, y_cabb, y_last_click, w_caba)
    self.assertEqual(got, {
        ("train", "1", "101", "102", 1, 1, 0, 1.0),
        ("train", "1", "102", "101", 1, 1, 1, 1.0),
        ("train", "1", "103", "", 0, 0, 0, 1.0),
        ("train", "1", "104", "", 0, 0, 0, 1.0),
        ("train", "2", "105", "106", 0, 1, 0, 1.0),
        ("train", "2", "105", "107", 0, 1, 0, 0.0),
        ("train", "2", "106", "107", 1, 1, 1, 1.0),
        ("validation", "3", "101", "108", 0, 1, 0, 1.0),
        ("validation", "3", "108", "", 1, 0, 1, 1.0),
        ("test", "4", "102", "104", 0, 1, 0, 1.0),
        ("test", "4", "104", "", 1, 0, 1, 1.0),
        ("test", "5", "110", "", 0, 0, 0, 1.0),
    })
    leaves = {(ex["item_a"], ex["item_b"]): (ex["leaf_a"], ex["leaf_b"])
              for ex in _rows(builder, "train")}
    self.assertEqual(leaves[(b"105", b"107")], (b"14", b"15"))
    self.assertEqual(leaves[(b"103", b"")], (b"11", b""))

  def test_stray_timestamps_are_dropped_and_counted(self):
    builder = self._prepare()
    report = builder.info.metadata["data_report"]
    self.assertEqual(report["rows_in"], 26)
    self.assertEqual(report["rows_kept"], 22)
    self.assertEqual(report["dropped"], {"duplicate": 1,
                                         "out_of_time_range": 3})
    self.assertEqual(builder.info.metadata["time_range_ms"],
                     [_T0_MS, _T0_MS + 10 * _HOUR])
    self.assertEqual(builder.info.metadata["split_boundaries_ms"],
                     {"validation_start": _T0_MS + 7 * _HOUR,
                      "test_start": _T0_MS + 8 * _HOUR})

  def test_training_events(self):
    builder = self._prepare()
    events, catalog = click_examples.load_training_events(builder)
    # Users 1 and 2 before T0 + 7 h: 5 + 3 (duplicate dropped) + 5 events.
    self.assertLen(events, 13)
    self.assertTrue((events["timestamp"] < _T0_MS + 7 * _HOUR).all())
    self.assertEqual(events["user_id"].tolist(), [1] * 8 + [2] * 5)
    # 30-minute sessions: user 1 has two, user 2 one.
    self.assertEqual(events.groupby("user_id")["session_id"].nunique()
                     .to_dict(), {1: 2, 2: 1})
    self.assertEqual(events["event_type"].value_counts().to_dict(),
                     {"click": 6, "purchase": 5, "add_to_cart": 2,
                      "impression": 0})
    self.assertEqual(dict(zip(events["item_id"], events["leaf"]))[107], "15")
    self.assertEqual(dict(zip(catalog["item_id"], catalog["category_path"]))
                     [108], ("12",))

  def test_missing_file_names_the_instructions(self):
    manual_dir = self.create_tempdir()
    manual_dir.create_file("2019-Oct.csv", "not the file\n")
    with self.assertRaisesRegex(ValueError, "UserBehavior.csv"):
      self._prepare(manual_dir.full_path)


class TaobaoManualFileTest(tf.test.TestCase):
  """Any file name, through `taobao_manual_file.name` in gin."""

  def setUp(self):
    super().setUp()
    gin.clear_config()
    self.addCleanup(gin.clear_config)

  def _dummy_copy(self, name):
    directory = self.create_tempdir()
    directory.create_file(name, (_DUMMY_DATA / "UserBehavior.csv").read_text())
    return directory

  def test_a_bare_name_is_read_from_the_manual_dir(self):
    manual_dir = self._dummy_copy("taobao-sample.csv")
    gin.bind_parameter(
        "taobao_user_behavior_dataset_builder.taobao_manual_file.name",
        "taobao-sample.csv")
    builder = builder_testing.prepare(
        taobao_user_behavior.Builder, "default",
        self.create_tempdir().full_path, manual_dir.full_path)
    # The dummy file's hand-derived counts (module docstring).
    self.assertEqual({s: builder.info.splits[s].num_examples
                      for s in click_examples.SPLITS},
                     {"train": 7, "validation": 2, "test": 3})
    self.assertEqual(builder.info.metadata["data_report"]["source"],
                     "taobao-sample.csv")
    self.assertIn(
        "cabb_tf.datasets.taobao_user_behavior."
        "taobao_user_behavior_dataset_builder.taobao_manual_file.name",
        builder.info.metadata["gin_bindings"])

  def test_a_path_is_read_as_it_is(self):
    path = self._dummy_copy("ub.csv").full_path + "/ub.csv"
    gin.bind_parameter(
        "taobao_user_behavior_dataset_builder.taobao_manual_file.name", path)
    builder = builder_testing.prepare(
        taobao_user_behavior.Builder, "default",
        self.create_tempdir().full_path, self.create_tempdir().full_path)
    self.assertEqual(builder.info.metadata["data_report"]["rows_in"], 26)

  def test_a_missing_file_names_the_binding(self):
    gin.bind_parameter(
        "taobao_user_behavior_dataset_builder.taobao_manual_file.name",
        "absent.csv")
    with self.assertRaisesRegex(ValueError, "absent.csv.*taobao_manual_file"):
      builder_testing.prepare(taobao_user_behavior.Builder, "default",
                              self.create_tempdir().full_path,
                              _DUMMY_DATA)


class TaobaoSharedSampleTest(tf.test.TestCase):
  """The builder on the real sample in ../shared (skipped when absent).

  The test takes the sample's first users (whole histories: the file is
  sorted by user), about 15,000 events, which still hold stray timestamps:
  enough for the comparison, and quick to prepare.
  """

  _LINES = 15_000

  def test_emits_what_prepare_examples_makes(self):
    lines = shared_data.require(shared_data.TAOBAO).read_text().splitlines(
        keepends=True)
    user = lambda line: line.split(",", 1)[0]
    end = self._LINES
    while user(lines[end]) == user(lines[end - 1]):
      end += 1
    manual_dir = self.create_tempdir()
    sample = manual_dir.create_file("UserBehavior.csv",
                                    "".join(lines[:end])).full_path
    builder = builder_testing.prepare(taobao_user_behavior.Builder, "default",
                                      self.create_tempdir().full_path,
                                      manual_dir.full_path)

    events, catalog, report = loaders.load_taobao(str(sample))
    start, end = taobao_user_behavior.TIME_RANGE_MS
    ts = events["timestamp"].to_numpy()
    outside = int(((ts < start) | (ts >= end)).sum())
    prepared = pipeline.prepare_examples(
        events, catalog, report, time_range=taobao_user_behavior.TIME_RANGE_MS)
    expected = click_examples.num_rows(prepared.examples)
    got = {split: builder.info.splits[split].num_examples
           for split in click_examples.SPLITS}
    self.assertEqual(got, expected)
    self.assertEqual(sum(got.values()), len(prepared.examples))
    self.assertGreater(outside, 0)  # The sample has stray timestamps.
    self.assertEqual(
        builder.info.metadata["data_report"]["dropped"]["out_of_time_range"],
        outside)
    labels = {}
    for ex in _rows(builder, "test"):
      labels[(ex["session_id"], ex["item_a"], ex["item_b"])] = (
          ex["y_caba"], ex["y_cabb"])
    test = prepared.split("test")
    self.assertEqual(
        sum(int(y) for y, _ in labels.values()),
        int(test["y_caba"].sum()))
    self.assertEqual(
        sum(int(y) for _, y in labels.values()),
        int(test["y_cabb"].sum()))
    train_events, _ = click_examples.load_training_events(builder)
    validation_start = builder.info.metadata["split_boundaries_ms"][
        "validation_start"]
    self.assertLen(train_events,
                   int(((ts >= start) & (ts < validation_start)).sum()))
    self.assertEqual(np.unique(train_events["leaf"]).size,
                     train_events["leaf"].nunique())


if __name__ == "__main__":
  tf.test.main()
