"""Tests of the shared integer-code helpers of cabb_tf.data.encoding."""

from absl.testing import absltest
import numpy as np

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


if __name__ == "__main__":
  absltest.main()
