"""Tests of the Platt recalibration against hand derivations and SciPy."""

import math

from absl.testing import parameterized
import numpy as np
from scipy import optimize
import tensorflow as tf

import cabb_tf  # pylint: disable=unused-import
from cabb_tf import calibration
from cabb_tf import metrics


def _scipy_platt(y, p, w):
  """The same maximum-likelihood fit by a general-purpose optimizer."""
  x = np.log(p) - np.log1p(-p)

  def loss(theta):
    z = theta[0] * x + theta[1]
    return np.sum(w * (np.logaddexp(0.0, z) - y * z))

  return optimize.minimize(loss, np.zeros(2), method="Nelder-Mead",
                           options=dict(xatol=1e-9, fatol=1e-12,
                                        maxiter=20_000)).x


class PlattTest(tf.test.TestCase, parameterized.TestCase):

  def test_constant_predictions_map_to_the_weighted_rate(self):
    # logit(p) is constant, so only σ(a·x + b) is identified: the maximum
    # likelihood value is the weighted positive rate, (2·1 + 1·1) / 6 = 0.5.
    y = np.array([1, 1, 0, 0, 0, 0])
    w = np.array([2, 1, 1, 1, 0.5, 0.5])
    fitted = calibration.fit_platt(y, np.full(6, 0.2), w)
    self.assertAllClose(fitted(np.full(3, 0.2)), np.full(3, 0.5), atol=1e-9)

  @parameterized.parameters(0, 1, 2)
  def test_matches_scipy_and_first_order_conditions(self, seed):
    rng = np.random.default_rng(seed)
    n = 3000
    p = np.clip(rng.beta(0.5, 6.0, n), 1e-4, 1 - 1e-4)
    y = (rng.random(n) < np.clip(3.0 * p, 0, 1)).astype(np.float64)
    w = rng.choice([0.0, 0.3, 1.0, 2.0], n)
    fitted = calibration.fit_platt(y, p, w)
    self.assertAllClose([fitted.slope, fitted.intercept],
                        _scipy_platt(y, p, w), atol=2e-4)
    # Stationarity: Σ w (q − y) = 0 and Σ w (q − y) logit(p) = 0.
    q = fitted(p)
    x = np.log(p) - np.log1p(-p)
    self.assertAllClose([np.sum(w * (q - y)), np.sum(w * (q - y) * x)],
                        [0.0, 0.0], atol=1e-6)

  def test_recovers_a_known_miscalibration(self):
    # Labels drawn from σ(2·logit(p) − 1): the fit should find a = 2, b = −1
    # (within a few standard errors at n = 200,000).
    rng = np.random.default_rng(7)
    x = rng.normal(-1.0, 1.0, 200_000)
    p = 1.0 / (1.0 + np.exp(-x))
    y = (rng.random(len(x)) < 1.0 / (1.0 + np.exp(-(2.0 * x - 1.0))))
    fitted = calibration.fit_platt(y, p)
    self.assertAlmostEqual(fitted.slope, 2.0, delta=0.05)
    self.assertAlmostEqual(fitted.intercept, -1.0, delta=0.05)

  def test_never_worse_than_the_raw_prediction_on_the_fitted_set(self):
    # The identity map (a = 1, b = 0) is one of the candidates, so the
    # maximum-likelihood map's NE on its own fitting set cannot be higher.
    rng = np.random.default_rng(3)
    p = rng.uniform(0.01, 0.6, 5000)
    y = (rng.random(5000) < 0.15).astype(float)
    fitted = calibration.fit_platt(y, p)
    self.assertLessEqual(metrics.normalized_entropy(y, fitted(p)),
                         metrics.normalized_entropy(y, p) + 1e-12)
    # Here the labels ignore p, so the fit is close to the base rate: NE ≈ 1.
    self.assertAlmostEqual(metrics.normalized_entropy(y, fitted(p)), 1.0,
                           delta=0.01)

  def test_one_class_gives_the_identity(self):
    fitted = calibration.fit_platt([0, 0, 0], [0.1, 0.2, 0.3])
    self.assertEqual((fitted.slope, fitted.intercept), (1.0, 0.0))
    self.assertAllClose(fitted([0.25]), [0.25])

  def test_separable_data_stays_finite(self):
    fitted = calibration.fit_platt([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    self.assertTrue(math.isfinite(fitted.slope))
    q = fitted([0.1, 0.9])
    self.assertLess(q[0], 0.05)
    self.assertGreater(q[1], 0.95)


if __name__ == "__main__":
  tf.test.main()
