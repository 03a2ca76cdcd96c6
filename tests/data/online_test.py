"""Tests of the online feature state: hand-derived values, and the offline
features of every click of whole logs replayed event by event."""

import math
import os
import pathlib
import re

from absl.testing import absltest
import gin
import numpy as np
import pandas as pd
import tensorflow as tf

from cabb_tf import gin_utils
from cabb_tf import input_pipeline
from cabb_tf import train
from cabb_tf.data import features
from cabb_tf.data import labels
from cabb_tf.data import loaders
from cabb_tf.data import online
from cabb_tf.data import pipeline
from cabb_tf.data import records
from cabb_tf.data import schema
from cabb_tf.data import sessions
from cabb_tf.data import simulator
from cabb_tf.models import factory
from tests import shared_data
from tests import training

C, P, K, I = "click", "purchase", "add_to_cart", "impression"
S = 1000  # one second in ms
DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs"
CATALOG = schema.make_catalog(
    ["A", "B", "Z"], [("home", "kitchen"), ("home", "kitchen"), ("garden",)],
    brand=["acme", None, "zed"], price=[10.0, 20.0, np.nan])
# The default prior of the smoothed CVRs: m = 0.02, k = 20.
PRIOR = 20 * 0.02


def make_events(rows, session_ids=None):
  """rows: (user, timestamp ms, item, type) in input order."""
  frame = pd.DataFrame(rows, columns=["user_id", "timestamp", "item_id",
                                      "event_type"])
  frame["timestamp"] = frame["timestamp"].astype(np.int64)
  frame["event_type"] = pd.Categorical(frame["event_type"],
                                       dtype=schema.EVENT_TYPE_DTYPE)
  if session_ids is not None:
    frame["session_id"] = session_ids
  return frame


def observe_all(state, rows, session_ids=None):
  """Observes rows one at a time; the features of each click by row."""
  out = {}
  for i, (user, t, item, kind) in enumerate(rows):
    event = {"user_id": user, "timestamp": t, "item_id": item,
             "event_type": kind}
    if session_ids is not None:
      event["session_id"] = session_ids[i]
    got = state.observe(event)
    if kind == C:
      out[i] = got
    else:
      assert got is None
  return out


def offline_by_row(events, catalog):
  """compute_features' first row of each click example, by event row."""
  events = sessions.assign_sessions(events)
  out = features.compute_features(events, catalog,
                                   labels.label_clicks(events))
  out = out[out["w_caba"].to_numpy() > 0]
  columns = {name: out[name].to_numpy() for name in features.FEATURE_NAMES}
  return {int(e): {name: values[k] for name, values in columns.items()}
          for k, e in enumerate(out["event_index"])}


# User 1 (sessions derived with the 30-minute gap), user 2 and an item the
# catalog lacks (Q), with ties, an impression that keeps a session open, and
# a session that starts with an impression.
HAND_ROWS = [
    (1, 0 * S, "A", I),  # 0: opens user 1's first session, no interaction
    (1, 10 * S, "A", C),  # 1
    (1, 20 * S, "A", K),  # 2
    (2, 20 * S, "A", C),  # 3: at the time of user 1's cart
    (1, 30 * S, "A", P),  # 4: listed before the click at the same time
    (1, 30 * S, "B", C),  # 5
    (1, 1500 * S, "Z", I),  # 6: 24.5 min later: the session goes on
    (1, 3000 * S, "Z", C),  # 7: 25 min after the impression: same session
    (1, 3000 * S, "Q", C),  # 8: a tie with the click on Z
    (1, 4801 * S, "A", C),  # 9: 30 min 1 s later: a new session
]


def hand_expected():
  """The features of HAND_ROWS' clicks, derived by hand, by row."""
  kitchen = {"leaf_a": "home/kitchen", "top_category_a": "home"}
  nothing = {"u_item_clicks": 0, "u_item_carts": 0, "u_item_purchases": 0,
             "u_item_since_s": -1.0, "u_leaf_clicks": 0, "u_leaf_carts": 0,
             "u_leaf_purchases": 0, "u_leaf_since_s": -1.0, "u_events": 0,
             "u_purchases": 0, "session_position": 0,
             "session_events_before": 0, "session_elapsed_s": 0.0,
             "hour": 0, "weekday": 3}  # 1970-01-01 was a Thursday
  return {
      # The session's clock starts at its first interaction, not at the
      # impression before it.
      1: dict(nothing, user_id="1", item_a="A", **kitchen, brand_a="acme",
              price_a=10.0, item_clicks=0, item_purchases=0,
              item_cvr=PRIOR / 20, leaf_clicks=0, leaf_purchases=0,
              leaf_cvr=PRIOR / 20),
      # User 1's cart at the same time is not before it; user 1's click is.
      3: dict(nothing, user_id="2", item_a="A", **kitchen, brand_a="acme",
              price_a=10.0, item_clicks=1, item_purchases=0,
              item_cvr=PRIOR / 21, leaf_clicks=1, leaf_purchases=0,
              leaf_cvr=PRIOR / 21),
      # The purchase of A at the click's time is not before it.
      5: dict(nothing, user_id="1", item_a="B", **kitchen, brand_a="",
              price_a=20.0, u_leaf_clicks=1, u_leaf_carts=1,
              u_leaf_since_s=10.0, u_events=2, session_position=1,
              session_events_before=2, session_elapsed_s=20.0,
              item_clicks=0, item_purchases=0, item_cvr=PRIOR / 20,
              leaf_clicks=2, leaf_purchases=0, leaf_cvr=PRIOR / 22),
      7: dict(nothing, user_id="1", item_a="Z", leaf_a="garden",
              top_category_a="garden", brand_a="zed", price_a=math.nan,
              u_events=4, u_purchases=1, session_position=2,
              session_events_before=4, session_elapsed_s=2990.0,
              item_clicks=0, item_purchases=0, item_cvr=PRIOR / 20,
              leaf_clicks=0, leaf_purchases=0, leaf_cvr=PRIOR / 20),
      # The tied click on Z is not before it; Q is in no catalog.
      8: dict(nothing, user_id="1", item_a="Q", leaf_a=schema.UNKNOWN_LEAF,
              top_category_a=schema.UNKNOWN_LEAF, brand_a="",
              price_a=math.nan, u_events=4, u_purchases=1,
              session_position=2, session_events_before=4,
              session_elapsed_s=2990.0, item_clicks=0, item_purchases=0,
              item_cvr=PRIOR / 20, leaf_clicks=0, leaf_purchases=0,
              leaf_cvr=PRIOR / 20),
      # A new session; 4801 s is 01:20.
      9: dict(nothing, user_id="1", item_a="A", **kitchen, brand_a="acme",
              price_a=10.0, u_item_clicks=1, u_item_carts=1,
              u_item_purchases=1, u_item_since_s=4771.0, u_leaf_clicks=2,
              u_leaf_carts=1, u_leaf_purchases=1, u_leaf_since_s=4771.0,
              u_events=6, u_purchases=1, hour=1, item_clicks=2,
              item_purchases=1, item_cvr=(1 + PRIOR) / 22, leaf_clicks=3,
              leaf_purchases=1, leaf_cvr=(1 + PRIOR) / 23),
  }


class HandDerivedTest(absltest.TestCase):

  def tearDown(self):
    gin.clear_config()
    super().tearDown()

  def assert_features(self, got, want, msg=""):
    self.assertEqual(list(got), list(features.FEATURE_NAMES), msg)
    for name in features.FEATURE_NAMES:
      value = got[name]
      if name in features.ID_FEATURES:
        self.assertIsInstance(value, str, f"{msg} {name}")
        self.assertEqual(value, want[name], f"{msg} {name}")
        continue
      # The records' dtypes: float32 times, rates and prices, int32 counts.
      self.assertEqual(np.asarray(value).dtype,
                       records.feature_dtype(name).as_numpy_dtype,
                       f"{msg} {name}")
      if math.isnan(want[name]):
        self.assertTrue(math.isnan(value), f"{msg} {name}")
      else:
        self.assertEqual(value, np.float32(want[name]), f"{msg} {name}")

  def test_hand_derived_values(self):
    got = observe_all(online.OnlineFeatures(CATALOG), HAND_ROWS)
    want = hand_expected()
    self.assertEqual(sorted(got), [1, 3, 5, 7, 8, 9])
    for row, values in want.items():
      self.assert_features(got[row], values, f"row {row}")
    # The offline features agree with the hand: the rules are theirs.
    offline = offline_by_row(make_events(HAND_ROWS), CATALOG)
    for row, values in want.items():
      self.assert_features({n: offline[row][n] if n not in
                            features.ID_FEATURES else str(offline[row][n])
                            for n in features.FEATURE_NAMES}, values,
                           f"offline row {row}")

  def test_stream_order_within_a_timestamp_does_not_matter(self):
    # Rows 2 and 3, and rows 4 and 5, swapped: the same features.
    rows = list(HAND_ROWS)
    rows[2], rows[3] = rows[3], rows[2]
    rows[4], rows[5] = rows[5], rows[4]
    got = observe_all(online.OnlineFeatures(CATALOG), rows)
    want = hand_expected()
    self.assert_features(got[2], want[3])
    self.assert_features(got[4], want[5])

  def test_replay_then_observe(self):
    # The history as a log, the last click live: the same as event by event.
    state = online.OnlineFeatures(CATALOG)
    self.assertEqual(state.replay(make_events(HAND_ROWS[:9])), 9)
    self.assertEqual(state.time, 3000 * S)
    live = observe_all(state, HAND_ROWS[9:])
    self.assert_features(live[0], hand_expected()[9])
    clicks = list(online.OnlineFeatures(CATALOG).replay_clicks(
        make_events(HAND_ROWS)))
    self.assertEqual([row for row, _ in clicks], [1, 3, 5, 7, 8, 9])
    self.assert_features(clicks[2][1], hand_expected()[5])
    with self.assertRaisesRegex(ValueError, "'timestamp'"):
      state.replay(make_events(HAND_ROWS[:1]))  # earlier than the clock
    with self.assertRaisesRegex(ValueError, "event_type"):
      state.replay_clicks(make_events(HAND_ROWS).astype({"event_type": str}))

  def test_features_at_records_nothing(self):
    state = online.OnlineFeatures(CATALOG)
    observe_all(state, HAND_ROWS[:3])  # the impression, click and cart
    # A click at 20 s does not see the cart at 20 s; the same query twice
    # gives the same; a click at 25 s does see it.
    at_20 = state.features_at(1, "A", 20 * S)
    self.assertEqual(at_20, state.features_at(1, "A", 20 * S))
    self.assertEqual(at_20["u_item_carts"], 0)
    self.assertEqual(at_20["session_position"], 1)
    at_25 = state.features_at(1, "A", 25 * S)
    self.assertEqual(at_25["u_item_carts"], 1)
    self.assertEqual(at_25["u_events"], 2)
    self.assertEqual(at_25["session_elapsed_s"], 15.0)
    self.assertEqual(state.time, 25 * S)
    # An hour later it would be a new session; no session was recorded.
    later = state.features_at(1, "A", 3625 * S)
    self.assertEqual((later["session_position"], later["session_elapsed_s"]),
                     (0, 0.0))
    self.assertEqual(state.observe({"user_id": 1, "timestamp": 3625 * S,
                                    "item_id": "A", "event_type": C}),
                     later)
    # A user never seen.
    new = state.features_at(7, "Z", 3625 * S)
    self.assertEqual((new["user_id"], new["u_events"], new["item_clicks"]),
                     ("7", 0, 0))

  def test_source_sessions(self):
    # Session "s" is shared by users 1 and 2, as a source's may be: the
    # example's user_id is the session's (its first event's) user, the
    # user's counts are the clicking user's, as offline.
    rows = [(1, 0, "A", I), (2, 5 * S, "B", C), (1, 10 * S, "Z", C),
            (2, 7200 * S, "A", C)]
    session_ids = ["s", "s", "s", "s"]
    got = observe_all(online.OnlineFeatures(CATALOG), rows, session_ids)
    self.assertEqual(got[1]["user_id"], "1")
    self.assertEqual(got[3]["user_id"], "1")
    self.assertEqual(got[3]["u_events"], 1)  # user 2's click on B
    self.assertEqual(got[3]["u_leaf_since_s"], 7195.0)
    # Two hours apart, yet one session: its ids are kept.
    self.assertEqual(got[3]["session_position"], 2)
    self.assertEqual(got[3]["session_elapsed_s"], 7195.0)
    offline = offline_by_row(make_events(rows, session_ids), CATALOG)
    for row in (1, 2, 3):
      for name in ("user_id", "u_events", "session_position",
                   "session_elapsed_s", "u_leaf_since_s"):
        self.assertEqual(str(offline[row][name]), str(got[row][name]),
                         f"row {row} {name}")
    # Without use_source_sessions the ids are ignored: 30-minute gaps.
    derived = observe_all(online.OnlineFeatures(
        CATALOG, use_source_sessions=False), rows, session_ids)
    self.assertEqual(derived[3]["session_position"], 0)
    self.assertEqual(derived[3]["user_id"], "2")

  def test_day_stamps_make_user_days(self):
    # Whole days: with a gap of two days, one session unless the log is one
    # of day stamps, whose sessions are user-days (sessions.assign_sessions).
    day = 86_400 * S
    rows = [(1, 0, "A", C), (1, day, "B", C)]
    for day_resolution, position in ((False, 1), (True, 0)):
      state = online.OnlineFeatures(CATALOG, session_gap_minutes=2 * 24 * 60,
                                    day_resolution=day_resolution)
      got = observe_all(state, rows)
      self.assertEqual(got[1]["session_position"], position)
    with gin.unlock_config():
      gin.bind_parameter("cabb_tf.data.sessions.assign_sessions."
                         "day_sessions", False)
    state = online.OnlineFeatures(CATALOG, session_gap_minutes=2 * 24 * 60,
                                  day_resolution=True)
    self.assertEqual(observe_all(state, rows)[1]["session_position"], 1)

  def test_settings_follow_gin_and_recorded_bindings(self):
    self.assertEqual(online.offline_settings(), {
        "cvr_prior_mean": 0.02, "cvr_prior_strength": 20.0,
        "session_gap_minutes": 30.0, "use_source_sessions": True,
        "day_sessions": True})
    with gin.unlock_config():
      gin.bind_parameter(
          "cabb_tf.data.features.compute_features.cvr_prior_mean", 0.1)
      gin.bind_parameter(
          "cabb_tf.data.features.compute_features.cvr_prior_strength", 4.0)
      gin.bind_parameter(
          "cabb_tf.data.sessions.assign_sessions.session_gap_minutes", 1.0)
    state = online.OnlineFeatures(CATALOG)
    got = observe_all(state, [(1, 0, "A", P), (1, 30 * S, "B", C),
                              (1, 91 * S, "A", C)])
    # (1 purchase + 4 · 0.1) / (0 clicks + 4)
    self.assertEqual(got[2]["item_cvr"], np.float32(1.4 / 4))
    self.assertEqual(got[1]["session_events_before"], 1)  # 30 s: the same
    self.assertEqual(got[2]["session_events_before"], 0)  # 61 s: a new one
    # A dataset's recorded bindings win over gin; arguments over both.
    recorded = {"cabb_tf.data.features.compute_features.cvr_prior_mean":
                "0.5"}
    self.assertEqual(online.offline_settings(recorded)["cvr_prior_mean"], 0.5)
    self.assertEqual(online.offline_settings(recorded)["cvr_prior_strength"],
                     4.0)
    state = online.OnlineFeatures(CATALOG, cvr_prior_strength=1.0)
    self.assertEqual(state.settings["cvr_prior_strength"], 1.0)
    self.assertEqual(state.settings["cvr_prior_mean"], 0.1)

  def test_bad_events_name_the_field(self):
    state = online.OnlineFeatures(CATALOG)
    good = {"user_id": 1, "timestamp": 10 * S, "item_id": "A",
            "event_type": C}
    state.observe(good)
    for change, field in (({"event_type": "view"}, "event_type"),
                          ({"timestamp": 10.5}, "timestamp"),
                          ({"timestamp": 5 * S}, "timestamp"),
                          ({"user_id": None}, "user_id"),
                          ({"item_id": math.nan}, "item_id"),
                          ({"session_id": "s"}, "session_id")):
      with self.assertRaisesRegex(ValueError, f"'{field}'"):
        state.observe(dict(good, **change))
    with self.assertRaisesRegex(ValueError, "item_id"):
      state.observe({"user_id": 1, "timestamp": 10 * S, "event_type": C})
    with self.assertRaisesRegex(ValueError, "timestamp"):
      state.features_at(1, "A", 9 * S)
    # A refused event changes nothing.
    self.assertEqual(state.time, 10 * S)
    self.assertEqual(state.observe(good)["session_position"], 0)
    with_sessions = online.OnlineFeatures(CATALOG)
    with_sessions.observe(dict(good, session_id="s"))
    with self.assertRaisesRegex(ValueError, "'session_id' is missing"):
      with_sessions.observe(good)
    with self.assertRaisesRegex(ValueError, "session_gap_minutes"):
      online.OnlineFeatures(CATALOG, session_gap_minutes=-1)

  def test_serving_inputs_and_examples(self):
    got = observe_all(online.OnlineFeatures(CATALOG), HAND_ROWS)
    rows = [got[7], got[9]]
    dtypes = {"item_a": "string", "u_item_clicks": "int32",
              "price_a": "float32", "item_cvr": "float64"}
    inputs = online.serving_inputs(rows, dtypes)
    self.assertEqual(sorted(inputs), sorted(dtypes))
    self.assertEqual(inputs["item_a"].numpy().tolist(), [b"Z", b"A"])
    self.assertEqual(inputs["u_item_clicks"].dtype, tf.int32)
    self.assertEqual(inputs["u_item_clicks"].numpy().tolist(), [0, 1])
    self.assertTrue(np.isnan(inputs["price_a"].numpy()[0]))
    self.assertEqual(inputs["item_cvr"].dtype, tf.float64)
    self.assertEqual(online.serving_inputs([], dtypes)["item_a"].shape, (0,))
    with self.assertRaisesRegex(ValueError, "'hour'"):
      online.serving_inputs([{"item_a": "A"}], {"hour": "int32"})
    # The examples parse back, in the records' dtypes, to the features.
    spec = {name: tf.io.FixedLenFeature(
        [], {tf.string: tf.string, tf.float32: tf.float32}.get(
            records.feature_dtype(name), tf.int64))
            for name in features.FEATURE_NAMES}
    parsed = tf.io.parse_example(online.serialized_examples(rows), spec)
    for name in features.FEATURE_NAMES:
      values = parsed[name].numpy()
      if name in features.ID_FEATURES:
        values = [v.decode() for v in values]
        self.assertEqual(values, [r[name] for r in rows], name)
      else:
        np.testing.assert_array_equal(values, [r[name] for r in rows],
                                      err_msg=name)
    with self.assertRaisesRegex(ValueError, "'brand_a'"):
      online.serialized_examples([{n: v for n, v in rows[0].items()
                                   if n != "brand_a"}])


class ReplayTest(absltest.TestCase):
  """The online features of every click of a log equal the offline ones."""

  def tearDown(self):
    gin.clear_config()
    super().tearDown()

  def assert_replay_matches(self, events, catalog, **settings):
    """Replays `events` and compares every click example of
    `pipeline.prepare_examples`; returns the number of clicks per split."""
    events = events.reset_index(drop=True)
    prepared = pipeline.prepare_examples(events, catalog)
    examples = prepared.examples
    first = examples[examples["w_caba"].to_numpy() > 0].reset_index(
        drop=True)
    state = online.OnlineFeatures(catalog, **settings)
    by_event = dict(state.replay_clicks(events))
    self.assertEqual(len(by_event), int(
        (events["event_type"] == C).sum()))  # every click
    got = [by_event[i] for i in first["event_index"]]
    # The offline values as the records hold them (ids as strings).
    readers = records.example_columns(first)
    positions = np.arange(len(first))
    for name in features.FEATURE_NAMES:
      values = [row[name] for row in got]
      if name in features.ID_FEATURES:
        want = list(readers[name](positions))
        self.assertEqual(values, want, name)
        continue
      want = first[name].to_numpy()
      values = np.asarray(values)
      self.assertEqual(values.dtype, want.dtype, name)
      # Exact, NaN where offline has NaN.
      np.testing.assert_array_equal(values, want, err_msg=name)
    return first["split"].value_counts().to_dict()

  def test_simulator_tiny(self):
    # The log of `cabb_synthetic/tiny`: source sessions and impressions.
    log = simulator.simulate_events(5_000, seed=0)
    counts = self.assert_replay_matches(log.events, log.catalog)
    self.assertGreater(counts["test"], 100)

  def test_simulator_small_with_derived_sessions_and_gin_settings(self):
    gin_utils.parse(["simulator/small.gin"], [
        "features.compute_features.cvr_prior_mean = 0.05",
        "features.compute_features.cvr_prior_strength = 3.0",
        "sessions.assign_sessions.session_gap_minutes = 10.0"])
    log = simulator.simulate()
    # No session column: sessions split on the gin-bound gap, impressions
    # included.
    counts = self.assert_replay_matches(
        log.events.drop(columns="session_id"), log.catalog)
    self.assertGreater(counts["test"], 1000)

  def test_taobao_sample(self):
    path = shared_data.require(shared_data.TAOBAO)
    gin_utils.parse(["datasets/taobao.gin"], [])
    start, end = gin_utils.bound(
        "cabb_tf.data.pipeline.prepare_examples.time_range")
    events, catalog, _ = loaders.load_taobao(
        path, fav_as=gin_utils.bound("cabb_tf.data.loaders.load_taobao."
                                     "fav_as"))
    gin.clear_config()
    # What prepare_examples keeps of the time range.
    ts = events["timestamp"].to_numpy()
    counts = self.assert_replay_matches(
        events[(ts >= start) & (ts < end)], catalog)
    self.assertGreater(counts["test"], 1000)

  def test_rees46_sample(self):
    # Source sessions (one shared by two users), prices and brands.
    events, catalog, _ = loaders.load_rees46(
        shared_data.require(shared_data.REES46))
    counts = self.assert_replay_matches(events, catalog)
    self.assertGreater(counts["test"], 1000)


def run_docs_example(export_dir, num_events):
  """Runs docs/serving.md's "Scoring a live session" with another export
  and log; returns its variables."""
  section = (DOCS / "serving.md").read_text().split(
      "### Scoring a live session", 1)[1]
  code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  for name, value in (("EXPORT_DIR", repr(export_dir)),
                      ("NUM_EVENTS", str(num_events))):
    code, count = re.subn(rf"^{name} = .*$", f"{name} = {value}", code,
                          flags=re.M)
    assert count == 1, name
  namespace = {}
  code = compile(code, str(DOCS / "serving.md"), "exec")
  exec(code, namespace)  # pylint: disable=exec-used
  return namespace


class ExportTest(absltest.TestCase):
  """Online features through an export give the trained model's
  predictions on the offline pipeline's rows."""

  def tearDown(self):
    gin.clear_config()
    super().tearDown()

  def test_served_online_features_give_the_models_predictions(self):
    run_dir = self.create_tempdir().full_path
    training.tiny_run(run_dir, "multitask.gin",
                      bindings=["train.run.max_epochs = 1"])
    export_dir = os.path.join(run_dir, "export")
    # Offline: the records of the test split and the model's predictions.
    data = input_pipeline.load_data()
    statistics = data.feature_statistics
    test = input_pipeline.split_columns(data, "test")
    model = train.load_best_model(run_dir, statistics, "multitask")
    predicted = model.predict(input_pipeline.model_inputs(
        test, factory.input_dtypes(model), factory.id_lookups(statistics)),
                              batch_size=4096, verbose=0)
    predicted = {head: p.reshape(-1) for head, p in predicted.items()}
    keys = list(zip([u.decode() for u in test["user_id"].numpy()],
                    [a.decode() for a in test["item_a"].numpy()],
                    test["timestamp"].numpy().tolist()))
    rows_of = {}
    for row, key in enumerate(keys):
      rows_of.setdefault(key, []).append(row)

    # The docs' example scores the live session's clicks one at a time.
    scored = run_docs_example(export_dir, training.TINY_EVENTS)["scored"]
    checked = 0
    for event, caba, cabb in scored:
      rows = rows_of.get((str(event["user_id"]), str(event["item_id"]),
                          event["timestamp"]))
      if rows is None:  # a later click on the same item: no example
        continue
      checked += 1
      np.testing.assert_allclose([caba] * len(rows), predicted["caba"][rows],
                                 rtol=1e-6)
      np.testing.assert_allclose([cabb] * len(rows), predicted["cabb"][rows],
                                 rtol=1e-6)
    self.assertGreater(checked, 0)

    # Every test row, from the log replayed click by click.
    log = simulator.simulate_events(training.TINY_EVENTS, seed=0)
    timestamps = log.events["timestamp"].to_numpy()
    by_key = {}
    for position, values in online.OnlineFeatures(log.catalog).replay_clicks(
        log.events):
      by_key.setdefault((values["user_id"], values["item_a"],
                         int(timestamps[position])), values)
    rows = [by_key[key] for key in keys]
    loaded = tf.saved_model.load(export_dir)
    serve = loaded.signatures["serving_default"]
    inputs = online.serving_inputs(rows, serve)
    # The same inputs as the records' ...
    self.assertNotEmpty(inputs)
    for name, tensor in inputs.items():
      np.testing.assert_array_equal(tensor.numpy(), test[name].numpy(),
                                    err_msg=name)
    # ... and the same probabilities as the model, through both signatures.
    served = serve(**inputs)
    from_examples = loaded.signatures["from_examples"](
        examples=tf.constant(online.serialized_examples(rows)))
    for head in ("caba", "cabb"):
      for signature in (served, from_examples):
        np.testing.assert_allclose(signature[head].numpy(), predicted[head],
                                   rtol=1e-6, err_msg=head)


if __name__ == "__main__":
  absltest.main()
