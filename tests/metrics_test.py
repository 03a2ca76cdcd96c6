"""Tests of NE, AUC and calibration against values derived by hand."""

import math

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import cabb_tf  # pylint: disable=unused-import
from cabb_tf import metrics


class NumpyMetricsTest(tf.test.TestCase, parameterized.TestCase):

  def test_normalized_entropy_by_hand(self):
    # y = [1, 0, 0, 1], p = [0.8, 0.4, 0.1, 0.5].
    # CE = -(ln .8 + ln .6 + ln .9 + ln .5) = 0.22314 + 0.51083 + 0.10536
    #      + 0.69315 = 1.53248.
    # p̄ = 0.5, H = -(2 ln .5 + 2 ln .5) = 4 ln 2 = 2.77259. NE = 0.55272.
    ne = metrics.normalized_entropy([1, 0, 0, 1], [0.8, 0.4, 0.1, 0.5])
    expected = -(math.log(.8) + math.log(.6) + math.log(.9) +
                 math.log(.5)) / (4 * math.log(2))
    self.assertAlmostEqual(ne, expected, places=12)
    self.assertAlmostEqual(ne, 0.552720, places=5)

  def test_weighted_normalized_entropy_by_hand(self):
    # Weights 2, 1, 1: P = 2, N = 2, p̄ = 0.5.
    # CE = -(2 ln .9 + ln .8 + ln .7) = 0.21072 + 0.22314 + 0.35667 = 0.79054.
    ne = metrics.normalized_entropy([1, 0, 0], [0.9, 0.2, 0.3], [2, 1, 1])
    expected = -(2 * math.log(.9) + math.log(.8) + math.log(.7)) / (
        4 * math.log(2))
    self.assertAlmostEqual(ne, expected, places=12)

  def test_base_rate_prediction_has_ne_one(self):
    y = np.array([1, 0, 0, 0, 1, 0, 0, 0, 0, 0])
    self.assertAlmostEqual(metrics.normalized_entropy(y, np.full(10, 0.2)),
                           1.0, places=12)

  def test_single_class_is_nan(self):
    self.assertTrue(math.isnan(metrics.normalized_entropy([1, 1], [.5, .6])))

  def test_clipping(self):
    # p = 0 on a positive is clipped to 1e-7: CE = -ln 1e-7 + -ln(1 - 0).
    ne = metrics.normalized_entropy([1, 0], [0.0, 0.0])
    expected = (-math.log(1e-7) - math.log(1 - 1e-7)) / (2 * math.log(2))
    self.assertAlmostEqual(ne, expected, places=9)

  def test_overall_ne_pools_sums(self):
    # Task 1: CE1 = -(ln .8 + ln .6) , H1 = 2 ln 2 (one pos, one neg).
    # Task 2: CE2 = -(ln .5 + ln .5 + ln .5), P=1, N=2: H2 = ln 3 + 2 ln 1.5.
    ce1 = -(math.log(.8) + math.log(.6))
    ce2 = -3 * math.log(.5)
    h1 = 2 * math.log(2)
    h2 = -math.log(1 / 3) - 2 * math.log(2 / 3)
    got = metrics.overall_normalized_entropy([
        ([1, 0], [.8, .4], None), ([1, 0, 0], [.5, .5, .5], None)])
    self.assertAlmostEqual(got, (ce1 + ce2) / (h1 + h2), places=12)

  def test_auc_by_hand(self):
    # Positives 0.9, 0.4; negatives 0.4, 0.1. Pairs: (.9>.4), (.9>.1),
    # (.4=.4 half), (.4>.1) -> 3.5 / 4.
    self.assertAlmostEqual(
        metrics.auc([1, 1, 0, 0], [0.9, 0.4, 0.4, 0.1]), 0.875)
    # Weight 3 on the tied negative: pairs weight (3 + 1) for .9, (1.5 + 1)
    # for .4 -> 6.5 / (2 * 4).
    self.assertAlmostEqual(
        metrics.auc([1, 1, 0, 0], [0.9, 0.4, 0.4, 0.1], [1, 1, 3, 1]),
        6.5 / 8)

  def test_calibration_by_hand(self):
    self.assertAlmostEqual(metrics.calibration([1, 0, 0, 0], [.5, .2, .2, .1]),
                           1.0)

  def test_reliability_by_hand(self):
    # Two quantile bins: {.1, .2} and {.6, .8}; weights count in both means.
    mean_p, rate = metrics.reliability([0, 1, 1, 0], [.1, .2, .6, .8],
                                       [1., 3., 1., 1.], bins=2)
    np.testing.assert_allclose(mean_p, [(.1 + 3 * .2) / 4, (.6 + .8) / 2])
    np.testing.assert_allclose(rate, [3 / 4, 1 / 2])
    # Equal predictions are one bin; a zero-weight bin is left out.
    mean_p, rate = metrics.reliability([1, 0, 0], [.3, .3, .3])
    np.testing.assert_allclose(mean_p, [.3])
    np.testing.assert_allclose(rate, [1 / 3])
    mean_p, _ = metrics.reliability([1, 0, 1, 0], [.1, .2, .6, .8],
                                    [0., 0., 1., 1.], bins=2)
    np.testing.assert_allclose(mean_p, [.7])
    with self.assertRaisesRegex(ValueError, "bins"):
      metrics.reliability([1], [.5], bins=0)


class StreamingNormalizedEntropyTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(1, 3, 7, 100)
  def test_equals_numpy_however_batched(self, batch_size):
    rng = np.random.default_rng(0)
    y = (rng.random(100) < 0.3).astype(np.float32)
    p = rng.random(100).astype(np.float32)
    w = rng.random(100).astype(np.float32) * 2
    metric = metrics.NormalizedEntropy()
    for start in range(0, 100, batch_size):
      end = start + batch_size
      metric.update_state(y[start:end], p[start:end], w[start:end])
    self.assertAllClose(metric.result().numpy(),
                        metrics.normalized_entropy(y, p, w), rtol=1e-12,
                        atol=0)
    metric.reset_state()
    self.assertTrue(np.isnan(metric.result().numpy()))

  def test_unweighted_by_hand(self):
    metric = metrics.NormalizedEntropy()
    f64 = lambda x: np.asarray(x, np.float64)
    metric.update_state(f64([[1.], [0.]]), f64([[0.8], [0.4]]))
    metric.update_state(f64([0., 1.]), f64([0.1, 0.5]))
    expected = -(math.log(.8) + math.log(.6) + math.log(.9) +
                 math.log(.5)) / (4 * math.log(2))
    self.assertAllClose(metric.result().numpy(), expected, rtol=1e-12, atol=0)


if __name__ == "__main__":
  tf.test.main()
