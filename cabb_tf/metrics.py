"""Normalized entropy, AUC and calibration (docs/metrics.md; He et al. 2014).

Normalized entropy with optional sample weights w, natural log:

    NE = −Σ w [y log p + (1−y) log(1−p)] / (−P log p̄ − N log(1−p̄)),

with P = Σ w y, N = Σ w (1−y) and p̄ = P / Σ w taken from the evaluated set
itself, predictions clipped to [ε, 1−ε]. NE = 1 means no better than
predicting the base rate; lower is better. It is undefined (NaN) when the set
has only positives or only negatives.

`normalized_entropy` is the NumPy reference (float64); `NormalizedEntropy`
is the streaming `tf.keras` metric, which accumulates the same four sums in
float64 and so gives the same value however the data is batched.
`reliability` gives the points of a reliability diagram (calibration per
prediction bin).
"""

from typing import Dict, Tuple

import numpy as np
import tensorflow as tf

EPSILON = 1e-7


def _as_arrays(labels, predictions, sample_weight):
  y = np.asarray(labels, dtype=np.float64).reshape(-1)
  p = np.asarray(predictions, dtype=np.float64).reshape(-1)
  if y.shape != p.shape:
    raise ValueError(f"labels have {y.size} values but predictions {p.size}.")
  if sample_weight is None:
    w = np.ones_like(y)
  else:
    w = np.broadcast_to(np.asarray(sample_weight, dtype=np.float64).reshape(-1),
                        y.shape)
  if np.any(w < 0):
    raise ValueError("sample weights must be non-negative.")
  return y, p, w


def entropy_sums(labels, predictions,
                 sample_weight=None,
                 epsilon: float = EPSILON) -> Tuple[float, float, float]:
  """Returns (cross-entropy sum, P, N) of a weighted set; see module doc."""
  y, p, w = _as_arrays(labels, predictions, sample_weight)
  p = np.clip(p, epsilon, 1.0 - epsilon)
  cross_entropy = -np.sum(w * (y * np.log(p) + (1.0 - y) * np.log1p(-p)))
  return float(cross_entropy), float(np.sum(w * y)), float(np.sum(w * (1 - y)))


def base_entropy(positives: float, negatives: float,
                 epsilon: float = EPSILON) -> float:
  """−P log p̄ − N log(1−p̄) with p̄ = P / (P + N), clipped like predictions."""
  total = positives + negatives
  if total <= 0:
    return float("nan")
  rate = min(max(positives / total, epsilon), 1.0 - epsilon)
  return float(-positives * np.log(rate) - negatives * np.log1p(-rate))


def normalized_entropy(labels, predictions, sample_weight=None,
                       epsilon: float = EPSILON) -> float:
  """Normalized entropy of predictions (float64, NumPy).

  Args:
    labels: 0/1 labels, any shape.
    predictions: probabilities, same number of values.
    sample_weight: optional non-negative weights (broadcast to labels).
    epsilon: predictions are clipped to [epsilon, 1 - epsilon].

  Returns:
    NE as a float; NaN when the weighted set has no positives or no negatives.
  """
  cross_entropy, positives, negatives = entropy_sums(
      labels, predictions, sample_weight, epsilon)
  if positives <= 0 or negatives <= 0:
    return float("nan")
  return cross_entropy / base_entropy(positives, negatives, epsilon)


def overall_normalized_entropy(tasks, epsilon: float = EPSILON) -> float:
  """(CE_1 + CE_2 + ...) / (H_1 + H_2 + ...) over several tasks (docs/metrics.md).

  Args:
    tasks: iterable of (labels, predictions, sample_weight) per task.
    epsilon: prediction clipping.

  Returns:
    The pooled NE.
  """
  cross_entropy = entropy = 0.0
  for labels, predictions, weight in tasks:
    ce, positives, negatives = entropy_sums(labels, predictions, weight,
                                            epsilon)
    cross_entropy += ce
    entropy += base_entropy(positives, negatives, epsilon)
  return cross_entropy / entropy if entropy > 0 else float("nan")


def auc(labels, predictions, sample_weight=None) -> float:
  """Weighted ROC AUC: P(score of a positive > a negative), ties count half.

  Args:
    labels: 0/1 labels.
    predictions: scores.
    sample_weight: optional non-negative weights.

  Returns:
    The AUC; NaN without both classes.
  """
  y, p, w = _as_arrays(labels, predictions, sample_weight)
  pos_w = w * y
  neg_w = w * (1 - y)
  total_pos, total_neg = pos_w.sum(), neg_w.sum()
  if total_pos <= 0 or total_neg <= 0:
    return float("nan")
  scores, inverse = np.unique(p, return_inverse=True)
  pos_by_score = np.bincount(inverse, weights=pos_w, minlength=len(scores))
  neg_by_score = np.bincount(inverse, weights=neg_w, minlength=len(scores))
  neg_below = np.cumsum(neg_by_score) - neg_by_score
  pairs = np.sum(pos_by_score * (neg_below + 0.5 * neg_by_score))
  return float(pairs / (total_pos * total_neg))


def calibration(labels, predictions, sample_weight=None) -> float:
  """Mean prediction over mean label (weighted); 1 is calibrated."""
  y, p, w = _as_arrays(labels, predictions, sample_weight)
  positives = np.sum(w * y)
  return float(np.sum(w * p) / positives) if positives > 0 else float("nan")


def reliability(labels, predictions, sample_weight=None,
                bins: int = 10) -> Tuple[np.ndarray, np.ndarray]:
  """The points of a reliability diagram (docs/metrics.md, "TensorBoard").

  The predictions are cut into `bins` bins at their quantiles (fewer when
  quantiles coincide); each non-empty bin gives its weighted mean
  prediction and its weighted observed rate. A calibrated model's points lie
  on the diagonal.

  Args:
    labels: 0/1 labels.
    predictions: probabilities.
    sample_weight: optional non-negative weights.
    bins: the number of quantile bins (>= 1).

  Returns:
    (mean prediction, observed rate), one value per non-empty bin, in order
    of prediction.

  Raises:
    ValueError: without predictions, or for bins < 1.
  """
  y, p, w = _as_arrays(labels, predictions, sample_weight)
  if not p.size:
    raise ValueError("reliability needs at least one prediction.")
  if bins < 1:
    raise ValueError(f"reliability bins must be >= 1, got {bins}.")
  edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
  count = max(len(edges) - 1, 1)  # all predictions equal: one bin
  which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, count - 1)
  total = np.bincount(which, w, count)
  keep = total > 0
  mean_p = np.bincount(which, w * p, count)[keep] / total[keep]
  rate = np.bincount(which, w * y, count)[keep] / total[keep]
  return mean_p, rate


def task_metrics(labels, predictions, sample_weight=None) -> Dict[str, float]:
  """NE, AUC and calibration of one task."""
  return {
      "ne": normalized_entropy(labels, predictions, sample_weight),
      "auc": auc(labels, predictions, sample_weight),
      "calibration": calibration(labels, predictions, sample_weight),
  }


class NormalizedEntropy(tf.keras.metrics.Metric):
  """Streaming normalized entropy with float64 accumulators.

  Accumulates Σ w·CE, Σ w, P = Σ w·y and N = Σ w·(1−y) in float64, so the
  result equals `normalized_entropy` on the concatenated data whatever the
  batching.
  """

  def __init__(self, name: str = "ne", epsilon: float = EPSILON, **kwargs):
    super().__init__(name=name, dtype=tf.float64, **kwargs)
    self._epsilon = epsilon
    self.cross_entropy = self.add_weight(
        name="cross_entropy", initializer="zeros", dtype=tf.float64)
    self.weight = self.add_weight(name="weight", initializer="zeros",
                                  dtype=tf.float64)
    self.positives = self.add_weight(name="positives", initializer="zeros",
                                     dtype=tf.float64)
    self.negatives = self.add_weight(name="negatives", initializer="zeros",
                                     dtype=tf.float64)

  def update_state(self, y_true, y_pred, sample_weight=None):
    y = tf.reshape(tf.cast(y_true, tf.float64), [-1])
    p = tf.reshape(tf.cast(y_pred, tf.float64), [-1])
    p = tf.clip_by_value(p, self._epsilon, 1.0 - self._epsilon)
    if sample_weight is None:
      w = tf.ones_like(y)
    else:
      w = tf.broadcast_to(
          tf.reshape(tf.cast(sample_weight, tf.float64), [-1]), tf.shape(y))
    ce = -(y * tf.math.log(p) + (1.0 - y) * tf.math.log1p(-p))
    self.cross_entropy.assign_add(tf.reduce_sum(w * ce))
    self.weight.assign_add(tf.reduce_sum(w))
    self.positives.assign_add(tf.reduce_sum(w * y))
    self.negatives.assign_add(tf.reduce_sum(w * (1.0 - y)))

  def result(self):
    total = self.positives + self.negatives
    rate = tf.clip_by_value(tf.math.divide_no_nan(self.positives, total),
                            self._epsilon, 1.0 - self._epsilon)
    entropy = (-self.positives * tf.math.log(rate) -
               self.negatives * tf.math.log1p(-rate))
    defined = tf.logical_and(self.positives > 0, self.negatives > 0)
    nan = tf.constant(float("nan"), tf.float64)
    return tf.where(defined, self.cross_entropy / tf.where(
        defined, entropy, tf.ones_like(entropy)), nan)

  def reset_state(self):
    for variable in (self.cross_entropy, self.weight, self.positives,
                     self.negatives):
      variable.assign(tf.zeros_like(variable))

  def get_config(self):
    return dict(super().get_config(), epsilon=self._epsilon)

