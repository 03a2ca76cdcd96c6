"""Tests for cabb_tf.datasets.click_examples (record layout, side files)."""

import numpy as np
import pandas as pd
import tensorflow as tf

from cabb_tf.data import features
from cabb_tf.data import pipeline
from cabb_tf.data import schema
from cabb_tf.data import simulator
from cabb_tf.datasets import click_examples


def _string_id_log():
  """Two sessions of string ids; item 'z' is missing from the catalog."""
  catalog = schema.make_catalog(
      ["x", "y", "w"], [("home", "mugs"), ("home", "tea"), None],
      brand=["acme", None, None], price=[3.5, float("nan"), 1.0])
  rows = [  # (user, item, type, seconds)
      ("u1", "x", "click", 0), ("u1", "y", "click", 10),
      ("u1", "y", "purchase", 20), ("u1", "z", "click", 30),
      ("u2", "w", "click", 100), ("u2", "x", "purchase", 110),
      ("u2", "x", "click", 200), ("u2", "z", "click", 300),
  ]
  events = pd.DataFrame({
      "user_id": [r[0] for r in rows],
      "timestamp": np.array([r[3] * 1000 for r in rows], dtype=np.int64),
      "item_id": [r[1] for r in rows],
      "event_type": pd.Categorical([r[2] for r in rows],
                                   dtype=schema.EVENT_TYPE_DTYPE),
  })
  return events, catalog


class FeatureSpecTest(tf.test.TestCase):

  def test_every_feature_has_a_fitting_dtype(self):
    log = simulator.simulate(num_users=40, num_days=7, branching=(2, 2, 2),
                             seed=1)
    examples = pipeline.prepare_examples(log.events, log.catalog).examples
    for name in features.FEATURE_NAMES:
      dtype = click_examples.feature_dtype(name)
      kind = np.asarray(examples[name]).dtype.kind
      if name in features.ID_FEATURES:
        self.assertEqual(dtype, tf.string)
      elif dtype == tf.float32:
        self.assertEqual(kind, "f", name)
      else:
        self.assertIn(kind, "iu", name)
    spec = click_examples.example_features()
    for name in ("y_caba", "y_cabb", "y_last_click", "w_caba", "item_b",
                 "leaf_a", "leaf_b", "session_id", "timestamp"):
      self.assertIn(name, spec)
    self.assertEqual(spec["item_b"].dtype, tf.string)
    self.assertEqual(spec["timestamp"].dtype, tf.int64)

  def test_a_float_feature_stored_as_int_is_an_error(self):
    log = simulator.simulate(num_users=20, num_days=7, branching=(2, 2, 2),
                             seed=1)
    examples = pipeline.prepare_examples(log.events, log.catalog).examples
    examples["hour"] = examples["hour"].astype(np.float32)
    with self.assertRaisesRegex(ValueError, "FLOAT_FEATURES"):
      click_examples.example_columns(examples)

  def test_columns_turn_missing_b_into_empty_strings(self):
    events, catalog = _string_id_log()
    examples = pipeline.prepare_examples(events, catalog).examples
    columns = click_examples.example_columns(examples)
    rows = np.arange(len(examples))
    item_b = columns["item_b"](rows)
    self.assertEqual(list(item_b), ["" if pd.isna(b) else str(b)
                                    for b in examples["item_b"]])
    self.assertIn("", list(item_b))
    self.assertTrue(all(isinstance(u, str) for u in columns["user_id"](rows)))


class SideFilesTest(tf.test.TestCase):

  def test_training_events_cut_at_the_validation_start(self):
    events, catalog = _string_id_log()
    train = click_examples.training_events(
        events.assign(session_id=[0, 0, 0, 0, 1, 1, 1, 1]), catalog,
        before_ms=200_000)
    self.assertEqual(train["timestamp"].tolist(),
                     [0, 10_000, 20_000, 30_000, 100_000, 110_000])
    self.assertEqual(train["leaf"].tolist(),
                     ["home/mugs", "home/tea", "home/tea", schema.UNKNOWN_LEAF,
                      schema.UNKNOWN_LEAF, "home/mugs"])
    self.assertEqual(train["event_type"].tolist()[:3],
                     ["click", "click", "purchase"])

  def test_round_trip_of_string_ids_and_missing_values(self):
    events, catalog = _string_id_log()
    prepared = pipeline.prepare_examples(events, catalog)
    sessions = events.assign(session_id=[0, 0, 0, 0, 1, 1, 1, 1])
    train = click_examples.training_events(sessions, catalog, 10**9)
    directory = self.create_tempdir().full_path
    click_examples.write_side_files(directory, prepared, train)
    got_events, got_catalog = click_examples.load_training_events(directory)
    pd.testing.assert_frame_equal(got_catalog.reset_index(drop=True),
                                  catalog, check_dtype=False)
    self.assertIsNone(got_catalog["brand"][1])
    self.assertTrue(np.isnan(got_catalog["price"][1]))
    self.assertEqual(got_catalog["category_path"][2], (schema.UNKNOWN_LEAF,))
    self.assertEqual(got_events["user_id"].tolist(),
                     events["user_id"].tolist())
    self.assertEqual(got_events["item_id"].tolist(),
                     events["item_id"].tolist())
    self.assertEqual(got_events["event_type"].dtype, schema.EVENT_TYPE_DTYPE)
    schema.validate_events(got_events)

  def test_loading_an_unprepared_directory_is_an_error(self):
    with self.assertRaisesRegex(ValueError, "download_and_prepare"):
      click_examples.load_training_events(self.create_tempdir().full_path)
    with self.assertRaisesRegex(ValueError, "builder or its versioned"):
      click_examples.load_training_events(42)


if __name__ == "__main__":
  tf.test.main()
