"""Confidence intervals: over seeds, and paired bootstraps over test sessions.

* `mean_ci` — the mean of per-seed values with a Student-t 95 % interval.
* `paired_bootstrap` — the difference in a normalized entropy between two
  variants evaluated on the same test rows, with a percentile interval from
  resampling test *sessions* (the unit that is independent) with replacement,
  averaged over the paired seeds. `SessionBootstrap` and
  `paired_differences` are its two halves, for many comparisons over the
  same sessions. NE's sums decompose over sessions, so a
  resample is a matrix product of resampling counts with per-session sums —
  no Python loop per resample.
"""

from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
from scipy import stats as scipy_stats

from cabb_tf import metrics


def mean_ci(values: Sequence[float], level: float = 0.95) -> Dict[str, object]:
  """Mean with a two-sided Student-t interval (degenerate for one value).

  Args:
    values: per-seed values (NaNs are left out and counted).
    level: coverage of the interval.

  Returns:
    {"mean", "ci95": [lo, hi], "runs": [values...], "n"}.
  """
  runs = [float(v) for v in values]
  finite = np.array([v for v in runs if np.isfinite(v)], dtype=np.float64)
  if not len(finite):
    return {"mean": float("nan"), "ci95": [float("nan")] * 2, "runs": runs,
            "n": 0}
  mean = float(finite.mean())
  if len(finite) < 2:
    return {"mean": mean, "ci95": [mean, mean], "runs": runs, "n": 1}
  half = float(scipy_stats.t.ppf(0.5 + level / 2, len(finite) - 1) *
               finite.std(ddof=1) / np.sqrt(len(finite)))
  return {"mean": mean, "ci95": [mean - half, mean + half], "runs": runs,
          "n": int(len(finite))}


def _session_sums(session: np.ndarray, num_sessions: int, labels, predictions,
                  weights) -> np.ndarray:
  """Per-session [cross-entropy, P, N] sums, shape [num_sessions, 3]."""
  y = np.asarray(labels, np.float64)
  p = np.clip(np.asarray(predictions, np.float64), metrics.EPSILON,
              1 - metrics.EPSILON)
  w = np.ones_like(y) if weights is None else np.asarray(weights, np.float64)
  ce = -w * (y * np.log(p) + (1 - y) * np.log1p(-p))
  return np.stack([np.bincount(session, ce, num_sessions),
                   np.bincount(session, w * y, num_sessions),
                   np.bincount(session, w * (1 - y), num_sessions)], axis=1)


def _entropy(sums: np.ndarray) -> np.ndarray:
  """Base entropy −P log p̄ − N log(1 − p̄) from [..., 3] sums."""
  pos, neg = sums[..., 1], sums[..., 2]
  total = pos + neg
  rate = np.clip(np.divide(pos, total, out=np.zeros_like(pos),
                           where=total > 0), metrics.EPSILON,
                 1 - metrics.EPSILON)
  return -pos * np.log(rate) - neg * np.log1p(-rate)


def _ne_from_sums(sums: np.ndarray) -> np.ndarray:
  """NE from [..., 3] (cross-entropy, P, N) sums; NaN without both classes."""
  defined = (sums[..., 1] > 0) & (sums[..., 2] > 0)
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(defined, sums[..., 0] / _entropy(sums), np.nan)


TASK_METRICS = ("caba_ne", "cabb_ne", "overall_ne", "mean_ne")

# A run's NE metrics on its test rows and on each bootstrap resample of them:
# ({metric: value}, {metric: [num_resamples] values}).
Resampled = Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]


def session_sums(arrays: Mapping[str, np.ndarray], p_caba: np.ndarray,
                 p_cabb: np.ndarray, session: np.ndarray,
                 num_sessions: int) -> Dict[str, np.ndarray]:
  """Per-session NE sums of both tasks (docs/metrics.md weights)."""
  return {
      "caba": _session_sums(session, num_sessions, arrays["y_caba"], p_caba,
                            arrays["w_caba"]),
      "cabb": _session_sums(session, num_sessions, arrays["y_cabb"], p_cabb,
                            None),
  }


def ne_metrics_from_sums(caba: np.ndarray,
                         cabb: np.ndarray) -> Dict[str, np.ndarray]:
  """CABA, CABB, pooled overall and mean NE from (resampled) sums."""
  caba_ne = _ne_from_sums(caba)
  cabb_ne = _ne_from_sums(cabb)
  overall = (caba[..., 0] + cabb[..., 0]) / (_entropy(caba) + _entropy(cabb))
  return {"caba_ne": caba_ne, "cabb_ne": cabb_ne, "overall_ne": overall,
          "mean_ne": (caba_ne + cabb_ne) / 2}


class SessionBootstrap:
  """One draw of resampling counts over a test split's sessions.

  Every paired comparison on the same test rows resamples the same sessions
  the same way (the counts depend only on the number of sessions, the number
  of resamples and the seed), so a reproduction draws them once and
  bootstraps each run's sums once (`resample`), however many rows compare
  against it; `paired_bootstrap` is one comparison done this way.
  """

  def __init__(self, num_sessions: int, num_resamples: int = 1000,
               seed: int = 0):
    rng = np.random.default_rng(seed)
    self._counts = rng.multinomial(
        num_sessions, np.full(num_sessions, 1.0 / num_sessions),
        size=num_resamples).astype(np.float64)

  def resample(self, sums: Mapping[str, np.ndarray]) -> Resampled:
    """(observed, resampled) NE metrics of one run's `session_sums`."""
    full = ne_metrics_from_sums(sums["caba"].sum(0), sums["cabb"].sum(0))
    boot = ne_metrics_from_sums(
        np.einsum("bs,sk->bk", self._counts, sums["caba"]),
        np.einsum("bs,sk->bk", self._counts, sums["cabb"]))
    return full, boot


def paired_differences(pairs: Sequence[Tuple[Resampled, Resampled]],
                       level: float = 0.95) -> Dict[str, Dict[str, object]]:
  """Difference (variant − reference) of NE metrics, paired by seed.

  Args:
    pairs: one (variant, reference) entry per seed, each the
      `SessionBootstrap.resample` of a run, both on the same test rows and
      with the same `SessionBootstrap`.
    level: interval coverage.

  Returns:
    {metric: {"mean": observed mean difference over seeds, "ci95": [lo, hi],
    "runs": per-seed observed differences}} for `TASK_METRICS`.
  """
  num_resamples = len(next(iter(pairs[0][0][1].values())))
  observed = {m: [] for m in TASK_METRICS}
  resampled = {m: np.zeros(num_resamples) for m in TASK_METRICS}
  for variant, reference in pairs:
    for m in TASK_METRICS:
      observed[m].append(float(variant[0][m] - reference[0][m]))
      resampled[m] += (variant[1][m] - reference[1][m]) / len(pairs)
  out = {}
  tail = (1 - level) / 2 * 100
  for m in TASK_METRICS:
    lo, hi = np.nanpercentile(resampled[m], [tail, 100 - tail])
    out[m] = {"mean": float(np.mean(observed[m])), "ci95": [float(lo),
                                                            float(hi)],
              "runs": observed[m]}
  return out


def paired_bootstrap(pairs: Sequence[Dict[str, Dict[str, np.ndarray]]],
                     num_sessions: int, num_resamples: int = 1000,
                     seed: int = 0, level: float = 0.95
                     ) -> Dict[str, Dict[str, object]]:
  """Difference (variant − reference) of NE metrics, paired by seed.

  Args:
    pairs: one entry per seed: {"variant": session sums, "reference":
      session sums}, each from `session_sums` on the same test rows.
    num_sessions: number of test sessions.
    num_resamples: bootstrap resamples of the test sessions.
    seed: resampling seed.
    level: interval coverage.

  Returns:
    As `paired_differences`.
  """
  bootstrap = SessionBootstrap(num_sessions, num_resamples, seed)
  return paired_differences(
      [(bootstrap.resample(pair["variant"]),
        bootstrap.resample(pair["reference"])) for pair in pairs], level)


def spearman(x: Sequence[float], y: Sequence[float]) -> Optional[float]:
  """Spearman rank correlation (None with fewer than 3 finite points)."""
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  keep = np.isfinite(x) & np.isfinite(y)
  if keep.sum() < 3:
    return None
  return float(scipy_stats.spearmanr(x[keep], y[keep]).statistic)
