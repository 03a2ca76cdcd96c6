"""CABB-head and α quality against the simulator's ground truth.

The paper's claim (§3.3, §6) is that α-weighted CABB learns genuine
cross-item conversion — B bought *because* A was clicked — rather than
noise. The simulator knows the truth, on two levels (fields of the TFDS
dataset `cabb_synthetic`, saved in a run's `predictions.npz` as int codes):

* **Leaf-pair relation** (`relation`, codes: index in
  `data.truth.RELATIONS`): B's leaf is A's leaf (`substitute`), a complement leaf of A's (`complement`)
  or neither (`unrelated`). This is a property of the *pair* of leaves, not of
  the purchase. A leaf-similarity α (taxonomy + CF, Eq. 1–3) encodes almost
  exactly the same thing, so scoring α or the head against it is nearly
  circular: it checks that α is a good leaf-similarity, not that it finds the
  purchases a click caused. Kept as the **leaf-pair check**.
* **Cause** (`cause`, codes: index in `data.truth.CAUSES`): why this
  purchase of B happened. When the simulator generated it from the click on A, the
  relation it was drawn with (`substitute`, `complement`, or `noise`: an
  unrelated popular item attached to a random click of the session);
  otherwise `other_click` — most CABB-positive rows are purchases generated
  by another click of the session (often a click on B itself). *Causally
  genuine* = `substitute` or `complement`. This is the **fair test**: a
  weighting or a head is good when it separates the purchases the click on A
  caused from everything else bought after it, which is what α is meant to
  weight (§3.3) and what no leaf relation can decide (B may be a substitute
  of A and still have been bought because B itself was clicked).

**Subsets** of the CABB head's rows (weighted uniformly, as the CABB NE of
`cabb_tf.metrics.task_metrics`), each with every CABB-negative row:

* leaf-pair check: *genuine subset* — positives with relation `substitute`
  or `complement`; *noise subset* — positives with relation `unrelated`;
* causal: *causal genuine subset* — positives with cause `substitute` or
  `complement`; *causal other subset* — positives with cause `noise` or
  `other_click`.

Subsets of one kind share the negatives, so their NEs
(`metrics.normalized_entropy`, each with its own base rate) differ only
through how the head predicts the two kinds of positives. A head that learned
genuine cross-item conversion predicts a higher mean p_cabb for genuine
positives and has a lower NE on the genuine subset. The AUC of each subset
and the mean prediction per relation / cause are reported alongside.

**α** (when the arrays hold `alpha`) is scored over the CABB-positive rows
only: the leaf-pair AUC ranks genuine against noise positives by α; the
causal AUC ranks causally genuine positives against all other positives (ties
count half).

`cabb_ground_truth_report(arrays)` takes the arrays of a run's
`predictions.npz` (`y_cabb`, `p_cabb` — or `p_conversion` for a single-head
baseline — `relation`, and optionally `cause` and `alpha`) and returns a
JSON-ready dict; `render_markdown` turns the reports of several runs into one
table. Arrays without `cause` (older `predictions.npz` files) give the
leaf-pair check only.
"""

import math
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np

from cabb_tf import metrics
from cabb_tf.data import truth

def cabb_prediction(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
  """The CABB-head prediction: `p_cabb`, or a baseline's `p_conversion`.

  Raises:
    ValueError: if neither key is present.
  """
  for key in ("p_cabb", "p_conversion"):
    if key in arrays:
      return np.asarray(arrays[key], dtype=np.float64).reshape(-1)
  raise ValueError(f"the arrays hold no CABB prediction ('p_cabb' or "
                   f"'p_conversion'); keys are {sorted(arrays)}.")


def _checked_codes(arrays: Mapping[str, np.ndarray], key: str,
                   names: Sequence[str], convert: str) -> np.ndarray:
  """The int codes under `key`, checked against `y_cabb` (see callers)."""
  codes = np.asarray(arrays[key]).reshape(-1)
  if codes.dtype.kind not in "iu":
    raise ValueError(f"'{key}' must hold int codes (index in "
                     f"{tuple(names)}), not {codes.dtype}; convert with "
                     f"`cabb_tf.data.truth.{convert}`.")
  codes = codes.astype(np.int64)
  y = np.asarray(arrays["y_cabb"]).reshape(-1)
  if len(codes) != len(y):
    raise ValueError(f"'{key}' has {len(codes)} rows but 'y_cabb' {len(y)}.")
  if len(codes) and (codes.min() < 0 or codes.max() >= len(names)):
    raise ValueError(f"'{key}' codes must lie in [0, {len(names)}) "
                     f"(index in {tuple(names)}).")
  positive = y > 0
  if np.any(positive == (codes == 0)):
    raise ValueError(f"'{key}' disagrees with 'y_cabb': every CABB-positive "
                     f"row needs a {key} and every negative row ''; were "
                     "the arrays saved in the same row order?")
  return codes


def checked_relation(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
  """The `relation` codes, checked against `y_cabb`.

  Returns:
    int64 codes, one per row.

  Raises:
    ValueError: without a `relation` key (a dataset without ground truth),
      on codes outside `RELATIONS`, on a length mismatch, or when a
      CABB-positive row has relation '' or a negative row has one.
  """
  if "relation" not in arrays:
    raise ValueError("the arrays hold no 'relation' codes: ground truth "
                     "exists for the simulator (cabb_synthetic) only; save "
                     "them with `cabb_tf.data.truth.relation_codes`.")
  return _checked_codes(arrays, "relation", truth.RELATIONS,
                        "relation_codes")


def checked_cause(arrays: Mapping[str, np.ndarray]) -> Optional[np.ndarray]:
  """The `cause` codes checked against `y_cabb`, or None without them.

  Returns:
    int64 codes, one per row, or None when the arrays have no `cause` (an
    older `predictions.npz`, or a dataset without ground truth).

  Raises:
    ValueError: on codes outside `CAUSES`, on a length mismatch, or when a
      CABB-positive row has cause '' or a negative row has one.
  """
  if "cause" not in arrays:
    return None
  return _checked_codes(arrays, "cause", truth.CAUSES, "cause_codes")


def _nan_to_none(value: float) -> Optional[float]:
  value = float(value)
  return None if math.isnan(value) else value


def _subset(y: np.ndarray, p: np.ndarray, mask: np.ndarray) -> Dict[str, Any]:
  return {
      "rows": int(mask.sum()),
      "positives": int((y[mask] > 0).sum()),
      "ne": _nan_to_none(metrics.normalized_entropy(y[mask], p[mask])),
      "auc": _nan_to_none(metrics.auc(y[mask], p[mask])),
  }


def _mean(values: np.ndarray, mask: np.ndarray) -> Optional[float]:
  return _nan_to_none(values[mask].mean()) if mask.any() else None


def _gap(first: Dict[str, Any], second: Dict[str, Any]) -> Optional[float]:
  """second NE − first NE, None when either is undefined."""
  if first["ne"] is None or second["ne"] is None:
    return None
  return second["ne"] - first["ne"]


def alpha_auc(alpha: np.ndarray, genuine: np.ndarray,
              scored: np.ndarray) -> Optional[float]:
  """AUC of α for `genuine` against the other `scored` rows.

  Args:
    alpha: (n,) weights.
    genuine: (n,) bool, the rows that should get the higher α.
    scored: (n,) bool, the rows ranked (genuine ones and the rest).

  Returns:
    P(α of a genuine row > α of another scored row), ties counting half;
    None without both kinds of rows.
  """
  return _nan_to_none(metrics.auc(genuine[scored].astype(np.float64),
                                  alpha[scored]))


def _causal_report(y: np.ndarray, p: np.ndarray,
                   cause: np.ndarray) -> Dict[str, Any]:
  negative = y <= 0
  genuine = np.isin(cause, truth.CAUSAL_GENUINE_CODES)
  other = ~negative & ~genuine
  genuine_subset = _subset(y, p, genuine | negative)
  other_subset = _subset(y, p, other | negative)
  positives = int((~negative).sum())
  names = [c or "none" for c in truth.CAUSES]
  return {
      "genuine_subset": genuine_subset,
      "other_subset": other_subset,
      "ne_other_minus_genuine": _gap(genuine_subset, other_subset),
      "genuine_share_of_positives": (int(genuine.sum()) / positives
                                     if positives else None),
      "mean_p_cabb": {"genuine_positives": _mean(p, genuine),
                      "other_positives": _mean(p, other),
                      "negatives": _mean(p, negative)},
      "mean_p_cabb_by_cause": {name: _mean(p, cause == code)
                               for code, name in enumerate(names)},
      "rows_by_cause": {name: int((cause == code).sum())
                        for code, name in enumerate(names)},
  }


def cabb_ground_truth_report(
    arrays: Mapping[str, np.ndarray]) -> Dict[str, Any]:
  """CABB-head NE and mean prediction, and α's AUC, on genuine purchases.

  Args:
    arrays: a run's test arrays (`predictions.npz`): `y_cabb`, `p_cabb` (or
      `p_conversion`), `relation` codes (`relation_codes`) and optionally
      `cause` codes (`cause_codes`) and `alpha`.

  Returns:
    A JSON-ready dict (see the module docstring). The leaf-pair check:
    `all_rows`, `genuine_subset` and `noise_subset` (each rows, positives,
    ne, auc), `ne_noise_minus_genuine`, `mean_p_cabb` (`genuine_positives`,
    `noise_positives`, `negatives`), `mean_p_cabb_by_relation` and
    `rows_by_relation` (keyed by relation name, '' as 'none'). With `cause`:
    `causal`, a dict of `genuine_subset`, `other_subset`,
    `ne_other_minus_genuine`, `genuine_share_of_positives`, `mean_p_cabb`
    (`genuine_positives`, `other_positives`, `negatives`),
    `mean_p_cabb_by_cause` and `rows_by_cause` (keyed by cause name).
    With `alpha`: `alpha_auc`, {`leaf_pair`: genuine vs noise positives by
    relation, `causal`: causally genuine vs all other positives, None
    without `cause`}. Undefined values (an empty set, a subset without
    negatives) are None.

  Raises:
    ValueError: on missing keys or inconsistent relations or causes (see
      `checked_relation`, `checked_cause`).
  """
  p = cabb_prediction(arrays)
  y = np.asarray(arrays["y_cabb"], dtype=np.float64).reshape(-1)
  if len(p) != len(y):
    raise ValueError(f"the CABB prediction has {len(p)} rows but 'y_cabb' "
                     f"{len(y)}.")
  relation = checked_relation(arrays)
  cause = checked_cause(arrays)
  negative = y <= 0
  genuine = np.isin(relation, truth.GENUINE_CODES)
  noise = np.isin(relation, truth.NOISE_CODES)

  genuine_subset = _subset(y, p, genuine | negative)
  noise_subset = _subset(y, p, noise | negative)
  names = [r or "none" for r in truth.RELATIONS]
  report = {
      "all_rows": _subset(y, p, np.ones_like(negative)),
      "genuine_subset": genuine_subset,
      "noise_subset": noise_subset,
      "ne_noise_minus_genuine": _gap(genuine_subset, noise_subset),
      "mean_p_cabb": {"genuine_positives": _mean(p, genuine),
                      "noise_positives": _mean(p, noise),
                      "negatives": _mean(p, negative)},
      "mean_p_cabb_by_relation": {name: _mean(p, relation == code)
                                  for code, name in enumerate(names)},
      "rows_by_relation": {name: int((relation == code).sum())
                           for code, name in enumerate(names)},
  }
  if cause is not None:
    report["causal"] = _causal_report(y, p, cause)
  if "alpha" in arrays:
    alpha = np.asarray(arrays["alpha"], np.float64).reshape(-1)
    if len(alpha) != len(y):
      raise ValueError(f"'alpha' has {len(alpha)} rows but 'y_cabb' "
                       f"{len(y)}.")
    report["alpha_auc"] = {
        "leaf_pair": alpha_auc(alpha, genuine, genuine | noise),
        "causal": (None if cause is None else alpha_auc(
            alpha, np.isin(cause, truth.CAUSAL_GENUINE_CODES), ~negative)),
    }
  return report


def _fmt(value: Optional[float], digits: int = 4) -> str:
  return "—" if value is None else f"{value:.{digits}f}"


def _signed(value: Optional[float]) -> str:
  return "—" if value is None else f"{value:+.4f}"


def render_markdown(reports: Mapping[str, Mapping[str, Any]]) -> str:
  """One markdown table of `cabb_ground_truth_report`s, a row per run.

  The leaf-pair columns come first, then the causal ones ('—' for a report
  without `cause`).

  Args:
    reports: run name (e.g. 'multitask taxonomy_cf') -> report.

  Returns:
    The table (a header line and one line per run), ending in a newline.
  """
  lines = [
      "| run | CABB NE (all) | NE leaf genuine | NE leaf noise | "
      "leaf noise − genuine | mean p leaf genuine+ | mean p leaf noise+ | "
      "mean p leaf substitute+ | mean p leaf complement+ | mean p negatives | "
      "NE causal genuine | NE causal other | causal other − genuine | "
      "mean p causal genuine+ | mean p causal other+ |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for name, report in reports.items():
    mean_p = report["mean_p_cabb"]
    by_relation = report["mean_p_cabb_by_relation"]
    causal = report.get("causal")
    if causal is None:
      causal_cells = ["—"] * 5
    else:
      causal_cells = [
          _fmt(causal["genuine_subset"]["ne"]),
          _fmt(causal["other_subset"]["ne"]),
          _signed(causal["ne_other_minus_genuine"]),
          _fmt(causal["mean_p_cabb"]["genuine_positives"], 5),
          _fmt(causal["mean_p_cabb"]["other_positives"], 5)]
    lines.append(
        f"| {name} | {_fmt(report['all_rows']['ne'])} | "
        f"{_fmt(report['genuine_subset']['ne'])} | "
        f"{_fmt(report['noise_subset']['ne'])} | "
        f"{_signed(report['ne_noise_minus_genuine'])} | "
        f"{_fmt(mean_p['genuine_positives'], 5)} | "
        f"{_fmt(mean_p['noise_positives'], 5)} | "
        f"{_fmt(by_relation['substitute'], 5)} | "
        f"{_fmt(by_relation['complement'], 5)} | "
        f"{_fmt(mean_p['negatives'], 5)} | " + " | ".join(causal_cells) +
        " |")
  return "\n".join(lines) + "\n"
