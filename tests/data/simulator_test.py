"""Tests for cabb_tf.data.simulator."""

import collections
import contextlib
import io
import json

from absl.testing import parameterized
import gin
import numpy as np
import pandas as pd
import tensorflow as tf

from cabb_tf import gin_utils
from cabb_tf.data import schema
from cabb_tf.data import simulator

_GIN_DIR = gin_utils.GIN_DIR / "simulator"
_SESSION_GAP_MS = 30 * 60 * 1000


def _loop_calibration(events: pd.DataFrame, catalog: pd.DataFrame) -> dict:
  """click_a_buy_b_stats.py's `analyse`, restated as a plain loop."""
  leaf = dict(zip(catalog["item_id"].tolist(), catalog["leaf"].tolist()))
  sessions = collections.defaultdict(list)
  for session, item, kind in zip(events["session_id"].tolist(),
                                 events["item_id"].tolist(),
                                 events["event_type"].astype(str).tolist()):
    sessions[session].append((kind, item))
  res = collections.Counter()
  for evs in sessions.values():
    has_click = any(kind == "click" for kind, _ in evs)
    has_buy = any(kind == "purchase" for kind, _ in evs)
    if not (has_click and has_buy):
      continue
    clicked, clicked_leaves, bought = set(), set(), set()
    for kind, item in evs:
      if kind == "click":
        clicked.add(item)
        clicked_leaves.add(leaf[item])
      elif kind == "purchase" and item not in bought:
        bought.add(item)
        res["other"] += bool(clicked - {item})
        if item in clicked:
          res["same"] += 1
        elif clicked:
          res["cabb"] += 1
          res["leaf_match"] += leaf[item] in clicked_leaves
        else:
          res["no_prior"] += 1
  total = res["same"] + res["cabb"] + res["no_prior"]
  return {
      "same_item": res["same"],
      "click_a_buy_b": res["cabb"],
      "no_prior_click": res["no_prior"],
      "click_a_buy_b_share": res["cabb"] / total,
      "leaf_match_share": res["leaf_match"] / res["cabb"],
      "other_item_clicked_before_share": res["other"] / total,
  }


class SimulatorTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.log = simulator.simulate(seed=0)  # The default configuration.
    cls.small = simulator.simulate(num_users=400, seed=7)

  def test_same_seed_same_log_other_seed_other_log(self):
    again = simulator.simulate(num_users=400, seed=7)
    for name in simulator.SimulatedLog._fields:
      pd.testing.assert_frame_equal(getattr(self.small, name),
                                    getattr(again, name))
    other = simulator.simulate(num_users=400, seed=8)
    self.assertFalse(self.small.events.equals(other.events))
    self.assertFalse(self.small.leaf_relations.equals(other.leaf_relations))

  def test_events_follow_the_schema(self):
    events = self.log.events
    schema.validate_events(events, "simulated events")
    self.assertEqual(list(events.columns), list(schema.EVENT_COLUMNS))
    for column in ("user_id", "session_id", "timestamp", "item_id"):
      self.assertEqual(events[column].dtype, np.int64, column)
    self.assertTrue((np.diff(events["timestamp"].to_numpy()) >= 0).all())
    self.assertTrue(events["item_id"].isin(self.log.catalog["item_id"]).all())
    start = simulator.DEFAULT_START_MS
    self.assertGreaterEqual(events["timestamp"].min(), start)
    self.assertLess(events["timestamp"].max(), start + 30 * 86_400_000)
    counts = events["event_type"].value_counts()
    for kind in schema.EVENT_TYPES:
      self.assertGreater(counts[kind], 0, kind)

  def test_catalog_has_the_taxonomy_brands_and_prices(self):
    catalog = self.log.catalog
    self.assertEqual(list(catalog.columns), list(schema.CATALOG_COLUMNS))
    self.assertTrue(catalog["item_id"].is_unique)
    self.assertEqual(catalog["leaf"].nunique(), 8 * 6 * 6)
    self.assertEqual(catalog["top_category"].nunique(), 8)
    self.assertTrue((catalog["category_path"].map(len) == 3).all())
    self.assertEqual(catalog["leaf"].tolist(), [
        schema.leaf_of(path) for path in catalog["category_path"]])
    self.assertIn("dept03/aisle03_2/shelf03_2_5", set(catalog["leaf"]))
    self.assertTrue(catalog["brand"].notna().all())
    self.assertTrue((catalog["price"] > 0).all())

  def test_sessions_are_a_30_minute_gap_split(self):
    events = self.log.events.sort_values(["user_id", "timestamp"],
                                         kind="stable")
    user = events["user_id"].to_numpy()
    ts = events["timestamp"].to_numpy()
    new = np.concatenate([[True], (user[1:] != user[:-1])
                          | (np.diff(ts) > _SESSION_GAP_MS)])
    derived = np.cumsum(new)
    pairs = pd.DataFrame({"given": events["session_id"].to_numpy(),
                          "derived": derived}).drop_duplicates()
    self.assertTrue(pairs["given"].is_unique)
    self.assertTrue(pairs["derived"].is_unique)

  def test_ground_truth_matches_the_purchase_events(self):
    events = self.log.events
    bought = events[events["event_type"] == "purchase"]
    truth = self.log.purchases
    columns = ["session_id", "user_id", "timestamp", "item_id"]
    pd.testing.assert_frame_equal(bought[columns].reset_index(drop=True),
                                  truth[columns].reset_index(drop=True))
    self.assertFalse(truth.duplicated(["session_id", "item_id"]).any())
    self.assertEqual(truth["relation"].dtype, simulator.RELATION_DTYPE)
    self.assertEqual(set(truth["relation"]), set(simulator.RELATIONS))

  def test_relations_follow_the_catalog_and_leaf_relations(self):
    log = self.log
    leaf = log.catalog.set_index("item_id")["leaf"]
    truth = log.purchases
    item_leaf = leaf.loc[truth["item_id"]].to_numpy()
    source_leaf = leaf.loc[truth["source_item_id"]].to_numpy()
    relation = truth["relation"].astype(str).to_numpy()
    same_item = (truth["item_id"] == truth["source_item_id"]).to_numpy()
    complements = set(zip(
        log.leaf_relations.loc[log.leaf_relations["relation"] == "complement",
                               "leaf_a"],
        log.leaf_relations.loc[log.leaf_relations["relation"] == "complement",
                               "leaf_b"]))
    self.assertFalse(same_item[relation == "noise"].any())
    for kind in ("same", "substitute", "complement"):
      rows = np.flatnonzero(relation == kind)
      self.assertGreater(len(rows), 0, kind)
      for i in rows:
        if kind == "same":
          self.assertTrue(same_item[i])
        elif kind == "substitute":
          self.assertFalse(same_item[i])
          self.assertEqual(item_leaf[i], source_leaf[i])
        else:
          self.assertIn((source_leaf[i], item_leaf[i]), complements)

  def test_source_item_was_clicked_earlier_in_the_session(self):
    events = self.log.events.reset_index(drop=True)
    clicks = events[events["event_type"] == "click"]
    first_click = {}
    for row, session, item in zip(clicks.index, clicks["session_id"],
                                  clicks["item_id"]):
      first_click.setdefault((session, item), row)
    bought = events[events["event_type"] == "purchase"]
    for row, session, source in zip(bought.index, bought["session_id"],
                                    self.log.purchases["source_item_id"]):
      self.assertLess(first_click[(session, source)], row)

  def test_leaf_relations_are_symmetric_and_mostly_cross_branch(self):
    relations = self.log.leaf_relations
    leaves = set(self.log.catalog["leaf"])
    substitute = relations[relations["relation"] == "substitute"]
    self.assertEqual(set(substitute["leaf_a"]), leaves)
    self.assertTrue((substitute["leaf_a"] == substitute["leaf_b"]).all())
    complement = relations[relations["relation"] == "complement"]
    pairs = set(zip(complement["leaf_a"], complement["leaf_b"]))
    self.assertEqual(pairs, {(b, a) for a, b in pairs})
    self.assertTrue((complement["leaf_a"] != complement["leaf_b"]).all())
    self.assertEqual(set(complement["leaf_a"]), leaves)  # Every leaf has one.
    per_leaf = complement.groupby("leaf_a").size()
    self.assertBetween(per_leaf.mean(), 2.0, 4.0)
    top = lambda leaf: leaf.split("/")[0]
    cross = np.mean([top(a) != top(b) for a, b in pairs])
    self.assertBetween(cross, 0.5, 0.9)

  def test_pair_relation(self):
    log = self.small
    relations = log.leaf_relations
    complement = relations[relations["relation"] == "complement"]
    a, b = complement["leaf_a"].iloc[0], complement["leaf_b"].iloc[0]
    leaves = sorted(set(log.catalog["leaf"]))
    complements = set(zip(complement["leaf_a"], complement["leaf_b"]))
    unrelated = next(c for c in leaves if c != a and (a, c) not in complements)
    got = simulator.pair_relation(log, [a, a, a], [a, b, unrelated])
    self.assertEqual(got.tolist(), ["substitute", "complement", "unrelated"])
    # Every pair, against a direct lookup.
    grid_a, grid_b = np.meshgrid(np.array(leaves, dtype=object),
                                 np.array(leaves, dtype=object))
    got = simulator.pair_relation(log, grid_a, grid_b)
    self.assertEqual(got.shape, grid_a.shape)
    expected = [("substitute" if x == y else "complement"
                 if (x, y) in complements else "unrelated")
                for x, y in zip(grid_a.ravel(), grid_b.ravel())]
    self.assertEqual(got.ravel().tolist(), expected)
    self.assertEqual(simulator.pair_relation(log, b, a).tolist(), "complement")
    with self.assertRaisesRegex(ValueError, "not leaves.*'nope'"):
      simulator.pair_relation(log, [a], ["nope"])

  def test_calibration_matches_taobao_within_tolerance(self):
    expected = _loop_calibration(self.log.events, self.log.catalog)
    self.assertAllClose(expected["click_a_buy_b_share"], 0.40, atol=0.05)
    self.assertAllClose(expected["leaf_match_share"], 0.5, atol=0.1)
    stats = simulator.calibration_stats(self.log)
    self.assertBetween(stats["purchase_share_of_events"], 0.01, 0.025)
    self.assertBetween(stats["add_to_cart_share_of_events"], 0.03, 0.07)

  @parameterized.named_parameters(("default", "log"), ("small", "small"))
  def test_calibration_stats_equal_the_loop(self, name):
    log = getattr(self, name)
    expected = _loop_calibration(log.events, log.catalog)
    stats = simulator.calibration_stats(log)
    for key, value in expected.items():
      self.assertAllClose(stats[key], value, msg=key)

  def test_calibration_stats_by_hand(self):
    catalog = schema.make_catalog([1, 2, 3, 4],
                                  [("a", "x"), ("a", "x"), ("b",), ("b",)])
    rows = [  # session, item, type, in time order
        (10, 3, "purchase"),  # before any click: no_prior_click
        (10, 1, "click"),
        (10, 1, "purchase"),  # same_item
        (10, 2, "purchase"),  # Click A, Buy B, leaf a/x was clicked
        (10, 2, "purchase"),  # repeat: not counted again
        (11, 1, "click"),
        (11, 4, "purchase"),  # Click A, Buy B, leaf b not clicked
        (12, 4, "purchase"),  # session without a click
    ]
    events = pd.DataFrame({
        "user_id": np.zeros(len(rows), np.int64),
        "session_id": np.array([r[0] for r in rows], np.int64),
        "timestamp": np.arange(len(rows), dtype=np.int64),
        "item_id": np.array([r[1] for r in rows], np.int64),
        "event_type": pd.Categorical([r[2] for r in rows],
                                     dtype=schema.EVENT_TYPE_DTYPE),
    })
    log = simulator.SimulatedLog(events, catalog, None, None)
    stats = simulator.calibration_stats(log)
    self.assertEqual(stats["purchases_in_click_sessions"], 4)
    self.assertEqual(stats["same_item"], 1)
    self.assertEqual(stats["click_a_buy_b"], 2)
    self.assertEqual(stats["no_prior_click"], 1)
    self.assertEqual(stats["purchases_in_sessions_without_click"], 1)
    self.assertAllClose(stats["click_a_buy_b_share"], 0.5)
    self.assertAllClose(stats["leaf_match_share"], 0.5)
    # Items 2 and 4 had item 1 clicked before; item 1 and 3 had not.
    self.assertAllClose(stats["other_item_clicked_before_share"], 0.5)

  def test_personal_history_and_relatedness_carry_signal(self):
    events = self.log.events.reset_index(drop=True)
    clicks = events[events["event_type"] == "click"]
    examples = clicks.drop_duplicates(["session_id", "item_id"])
    earlier = clicks.groupby(["user_id", "item_id"]).cumcount()
    bought = events[events["event_type"] == "purchase"]
    bought_at = dict(zip(zip(bought["session_id"], bought["item_id"]),
                         bought.index))
    y_caba = np.array([bought_at.get((s, i), -1) > row for row, s, i in zip(
        examples.index, examples["session_id"], examples["item_id"])])
    seen_before = earlier.loc[examples.index].to_numpy() > 0
    self.assertGreater(y_caba[seen_before].mean(),
                       2.0 * y_caba[~seen_before].mean())
    # Genuine Click A, Buy B is related to its source; noise mostly is not.
    leaf = self.log.catalog.set_index("item_id")["leaf"]
    truth = self.log.purchases
    pair = simulator.pair_relation(
        self.log, leaf.loc[truth["source_item_id"]].to_numpy(),
        leaf.loc[truth["item_id"]].to_numpy())
    relation = truth["relation"].astype(str).to_numpy()
    genuine = np.isin(relation, ["substitute", "complement"])
    self.assertTrue((pair[genuine] != "unrelated").all())
    self.assertLess((pair[relation == "noise"] != "unrelated").mean(), 0.2)

  def test_chunks_have_disjoint_ids_and_the_asked_size(self):
    chunks = list(simulator.simulate_chunks(60_000, 20_000, seed=3))
    self.assertLen(chunks, 3)
    sizes = [len(chunk.events) for chunk in chunks]
    self.assertBetween(sum(sizes), 51_000, 69_000)
    for column in ("user_id", "session_id"):
      ids = [set(chunk.events[column]) for chunk in chunks]
      self.assertEqual(len(set.union(*ids)), sum(len(s) for s in ids), column)
    for chunk in chunks:
      schema.validate_events(chunk.events)
      self.assertBetween(len(chunk.events), 15_000, 25_000)
      pd.testing.assert_frame_equal(chunk.catalog, chunks[0].catalog)
    again = next(simulator.simulate_chunks(60_000, 20_000, seed=3))
    pd.testing.assert_frame_equal(again.events, chunks[0].events)

  def test_simulate_events_hits_the_size(self):
    log = simulator.simulate_events(50_000, seed=1)
    self.assertBetween(len(log.events), 45_000, 55_000)
    week = simulator.simulate_events(20_000, seed=1, num_days=7)
    self.assertBetween(len(week.events), 18_000, 22_000)
    days = (week.events["timestamp"].max() - simulator.DEFAULT_START_MS)
    self.assertLess(days, 7 * 86_400_000)

  def test_sizes_and_reserved_arguments_are_checked_at_the_call(self):
    with self.assertRaisesRegex(ValueError, "num_events"):
      simulator.simulate_events(0)
    with self.assertRaisesRegex(ValueError, "chunk_events"):
      simulator.simulate_chunks(100, 0)
    with self.assertRaisesRegex(ValueError, "num_users"):
      simulator.simulate_chunks(100, 10, num_users=5)

  @parameterized.named_parameters(
      ("no_users", dict(num_users=0), "num_users"),
      ("no_days", dict(num_days=0), "num_days"),
      ("empty_tree", dict(branching=()), "branching"),
      ("one_item_leaves", dict(items_per_leaf=1), "items_per_leaf"),
      ("bad_probability", dict(checkout_at_end_prob=1.5),
       "checkout_at_end_prob"),
      ("bad_browse", dict(browse_probs=(1.0, 0.0)), "browse_probs"),
      ("too_few_clicks", dict(clicks_per_session=0.5), "clicks_per_session"),
  )
  def test_invalid_arguments_raise(self, kwargs, message):
    with self.assertRaisesRegex(ValueError, message):
      simulator.simulate(**kwargs)

  def test_signal_scale_one_is_the_default_log(self):
    scaled = simulator.simulate(num_users=400, seed=7, signal_scale=1.0)
    with_state, state = simulator.simulate_with_state(num_users=400, seed=7)
    for name in simulator.SimulatedLog._fields:
      pd.testing.assert_frame_equal(getattr(scaled, name),
                                    getattr(self.small, name))
      pd.testing.assert_frame_equal(getattr(with_state, name),
                                    getattr(self.small, name))
    self.assertEqual(state.intercepts["same"], -6.3)

  @parameterized.parameters(0.0, -1.0, float("nan"), float("inf"), "strong")
  def test_invalid_signal_scale_raises(self, scale):
    with self.assertRaisesRegex(ValueError, "signal_scale"):
      simulator.simulate(num_users=10, signal_scale=scale)

  def test_signal_scale_keeps_the_purchase_mix(self):
    # The intercepts are solved so that the expected counts stay those of
    # s = 1; the realized counts then move only by sampling noise.
    counts, shares = {}, {}
    for scale in (1.0, 0.5, 2.0, 4.0):
      log, state = simulator.simulate_with_state(num_users=3000, seed=2,
                                                 signal_scale=scale)
      group = simulator._same_groups(state.clicks,
                                     len(state.world.item_ids))
      expected = simulator._expected_counts(state.probs, group)
      if scale == 1.0:
        reference = expected
      else:
        for name, value in expected.items():
          self.assertAllClose(value, reference[name], rtol=1e-9)
      counts[scale] = log.purchases["relation"].value_counts()
      shares[scale] = simulator.calibration_stats(log)["click_a_buy_b_share"]
    for scale in (0.5, 2.0, 4.0):
      for name in simulator.RELATIONS:
        n1, ns = counts[1.0][name], counts[scale][name]
        self.assertLess(abs(ns - n1), 4 * np.sqrt(2.0 * n1) + 0.03 * n1,
                        (scale, name, n1, ns))
      self.assertAllClose(shares[scale], shares[1.0], atol=0.03)

  def test_signal_scale_spreads_the_purchase_probabilities(self):
    spread = []
    for scale in (0.5, 1.0, 2.0):
      _, state = simulator.simulate_with_state(num_users=300, seed=4,
                                               signal_scale=scale)
      z = np.log(state.probs.same) - np.log1p(-state.probs.same)
      spread.append(z.std())
    # Every non-intercept term is multiplied by s: so is the logits' spread.
    self.assertAllClose(np.array(spread) / spread[1], [0.5, 1.0, 2.0],
                        rtol=1e-6)

  def test_intent_carts_precede_clicks_and_leave_clicks_alone(self):
    base = self.small.events
    strong = simulator.simulate(num_users=400, seed=7,
                                signal_scale=3.0).events
    clicks = lambda e: e[e["event_type"] == "click"].reset_index(drop=True)
    pd.testing.assert_frame_equal(clicks(base), clicks(strong))
    carts = lambda e: int((e["event_type"] == "add_to_cart").sum())
    self.assertGreater(carts(strong), carts(base) * 1.2)
    # Each extra cart is followed, in its session, by a click on its item.
    events = strong.reset_index(drop=True)
    nxt = events.groupby("session_id").shift(-1)
    is_cart = events["event_type"] == "add_to_cart"
    before_click = (is_cart & (nxt["event_type"] == "click")
                    & (nxt["item_id"] == events["item_id"])
                    & (nxt["timestamp"] > events["timestamp"]))
    self.assertGreaterEqual(int(before_click.sum()),
                            carts(strong) - carts(base))

  def test_redraw_events_follow_the_purchase_model(self):
    log, state = simulator.simulate_with_state(num_users=400, seed=7)
    events = log.events
    draw = simulator.redraw_events(state, np.random.default_rng(5))
    kinds = np.asarray(schema.EVENT_TYPES)[draw.event_type]
    self.assertEqual(set(kinds), {"click", "purchase"})
    original = events[events["event_type"] == "click"]
    self.assertEqual(int((kinds == "click").sum()), len(original))
    self.assertCountEqual(
        zip(draw.session_id[kinds == "click"].tolist(),
            draw.timestamp[kinds == "click"].tolist(),
            draw.item_id[kinds == "click"].tolist()),
        zip(original["session_id"].tolist(), original["timestamp"].tolist(),
            original["item_id"].tolist()))
    # Rows come by session, in time order inside each session.
    frame = pd.DataFrame({"s": draw.session_id, "t": draw.timestamp})
    self.assertTrue(frame["s"].is_monotonic_increasing)
    self.assertTrue((frame.groupby("s")["t"].diff().fillna(0) >= 0).all())
    # Another draw, other purchases; about as many as in the log.
    bought = int((kinds == "purchase").sum())
    self.assertBetween(bought, 0.8 * len(log.purchases),
                       1.2 * len(log.purchases))
    only = simulator.redraw_events(state, np.random.default_rng(5),
                                   keep="sessions")
    np.testing.assert_array_equal(
        np.unique(only.session_id[only.event_type == schema.PURCHASE]),
        np.unique(only.session_id))
    with self.assertRaisesRegex(ValueError, "keep"):
      simulator.redraw_events(state, np.random.default_rng(0), keep="some")
    with self.assertRaisesRegex(ValueError, "window_ms"):
      simulator.redraw_events(state, np.random.default_rng(0), keep="window")

  def test_redraw_by_user_and_by_window(self):
    _, state = simulator.simulate_with_state(num_users=400, num_days=14,
                                             seed=7)
    columns = ("user_id", "session_id", "timestamp", "item_id", "event_type",
               "click")
    frame = lambda draw: pd.DataFrame({c: getattr(draw, c) for c in columns})
    for keep in ("all", "sessions", "users"):
      by_session = simulator.redraw_events(state, np.random.default_rng(5),
                                           keep=keep)
      by_user = simulator.redraw_events(state, np.random.default_rng(5),
                                        keep=keep, order="user")
      # The same rows, stably sorted by user: each user's sessions in turn.
      pd.testing.assert_frame_equal(
          frame(by_session).sort_values("user_id", kind="stable")
          .reset_index(drop=True), frame(by_user))
      np.testing.assert_array_equal(by_session.same_clicks,
                                    by_user.same_clicks)
      # A user's sessions do not overlap: the rows are in (user, time)
      # order, as labels order them.
      users = frame(by_user)
      self.assertTrue(
          (users.groupby("user_id")["timestamp"].diff().fillna(0) >= 0).all())
    with self.assertRaisesRegex(ValueError, "order"):
      simulator.redraw_events(state, np.random.default_rng(0), order="time")
    users = simulator.redraw_events(state, np.random.default_rng(5),
                                    keep="users")
    purchases = lambda draw: frame(draw)[draw.event_type == schema.PURCHASE]
    user_clicks = set(users.click[users.click >= 0].tolist())
    sizes = []
    for window_ms in (0, 3_600_000, 86_400_000, 2**62):
      window = simulator.redraw_events(state, np.random.default_rng(5),
                                       keep="window", window_ms=window_ms)
      # Every purchase, and whole sessions of buyers only.
      pd.testing.assert_frame_equal(
          purchases(window).reset_index(drop=True),
          purchases(users).reset_index(drop=True))
      clicks = window.click[window.click >= 0]
      self.assertLessEqual(set(clicks.tolist()), user_clicks)
      kept = np.isin(state.clicks.session,
                     state.clicks.session[clicks])
      np.testing.assert_array_equal(np.flatnonzero(kept), clicks)
      # A kept session has a purchase of its user in [first click, last
      # click + window]; a buyer's session left out has none.
      t = np.floor(state.clicks.time).astype(np.int64)
      user_of = state.sessions.user
      bought = purchases(window)
      bought_user = user_of[pd.Index(state.session_ids).get_indexer(
          bought["session_id"])]
      for s in np.unique(state.clicks.session[
          np.fromiter(user_clicks, np.int64)]):
        c = state.clicks.first[s], state.clicks.last[s]
        in_window = ((bought_user == user_of[s])
                     & (bought["timestamp"].to_numpy() >= t[c[0]])
                     & (bought["timestamp"].to_numpy()
                        <= t[c[1]] + window_ms)).any()
        self.assertEqual(bool(kept[c[0]]), bool(in_window), (window_ms, s))
      sizes.append(len(clicks))
    self.assertEqual(sizes, sorted(sizes))
    self.assertLess(sizes[1], len(user_clicks))

  def test_subset_state_keeps_the_chosen_sessions(self):
    _, state = simulator.simulate_with_state(num_users=200, seed=3)
    keep = np.arange(len(state.session_ids)) % 3 == 0
    sub = simulator.subset_state(state, keep)
    np.testing.assert_array_equal(sub.session_ids, state.session_ids[keep])
    in_kept = np.isin(state.click_session_id, sub.session_ids)
    np.testing.assert_array_equal(sub.click_item_id,
                                  state.click_item_id[in_kept])
    np.testing.assert_array_equal(sub.probs.same, state.probs.same[in_kept])
    draw = simulator.redraw_events(sub, np.random.default_rng(1))
    self.assertTrue(np.isin(draw.session_id, sub.session_ids).all())
    with self.assertRaisesRegex(ValueError, "mask"):
      simulator.subset_state(state, keep[:-1])

  def test_other_taxonomies(self):
    flat = simulator.simulate(num_users=50, branching=(20,), seed=1)
    self.assertEqual(flat.catalog["leaf"].nunique(), 20)
    self.assertTrue((flat.catalog["category_path"].map(len) == 1).all())
    deep = simulator.simulate(num_users=50, branching=(2, 2, 2, 3), seed=1)
    self.assertEqual(deep.catalog["leaf"].nunique(), 24)
    self.assertIn("level3", deep.catalog["leaf"].iloc[0])
    schema.validate_events(deep.events)

  def test_shipped_gin_files_parse(self):
    self.addCleanup(gin.clear_config)
    files = sorted(_GIN_DIR.glob("*.gin"))
    self.assertNotEmpty(files)
    # Includes are relative to gin/, as the binaries parse them.
    gin.add_config_file_search_path(str(_GIN_DIR.parent))
    sizes = 0
    for path in files:
      gin.clear_config()
      gin.parse_config_files_and_bindings([str(path)], [],
                                          skip_unknown=False)
      # Size files set the users; regime files (paper.gin) the signal scale.
      if path.stem in ("paper", "paper_scale"):
        if path.stem == "paper":
          self.assertGreater(gin.query_parameter("%PAPER_SIGNAL_SCALE"), 1)
          self.assertEqual(
              gin.query_parameter("simulate.signal_scale").scoped_configurable_fn(),
              gin.query_parameter("%PAPER_SIGNAL_SCALE"))
        continue
      sizes += 1
      self.assertGreater(gin.query_parameter("simulate.num_users"), 0)
    self.assertGreaterEqual(sizes, 3)

  def test_main_prints_the_statistics(self):
    self.addCleanup(gin.clear_config)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
      simulator.main(["--gin_bindings=simulate.num_users = 300", "--json"])
    stats = json.loads(out.getvalue())
    self.assertEqual(stats["users"], 300)
    self.assertIn("click_a_buy_b_share", stats)


if __name__ == "__main__":
  tf.test.main()
