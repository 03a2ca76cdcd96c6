"""Tests of the regime calibration's interpolation."""

from absl.testing import absltest

from cabb_tf import calibrate_signal


class InterpolateTest(absltest.TestCase):

  def test_by_hand(self):
    # NE falls from 0.9 at s = 1 to 0.5 at s = 3 through 0.6 at s = 2: 0.55 is
    # halfway between s = 2 (0.6) and s = 3 (0.5).
    self.assertAlmostEqual(
        calibrate_signal.interpolate([1, 2, 3], [0.9, 0.6, 0.5], 0.55), 2.5)
    # On a grid point, and on the first bracketing segment of several.
    self.assertAlmostEqual(
        calibrate_signal.interpolate([1, 2, 3], [0.9, 0.6, 0.5], 0.9), 1.0)
    self.assertAlmostEqual(
        calibrate_signal.interpolate([1, 2, 3], [0.9, 0.5, 0.7], 0.6), 1.75)

  def test_off_the_grid(self):
    self.assertIsNone(
        calibrate_signal.interpolate([1, 2], [0.9, 0.6], 0.4))


if __name__ == "__main__":
  absltest.main()
