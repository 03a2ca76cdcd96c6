"""Tests of the shared integer-code helpers of cabb_tf.data.encoding."""

from unittest import mock

from absl.testing import absltest
import numpy as np
import pandas as pd

from cabb_tf.data import encoding


class PackedKeySortTest(absltest.TestCase):

  def test_equals_a_stable_argsort_and_marks_group_starts(self):
    rng = np.random.default_rng(0)
    for n in (1, 2, 17, 1000):
      key = rng.integers(0, 7, size=n).astype(np.int64)
      positions, new_key = encoding.packed_key_sort(key)
      expected = np.argsort(key, kind="stable")
      np.testing.assert_array_equal(positions, expected)
      sorted_keys = key[expected]
      starts = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
      np.testing.assert_array_equal(new_key, starts)

  def test_hand_worked(self):
    positions, new_key = encoding.packed_key_sort(
        np.array([3, 1, 3, 0, 1], np.int64))
    np.testing.assert_array_equal(positions, [3, 1, 4, 0, 2])
    np.testing.assert_array_equal(new_key, [True, True, False, True, False])


class FactorizeTest(absltest.TestCase):

  def _check(self, values, fast):
    column = pd.Series(values)
    if fast is not None:
      self.assertEqual(encoding._first_appearance_codes(column.to_numpy()),
                       fast, values)
    codes, uniques = encoding.factorize(column)
    want_codes, want_uniques = pd.factorize(column, sort=False)
    np.testing.assert_array_equal(codes, want_codes)
    np.testing.assert_array_equal(np.asarray(uniques),
                                  np.asarray(want_uniques))
    self.assertEqual(np.asarray(uniques).dtype,
                     np.asarray(want_uniques).dtype)

  def test_dense_codes_in_order_of_appearance_are_kept(self):
    for dtype in (np.int64, np.int32, np.uint16):
      self._check(np.array([0, 0, 1, 0, 2, 1, 3], dtype), True)
      self._check(np.array([0], dtype), True)
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 300, 5000)
    self._check(pd.factorize(codes)[0], True)

  def test_other_columns_are_hashed(self):
    for values in ([1, 0, 2], [0, 2, 1], [0, 1, 3], [0, -1, 1], [5, 5],
                   [0, 1, 2**63 - 1], np.array([0, 127, -128], np.int8)):
      self._check(np.asarray(values), False)
    self._check(np.zeros(0, np.int64), False)
    # Only integer columns are taken as they are.
    self._check(np.array(["0", "1"], object), None)
    self._check(np.array([0.0, 1.0]), None)
    self._check(pd.array([0, 1, None], dtype="Int64"), None)

  def test_encoded_log_of_dense_ids_equals_that_of_any_ids(self):
    from cabb_tf.data import sessions  # pylint: disable=g-import-not-at-top
    from cabb_tf.data import simulator  # pylint: disable=g-import-not-at-top
    events = simulator.simulate(num_users=100, seed=4).events
    encoded = encoding.encode_events(events)
    ids = ("user_id", "session_id", "item_id")

    def dense(rows):
      """The rows in that order, ids recoded 0, 1, ... as they appear."""
      frame = events.iloc[rows].reset_index(drop=True)
      for column in ids:
        frame[column] = pd.factorize(frame[column])[0]
      return frame

    # Rows as logged, by session, by user (the simulator's sessions of a
    # user do not overlap: both orders need no sort then).
    frames = {"logged": (dense(np.arange(len(events))), 2),
              "by_session": (dense(encoded.session_order.order), 1),
              "by_user": (dense(encoded.user_order), 0)}
    for name, (frame, sorts) in frames.items():
      with mock.patch.object(encoding.pd, "factorize",
                             wraps=pd.factorize) as hashed, \
           mock.patch.object(sessions, "_sort_grouped_time_order",
                             wraps=sessions._sort_grouped_time_order) as sort:
        fast = encoding.encode_events(frame)
      self.assertEqual(hashed.call_count, 0, name)
      self.assertEqual(sort.call_count, sorts, name)
      shifted = frame.copy()
      for column in ids:
        shifted[column] = frame[column] + 7
      slow = encoding.encode_events(shifted)
      for field in fast._fields:
        got, want = getattr(fast, field), getattr(slow, field)
        if field in ("item_ids", "session_ids"):
          want = want - 7
        if field == "session_order":
          np.testing.assert_array_equal(got.session_ids,
                                        want.session_ids - 7)
          got, want = got[:3], want[:3]
        np.testing.assert_equal(got, want, err_msg=f"{name} {field}")

if __name__ == "__main__":
  absltest.main()
