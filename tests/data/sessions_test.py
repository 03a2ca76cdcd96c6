"""Tests of session assignment (docs/method.md, "Event log")."""

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import pandas as pd

from cabb_tf.data import encoding
from cabb_tf.data import schema
from cabb_tf.data import sessions

MIN = 60_000


def make_events(users, times, session_id=None):
  frame = pd.DataFrame({
      "user_id": users,
      "timestamp": np.asarray(times, dtype=np.int64),
      "item_id": np.arange(len(users)),
      "event_type": pd.Categorical(["click"] * len(users),
                                   dtype=schema.EVENT_TYPE_DTYPE),
  })
  if session_id is not None:
    frame["session_id"] = session_id
  return frame


class AssignSessionsTest(absltest.TestCase):

  def test_gap_split_by_hand(self):
    # User 7: 0, 30 min (gap exactly 30 min: same session), 61 min (gap 31:
    # new session). User 3 interleaved: 10 min, 50 min (gap 40: new).
    events = make_events([7, 3, 7, 3, 7], [0, 10 * MIN, 30 * MIN, 50 * MIN,
                                           61 * MIN])
    out = sessions.assign_sessions(events, session_gap_minutes=30)
    # Sessions are numbered by user's first appearance, then time: user 7
    # gets 0 and 1, user 3 gets 2 and 3.
    self.assertEqual(out["session_id"].tolist(), [0, 2, 0, 3, 1])
    self.assertEqual(out["item_id"].tolist(), list(range(5)))

  def test_unsorted_input_and_ties(self):
    events = make_events(["u", "u", "u"], [40 * MIN, 0, 0])
    out = sessions.assign_sessions(events, session_gap_minutes=30)
    self.assertEqual(out["session_id"].tolist(), [1, 0, 0])

  def test_source_sessions_are_kept(self):
    events = make_events([1, 1], [0, 100 * MIN], session_id=["s", "s"])
    out = sessions.assign_sessions(events)
    self.assertEqual(out["session_id"].tolist(), ["s", "s"])
    out = sessions.assign_sessions(events, use_source_sessions=False)
    self.assertEqual(out["session_id"].tolist(), [0, 1])

  def test_bad_gap(self):
    with self.assertRaisesRegex(ValueError, "session_gap_minutes"):
      sessions.assign_sessions(make_events([1], [0]), session_gap_minutes=0)

  def test_session_order(self):
    events = make_events([1, 2, 1, 2], [5, 1, 3, 1], session_id=[9, 8, 9, 8])
    so = sessions.session_order(events)
    # Session 9 (code 0): rows 2 (t=3), 0 (t=5); session 8: rows 1, 3 (tie).
    self.assertEqual(so.order.tolist(), [2, 0, 1, 3])
    self.assertEqual(so.starts.tolist(), [0, 2, 4])
    self.assertEqual(so.session_ids.tolist(), [9, 8])

  def test_grouped_time_order_matches_lexsort(self):
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 50, 2000)
    times = rng.integers(0, 100, 2000)
    expected = np.lexsort((np.arange(2000), times, codes))
    np.testing.assert_array_equal(
        sessions.grouped_time_order(codes, times), expected)
    sorted_times = np.sort(times)
    np.testing.assert_array_equal(
        sessions.grouped_time_order(codes, sorted_times),
        np.lexsort((np.arange(2000), sorted_times, codes)))

  def test_presorted_groups_take_no_sort_and_match_lexsort(self):
    rng = np.random.default_rng(1)
    lexsort = lambda c, t: np.lexsort((np.arange(len(c)), t, c))
    for n in (1, 2, 5, 3000):
      codes = np.sort(rng.integers(0, max(n // 4, 1), n)).astype(np.int32)
      # Times in order within each code (ties kept), in any order across.
      times = rng.integers(0, 50, n)
      times = times[np.lexsort((times, codes))]
      self.assertTrue(sessions._in_grouped_time_order(codes, times))
      order, sorted_codes = sessions._grouped_time_order(codes, times)
      np.testing.assert_array_equal(order, lexsort(codes, times))
      np.testing.assert_array_equal(sorted_codes, codes)
      self.assertEqual(sorted_codes.dtype, np.int64)
      # A step back in time within a code, or back in code, anywhere (also
      # past the first rows checked first) takes the sort.
      for where in {1, n // 2, n - 1} - {0, n}:
        back_in_time = times.copy()
        back_in_time[where] = back_in_time[where - 1] - 1
        same_code = codes.copy()
        same_code[where] = same_code[where - 1]
        back_in_code = codes.copy()
        back_in_code[where] = back_in_code[where - 1] - 1
        for c, t in ((same_code, back_in_time), (back_in_code, times)):
          self.assertFalse(sessions._in_grouped_time_order(c, t))
          np.testing.assert_array_equal(sessions.grouped_time_order(c, t),
                                        lexsort(c, t))


class SessionCodesTest(parameterized.TestCase):

  @parameterized.parameters(True, False)
  def test_codes_match_encoding_from_scratch(self, time_sorted):
    # The codes and orders assign_sessions computes while splitting must be
    # those encode_events computes on its own from the session ids.
    rng = np.random.default_rng(7)
    n = 3000
    times = rng.integers(0, 600 * MIN, n)
    if time_sorted:
      times = np.sort(times)
    events = make_events(rng.integers(0, 40, n), times)
    out, codes = sessions.assign_sessions(events, session_gap_minutes=20,
                                          with_codes=True)
    self.assertIsNotNone(codes)
    reused = encoding.encode_events(out, codes)
    fresh = encoding.encode_events(out)
    for field in ("user", "session", "session_ids", "user_order"):
      np.testing.assert_array_equal(getattr(reused, field),
                                    getattr(fresh, field), err_msg=field)
    for field in ("order", "session", "starts", "session_ids"):
      np.testing.assert_array_equal(getattr(reused.session_order, field),
                                    getattr(fresh.session_order, field),
                                    err_msg=field)
    # And the session order is the lexicographic (code, time, input) order.
    expected = np.lexsort((np.arange(n), times, fresh.session))
    np.testing.assert_array_equal(reused.session_order.order, expected)

  def test_source_sessions_give_no_codes(self):
    events = make_events([1, 1], [0, 100 * MIN], session_id=["s", "s"])
    out, codes = sessions.assign_sessions(events, with_codes=True)
    self.assertIsNone(codes)
    self.assertEqual(out["session_id"].tolist(), ["s", "s"])


if __name__ == "__main__":
  absltest.main()


class DayResolutionTest(parameterized.TestCase):
  """Logs of day stamps: detected, and split into user-days."""

  _DAY = 86_400_000

  @parameterized.named_parameters(
      ("midnight_once", [0], True),
      ("noon_once", [_DAY // 2], False),
      ("same_hour_on_two_days", [16 * 3_600_000, _DAY + 16 * 3_600_000], True),
      ("one_second_off", [0, _DAY + 1000], False),
      ("empty", [], False),
  )
  def test_is_day_resolution(self, times, expected):
    self.assertEqual(sessions.is_day_resolution(np.array(times, np.int64)),
                     expected)

  def test_day_stamps_are_user_days_whatever_the_gap(self):
    day = self._DAY
    # User 1 on days 0, 0, 1, 3; user 2 on day 1. A gap of 3 days would
    # join all of user 1's events; user-days give 3 + 1 sessions.
    events = make_events([1, 1, 2, 1, 1], [0, 0, day, day, 3 * day])
    with self.assertLogs(level="WARNING") as logs:
      out = sessions.assign_sessions(events, session_gap_minutes=3 * 24 * 60)
    self.assertIn("user-day", "\n".join(logs.output))
    self.assertEqual(out["session_id"].tolist(), [0, 0, 3, 1, 2])
    joined = sessions.assign_sessions(events, session_gap_minutes=3 * 24 * 60,
                                      day_sessions=False)
    self.assertEqual(joined["session_id"].tolist(), [0, 0, 1, 0, 0])
