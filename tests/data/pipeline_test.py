"""Tests of the preparation pipeline and its data report."""

import importlib.util
import json
import os

from absl.testing import absltest
import gin
import numpy as np
import pandas as pd

from cabb_tf.data import loaders
from cabb_tf.data import pipeline
from cabb_tf.data import report as report_lib
from cabb_tf.data import schema
from cabb_tf.datasets import click_examples
from tests import shared_data

C, P, K = "click", "purchase", "add_to_cart"
MIN = 60_000

# 2017-11-25 00:00 and 2017-12-04 00:00, China time (UTC+8), in ms.
TAOBAO_RANGE = (1511539200000, 1512316800000)


def _stats_script():
  """The standalone stats script in ../shared: an independent implementation."""
  path = shared_data.require(shared_data.STATS_SCRIPT)
  spec = importlib.util.spec_from_file_location("click_a_buy_b_stats", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def make_events(rows):
  frame = pd.DataFrame(rows, columns=["user_id", "timestamp", "item_id",
                                      "event_type"])
  frame["timestamp"] = frame["timestamp"].astype(np.int64)
  frame["event_type"] = pd.Categorical(frame["event_type"],
                                       dtype=schema.EVENT_TYPE_DTYPE)
  return frame


class PrepareExamplesTest(absltest.TestCase):

  def test_report_by_hand(self):
    # User 1, session 1: click A, click B, buy B. User 1, 2 h later: buy Z
    # (no click in that session). User 2: click A (out of range, t = -1).
    rows = [(1, 0, "A", C), (1, MIN, "B", C), (1, 2 * MIN, "B", P),
            (1, 120 * MIN, "Z", P), (2, -1, "A", C)]
    catalog = schema.make_catalog(["A", "B"], [("x",), ("y",)])
    prepared = pipeline.prepare_examples(make_events(rows), catalog,
                                         time_range=(0, 10**9))
    r = prepared.report
    self.assertEqual((r["rows_in"], r["rows_kept"]), (5, 4))
    self.assertEqual(r["dropped"], {"out_of_time_range": 1})
    self.assertEqual(r["sessions"], 2)
    self.assertEqual(r["clicks"], 2)
    # Clicks A and B are two examples; A has one CABB row (B), B one negative.
    self.assertEqual(r["click_examples"], 2)
    self.assertEqual(r["examples"], 2)
    self.assertEqual(r["caba_positives"], 1)
    self.assertEqual(r["cabb_positive_rows"], 1)
    self.assertEqual(r["last_click_positives"], 1)
    # Purchases: B same-item; Z in a session without clicks.
    self.assertEqual(r["purchase_attribution"]["same_item"], 1)
    self.assertEqual(r["cabb_share"], 0.0)
    self.assertEqual(r["purchases_without_prior_click"], 1)
    self.assertIsNone(r["attribution_window_s"])
    # Z is bought but not in the catalog.
    self.assertEqual(r["items_unknown_category"], 1)
    report_lib.check_report(r)

  def test_report_with_attribution_window_from_gin(self):
    # As in test_report_by_hand, but with a 3-hour window bound in gin: Z,
    # bought 118 min after the click on B, now counts for both clicks.
    rows = [(1, 0, "A", C), (1, MIN, "B", C), (1, 2 * MIN, "B", P),
            (1, 120 * MIN, "Z", P)]
    catalog = schema.make_catalog(["A", "B"], [("x",), ("y",)])
    with gin.unlock_config():
      gin.bind_parameter("label_clicks.attribution_window_s", 10800.0)
    try:
      prepared = pipeline.prepare_examples(make_events(rows), catalog)
      # The builders record the binding with the data's gin bindings.
      bindings = click_examples.bound_gin_parameters(
          click_examples.ClickExamplesBuilder._gin_configurables(None))
    finally:
      gin.clear_config()
    self.assertEqual(
        bindings["cabb_tf.data.labels.label_clicks.attribution_window_s"],
        "10800.0")
    r = prepared.report
    self.assertEqual(r["attribution_window_s"], 10800.0)
    self.assertEqual(r["purchase_attribution"]["attribution_window_s"],
                     10800.0)
    # A: rows B and Z; B: y_caba = 1 and row Z.
    self.assertEqual(r["click_examples"], 2)
    self.assertEqual(r["examples"], 3)
    self.assertEqual(r["cabb_positive_rows"], 3)
    self.assertEqual(r["caba_positives"], 1)
    # B and Z are credited to the click on B (Z: 118 min after it).
    self.assertEqual(r["last_click_positives"], 1)
    # B: same item; Z: click on B within the window before it.
    self.assertEqual(r["purchase_attribution"]["same_item"], 1)
    self.assertEqual(r["purchase_attribution"]["click_a_buy_b"], 1)
    self.assertEqual(r["cabb_share"], 0.5)
    self.assertEqual(r["purchases_without_prior_click"], 0)
    report_lib.check_report(r)

  def test_split_and_statistics_from_train_only(self):
    rows = [(u, t * MIN, "A" if t % 2 else "B", C)
            for u in range(3) for t in range(0, 100, 7)]
    prepared = pipeline.prepare_examples(
        make_events(rows), schema.make_catalog(["A", "B"], [("x",), ("y",)]))
    ts = prepared.examples["timestamp"]
    split = prepared.examples["split"]
    start, end = prepared.time_range
    self.assertTrue((ts[split == "test"] >= end - 0.2 * (end - start)).all())
    self.assertTrue((ts[split == "train"] < end - 0.3 * (end - start)).all())
    self.assertEqual(prepared.feature_statistics["num_examples"],
                     int((split == "train").sum()))


class RealSampleTest(absltest.TestCase):

  def test_taobao_report_matches_the_stats_script(self):
    path = shared_data.require(shared_data.TAOBAO)
    expected = _stats_script().taobao(str(path))
    events, catalog, report = loaders.load_taobao(path)
    prepared = pipeline.prepare_examples(events, catalog, report)
    stats = prepared.report["purchase_attribution"]
    self.assertEqual(stats["same_item"], expected["same_item"])
    self.assertEqual(stats["click_a_buy_b"], expected["click_a_buy_b"])
    self.assertEqual(stats["no_prior_click"], expected["no_prior_click"])
    self.assertEqual(stats["purchases_in_sessions_without_click"],
                     expected["purchases_in_sessions_without_click"])
    self.assertEqual(stats["other_item_clicked_before"],
                     expected["other_item_clicked_before"])
    self.assertEqual(prepared.report["sessions"], expected["sessions"])
    matched = expected["cat_match[category_id]"].split(" ")[0]
    self.assertEqual(f"{stats['cabb_leaf_match']}/{stats['click_a_buy_b']}",
                     matched)
    report_lib.check_report(prepared.report)

  def test_rees46_report_matches_the_stats_script(self):
    path = shared_data.require(shared_data.REES46)
    expected = _stats_script().rees46(str(path))
    events, catalog, report = loaders.load_rees46(path)
    prepared = pipeline.prepare_examples(events, catalog, report)
    stats = prepared.report["purchase_attribution"]
    for key in ("same_item", "click_a_buy_b", "no_prior_click",
                "other_item_clicked_before"):
      self.assertEqual(stats[key], expected[key], key)
    self.assertEqual(prepared.report["sessions"], expected["sessions"])

  def test_prepare_to_dir_writes_a_consistent_report(self):
    path = shared_data.require(shared_data.TAOBAO)
    base_dir = self.create_tempdir().full_path
    prepared = pipeline.prepare_to_dir(
        base_dir, source=lambda: loaders.load_taobao(path),
        write_examples=True)
    with open(os.path.join(base_dir, "data_report.json")) as f:
      written = json.load(f)
    self.assertEqual(written["rows_in"],
                     written["rows_kept"] + sum(written["dropped"].values()))
    self.assertEqual(written["examples"], len(prepared.examples))
    examples = pd.read_parquet(os.path.join(base_dir, "examples.parquet"))
    self.assertLen(examples, written["examples"])
    self.assertEqual(int(examples["y_cabb"].sum()),
                     written["cabb_positive_rows"])


if __name__ == "__main__":
  absltest.main()
