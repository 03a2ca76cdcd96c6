"""Tests for the `cabb_synthetic` TFDS builder on its `tiny` config."""

import contextlib
import json
import tempfile
from unittest import mock

from absl.testing import absltest
import gin
import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_datasets as tfds

import cabb_tf.datasets  # pylint: disable=unused-import  (registers builders)
from cabb_tf.data import pipeline
from cabb_tf.data import schema
from cabb_tf.data import simulator
from cabb_tf.datasets import cabb_synthetic
from cabb_tf.datasets import click_examples
from cabb_tf.datasets.cabb_synthetic import cabb_synthetic_dataset_builder
from tests.datasets import builder_testing

_TINY_EVENTS = 5_000


def _reference():
  """The tiny config's log and examples, made without the builder."""
  log = simulator.simulate_events(_TINY_EVENTS, seed=0)
  return log, pipeline.prepare_examples(log.events, log.catalog)


class CabbSyntheticBuilderTest(builder_testing.DatasetBuilderTestCase):
  """TFDS's checks of `cabb_synthetic/tiny`; SPLITS from the pipeline."""

  DATASET_CLASS = cabb_synthetic.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["tiny"]

  @classmethod
  def setUpClass(cls):
    cls.SPLITS = click_examples.num_rows(_reference()[1].examples)
    super().setUpClass()


class CabbSyntheticExamplesTest(tf.test.TestCase):
  """The tiny dataset against the simulator and pipeline run directly."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.log, cls.prepared = _reference()
    # One build and one read shared by the tests that only look at it.
    cls.data_dir = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    cls.tiny = builder_testing.prepare(cabb_synthetic.Builder, "tiny",
                                       cls.data_dir)
    cls.rows = {split: builder_testing.rows(cls.tiny, split)
                for split in click_examples.SPLITS}

  def _prepare(self, config="tiny"):
    return builder_testing.prepare(cabb_synthetic.Builder, config,
                                   self.create_tempdir().full_path)

  def test_configs(self):
    sizes = {c.name: c.num_events
             for c in cabb_synthetic.Builder.BUILDER_CONFIGS}
    self.assertEqual(sizes, {"tiny": 5_000, "small": 50_000,
                             "default": 500_000, "large": 5_000_000})
    self.assertEqual(cabb_synthetic.Builder.DEFAULT_BUILDER_CONFIG_NAME,
                     "default")

  def test_registered_under_its_name(self):
    builder = tfds.builder("cabb_synthetic/small",
                           data_dir=self.create_tempdir().full_path)
    self.assertIsInstance(builder, cabb_synthetic.Builder)
    self.assertEqual(builder.builder_config.num_events, 50_000)
    for name in ("cabb_synthetic", "rees46", "taobao_user_behavior"):
      self.assertIn(name, tfds.list_builders(with_community_datasets=False))

  def test_examples_equal_the_pipeline_output(self):
    expected = self.prepared.examples
    for split in click_examples.SPLITS:
      want = expected[expected["split"].astype(str) == split]
      got = self.rows[split]
      self.assertLen(got, len(want))
      got_keys = sorted((int(ex["click_id"]), ex["item_b"].decode(),
                         int(ex["y_caba"]), int(ex["y_cabb"]),
                         int(ex["y_last_click"]), float(ex["w_caba"]),
                         int(ex["u_leaf_clicks"]), int(ex["timestamp"]))
                        for ex in got)
      want_keys = sorted(zip(
          want["click_id"].tolist(),
          want["item_b"].astype("string").fillna("").tolist(),
          want["y_caba"].tolist(), want["y_cabb"].tolist(),
          want["y_last_click"].tolist(), want["w_caba"].tolist(),
          want["u_leaf_clicks"].tolist(), want["timestamp"].tolist()))
      self.assertEqual(got_keys, want_keys)

  def _tfds_encoded(self, limit=None):
    """tiny built with TFDS encoding each example `_generate_examples`
    yields (the builders' own path serializes a chunk of rows at once)."""
    builder = cabb_synthetic.Builder(data_dir=self.create_tempdir().full_path,
                                     config="tiny")
    with mock.patch.object(click_examples.ClickExamplesBuilder,
                           "_ENCODE_BY_COLUMN", False):
      builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
          max_examples_per_split=limit))
    return builder

  def _assert_same_records(self, got, want):
    """Same shards, sizes and records, in order; the records compared parsed
    (TFDS writes a record's features in an order that changes between
    processes), as their serialization with the features by name."""
    for split in click_examples.SPLITS:
      got_info, want_info = got.info.splits[split], want.info.splits[split]
      self.assertEqual(got_info.shard_lengths, want_info.shard_lengths)
      self.assertEqual(got_info.num_bytes, want_info.num_bytes)
      self.assertEqual([p.name for p in got_info.filepaths],
                       [p.name for p in want_info.filepaths])
      records = [[tf.train.Example.FromString(r).SerializeToString(
          deterministic=True) for r in click_examples.serialized_records(
              builder, split).as_numpy_iterator()] for builder in (got, want)]
      self.assertEqual(records[0], records[1], split)
    self.assertEqual(got.info.metadata, want.info.metadata)
    self.assertEqual(got.info.features.to_json(),
                     want.info.features.to_json())

  def test_records_are_those_tfds_encodes(self):
    self._assert_same_records(self.tiny, self._tfds_encoded())

  def test_max_examples_per_split_keeps_the_rows_tfds_keeps(self):
    builder = cabb_synthetic.Builder(data_dir=self.create_tempdir().full_path,
                                     config="tiny")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        max_examples_per_split=150))
    self.assertEqual({split: info.num_examples
                      for split, info in builder.info.splits.items()},
                     {split: 150 for split in click_examples.SPLITS})
    self._assert_same_records(builder, self._tfds_encoded(limit=150))

  def test_relation_is_the_ground_truth(self):
    relations = self.log.leaf_relations
    complements = set(zip(
        relations.loc[relations["relation"] == "complement", "leaf_a"],
        relations.loc[relations["relation"] == "complement", "leaf_b"]))
    seen = set()
    for split in click_examples.SPLITS:
      for ex in self.rows[split]:
        leaf_a, leaf_b = ex["leaf_a"].decode(), ex["leaf_b"].decode()
        if not ex["item_b"]:
          want = ""
        elif leaf_a == leaf_b:
          want = "substitute"
        elif (leaf_a, leaf_b) in complements:
          want = "complement"
        else:
          want = "unrelated"
        self.assertEqual(ex["relation"].decode(), want)
        seen.add(want)
    self.assertEqual(seen, {"", "substitute", "complement", "unrelated"})

  def test_cause_is_the_purchase_ground_truth(self):
    # Independently: each purchase's (relation, source item) by (session,
    # item), and each session's clicks in time order, from plain Python.
    bought = {}
    for p in self.log.purchases.itertuples(index=False):
      key = (str(p.session_id), str(p.item_id))
      self.assertNotIn(key, bought)  # A (session, item) is bought once.
      bought[key] = (str(p.relation), str(p.source_item_id), p.timestamp)
    clicked = {}
    for e in self.log.events.itertuples(index=False):
      if str(e.event_type) == "click":
        clicked.setdefault((str(e.session_id), str(e.item_id)), e.timestamp)
    seen, same_as_other = set(), 0
    for split in click_examples.SPLITS:
      for ex in self.rows[split]:
        session, item_a = ex["session_id"].decode(), ex["item_a"].decode()
        item_b = ex["item_b"].decode()
        if not item_b:
          want = ""
        else:
          relation, source, when = bought[(session, item_b)]
          self.assertGreaterEqual(when, clicked[(session, item_a)])
          want = relation if source == item_a else "other_click"
          same_as_other += relation == "same" and source == item_b
        self.assertEqual(ex["cause"].decode(), want)
        self.assertIn(ex["cause"].decode(),
                      cabb_synthetic_dataset_builder.CAUSES)
        seen.add(want)
    self.assertEqual(seen, {"", "substitute", "complement", "noise",
                            "other_click"})
    # Rows whose B was bought because B itself was clicked are other_click.
    self.assertGreater(same_as_other, 0)

  def test_cause_on_a_hand_made_log(self):
    # Session 7: clicks on items 1 (row 0), 2 (row 1) and 1 again (row 2);
    # purchases: 3 generated by the second click on 1 (substitute), 2 by
    # the click on 2 (same), 4 by the click on 2 (complement).
    events = pd.DataFrame({
        "session_id": [7, 7, 7, 7, 7, 7], "item_id": [1, 2, 1, 3, 2, 4],
        "event_type": ["click", "click", "click", "purchase", "purchase",
                       "purchase"]})
    purchases = pd.DataFrame({
        "session_id": [7, 7, 7], "item_id": [3, 2, 4],
        "relation": pd.Categorical(["substitute", "same", "complement"]),
        "source_item_id": [1, 2, 2]})
    log = simulator.SimulatedLog(events=events, catalog=None,
                                 purchases=purchases, leaf_relations=None)
    examples = pd.DataFrame({
        "event_index": [0, 0, 0, 1, 1],
        "item_a": [1, 1, 1, 2, 2],
        "item_b": pd.array([3, 2, 4, 3, 4], dtype="Int64"),
        "y_cabb": [1, 1, 1, 1, 1]})
    causes = cabb_synthetic_dataset_builder.purchase_causes(log, examples)
    self.assertEqual(causes.tolist(), ["substitute", "other_click",
                                       "other_click", "other_click",
                                       "complement"])
    no_b = examples.assign(y_cabb=[0, 1, 1, 1, 1],
                           item_b=pd.array([None, 2, 4, 3, 4], dtype="Int64"))
    self.assertEqual(
        cabb_synthetic_dataset_builder.purchase_causes(log, no_b)[0], "")
    with self.assertRaisesRegex(ValueError, "not click rows"):
      cabb_synthetic_dataset_builder.purchase_causes(
          log, examples.assign(event_index=[3, 0, 0, 1, 1]))
    twice = pd.concat([purchases, purchases.iloc[:1]], ignore_index=True)
    with self.assertRaisesRegex(ValueError, "more than once"):
      cabb_synthetic_dataset_builder.purchase_causes(
          log._replace(purchases=twice), examples)
    contradiction = purchases.assign(
        relation=pd.Categorical(["same", "same", "complement"]))
    with self.assertRaisesRegex(ValueError, "relation 'same'"):
      cabb_synthetic_dataset_builder.purchase_causes(
          log._replace(purchases=contradiction), examples)

  def test_version_bumped_for_cause(self):
    self.assertEqual(str(cabb_synthetic.Builder.VERSION), "1.1.0")
    self.assertIn("cause", cabb_synthetic.Builder.RELEASE_NOTES["1.1.0"])
    self.assertIn("cause", self.tiny.info.features)

  def test_read_columns_gives_the_records_as_dataset_gives(self):
    fields = sorted(self.tiny.info.features)
    for split in click_examples.SPLITS:
      want = pd.DataFrame(self.rows[split])
      batches = list(click_examples.read_columns(self.tiny, split, fields,
                                                 batch_size=97))
      got = pd.concat([pd.DataFrame(b) for b in batches], ignore_index=True)
      self.assertGreater(len(batches), 1)
      key = ["click_id", "item_b"]
      pd.testing.assert_frame_equal(
          got.sort_values(key).reset_index(drop=True),
          want[fields].sort_values(key).reset_index(drop=True))
      # With `keep`, exactly the CABB-positive rows, of two fields only.
      kept = pd.concat([pd.DataFrame(b) for b in click_examples.read_columns(
          self.tiny, split, ["item_a", "leaf_b"], keep="y_cabb")],
                       ignore_index=True)
      positive = want[want["y_cabb"] > 0]
      self.assertEqual(list(kept.columns), ["item_a", "leaf_b"])
      self.assertEqual(sorted(kept.itertuples(index=False, name=None)),
                       sorted(positive[["item_a", "leaf_b"]].itertuples(
                           index=False, name=None)))

  def test_training_events_and_side_files(self):
    builder = self.tiny
    boundaries = builder.info.metadata["split_boundaries_ms"]
    events, catalog = click_examples.load_training_events(builder)
    ts = self.log.events["timestamp"].to_numpy()
    want = self.log.events[ts < boundaries["validation_start"]]
    np.testing.assert_array_equal(events["timestamp"], want["timestamp"])
    np.testing.assert_array_equal(events["item_id"], want["item_id"])
    np.testing.assert_array_equal(events["session_id"], want["session_id"])
    self.assertEqual(events["event_type"].dtype,
                     schema.EVENT_TYPE_DTYPE)
    np.testing.assert_array_equal(events["event_type"].astype(str),
                                  want["event_type"].astype(str))
    leaf_of = dict(zip(self.log.catalog["item_id"], self.log.catalog["leaf"]))
    self.assertEqual(events["leaf"].tolist(),
                     [leaf_of[i] for i in want["item_id"]])
    self.assertLen(catalog, len(self.log.catalog))
    self.assertEqual(catalog["category_path"].tolist(),
                     self.log.catalog["category_path"].tolist())
    # The same directory works in place of the builder.
    again, _ = click_examples.load_training_events(builder.data_path)
    self.assertLen(again, len(events))

  def test_metadata_survives_a_reload(self):
    reloaded = tfds.builder("cabb_synthetic/tiny", data_dir=self.data_dir)
    metadata = reloaded.info.metadata
    self.assertEqual(metadata["feature_statistics"],
                     click_examples.json_ready(
                         self.prepared.feature_statistics))
    report = metadata["data_report"]
    self.assertEqual(report["examples"], len(self.prepared.examples))
    self.assertEqual(report["events"], len(self.log.events))
    self.assertEqual(metadata["config"]["num_events"], _TINY_EVENTS)
    self.assertEqual(metadata["gin_bindings"], {})
    on_disk = json.loads(
        (reloaded.data_path / click_examples.DATA_REPORT_FILE).read_text())
    self.assertEqual(on_disk["examples"], report["examples"])
    self.assertTrue(
        (reloaded.data_path / click_examples.FEATURE_STATISTICS_FILE).exists())

  def test_gin_bindings_are_recorded(self):
    gin.parse_config("cabb_tf.data.simulator.simulate.num_days = 7\n"
                     "cabb_tf.data.simulator.simulate.num_users = 10")
    self.addCleanup(gin.clear_config)
    builder = self._prepare(cabb_synthetic.SyntheticConfig(
        name="week", num_events=2_000))
    # num_users is passed by simulate_events, so its binding has no effect.
    self.assertEqual(builder.info.metadata["gin_bindings"],
                     {"cabb_tf.data.simulator.simulate.num_days": "7"})
    start, end = builder.info.metadata["time_range_ms"]
    self.assertLess(end - start, 7 * 86_400_000)

  def test_bindings_are_warned_of_unless_variants_are_apart(self):
    gin.parse_config("cabb_tf.data.simulator.simulate.num_days = 7")
    self.addCleanup(gin.clear_config)
    builder = tfds.builder("cabb_synthetic/tiny", data_dir=self.data_dir)
    for apart, level in ((False, "WARNING"), (True, "INFO")):
      context = (click_examples.variants_apart() if apart else
                 contextlib.nullcontext())
      with self.assertLogs(logger="absl", level="INFO") as logged, context:
        bindings = builder._data_bindings()  # pylint: disable=protected-access
      self.assertEqual(bindings,
                       {"cabb_tf.data.simulator.simulate.num_days": "7"})
      said = [r for r in logged.records
              if "gin bindings that change its data" in r.getMessage()]
      self.assertEqual([r.levelname for r in said], [level], apart)
    self.assertFalse(click_examples._variants_apart)  # pylint: disable=protected-access

  def test_an_empty_split_is_an_error(self):
    config = cabb_synthetic.SyntheticConfig(
        name="no_validation", num_events=2_000, validation_fraction=0.0)
    with self.assertRaisesRegex(ValueError, "validation split has no"):
      self._prepare(config)


if __name__ == "__main__":
  tf.test.main()
