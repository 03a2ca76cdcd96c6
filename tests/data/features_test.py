"""Tests of point-in-time features: hand-derived values and no leakage."""

from absl.testing import absltest
import hypothesis
from hypothesis import strategies as st
import numpy as np
import pandas as pd

from cabb_tf.data import encoding
from cabb_tf.data import features
from cabb_tf.data import labels
from cabb_tf.data import schema
from cabb_tf.data import sessions

C, P, K, I = "click", "purchase", "add_to_cart", "impression"
S = 1000  # one second in ms


def make_events(rows, with_sessions=True):
  """rows: (user, timestamp_ms, item, type) in input order."""
  frame = pd.DataFrame(rows, columns=["user_id", "timestamp", "item_id",
                                      "event_type"])
  frame["timestamp"] = frame["timestamp"].astype(np.int64)
  frame["event_type"] = pd.Categorical(frame["event_type"],
                                       dtype=schema.EVENT_TYPE_DTYPE)
  return sessions.assign_sessions(frame) if with_sessions else frame


CATALOG = schema.make_catalog(
    ["A", "B", "Z"], [("home", "kitchen"), ("home", "kitchen"), ("garden",)],
    brand=["acme", None, "zed"], price=[10.0, 20.0, np.nan])


def featurize(events):
  return features.compute_features(events, CATALOG,
                                   labels.label_clicks(events))


class ComputeFeaturesTest(absltest.TestCase):

  def test_hand_derived_values(self):
    # User 1, day 0 (session 0): click A, cart A, buy A, click B, impression A.
    # User 2 clicks A at t=100 s (its own session).
    # User 1, two hours later (session 1): click A at t=7300 s, click Z at
    # 7300 s too (a tie).
    rows = [(1, 0 * S, "A", C), (1, 10 * S, "A", K), (1, 20 * S, "A", P),
            (1, 30 * S, "B", C), (1, 40 * S, "A", I), (2, 100 * S, "A", C),
            (1, 7300 * S, "A", C), (1, 7300 * S, "Z", C)]
    out = featurize(make_events(rows))
    first = out[out["w_caba"] > 0].set_index(["user_id", "timestamp",
                                              "item_a"])
    late_a = first.loc[(1, 7300 * S, "A")]
    # Before t=7300 s user 1 clicked A once, carted once, bought once.
    self.assertEqual(late_a["u_item_clicks"], 1)
    self.assertEqual(late_a["u_item_carts"], 1)
    self.assertEqual(late_a["u_item_purchases"], 1)
    # Last touch of A (impressions excluded) was the purchase at 20 s.
    self.assertAlmostEqual(late_a["u_item_since_s"], 7280.0)
    # Leaf home/kitchen: A's click, cart, purchase and B's click.
    self.assertEqual(late_a["u_leaf_clicks"], 2)
    self.assertEqual(late_a["u_leaf_purchases"], 1)
    self.assertAlmostEqual(late_a["u_leaf_since_s"], 7270.0)
    self.assertEqual(late_a["u_events"], 4)
    self.assertEqual(late_a["u_purchases"], 1)
    # Popularity counts every user: A clicked by user 1 and user 2.
    self.assertEqual(late_a["item_clicks"], 2)
    self.assertEqual(late_a["item_purchases"], 1)
    self.assertAlmostEqual(late_a["item_cvr"], (1 + 20 * 0.02) / (2 + 20),
                           places=6)
    self.assertEqual(late_a["leaf_clicks"], 3)
    # First events of the new session: nothing before in the session.
    self.assertEqual(late_a["session_position"], 0)
    self.assertEqual(late_a["session_events_before"], 0)
    self.assertEqual(late_a["leaf_a"], "home/kitchen")
    self.assertEqual(late_a["top_category_a"], "home")
    self.assertEqual(late_a["brand_a"], "acme")
    self.assertEqual(late_a["price_a"], 10.0)
    # 7300 s after the epoch is 02:01 on a Thursday (weekday 3).
    self.assertEqual(late_a["hour"], 2)
    self.assertEqual(late_a["weekday"], 3)
    # Z is clicked at the same time as A: A's click is not "before" it.
    late_z = first.loc[(1, 7300 * S, "Z")]
    self.assertEqual(late_z["session_position"], 0)
    self.assertEqual(late_z["brand_a"], "zed")
    self.assertTrue(np.isnan(late_z["price_a"]))
    self.assertEqual(late_z["u_leaf_since_s"], -1.0)
    # B in session 0: A's click, cart, purchase came before it.
    b = first.loc[(1, 30 * S, "B")]
    self.assertEqual(b["session_position"], 1)
    self.assertEqual(b["session_events_before"], 3)
    self.assertAlmostEqual(b["session_elapsed_s"], 30.0)
    self.assertEqual(b["u_item_clicks"], 0)
    self.assertEqual(b["u_item_since_s"], -1.0)

  def test_beside_histories_runs_the_work_and_arranges(self):
    rows = [(1, 0, "A", C), (1, S, "Z", P), (1, 2 * S, "B", C),
            (2, 3 * S, "A", I), (2, 4 * S, "A", C)]
    events = make_events(rows)
    examples = labels.label_clicks(events)
    calls = []
    result, histories = features.beside_histories(
        lambda: calls.append("work") or "done", events, CATALOG)
    self.assertEqual((result, calls), ("done", ["work"]))
    pd.testing.assert_frame_equal(
        features.compute_features(events, CATALOG, examples,
                                  histories=histories),
        featurize(events))

    def fail():
      raise KeyError("labels failed")

    with self.assertRaisesRegex(KeyError, "labels failed"):
      features.beside_histories(fail, events, CATALOG)

  def test_leaf_b_follows_item_b(self):
    rows = [(1, 0, "A", C), (1, S, "Z", P), (1, 2 * S, "B", C)]
    out = featurize(make_events(rows))
    self.assertEqual(list(out["leaf_b"]), ["garden", ""])

  def test_unsorted_input_gives_the_same_features(self):
    rows = [(1, 0, "A", C), (2, 5 * S, "A", C), (1, 3 * S, "B", C),
            (1, 4 * S, "A", P), (2, 9 * S, "B", C)]
    order = [4, 1, 3, 0, 2]
    a = featurize(make_events(rows))
    b = featurize(make_events([rows[i] for i in order]))
    cols = ["user_id", "timestamp", "item_a"] + [
        f for f in features.NUMERIC_FEATURES if f != "price_a"]
    key = ["user_id", "timestamp", "item_a"]
    pd.testing.assert_frame_equal(
        a[cols].sort_values(key).reset_index(drop=True),
        b[cols].sort_values(key).reset_index(drop=True))


_row = st.tuples(st.integers(0, 2), st.integers(0, 40),
                 st.sampled_from(["A", "B", "Z"]),
                 st.sampled_from([C, C, P, K, I]))


class LeakageTest(absltest.TestCase):
  """Changing events at or after an example's time leaves its features."""

  @hypothesis.settings(max_examples=80, deadline=None)
  @hypothesis.given(st.lists(_row, min_size=2, max_size=40),
                    st.integers(1, 40),
                    st.lists(_row, max_size=10),
                    st.data())
  def test_future_events_do_not_change_features(self, raw, cut, extra, data):
    rows = sorted(((u, t * 60 * S, item, kind) for u, t, item, kind in raw),
                  key=lambda r: r[1])
    cut_ms = cut * 60 * S
    past = [r for r in rows if r[1] < cut_ms]
    if not any(r[3] == C for r in past):
      return
    future = [r for r in rows if r[1] >= cut_ms]
    # Perturb the future: drop some of it, change types and add new events.
    keep = data.draw(st.lists(st.booleans(), min_size=len(future),
                              max_size=len(future)))
    changed = [(u, t, item, kind if k else P)
               for (u, t, item, kind), k in zip(future, keep)]
    changed += [(u, cut_ms + t * 60 * S, item, kind)
                for u, t, item, kind in extra]
    changed.sort(key=lambda r: r[1])
    a = featurize(make_events(past + future))
    b = featurize(make_events(past + changed))
    cols = ["user_id", "timestamp", "item_a", "leaf_a", "brand_a"] + [
        f for f in features.NUMERIC_FEATURES if f != "price_a"]
    key = ["user_id", "timestamp", "item_a"]

    def early(frame):
      frame = frame[(frame["w_caba"] > 0) & (frame["timestamp"] < cut_ms)]
      frame = frame[cols].astype({"leaf_a": str, "brand_a": str})
      return frame.sort_values(key).reset_index(drop=True)

    pd.testing.assert_frame_equal(early(a), early(b))


def reference_history_features(rows, sessions_of_rows, leaf_of):
  """History features of each click example, by filtering the log directly.

  rows: (user, timestamp, item, type) in input order; sessions_of_rows: the
  session of each row. Returns {(session, item_a): {feature: value}} for the
  first click on each item in each session.
  """
  log = [(s, u, t, item, kind, i)
         for i, ((u, t, item, kind), s) in enumerate(zip(rows,
                                                         sessions_of_rows))]
  touches = [e for e in log if e[4] != I]  # impressions are not interactions
  out = {}
  for s, u, t, a, kind, i in sorted(log, key=lambda e: (e[2], e[5])):
    if kind != C or (s, a) in out:
      continue
    before = [e for e in touches if e[2] < t]

    def count(select, event_type=None):
      return sum(1 for e in before if select(e) and
                 (event_type is None or e[4] == event_type))

    def since(select):
      times = [e[2] for e in before if select(e)]
      return (t - max(times)) / 1000.0 if times else -1.0

    user_item = lambda e: e[1] == u and e[3] == a
    user_leaf = lambda e: e[1] == u and leaf_of[e[3]] == leaf_of[a]
    session_first = min(e[2] for e in touches if e[0] == s)
    out[(s, a)] = {
        "u_item_clicks": count(user_item, C),
        "u_item_carts": count(user_item, K),
        "u_item_purchases": count(user_item, P),
        "u_item_since_s": since(user_item),
        "u_leaf_clicks": count(user_leaf, C),
        "u_leaf_carts": count(user_leaf, K),
        "u_leaf_purchases": count(user_leaf, P),
        "u_leaf_since_s": since(user_leaf),
        "u_events": count(lambda e: e[1] == u),
        "u_purchases": count(lambda e: e[1] == u, P),
        "item_clicks": count(lambda e: e[3] == a, C),
        "item_purchases": count(lambda e: e[3] == a, P),
        "leaf_clicks": count(lambda e: leaf_of[e[3]] == leaf_of[a], C),
        "leaf_purchases": count(lambda e: leaf_of[e[3]] == leaf_of[a], P),
        "session_position": count(lambda e: e[0] == s, C),
        "session_events_before": count(lambda e: e[0] == s),
        "session_elapsed_s": (t - session_first) / 1000.0,
    }
  return out


class ReferenceFeaturesTest(absltest.TestCase):
  """Every history count against a direct filter of the log."""

  @hypothesis.settings(max_examples=50, deadline=None)
  @hypothesis.given(st.lists(_row, min_size=1, max_size=40), st.randoms())
  def test_matches_reference(self, raw, rnd):
    # Minutes apart with ties; input order shuffled (not time-sorted), so the
    # user and session orders of the encoded log and the sorted histories
    # must agree on (time, input) order.
    rows = [(u, t * 20 * S, item, kind) for u, t, item, kind in raw]
    rnd.shuffle(rows)
    events, codes = sessions.assign_sessions(make_events(rows, False),
                                             with_codes=True)
    if not (events["event_type"] == C).any():
      return
    leaf_of = dict(zip(CATALOG["item_id"], CATALOG["leaf"]))
    expected = reference_history_features(
        rows, events["session_id"].tolist(), leaf_of)
    examples = labels.label_clicks(events)
    # Encoded with the split's codes, the user and session features come
    # from one arrangement (sessions as runs of the user order); without
    # them, from the user and session orders separately. The arrangements
    # are made inside compute_features, or beforehand (arrange_histories).
    with_codes = encoding.encode_events(events, codes)
    for encoded, ahead in ((with_codes, False),
                           (encoding.encode_events(events), False),
                           (with_codes, True)):
      histories = (features.arrange_histories(events, CATALOG, with_codes)
                   if ahead else None)
      out = features.compute_features(events, CATALOG, examples,
                                      encoded=encoded, histories=histories)
      first = out[out["w_caba"] > 0]
      self.assertEqual(len(first), len(expected))
      for row in first.itertuples():
        want = expected[(row.session_id, row.item_a)]
        for name, value in want.items():
          self.assertAlmostEqual(float(getattr(row, name)), value, places=3,
                                 msg=name)


class SplitAndStatisticsTest(absltest.TestCase):

  def test_split_by_time_boundaries(self):
    frame = pd.DataFrame({"timestamp": np.arange(0, 101, 10, dtype=np.int64)})
    split = features.split_by_time(frame, (0, 100), validation_fraction=0.1,
                                   test_fraction=0.2)
    # test: t >= 80; validation: 70 <= t < 80; train: t < 70.
    self.assertEqual(list(split), ["train"] * 7 + ["validation"] +
                     ["test"] * 3)

  def test_statistics_depend_on_the_given_rows_only(self):
    frame = pd.DataFrame({
        "w_caba": [1.0, 1.0, 0.0, 1.0],
        "item_clicks": [0, np.e - 1, 100, np.e ** 2 - 1],
        "user_id": ["u", "v", "u", "u"],
    })
    stats = features.fit_feature_statistics(frame)
    # log1p gives 0, 1, 2 on the three click rows (the w_caba=0 row is the
    # same click repeated and must not count twice).
    self.assertAlmostEqual(stats["numeric"]["item_clicks"]["mean"], 1.0)
    self.assertAlmostEqual(stats["numeric"]["item_clicks"]["std"],
                           np.sqrt(2 / 3))
    self.assertEqual(stats["vocabulary"]["user_id"], ["u", "v"])
    self.assertEqual(stats["num_examples"], 3)


class PartitionedFeaturesTest(absltest.TestCase):
  """The pieces the Beam preparation computes apart equal the whole."""

  def _log(self):
    rnd = np.random.default_rng(0)
    n = 600
    rows = list(zip(rnd.integers(0, 12, n), np.sort(rnd.integers(0, 400, n)) * S,
                    rnd.choice(["A", "B", "Z"], n),
                    rnd.choice([C, C, C, P, K, I], n)))
    events = make_events(rows)
    return events, featurize(events)

  def test_as_of_popularity_by_time_blocks_equals_the_whole_log(self):
    events, full = self._log()
    first = full[full["w_caba"] > 0]
    leaf = encoding.item_table(pd.unique(events["item_id"]), CATALOG)
    leaf_of = dict(zip(pd.unique(events["item_id"]), leaf["leaf"]))
    items = {"A": 0, "B": 1, "Z": 2}
    leaves = {name: i for i, name in enumerate(sorted(set(leaf_of.values())))}
    keys = {"item": events["item_id"].map(items).to_numpy(),
            "leaf": events["item_id"].map(leaf_of).map(leaves).to_numpy()}
    query_keys = {"item": first["item_a"].map(items).to_numpy(),
                  "leaf": first["item_a"].map(leaf_of).map(leaves).to_numpy()}
    ts, types = events["timestamp"].to_numpy(), schema.event_type_codes(events)
    q_ts = first["timestamp"].to_numpy()
    for num_blocks in (1, 3, 7):
      edges = np.linspace(ts.min(), ts.max() + 1, num_blocks + 1).astype(
          np.int64)
      block, q_block = (np.searchsorted(edges, t, side="right") - 1
                        for t in (ts, q_ts))
      got = {f: np.zeros(len(first), dtype=first[f].dtype)
             for f in features.POPULARITY_FEATURES}
      for b in range(num_blocks):
        h, q = block == b, q_block == b
        prefix = {}
        for name in ("item", "leaf"):
          before = block < b
          count = lambda t: np.bincount(  # pylint: disable=cell-var-from-loop
              keys[name][before & (types == t)], minlength=3)
          prefix[name] = (count(schema.CLICK)[query_keys[name][q]],
                          count(schema.PURCHASE)[query_keys[name][q]])
        out = features.as_of_popularity(
            {k: v[h] for k, v in keys.items()}, ts[h], types[h],
            {k: v[q] for k, v in query_keys.items()}, q_ts[q], prefix)
        for name, values in out.items():
          got[name][q] = values
      for name in features.POPULARITY_FEATURES:
        np.testing.assert_array_equal(got[name], first[name].to_numpy(),
                                      err_msg=f"{name}, {num_blocks} blocks")

  def test_without_popularity_the_other_features_are_unchanged(self):
    events, full = self._log()
    part = features.compute_features(events, CATALOG,
                                     labels.label_clicks(events),
                                     popularity=False)
    self.assertEqual(set(part.columns),
                     set(full.columns) - set(features.POPULARITY_FEATURES))
    pd.testing.assert_frame_equal(part, full[part.columns], check_exact=True)

  def test_merged_statistics_equal_the_whole(self):
    _, full = self._log()
    whole = features.fit_feature_statistics(full)
    user = full["user_id"].to_numpy()
    parts = [features.feature_statistics_part(full[user % 3 == r],
                                              max_vocabulary=100_000)
             for r in range(3)]
    # All parts at once, and pairwise in two orders (as a Beam CombineFn may
    # merge them), with a user vocabulary cap of 2 that must stay exact.
    pairwise = [
        features.combine_statistics_parts(
            features.combine_statistics_parts(parts[0], parts[1]), parts[2]),
        features.combine_statistics_parts(
            parts[2], features.combine_statistics_parts(parts[1], parts[0]))]
    for merged in [features.merge_feature_statistics(parts)] + [
        features.merge_feature_statistics([p]) for p in pairwise]:
      self.assertEqual(merged["vocabulary"], whole["vocabulary"])
      self.assertEqual(merged["num_examples"], whole["num_examples"])
      for name, moments in whole["numeric"].items():
        for key, value in moments.items():
          self.assertAlmostEqual(merged["numeric"][name][key], value,
                                 places=12)
    capped = [features.feature_statistics_part(full[user % 3 == r],
                                               max_vocabulary=2)
              for r in range(3)]
    combined = features.combine_statistics_parts(
        features.combine_statistics_parts(capped[0], capped[1],
                                          max_vocabulary=2),
        capped[2], max_vocabulary=2)
    capped_whole = features.fit_feature_statistics(full, max_vocabulary=2)
    capped_merged = features.merge_feature_statistics([combined],
                                                      max_vocabulary=2)
    self.assertEqual(capped_merged["vocabulary"], capped_whole["vocabulary"])
    self.assertEqual(capped_merged["num_examples"],
                     capped_whole["num_examples"])


class MergePurchaseStatsTest(absltest.TestCase):

  def test_parts_of_disjoint_users_merge_into_the_whole(self):
    rnd = np.random.default_rng(1)
    n = 500
    rows = list(zip(rnd.integers(0, 10, n), np.sort(rnd.integers(0, 300, n)) * S,
                    rnd.choice(["A", "B", "Z"], n), rnd.choice([C, C, P, K], n)))
    events = make_events(rows)
    for window in (None, 50.0):
      whole = labels.purchase_stats(events, CATALOG, window)
      user = events["user_id"].to_numpy()
      parts = [labels.purchase_stats(events[user % 2 == r].reset_index(
          drop=True), CATALOG, window) for r in range(2)]
      merged = labels.merge_purchase_stats(parts)
      self.assertEqual(merged.keys(), whole.keys())
      for key, value in whole.items():
        if isinstance(value, float) and np.isnan(value):
          self.assertTrue(np.isnan(merged[key]), key)
        else:
          self.assertEqual(merged[key], value, key)


if __name__ == "__main__":
  absltest.main()
