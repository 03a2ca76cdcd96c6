"""Calibration-fair scoring: Platt recalibration fitted on the validation split.

Raw NE mixes two things: how well a prediction ranks clicks and whether it is
on the scale of the task it is scored on. A single-head baseline's one
prediction is scored on the CABB rows, whose positive rate is several times
the per-click rate it was trained on, and the α-trained CABB head is
calibrated to the α-weighted rate rather than to the uniform rows it is
scored on (docs/metrics.md). Both inflate NE without saying anything about
ranking.

The recalibrated score maps each head's prediction onto each task with a
Platt map fitted on the validation split,

    q = σ(a · logit(p) + b),

by weighted maximum likelihood (the task's own weights: `w_caba` for CABA,
uniform rows for CABB, α-weighted rows for the α-weighted CABB NE). Platt
rather than isotonic: two parameters cannot overfit the validation split and
the map is monotone, so AUC is unchanged whenever a > 0. The raw NE stays the
primary figure; the recalibrated one reads as ranking quality.
"""

import dataclasses
import math

from absl import logging
import numpy as np

from cabb_tf import metrics as metrics_lib

# Predictions are clipped to [ε, 1 − ε] before the logit, as in NE.
_EPSILON = metrics_lib.EPSILON


@dataclasses.dataclass(frozen=True)
class PlattMap:
  """q = σ(slope · logit(p) + intercept)."""
  slope: float = 1.0
  intercept: float = 0.0

  def __call__(self, predictions) -> np.ndarray:
    return _sigmoid(self.slope * _logit(predictions) + self.intercept)

  def as_dict(self):
    return {"slope": self.slope, "intercept": self.intercept}


def _logit(p) -> np.ndarray:
  p = np.clip(np.asarray(p, dtype=np.float64).reshape(-1), _EPSILON,
              1.0 - _EPSILON)
  return np.log(p) - np.log1p(-p)


def _sigmoid(x: np.ndarray) -> np.ndarray:
  return 0.5 * (1.0 + np.tanh(0.5 * x))


def _loss(y, w, x, slope, intercept) -> float:
  z = slope * x + intercept
  # −[y log σ(z) + (1 − y) log(1 − σ(z))] = log(1 + e^z) − y z.
  return float(np.sum(w * (np.logaddexp(0.0, z) - y * z)))


def fit_platt(labels, predictions, sample_weight=None,
              max_iterations: int = 100,
              tolerance: float = 1e-10) -> PlattMap:
  """Fits q = σ(a·logit(p) + b) by weighted maximum likelihood (Newton).

  Args:
    labels: 0/1 labels.
    predictions: the probabilities to recalibrate.
    sample_weight: optional non-negative weights (the task's evaluation
      weights).
    max_iterations: Newton steps at most.
    tolerance: stop when the step's largest component is below this.

  Returns:
    The fitted `PlattMap`; the identity map when the weighted set has no
    positives or no negatives (nothing to fit).

  Raises:
    ValueError: on mismatched lengths or negative weights.
  """
  y, p, w = metrics_lib._as_arrays(labels, predictions, sample_weight)  # pylint: disable=protected-access
  positives, total = float(np.sum(w * y)), float(np.sum(w))
  if positives <= 0 or positives >= total:
    logging.warning("Recalibration: the fitting set has %g positive of %g "
                    "(weighted); nothing to fit, the identity map is used.",
                    positives, total)
    return PlattMap()
  x = _logit(p)
  features = np.stack([x, np.ones_like(x)], axis=1)
  # Start at the base rate: a = 0, b = logit(ȳ).
  rate = positives / total
  theta = np.array([0.0, math.log(rate) - math.log1p(-rate)])
  loss = _loss(y, w, x, *theta)
  for _ in range(max_iterations):
    q = _sigmoid(features @ theta)
    gradient = features.T @ (w * (q - y))
    hessian = (features * (w * q * (1.0 - q))[:, None]).T @ features
    hessian += 1e-12 * np.eye(2) * max(1.0, np.trace(hessian))
    step = np.linalg.solve(hessian, gradient)
    # Backtracking keeps every step a descent step (flat or separable data).
    scale = 1.0
    while scale > 1e-6:
      candidate = theta - scale * step
      candidate_loss = _loss(y, w, x, *candidate)
      if candidate_loss <= loss + 1e-12 * abs(loss):
        break
      scale *= 0.5
    theta, loss = candidate, candidate_loss
    if np.max(np.abs(scale * step)) < tolerance:
      break
  return PlattMap(float(theta[0]), float(theta[1]))

