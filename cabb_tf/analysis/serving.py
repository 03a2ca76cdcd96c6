"""Serving score: how cabb_tf ranks candidates with both heads.

A trained multitask model gives each candidate click A two probabilities:
p_caba (A itself is bought) and p_cabb (some other item is bought after the
click on A; α-weighted in training towards genuine cross-item conversion).
The package's serving score is

    score(A) = p_caba(A) + β · p_cabb(A),        β >= 0,

β = 0 being a CABA-only ranking. `serving_score` computes it;
`serving_report` chooses β offline.

**Offline check** (`serving_report`) on a test split's arrays (the keys of a
run's `predictions.npz`: p_caba, p_cabb, y_caba, y_cabb, w_caba, session_id,
click_id and, on the simulator, relation):

* candidates — the click examples of a session, one per clicked item A. A
  click has one row per item B bought after it; its rows are collapsed by
  `click_id` to the row with `w_caba` > 0 (their predictions are identical:
  the model does not see item B);
* targets per candidate — `bought_a`: y_caba; `converted_genuinely`: y_caba
  or any of the click's CABB rows with a genuine relation (substitute or
  complement, `data.truth.GENUINE`; needs `relation`); `any_purchase`:
  y_caba or any CABB row;
* metric — the session-grouped AUC (GAUC): the AUC of the score among the
  candidates of a session, ties counting half, averaged over the sessions
  with at least one positive and one negative candidate. `gauc` weights
  those sessions equally (unweighted mean); `gauc_weighted` weights each by
  its number of candidates. The pooled `auc` over all candidates is given
  for reference.

For each β of the grid (gin: `serving_report.betas`) the report gives each
target's GAUC, and per target the best β (highest unweighted GAUC; the
smallest β on ties). Everything is vectorized NumPy: one sort per β, no
Python loop per session.

A single-head baseline (`p_conversion` only) scores with that one
prediction for both heads, so its ranking does not depend on β.
"""

import math
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import gin
import numpy as np

from cabb_tf import metrics
from cabb_tf.analysis import ground_truth
from cabb_tf.data import truth

DEFAULT_BETAS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
TARGETS = ("bought_a", "converted_genuinely", "any_purchase")


def serving_score(p_caba: np.ndarray, p_cabb: np.ndarray,
                  beta: float) -> np.ndarray:
  """score = p_caba + β · p_cabb (float64).

  Args:
    p_caba: CABA-head probabilities.
    p_cabb: CABB-head probabilities, broadcast against `p_caba`.
    beta: weight of the CABB head, >= 0.

  Returns:
    The scores, float64.

  Raises:
    ValueError: on a negative or non-finite β.
  """
  if not (math.isfinite(float(beta)) and float(beta) >= 0):
    raise ValueError(f"beta must be finite and >= 0 (a negative β would "
                     f"penalize cross-item conversion), not {beta!r}.")
  return (np.asarray(p_caba, dtype=np.float64) +
          float(beta) * np.asarray(p_cabb, dtype=np.float64))


def _predictions(arrays: Mapping[str, np.ndarray]) -> Tuple[np.ndarray,
                                                            np.ndarray]:
  """(p_caba, p_cabb), or a baseline's p_conversion for both."""
  if "p_caba" in arrays and "p_cabb" in arrays:
    return (np.asarray(arrays["p_caba"], np.float64).reshape(-1),
            np.asarray(arrays["p_cabb"], np.float64).reshape(-1))
  if "p_conversion" in arrays:
    p = np.asarray(arrays["p_conversion"], np.float64).reshape(-1)
    return p, p
  raise ValueError(f"the arrays need 'p_caba' and 'p_cabb' (or a baseline's "
                   f"'p_conversion'); keys are {sorted(arrays)}.")


def click_candidates(arrays: Mapping[str, np.ndarray]) -> Dict[str, Any]:
  """Collapses the test rows to one candidate per click example.

  Args:
    arrays: `predictions.npz` arrays (see the module docstring).

  Returns:
    Dict of aligned per-click arrays: `session` (dense int codes),
    `p_caba`, `p_cabb`, and the targets `bought_a`, `any_purchase` and (with
    `relation`) `converted_genuinely` as float64 0/1; in click order.

  Raises:
    ValueError: on missing keys, arrays of different lengths, or a click
      without exactly one row with `w_caba` > 0 or spanning two sessions.
  """
  required = ("y_caba", "y_cabb", "w_caba", "session_id", "click_id")
  missing = [k for k in required if k not in arrays]
  if missing:
    raise ValueError(f"the arrays lack {missing}; serving_report needs "
                     f"{list(required)} and the predictions.")
  p_caba, p_cabb = _predictions(arrays)
  columns = {k: np.asarray(arrays[k]).reshape(-1) for k in required}
  n = len(columns["click_id"])
  lengths = {k: len(v) for k, v in columns.items()}
  lengths.update(p_caba=len(p_caba), p_cabb=len(p_cabb))
  if any(length != n for length in lengths.values()):
    raise ValueError(f"the arrays have different lengths: {lengths}.")
  _, click = np.unique(columns["click_id"], return_inverse=True)
  click = click.reshape(-1)
  num_clicks = int(click.max()) + 1 if n else 0
  first = columns["w_caba"] > 0
  if np.any(np.bincount(click[first], minlength=num_clicks) != 1):
    raise ValueError("every click_id needs exactly one row with w_caba > 0 "
                     "(its click example row).")
  rep = np.empty(num_clicks, dtype=np.int64)
  rep[click[first]] = np.flatnonzero(first)
  _, session = np.unique(columns["session_id"], return_inverse=True)
  session = session.reshape(-1)
  if np.any(session != session[rep][click]):
    raise ValueError("a click_id spans several sessions; click ids must "
                     "identify one click example.")
  y_cabb = columns["y_cabb"] > 0
  any_cabb = np.bincount(click, weights=y_cabb, minlength=num_clicks) > 0
  bought_a = columns["y_caba"][rep] > 0
  out = {
      "session": session[rep],
      "p_caba": p_caba[rep],
      "p_cabb": p_cabb[rep],
      "bought_a": bought_a.astype(np.float64),
      "any_purchase": (bought_a | any_cabb).astype(np.float64),
  }
  if "relation" in arrays:
    relation = ground_truth.checked_relation(arrays)
    genuine_row = y_cabb & np.isin(relation, truth.GENUINE_CODES)
    genuine = np.bincount(click, weights=genuine_row,
                          minlength=num_clicks) > 0
    out["converted_genuinely"] = (bought_a | genuine).astype(np.float64)
  return out


def session_aucs(session: np.ndarray, score: np.ndarray,
                 target: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """Per-session AUC of `score` for 0/1 `target`, ties counting half.

  Mann–Whitney: with mid-ranks r of the scores inside a session,
  AUC = (Σ_positives r − P (P + 1) / 2) / (P N).

  Args:
    session: int session code per candidate (any non-negative ints).
    score: score per candidate.
    target: 0/1 label per candidate.

  Returns:
    (auc, candidates): for every session code in [0, max + 1), its AUC (NaN
    without both a positive and a negative) and its number of candidates.
  """
  session = np.asarray(session, dtype=np.int64)
  score = np.asarray(score, dtype=np.float64)
  target = np.asarray(target, dtype=np.float64) > 0
  num_sessions = int(session.max()) + 1 if len(session) else 0
  order = np.lexsort((score, session))
  s, x, y = session[order], score[order], target[order]
  n = len(s)
  # Mid-rank of each run of equal (session, score), counted from 1 at the
  # session's start.
  new_run = np.ones(n, dtype=bool)
  new_run[1:] = (s[1:] != s[:-1]) | (x[1:] != x[:-1])
  run_start = np.flatnonzero(new_run)
  run_end = np.append(run_start[1:], n)
  run_of = np.cumsum(new_run) - 1
  new_session = np.ones(n, dtype=bool)
  new_session[1:] = s[1:] != s[:-1]
  session_start = np.flatnonzero(new_session)
  start_of = session_start[np.cumsum(new_session) - 1]
  mid_rank = (run_start + run_end - 1) / 2.0 + 1.0
  rank = mid_rank[run_of] - start_of
  candidates = np.bincount(s, minlength=num_sessions)
  positives = np.bincount(s, weights=y, minlength=num_sessions)
  negatives = candidates - positives
  rank_sum = np.bincount(s, weights=np.where(y, rank, 0.0),
                         minlength=num_sessions)
  defined = (positives > 0) & (negatives > 0)
  auc = np.full(num_sessions, np.nan)
  auc[defined] = ((rank_sum[defined] -
                   positives[defined] * (positives[defined] + 1) / 2) /
                  (positives[defined] * negatives[defined]))
  return auc, candidates


def gauc(session: np.ndarray, score: np.ndarray,
         target: np.ndarray) -> Dict[str, Any]:
  """Session-grouped AUC: unweighted and candidate-weighted means.

  Returns:
    {"gauc", "gauc_weighted", "sessions"}: the means over sessions with both
    a positive and a negative candidate (None when there is none) and their
    number.
  """
  auc, candidates = session_aucs(session, score, target)
  defined = ~np.isnan(auc)
  if not defined.any():
    return {"gauc": None, "gauc_weighted": None, "sessions": 0}
  return {"gauc": float(auc[defined].mean()),
          "gauc_weighted": float(np.average(auc[defined],
                                            weights=candidates[defined])),
          "sessions": int(defined.sum())}


@gin.configurable(denylist=["arrays"])
def serving_report(arrays: Mapping[str, np.ndarray],
                   betas: Sequence[float] = DEFAULT_BETAS,
                   converting_only: bool = False) -> Dict[str, Any]:
  """GAUC of score = p_caba + β·p_cabb per β and target (module docstring).

  Args:
    arrays: a run's test arrays (`predictions.npz`).
    betas: the β grid, each >= 0.
    converting_only: keep only the candidates after which something was
      bought (`any_purchase`). A click's labels count only purchases after
      it, so among all of a session's clicks the later ones have fewer
      purchases ahead and a ranking partly learns click order; among the
      converting clicks the targets `bought_a` and `converted_genuinely` ask
      only which clicked item the purchase relates to (`any_purchase` is
      then 1 for every candidate and is left out).

  Returns:
    A JSON-ready dict: `candidates`, `sessions`, `positives` per target,
    `by_beta` (a list, in grid order, of {"beta", target: {"gauc",
    "gauc_weighted", "sessions", "auc"}}), and `best_beta` per target
    ({"beta", "gauc"}, by unweighted GAUC). `converted_genuinely` appears
    only when the arrays hold `relation`.

  Raises:
    ValueError: on an empty or negative β grid, or bad arrays (see
      `click_candidates`).
  """
  betas = [float(b) for b in betas]
  if not betas:
    raise ValueError("betas is empty; give at least one β >= 0.")
  for beta in betas:
    serving_score(0.0, 0.0, beta)  # Validates β.
  clicks = click_candidates(arrays)
  if converting_only:
    keep = clicks.pop("any_purchase") > 0
    clicks = {k: v[keep] for k, v in clicks.items()}
  targets = [t for t in TARGETS if t in clicks]
  by_beta = []
  for beta in betas:
    score = serving_score(clicks["p_caba"], clicks["p_cabb"], beta)
    row: Dict[str, Any] = {"beta": beta}
    for target in targets:
      cell = gauc(clicks["session"], score, clicks[target])
      pooled = metrics.auc(clicks[target], score)
      cell["auc"] = None if math.isnan(pooled) else pooled
      row[target] = cell
    by_beta.append(row)
  best: Dict[str, Optional[Dict[str, float]]] = {}
  for target in targets:
    scored = [(row[target]["gauc"], row["beta"]) for row in by_beta
              if row[target]["gauc"] is not None]
    if scored:
      top = max(g for g, _ in scored)
      beta = min(b for g, b in scored if g == top)
      best[target] = {"beta": beta, "gauc": top}
    else:
      best[target] = None
  return {
      "candidates": int(len(clicks["session"])),
      "sessions": int(len(np.unique(clicks["session"]))),
      "positives": {t: int(clicks[t].sum()) for t in targets},
      "by_beta": by_beta,
      "best_beta": best,
  }


def render_markdown(report: Mapping[str, Any]) -> str:
  """The β table of a `serving_report` as markdown.

  One row per β; per target its unweighted GAUC (candidate-weighted GAUC in
  parentheses); the best β of each target in bold; then a line naming the
  best β per target and the number of sessions each GAUC averages.

  Returns:
    The markdown text, ending in a newline.
  """
  targets = [t for t in TARGETS if t in report["best_beta"]]
  lines = ["| β | " + " | ".join(f"GAUC {t}" for t in targets) + " |",
           "|---|" + "---|" * len(targets)]
  for row in report["by_beta"]:
    cells = []
    for target in targets:
      cell = row[target]
      if cell["gauc"] is None:
        cells.append("—")
        continue
      text = f"{cell['gauc']:.4f} ({cell['gauc_weighted']:.4f})"
      best = report["best_beta"][target]
      if best is not None and best["beta"] == row["beta"]:
        text = f"**{text}**"
      cells.append(text)
    lines.append(f"| {row['beta']:g} | " + " | ".join(cells) + " |")
  first = report["by_beta"][0]
  lines.append("")
  lines.append(
      "Best β: " + ", ".join(
          f"{t} {report['best_beta'][t]['beta']:g}"
          if report["best_beta"][t] is not None else f"{t} —"
          for t in targets) +
      ". GAUC = mean over sessions with a positive and a negative candidate "
      "(" + ", ".join(f"{t}: {first[t]['sessions']}" for t in targets) +
      f" of {report['sessions']} sessions); candidate-weighted in "
      "parentheses.")
  return "\n".join(lines) + "\n"
