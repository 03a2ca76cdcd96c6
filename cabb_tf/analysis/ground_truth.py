"""CABB-head quality on genuine versus noise purchases (simulator ground truth).

The simulator knows why each "click A, buy B" purchase happened: B is a
`substitute` (B's leaf is A's leaf), a `complement` (a complement leaf of
A's), or `unrelated` noise (an item drawn by global popularity); rows
without a B have relation ''. The paper's claim (§3.3, §6) is that α-weighted
CABB learns genuine cross-item conversion rather than noise. This module
measures it on test predictions.

Relations are stored as int codes: the index in `RELATIONS`
(`relation_codes` converts the strings of the TFDS field `relation`).

**Subsets** (rows are weighted uniformly, as the CABB NE of SPEC §7):

* *genuine subset* — CABB-positive rows whose relation is `substitute` or
  `complement`, plus every CABB-negative row;
* *noise subset* — CABB-positive rows with relation `unrelated`, plus every
  CABB-negative row.

Both subsets share the negatives, so their NEs (`metrics.normalized_entropy`,
each with its own base rate) differ only through how the head predicts the
two kinds of positives. A head that learned genuine cross-item conversion
has a lower NE on the genuine subset and predicts a higher mean p_cabb for
genuine positives than for noise positives; one that learned noise as well
as signal shows no such gap. The AUC of each subset and the mean prediction
per relation are reported alongside.

`cabb_ground_truth_report(arrays)` takes the arrays of a run's
`predictions.npz` (`y_cabb`, `p_cabb` — or `p_conversion` for a single-head
baseline — and `relation`) and returns a JSON-ready dict;
`render_markdown` turns the reports of several runs into one table.
"""

import math
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np

from cabb_tf import metrics

RELATIONS = ("", "substitute", "complement", "unrelated")
GENUINE = ("substitute", "complement")
NOISE = ("unrelated",)
GENUINE_CODES = tuple(RELATIONS.index(r) for r in GENUINE)
NOISE_CODES = tuple(RELATIONS.index(r) for r in NOISE)


def relation_codes(strings: Sequence[Any]) -> np.ndarray:
  """Maps relation strings (str or UTF-8 bytes) to int8 codes.

  Args:
    strings: relations as in the TFDS field `relation`, any shape.

  Returns:
    int8 array of the same shape: the index of each string in `RELATIONS`.

  Raises:
    ValueError: on a string outside `RELATIONS`.
  """
  values = np.asarray(strings, dtype=object)
  flat = [v.decode("utf-8") if isinstance(v, bytes) else str(v)
          for v in values.ravel()]
  lookup = {r: i for i, r in enumerate(RELATIONS)}
  unknown = sorted(set(flat) - set(lookup))
  if unknown:
    raise ValueError(f"unknown relation(s) {unknown}; the relations are "
                     f"{list(RELATIONS)}.")
  return np.array([lookup[v] for v in flat], dtype=np.int8).reshape(
      values.shape)


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
                     "them with `ground_truth.relation_codes`.")
  relation = np.asarray(arrays["relation"]).reshape(-1)
  if relation.dtype.kind not in "iu":
    raise ValueError(f"'relation' must hold int codes (index in "
                     f"{RELATIONS}), not {relation.dtype}; convert with "
                     "`ground_truth.relation_codes`.")
  relation = relation.astype(np.int64)
  y = np.asarray(arrays["y_cabb"]).reshape(-1)
  if len(relation) != len(y):
    raise ValueError(f"'relation' has {len(relation)} rows but 'y_cabb' "
                     f"{len(y)}.")
  if len(relation) and (relation.min() < 0 or
                        relation.max() >= len(RELATIONS)):
    raise ValueError(f"'relation' codes must lie in [0, {len(RELATIONS)}) "
                     f"(index in {RELATIONS}).")
  positive = y > 0
  if np.any(positive == (relation == 0)):
    raise ValueError("'relation' disagrees with 'y_cabb': every CABB-positive "
                     "row needs a relation and every negative row ''; were "
                     "the arrays saved in the same row order?")
  return relation


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


def cabb_ground_truth_report(
    arrays: Mapping[str, np.ndarray]) -> Dict[str, Any]:
  """CABB-head NE and mean prediction on genuine versus noise purchases.

  Args:
    arrays: a run's test arrays (`predictions.npz`): `y_cabb`, `p_cabb` (or
      `p_conversion`) and `relation` codes (`relation_codes`).

  Returns:
    A JSON-ready dict: `all_rows`, `genuine_subset` and `noise_subset` (each
    rows, positives, ne, auc; see the module docstring),
    `ne_noise_minus_genuine`, `mean_p_cabb` (`genuine_positives`,
    `noise_positives`, `negatives`), `mean_p_cabb_by_relation` and
    `rows_by_relation` (keyed by relation name, '' as 'none'). Undefined
    values (an empty set, a subset without negatives) are None.

  Raises:
    ValueError: on missing keys or inconsistent relations (see
      `checked_relation`).
  """
  p = cabb_prediction(arrays)
  y = np.asarray(arrays["y_cabb"], dtype=np.float64).reshape(-1)
  if len(p) != len(y):
    raise ValueError(f"the CABB prediction has {len(p)} rows but 'y_cabb' "
                     f"{len(y)}.")
  relation = checked_relation(arrays)
  negative = y <= 0
  genuine = np.isin(relation, GENUINE_CODES)
  noise = np.isin(relation, NOISE_CODES)

  def mean(mask):
    return _nan_to_none(p[mask].mean()) if mask.any() else None

  genuine_subset = _subset(y, p, genuine | negative)
  noise_subset = _subset(y, p, noise | negative)
  gap = None
  if genuine_subset["ne"] is not None and noise_subset["ne"] is not None:
    gap = noise_subset["ne"] - genuine_subset["ne"]
  names = [r or "none" for r in RELATIONS]
  return {
      "all_rows": _subset(y, p, np.ones_like(negative)),
      "genuine_subset": genuine_subset,
      "noise_subset": noise_subset,
      "ne_noise_minus_genuine": gap,
      "mean_p_cabb": {"genuine_positives": mean(genuine),
                      "noise_positives": mean(noise),
                      "negatives": mean(negative)},
      "mean_p_cabb_by_relation": {name: mean(relation == code)
                                  for code, name in enumerate(names)},
      "rows_by_relation": {name: int((relation == code).sum())
                           for code, name in enumerate(names)},
  }


def _fmt(value: Optional[float], digits: int = 4) -> str:
  return "—" if value is None else f"{value:.{digits}f}"


def render_markdown(reports: Mapping[str, Mapping[str, Any]]) -> str:
  """One markdown table of `cabb_ground_truth_report`s, a row per run.

  Args:
    reports: run name (e.g. 'multitask taxonomy_cf') -> report.

  Returns:
    The table (a header line and one line per run), ending in a newline.
  """
  lines = [
      "| run | CABB NE (all) | NE genuine | NE noise | noise − genuine | "
      "mean p genuine+ | mean p noise+ | mean p substitute+ | "
      "mean p complement+ | mean p negatives |",
      "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for name, report in reports.items():
    mean_p = report["mean_p_cabb"]
    by_relation = report["mean_p_cabb_by_relation"]
    gap = report["ne_noise_minus_genuine"]
    lines.append(
        f"| {name} | {_fmt(report['all_rows']['ne'])} | "
        f"{_fmt(report['genuine_subset']['ne'])} | "
        f"{_fmt(report['noise_subset']['ne'])} | "
        f"{'—' if gap is None else f'{gap:+.4f}'} | "
        f"{_fmt(mean_p['genuine_positives'], 5)} | "
        f"{_fmt(mean_p['noise_positives'], 5)} | "
        f"{_fmt(by_relation['substitute'], 5)} | "
        f"{_fmt(by_relation['complement'], 5)} | "
        f"{_fmt(mean_p['negatives'], 5)} |")
  return "\n".join(lines) + "\n"
