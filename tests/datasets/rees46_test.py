"""Tests for the `rees46` TFDS builder on hand-written dummy data.

`cabb_tf/datasets/rees46/dummy_data/2019-Oct.csv` (CRLF line ends, like the
real file) holds 23 rows on 2019-10-01 (a Tuesday), from 00:00:00 to 10:00:00
UTC. One exact duplicate row and one `remove_from_cart` are dropped, leaving
21 events in five sessions:

* aaaa (user 5001, 00:00–00:04): views of 1001 then 1002, cart 1001, purchase
  1001 (00:03) and 1002 (00:04). Click 1001: A bought, B = 1002 → 1 row.
  Click 1002: A bought, B = 1001 → 1 row. Both purchases follow the view of
  1002, so only the 1002 click is last-click positive.
* bbbb (user 5002, 00:00–00:05): views of 1003 (twice, plus the duplicate)
  and 1004, no purchase → 2 rows.
* cccc (user 5001, 02:00–02:03): purchase 1005 (before any click), views of
  1005 and 1006, purchases 1006 and 1007 at 02:03. Click 1005: A was bought
  only before the click, B = 1006 and 1007 → 2 rows. Click 1006: A bought,
  B = 1007 → 1 row.
* dddd (user 5003, 07:10–07:30): views of 1001 and 1008, purchase 1008 → 2
  rows.
* eeee (user 5004, 08:30–10:00): views of 1002 (twice), cart 1002, view 1004
  (09:00), purchase 1004 (10:00) → 2 rows.

The time range is 10 h, so test starts at 08:00 and validation at 07:00:
train 2 + 2 + 3 = 7 rows, validation 2, test 2.
"""

import os

import gin
import tensorflow as tf

from cabb_tf.data import loaders
from cabb_tf.data import pipeline
from cabb_tf.datasets import click_examples
from cabb_tf.datasets import rees46
from tests import shared_data
from tests.datasets import builder_testing

_DUMMY_DATA = builder_testing.DATASETS_DIR / "rees46" / "dummy_data"
_T0 = 1_569_888_000_000  # 2019-10-01 00:00:00 UTC in ms.
_HOUR = 3_600_000
_rows = builder_testing.rows


class Rees46BuilderTest(builder_testing.DatasetBuilderTestCase):
  """TFDS's checks of `rees46/oct_2019` on the dummy CSV."""

  DATASET_CLASS = rees46.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["oct_2019"]
  SPLITS = {"train": 7, "validation": 2, "test": 2}


class Rees46ExamplesTest(tf.test.TestCase):
  """The emitted examples against the hand derivation above."""

  def _prepare(self):
    return builder_testing.prepare(rees46.Builder, "oct_2019",
                                   self.create_tempdir().full_path,
                                   _DUMMY_DATA)

  def test_labels_derived_by_hand(self):
    builder = self._prepare()
    got = set()
    for split in click_examples.SPLITS:
      for ex in _rows(builder, split):
        got.add((split, ex["session_id"].decode()[:4],
                 ex["item_a"].decode(), ex["item_b"].decode(),
                 int(ex["y_caba"]), int(ex["y_cabb"]),
                 int(ex["y_last_click"]), float(ex["w_caba"])))
    # (split, session, A, B, y_caba, y_cabb, y_last_click, w_caba)
    self.assertEqual(got, {
        ("train", "aaaa", "1001", "1002", 1, 1, 0, 1.0),
        ("train", "aaaa", "1002", "1001", 1, 1, 1, 1.0),
        ("train", "bbbb", "1003", "", 0, 0, 0, 1.0),
        ("train", "bbbb", "1004", "", 0, 0, 0, 1.0),
        ("train", "cccc", "1005", "1006", 0, 1, 0, 1.0),
        ("train", "cccc", "1005", "1007", 0, 1, 0, 0.0),
        ("train", "cccc", "1006", "1007", 1, 1, 1, 1.0),
        ("validation", "dddd", "1001", "1008", 0, 1, 0, 1.0),
        ("validation", "dddd", "1008", "", 1, 0, 1, 1.0),
        ("test", "eeee", "1002", "1004", 0, 1, 0, 1.0),
        ("test", "eeee", "1004", "", 1, 0, 1, 1.0),
    })

  def test_leaves_and_features_of_one_click(self):
    builder = self._prepare()
    by_a = {(ex["item_a"], ex["item_b"]): ex for ex in _rows(builder, "test")}
    ex = by_a[(b"1004", b"")]
    # The view of 1004 at 09:00 in session eeee.
    self.assertEqual(ex["timestamp"], _T0 + 9 * _HOUR)
    self.assertEqual(ex["leaf_a"], b"appliances/kitchen/kettle")
    self.assertEqual(ex["top_category_a"], b"appliances")
    self.assertEqual(ex["brand_a"], b"bosch")
    self.assertEqual(ex["user_id"], b"5004")
    self.assertEqual(ex["leaf_b"], b"")
    self.assertEqual(ex["hour"], 9)
    self.assertEqual(ex["weekday"], 1)  # Tuesday.
    self.assertEqual(ex["session_position"], 2)  # Two views of 1002 before.
    self.assertEqual(ex["session_events_before"], 3)  # And the cart.
    self.assertEqual(ex["item_clicks"], 1)  # User 5002's view at 00:05.
    self.assertEqual(ex["u_item_clicks"], 0)
    self.assertAlmostEqual(float(ex["price_a"]), 35.2, places=4)
    first = by_a[(b"1002", b"1004")]
    self.assertEqual(first["leaf_a"], b"electronics/audio/headphone")
    self.assertEqual(first["leaf_b"], b"appliances/kitchen/kettle")
    train = {(ex["item_a"], ex["item_b"]): ex for ex in _rows(builder, "train")}
    # Without a category_code the path is the category_id.
    self.assertEqual(train[(b"1003", b"")]["leaf_a"], b"2053013555631882611")

  def test_report_and_training_events(self):
    builder = self._prepare()
    report = builder.info.metadata["data_report"]
    self.assertEqual(report["rows_in"], 23)
    self.assertEqual(report["rows_kept"], 21)
    self.assertEqual(report["dropped"], {"dropped_event_type": 1,
                                         "duplicate": 1})
    self.assertEqual(report["click_examples_by_split"],
                     {"train": 6, "validation": 2, "test": 2})
    self.assertEqual(builder.info.metadata["split_boundaries_ms"],
                     {"validation_start": _T0 + 7 * _HOUR,
                      "test_start": _T0 + 8 * _HOUR})
    events, catalog = click_examples.load_training_events(builder)
    # The 15 rows before 07:00 less the duplicate and the removal.
    self.assertLen(events, 13)
    self.assertEqual(sorted(events["session_id"].str[:4].unique()),
                     ["aaaa", "bbbb", "cccc"])
    self.assertEqual(
        events["event_type"].value_counts().to_dict(),
        {"click": 7, "purchase": 5, "add_to_cart": 1, "impression": 0})
    leaf = dict(zip(events["item_id"], events["leaf"]))
    self.assertEqual(leaf[1007], "computers/notebook")
    self.assertLen(catalog, 8)
    path = dict(zip(catalog["item_id"], catalog["category_path"]))
    self.assertEqual(path[1002], ("electronics", "audio", "headphone"))


class Rees46ManualFileTest(tf.test.TestCase):
  """Any file name, through `rees46_manual_file.name` in gin."""

  def setUp(self):
    super().setUp()
    gin.clear_config()
    self.addCleanup(gin.clear_config)

  def test_a_renamed_month_is_read(self):
    manual_dir = self.create_tempdir()
    manual_dir.create_file(
        "october.csv", (_DUMMY_DATA / "2019-Oct.csv").read_bytes(),
        mode="wb")
    gin.bind_parameter("rees46_dataset_builder.rees46_manual_file.name",
                       "october.csv")
    builder = builder_testing.prepare(rees46.Builder, "oct_2019",
                                      self.create_tempdir().full_path,
                                      manual_dir.full_path)
    # The dummy file's hand-derived counts (module docstring).
    self.assertEqual({s: builder.info.splits[s].num_examples
                      for s in click_examples.SPLITS},
                     {"train": 7, "validation": 2, "test": 2})
    self.assertEqual(builder.info.metadata["data_report"]["source"],
                     "october.csv")


  def test_a_replaced_source_file_is_refused_a_deleted_one_is_not(self):
    manual_dir = self.create_tempdir()
    source = manual_dir.create_file(
        "2019-Oct.csv", (_DUMMY_DATA / "2019-Oct.csv").read_bytes(),
        mode="wb")
    data_dir = self.create_tempdir().full_path
    builder = builder_testing.prepare(rees46.Builder, "oct_2019", data_dir,
                                      manual_dir.full_path)
    recorded = builder.info.metadata["source_files"]
    self.assertEqual(list(recorded), [source.full_path])
    self.assertEqual(recorded[source.full_path]["size"],
                     os.path.getsize(source.full_path))
    # Same size, another product id: the build is not reused.
    text = source.read_bytes()
    with open(source.full_path, "wb") as f:
      f.write(text.replace(b"1008", b"1009"))
    with self.assertRaisesRegex(ValueError, "other source files.*2019-Oct.csv"):
      builder_testing.prepare(rees46.Builder, "oct_2019", data_dir,
                              manual_dir.full_path)
    # With the raw file gone there is nothing to compare: reused, warned.
    os.remove(source.full_path)
    reused = builder_testing.prepare(rees46.Builder, "oct_2019", data_dir,
                                     manual_dir.full_path)
    self.assertEqual(reused.info.splits["train"].num_examples, 7)


class Rees46SharedSampleTest(tf.test.TestCase):
  """The builder on the real sample in ../shared (skipped when absent)."""

  def test_emits_what_prepare_examples_makes(self):
    sample = shared_data.require(shared_data.REES46)
    manual_dir = self.create_tempdir().full_path
    os.symlink(sample, os.path.join(manual_dir, "2019-Oct.csv"))
    builder = builder_testing.prepare(rees46.Builder, "oct_2019",
                                      self.create_tempdir().full_path,
                                      manual_dir)
    prepared = pipeline.prepare_examples(*loaders.load_rees46(str(sample)))
    self.assertEqual({split: builder.info.splits[split].num_examples
                      for split in click_examples.SPLITS},
                     click_examples.num_rows(prepared.examples))
    report = builder.info.metadata["data_report"]
    self.assertEqual(report["dropped"]["truncated_last_line"], 1)
    self.assertEqual(report["examples"], len(prepared.examples))


if __name__ == "__main__":
  tf.test.main()
