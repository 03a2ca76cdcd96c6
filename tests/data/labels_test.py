"""Tests of CABA / CABB / last-click labels against hand-derived values and a
plain-Python reference implementation of the labels of docs/method.md."""

import collections
from unittest import mock

from absl.testing import absltest
import gin
import hypothesis
from hypothesis import strategies as st
import numpy as np
import pandas as pd

from cabb_tf.data import labels
from cabb_tf.data import schema

C, P, K, I = "click", "purchase", "add_to_cart", "impression"


def make_events(rows):
  """rows: (session, user, timestamp, item, type) tuples in input order."""
  frame = pd.DataFrame(rows, columns=["session_id", "user_id", "timestamp",
                                      "item_id", "event_type"])
  frame["timestamp"] = frame["timestamp"].astype(np.int64)
  frame["event_type"] = pd.Categorical(frame["event_type"],
                                       dtype=schema.EVENT_TYPE_DTYPE)
  return frame


def _click_rows(session, user, ts, item, later, y_last):
  """The label rows (docs/method.md, "Labels") of one click.

  `later` is {item bought later: its last position}.
  """
  y_caba = int(item in later)
  others = sorted((j, b) for b, j in later.items() if b != item)
  if not others:
    return [(session, user, ts, item, None, y_caba, 0, y_last, 1.0)]
  return [(session, user, ts, item, b, y_caba, 1, y_last,
           1.0 if n == 0 else 0.0) for n, (_, b) in enumerate(others)]


def reference_labels(rows):
  """The label rules written as plainly as possible: a loop over sessions."""
  by_session = collections.OrderedDict()
  for position, row in enumerate(rows):
    by_session.setdefault(row[0], []).append((row[2], position, row))
  out = []
  for session, events in by_session.items():
    events = [e for _, _, e in sorted(events, key=lambda x: (x[0], x[1]))]
    seen = set()
    examples = []
    for k, (_, user, ts, item, kind) in enumerate(events):
      if kind == C and item not in seen:
        seen.add(item)
        examples.append((k, user, ts, item))
    # Last-click attribution: credit each purchase to the last click before.
    credited = set()
    for k, e in enumerate(events):
      if e[4] == P:
        earlier = [x for x in events[:k] if x[4] == C]
        if earlier:
          credited.add(earlier[-1][3])
    for k, user, ts, item in examples:
      later = {}
      for j in range(k + 1, len(events)):
        if events[j][4] == P:
          later[events[j][3]] = j  # last purchase position of each item
      out += _click_rows(session, user, ts, item, later,
                         int(item in credited))
  return out


def reference_window_labels(rows, window_ms):
  """The windowed rule as plainly as possible.

  Examples are as in `reference_labels`; the purchases that count for a
  click are the same user's later purchases (user's (timestamp, input) order,
  any session) at most `window_ms` after it, and each purchase is credited to
  the user's last click before it if that click is at most `window_ms`
  before it.
  """
  by_user = collections.defaultdict(list)
  for position, row in enumerate(rows):
    by_user[row[1]].append((row[2], position, row))
  user_events = {u: sorted(e, key=lambda x: (x[0], x[1]))
                 for u, e in by_user.items()}
  credited = set()
  for events in user_events.values():
    for k, (ts, _, row) in enumerate(events):
      if row[4] != P:
        continue
      earlier = [e for e in events[:k] if e[2][4] == C]
      if earlier and ts - earlier[-1][0] <= window_ms:
        credited.add((earlier[-1][2][0], earlier[-1][2][3]))
  by_session = collections.OrderedDict()
  for position, row in enumerate(rows):
    by_session.setdefault(row[0], []).append((row[2], position, row))
  out = []
  for session, events in by_session.items():
    events = sorted(events, key=lambda x: (x[0], x[1]))
    seen = set()
    for ts, position, (_, user, _, item, kind) in events:
      if kind != C or item in seen:
        continue
      seen.add(item)
      sequence = user_events[user]
      k = [e[1] for e in sequence].index(position)
      later = {}
      for j in range(k + 1, len(sequence)):
        p_ts, _, p_row = sequence[j]
        if p_row[4] == P and p_ts - ts <= window_ms:
          later[p_row[3]] = j
      out += _click_rows(session, user, ts, item, later,
                         int((session, item) in credited))
  return out


def reference_window_stats(rows, window_ms, leaf_of=None):
  """Windowed purchase classification of `labels.purchase_stats`."""
  by_user = collections.defaultdict(list)
  for position, row in enumerate(rows):
    by_user[row[1]].append((row[2], position, row))
  counted = set()
  same = cabb = none = other = leaf_match = 0
  order = sorted(range(len(rows)), key=lambda i: (rows[i][2], i))
  for i in order:  # first purchase event of each (session, item)
    session, user, ts, item, kind = rows[i]
    if kind != P or (session, item) in counted:
      continue
    counted.add((session, item))
    sequence = sorted(by_user[user], key=lambda x: (x[0], x[1]))
    k = [e[1] for e in sequence].index(i)
    clicked = [e[2][3] for e in sequence[:k]
               if e[2][4] == C and ts - e[0] <= window_ms]
    is_same = item in clicked
    same += is_same
    cabb += bool(clicked) and not is_same
    none += not clicked
    other += any(c != item for c in clicked)
    if leaf_of and clicked and not is_same:
      # Unknown = unknown is no match (the item has no category).
      leaf_match += (leaf_of[item] != schema.UNKNOWN_LEAF and
                     leaf_of[item] in {leaf_of[c] for c in clicked})
  return {"same_item": same, "click_a_buy_b": cabb, "no_prior_click": none,
          "other_item_clicked_before": other, "cabb_leaf_match": leaf_match}


def as_tuples(frame):
  return [(r.session_id, r.user_id, r.timestamp, r.item_a,
           None if pd.isna(r.item_b) else r.item_b, r.y_caba, r.y_cabb,
           r.y_last_click, float(r.w_caba)) for r in frame.itertuples()]


class LabelClicksTest(absltest.TestCase):

  def test_hand_derived_session(self):
    # Session 1: click A, click B, buy B, buy C, buy A.
    #   A (t=1): after it B, C and A are bought -> y_caba=1, rows B, C.
    #   B (t=2): after it C and A (B's own purchase comes later too) -> y_caba=1.
    # Last click before every purchase is B -> y_last_click(B)=1, (A)=0.
    rows = [(1, 7, 1, "A", C), (1, 7, 2, "B", C), (1, 7, 3, "B", P),
            (1, 7, 4, "C", P), (1, 7, 5, "A", P)]
    got = as_tuples(labels.label_clicks(make_events(rows)))
    self.assertEqual(got, [
        (1, 7, 1, "A", "B", 1, 1, 0, 1.0),
        (1, 7, 1, "A", "C", 1, 1, 0, 0.0),
        (1, 7, 2, "B", "C", 1, 1, 1, 1.0),
        (1, 7, 2, "B", "A", 1, 1, 1, 0.0),
    ])

  def test_purchase_before_click_does_not_count(self):
    # X is bought before A is clicked: no label from it; the ordering by
    # timestamp, not input position, decides.
    rows = [(1, 1, 5, "A", C), (1, 1, 3, "X", P), (1, 1, 5, "Y", P)]
    got = as_tuples(labels.label_clicks(make_events(rows)))
    # Y at the same timestamp but later in input order counts.
    self.assertEqual(got, [(1, 1, 5, "A", "Y", 0, 1, 1, 1.0)])

  def test_same_timestamp_earlier_in_input_does_not_count(self):
    rows = [(1, 1, 5, "Y", P), (1, 1, 5, "A", C)]
    got = as_tuples(labels.label_clicks(make_events(rows)))
    self.assertEqual(got, [(1, 1, 5, "A", None, 0, 0, 0, 1.0)])

  def test_repeat_clicks_make_one_example_and_other_session_ignored(self):
    rows = [(1, 1, 1, "A", C), (1, 1, 2, "A", C), (1, 1, 3, "A", P),
            (2, 1, 10, "B", P), (2, 1, 11, "A", C)]
    got = as_tuples(labels.label_clicks(make_events(rows)))
    self.assertEqual(got, [(1, 1, 1, "A", None, 1, 0, 1, 1.0),
                           (2, 1, 11, "A", None, 0, 0, 0, 1.0)])

  def test_integer_item_b_is_nullable(self):
    rows = [(1, 1, 1, 10, C), (1, 1, 2, 11, P), (1, 1, 3, 12, C)]
    out = labels.label_clicks(make_events(rows))
    self.assertEqual(str(out["item_b"].dtype), "Int64")
    self.assertEqual(out["item_b"].isna().tolist(), [False, True])

  def test_sessions_derived_when_absent(self):
    rows = [(0, 1, 0, "A", C), (0, 1, 60_000, "B", P),
            (0, 1, 60_000 + 31 * 60_000, "C", P)]
    events = make_events(rows).drop(columns=["session_id"])
    out = labels.label_clicks(events)
    # C is bought 31 minutes later: another session, so it does not count.
    self.assertEqual(out["item_b"].tolist(), ["B"])

  def test_purchase_stats_by_hand(self):
    # Session 1: click A, buy A (same), buy B (CABB, leaf x like A).
    # Session 2: buy C, click D (C: no prior click), buy E (CABB, leaf y).
    # Session 3: buy F only (session without click).
    rows = [(1, 1, 1, "A", C), (1, 1, 2, "A", P), (1, 1, 3, "B", P),
            (2, 2, 1, "C", P), (2, 2, 2, "D", C), (2, 2, 3, "E", P),
            (3, 3, 1, "F", P)]
    catalog = schema.make_catalog(
        ["A", "B", "C", "D", "E", "F"],
        [("x",), ("x",), ("z",), ("x",), ("y",), ("z",)])
    stats = labels.purchase_stats(make_events(rows), catalog)
    self.assertEqual(stats["same_item"], 1)
    self.assertEqual(stats["click_a_buy_b"], 2)
    self.assertEqual(stats["no_prior_click"], 1)
    self.assertEqual(stats["purchases_in_sessions_without_click"], 1)
    self.assertAlmostEqual(stats["cabb_share"], 2 / 4)
    self.assertEqual(stats["cabb_leaf_match"], 1)
    self.assertEqual(stats["cabb_leaf_match_unknown_excluded"], 0)

  def test_unknown_leaves_are_not_leaf_matches(self):
    # Session 1: click A, buy B, buy C (both CABB). Session 2: click D, buy E
    # (CABB). A, B, D, E have no category; C's leaf x was not clicked.
    rows = [(1, 1, 1, "A", C), (1, 1, 2, "B", P), (1, 1, 3, "C", P),
            (2, 2, 1, "D", C), (2, 2, 2, "E", P)]
    unknown = schema.UNKNOWN_LEAF
    catalog = schema.make_catalog(
        ["A", "B", "C", "D", "E"],
        [(unknown,), (unknown,), ("x",), (unknown,), (unknown,)])
    for window_s in (None, 3600):
      stats = labels.purchase_stats(make_events(rows), catalog,
                                    attribution_window_s=window_s)
      self.assertEqual(stats["click_a_buy_b"], 3)
      # B and E have the unknown leaf, as the clicked A and D: excluded.
      self.assertEqual(stats["cabb_leaf_match"], 0, window_s)
      self.assertEqual(stats["cabb_leaf_match_unknown_excluded"], 2)
      self.assertEqual(stats["cabb_leaf_match_share"], 0.0)

  def test_all_unknown_leaves_give_no_share(self):
    rows = [(1, 1, 1, "A", C), (1, 1, 2, "B", P)]
    stats = labels.purchase_stats(make_events(rows),
                                  schema.make_catalog(["A"], [("x",)]))
    # B is missing from the catalog: unknown, excluded; nothing is left.
    self.assertEqual(stats["cabb_leaf_match"], 0)
    self.assertEqual(stats["cabb_leaf_match_unknown_excluded"], 1)
    self.assertTrue(np.isnan(stats["cabb_leaf_match_share"]))


class FirstOccurrencesTest(absltest.TestCase):

  def test_packed_and_hashed_paths_match_a_loop(self):
    rng = np.random.default_rng(3)
    key = rng.integers(0, 50, 500).astype(np.int64)
    seen = {}
    expected = [seen.setdefault(k, i) for i, k in enumerate(key.tolist())]
    # A small bound packs the keys; a huge one takes the factorize path.
    for bound in (50, 2**61):
      np.testing.assert_array_equal(labels._first_occurrences(key, bound),
                                    expected, err_msg=str(bound))


_event = st.tuples(
    st.integers(0, 3),  # session
    st.integers(0, 6),  # timestamp (many ties)
    st.sampled_from(["a", "b", "c", "d"]),  # item
    st.sampled_from([C, C, P, K, I]),
)


class LabelPropertiesTest(absltest.TestCase):

  @hypothesis.settings(max_examples=150, deadline=None)
  @hypothesis.given(st.lists(_event, min_size=1, max_size=40))
  def test_matches_reference_and_invariants(self, raw):
    rows = [(s, 100 + s, t, item, kind) for s, t, item, kind in raw]
    events = make_events(rows)
    out = labels.label_clicks(events)
    self.assertEqual(as_tuples(out), reference_labels(rows))
    if not len(out):
      return
    # Σ w_caba per (session, item_a) = 1.
    weights = out.groupby(["session_id", "item_a"])["w_caba"].sum()
    np.testing.assert_allclose(weights.to_numpy(), 1.0)
    # Rows per click = max(1, number of other items bought after it).
    per_click = out.groupby("click_id").agg(rows=("y_cabb", "size"),
                                            pos=("y_cabb", "sum"))
    np.testing.assert_array_equal(per_click["rows"],
                                  np.maximum(per_click["pos"], 1))
    # Last-click positives never exceed purchases.
    first = out["w_caba"] > 0
    self.assertLessEqual(out.loc[first, "y_last_click"].sum(),
                         int((events["event_type"] == P).sum()))

  @hypothesis.settings(max_examples=60, deadline=None)
  @hypothesis.given(st.lists(_event, min_size=1, max_size=30), st.randoms())
  def test_row_order_beyond_timestamp_ties_does_not_matter(self, raw, rnd):
    # Shuffle rows but keep the relative input order of events that share a
    # (session, timestamp): the labels must not change.
    rows = [(s, 100 + s, t, item, kind) for s, t, item, kind in raw]
    keys = list(range(len(rows)))
    rnd.shuffle(keys)
    # Stable re-sort of the shuffled order on (session, timestamp) groups
    # restores tie order; a random interleaving of groups stays.
    group_rank = {}
    for k in keys:
      group_rank.setdefault((rows[k][0], rows[k][2]), len(group_rank))
    shuffled = [rows[k] for k in sorted(
        range(len(rows)), key=lambda k: (group_rank[(rows[k][0], rows[k][2])],
                                         k))]
    a = labels.label_clicks(make_events(rows))
    b = labels.label_clicks(make_events(shuffled))
    cols = ["session_id", "item_a", "item_b", "y_caba", "y_cabb",
            "y_last_click", "w_caba", "timestamp"]
    key = ["session_id", "timestamp", "item_a", "w_caba"]
    sort = lambda f: f[cols].sort_values(key, ascending=[True, True, True,
                                                         False],
                                         kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(sort(a), sort(b))

  @hypothesis.settings(max_examples=60, deadline=None)
  @hypothesis.given(st.lists(_event, min_size=1, max_size=30))
  def test_purchases_before_first_click_never_count(self, raw):
    rows = [(s, 100 + s, t, item, kind) for s, t, item, kind in raw]
    out = labels.label_clicks(make_events(rows))
    events = make_events(rows)
    for session, group in events.groupby("session_id"):
      clicks = group[group["event_type"] == C]
      if clicks.empty:
        self.assertNotIn(session, set(out["session_id"]))
        continue
      first_click_ts = clicks["timestamp"].min()
      before = group[(group["event_type"] == P) &
                     (group["timestamp"] < first_click_ts)]
      later_items = set(group.loc[(group["event_type"] == P) &
                                  (group["timestamp"] >= first_click_ts),
                                  "item_id"])
      only_before = set(before["item_id"]) - later_items
      got_b = set(out.loc[out["session_id"] == session, "item_b"].dropna())
      self.assertFalse(got_b & only_before)



class AttributionWindowTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    # User 1. Session 1: click A at 0 s, buy B at 60 s. Session 2 (40 min
    # later): buy C at 2,400 s, buy D at 10,800 s. User 2 (session 3): buys
    # B at 100 s; it never counts for user 1's click.
    self.rows = [(1, 1, 0, "A", C), (1, 1, 60_000, "B", P),
                 (3, 2, 100_000, "B", P),
                 (2, 1, 2_400_000, "C", P), (2, 1, 10_800_000, "D", P)]

  def test_next_session_inside_the_window_counts(self):
    out = labels.label_clicks(make_events(self.rows),
                              attribution_window_s=3600)
    # B (60 s) and C (2,400 s) are within an hour; D (3 h) is not. The last
    # click before B and C is A (in the window), so y_last_click = 1.
    self.assertEqual(as_tuples(out), [(1, 1, 0, "A", "B", 0, 1, 1, 1.0),
                                      (1, 1, 0, "A", "C", 0, 1, 1, 0.0)])

  def test_same_session_outside_the_window_does_not_count(self):
    out = labels.label_clicks(make_events(self.rows), attribution_window_s=30)
    self.assertEqual(as_tuples(out), [(1, 1, 0, "A", None, 0, 0, 0, 1.0)])

  def test_none_is_the_session_rule(self):
    events = make_events(self.rows)
    out = labels.label_clicks(events, attribution_window_s=None)
    self.assertEqual(as_tuples(out), [(1, 1, 0, "A", "B", 0, 1, 1, 1.0)])
    self.assertEqual(as_tuples(out), reference_labels(self.rows))

  def test_window_stats_by_hand(self):
    stats = labels.purchase_stats(make_events(self.rows),
                                  attribution_window_s=3600)
    # B and C of user 1 follow a click on A within the hour: CABB; D and
    # user 2's B have no click in the hour before them.
    self.assertEqual(stats["click_a_buy_b"], 2)
    self.assertEqual(stats["no_prior_click"], 2)
    self.assertEqual(stats["same_item"], 0)
    self.assertAlmostEqual(stats["cabb_share"], 2 / 4)
    self.assertEqual(stats["attribution_window_s"], 3600)
    session = labels.purchase_stats(make_events(self.rows))
    self.assertIsNone(session["attribution_window_s"])
    self.assertEqual(session["click_a_buy_b"], 1)

  def test_bad_window(self):
    for bad in (-1, float("nan"), "day"):
      with self.assertRaisesRegex(ValueError, "attribution_window_s"):
        labels.label_clicks(make_events(self.rows), attribution_window_s=bad)

  def test_gin_binding(self):
    with gin.unlock_config():
      gin.bind_parameter("label_clicks.attribution_window_s", 3600.0)
    try:
      self.assertEqual(labels.configured_attribution_window(), 3600.0)
      out = labels.label_clicks(make_events(self.rows))
      self.assertEqual(out["item_b"].tolist(), ["B", "C"])
    finally:
      gin.clear_config()
    self.assertIsNone(labels.configured_attribution_window())


_window_event = st.tuples(
    st.integers(0, 3),  # session; its user is session % 2
    st.integers(0, 12),  # timestamp in seconds (ties across sessions too)
    st.sampled_from(["a", "b", "c"]),
    st.sampled_from([C, C, P, P, K, I]),
)


class WindowPropertiesTest(absltest.TestCase):

  @hypothesis.settings(max_examples=150, deadline=None)
  @hypothesis.given(st.lists(_window_event, min_size=1, max_size=40),
                    st.sampled_from([0, 1, 3, 100]))
  def test_matches_reference(self, raw, window_s):
    rows = [(s, s % 2, 1000 * t, item, kind) for s, t, item, kind in raw]
    events = make_events(rows)
    out = labels.label_clicks(events, attribution_window_s=window_s)
    self.assertEqual(as_tuples(out),
                     reference_window_labels(rows, 1000 * window_s))
    leaf_of = {"a": "x", "b": "x", "c": "y"}
    catalog = schema.make_catalog(list(leaf_of), [(v,) for v in
                                                  leaf_of.values()])
    stats = labels.purchase_stats(events, catalog,
                                  attribution_window_s=window_s)
    expected = reference_window_stats(rows, 1000 * window_s, leaf_of)
    for key, value in expected.items():
      self.assertEqual(stats[key], value, key)

  @hypothesis.settings(max_examples=60, deadline=None)
  @hypothesis.given(st.lists(_event, min_size=1, max_size=30))
  def test_one_session_per_user_and_infinite_window_is_the_session_rule(
      self, raw):
    rows = [(s, 100 + s, t, item, kind) for s, t, item, kind in raw]
    events = make_events(rows)
    pd.testing.assert_frame_equal(
        labels.label_clicks(events, attribution_window_s=float("inf")),
        labels.label_clicks(events))

class ColumnsTest(absltest.TestCase):

  def test_columns_are_those_of_the_whole_frame(self):
    from cabb_tf.data import simulator  # pylint: disable=g-import-not-at-top
    events = simulator.simulate(num_users=200, num_days=7, seed=5).events
    for window_s in (None, 3600):
      whole = labels.label_clicks(events, attribution_window_s=window_s)
      self.assertEqual(tuple(whole.columns), labels.LABEL_COLUMNS)
      for columns in (("event_index", "w_caba", "y_cabb"),
                      ("user_id", "item_b", "timestamp", "session_id")):
        pd.testing.assert_frame_equal(
            labels.label_clicks(events, attribution_window_s=window_s,
                                columns=columns),
            whole[list(columns)])
    with self.assertRaisesRegex(ValueError, "columns"):
      labels.label_clicks(events, columns=["y_caba", "label"])


class WindowKeyPathsTest(absltest.TestCase):

  def test_packed_and_ranked_window_ends_agree_on_a_simulated_log(self):
    # The window's end is found with (user, time) packed in one int64 when
    # it fits, else by the rank of the time among the purchase times.
    from cabb_tf.data import simulator  # pylint: disable=g-import-not-at-top
    events = simulator.simulate(num_users=400, num_days=14, seed=2).events
    for window_s in (0, 60, 3600, 86400, 604800, float("inf")):
      packed = labels.label_clicks(events, attribution_window_s=window_s)
      with mock.patch.object(labels, "_PACKED_KEY_LIMIT", 0):
        ranked = labels.label_clicks(events, attribution_window_s=window_s)
      if window_s >= 3600:
        self.assertGreater(int(packed["y_cabb"].sum()), 0)
      pd.testing.assert_frame_equal(packed, ranked, check_exact=True,
                                    obj=f"window {window_s}")


if __name__ == "__main__":
  absltest.main()
