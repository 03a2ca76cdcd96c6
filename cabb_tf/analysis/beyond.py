"""The experiments beyond the paper (issue 6): aggregation, checks, markdown.

`reproduce.run` trains the variants; this module turns their metrics into
the extra tables of `results.json` / `results.md`:

* **balance** — the selected multitask model with a fixed λ, the best λ of
  Table 2's sweep (chosen on the *test* mean NE, so an optimistic bar), and
  each learned task balance, which sets its own λ without a sweep;
* **bottoms** — the selected model with each shared bottom (MLP, DCN, MMoE,
  PLE), compared with the shared MLP and both baselines like Table 1;
* **windows** — labels from attribution windows that may cross sessions:
  the CABB share of each window's dataset and the NE of the multitask model
  and of Baseline 1 trained and tested on it;
* **ground truth** — per weighting scheme, the AUC of α for genuine
  (substitute / complement) vs noise CABB rows of the test split and the
  CABB head's NE on genuine and on noise rows (the simulator only);
* **serving** — the serving score p_caba + β·p_cabb over a β grid.
"""

from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from cabb_tf import metrics
from cabb_tf.analysis import ground_truth
from cabb_tf.analysis import serving
from cabb_tf.analysis import stats


def best_lambda(table2: Mapping[str, Any]) -> Optional[str]:
  """The Table 2 row (λ > 0) with the lowest mean NE over seeds, or None."""
  rows = [(cell["mean_ne"]["mean"], row) for row, cell in table2.items()
          if row != "single_task" and float(row) > 0 and
          np.isfinite(cell["mean_ne"]["mean"])]
  return min(rows)[1] if rows else None


def over_seeds(per_seed: Sequence[Mapping[str, float]]) -> Dict[str, Any]:
  """{key: mean and 95 % interval over seeds} of flat per-seed dicts."""
  keys = [k for k in per_seed[0] if all(
      isinstance(d.get(k), (int, float)) for d in per_seed)]
  return {k: stats.mean_ci([d[k] for d in per_seed]) for k in keys}


def ground_truth_row(arrays: Mapping[str, np.ndarray]) -> Dict[str, float]:
  """One run's ground-truth figures: α AUC and CABB NE, genuine vs noise.

  Args:
    arrays: the run's test arrays (`predictions.npz`, with `relation`).

  Returns:
    `alpha_auc` (AUC of α with genuine CABB positives as positives and noise
    positives as negatives), `ne_genuine` / `ne_noise` (the CABB head's NE on
    the genuine / noise subsets of `ground_truth`), `ne_all`, and the mean
    p_cabb of genuine and of noise positives (NaN where undefined).
  """
  report = ground_truth.cabb_ground_truth_report(arrays)
  relation = ground_truth.checked_relation(arrays)
  positive = np.asarray(arrays["y_cabb"]).reshape(-1) > 0
  genuine = np.isin(relation, ground_truth.GENUINE_CODES)
  noise = np.isin(relation, ground_truth.NOISE_CODES)
  scored = positive & (genuine | noise)
  alpha = np.asarray(arrays["alpha"], np.float64).reshape(-1)
  nan = float("nan")

  def value(x):
    return nan if x is None else float(x)

  return {
      "alpha_auc": float(metrics.auc(genuine[scored].astype(np.float64),
                                     alpha[scored])),
      "ne_genuine": value(report["genuine_subset"]["ne"]),
      "ne_noise": value(report["noise_subset"]["ne"]),
      "ne_all": value(report["all_rows"]["ne"]),
      "mean_p_genuine": value(report["mean_p_cabb"]["genuine_positives"]),
      "mean_p_noise": value(report["mean_p_cabb"]["noise_positives"]),
  }


def serving_over_seeds(reports: Sequence[Mapping[str, Any]]
                       ) -> Dict[str, Any]:
  """`serving.serving_report`s of several seeds → GAUC mean and interval per
  β and target, and each seed's best β per target."""
  targets = [t for t in serving.TARGETS if t in reports[0]["best_beta"]]
  by_beta = []
  for i, row in enumerate(reports[0]["by_beta"]):
    by_beta.append({"beta": row["beta"], **{
        t: stats.mean_ci([value(r["by_beta"][i][t]["gauc"]) for r in reports])
        for t in targets}})
  best = {t: [None if r["best_beta"][t] is None else r["best_beta"][t]["beta"]
              for r in reports] for t in targets}
  return {"targets": targets, "by_beta": by_beta, "best_beta_per_seed": best,
          "sessions": reports[0]["sessions"],
          "candidates": reports[0]["candidates"]}


def value(x: Optional[float]) -> float:
  """None → NaN (seed means leave NaNs out)."""
  return float("nan") if x is None else float(x)


def scalar_series(log_dir: str, tag: str) -> List[float]:
  """The values of a TensorBoard scalar in a run's log directory, by step.

  Args:
    log_dir: e.g. a run's `train/` directory.
    tag: the scalar's tag, e.g. 'balance/lambda'.

  Returns:
    The values in step order ([] when the tag is absent).
  """
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  accumulator = event_accumulator.EventAccumulator(
      log_dir, size_guidance={event_accumulator.TENSORS: 0})
  accumulator.Reload()
  if tag not in accumulator.Tags().get("tensors", []):
    return []
  events = sorted(accumulator.Tensors(tag), key=lambda e: e.step)
  return [float(tf.make_ndarray(e.tensor_proto)) for e in events]


def window_data(data) -> Dict[str, Any]:
  """The label counts of a window's dataset (from its data report)."""
  report = data.builder.info.metadata["data_report"]
  return {
      "window": report.get("attribution_window_s"),
      "cabb_share": report["cabb_share"],
      "caba_positives": report["caba_positives"],
      "cabb_positive_rows": report["cabb_positive_rows"],
      "click_examples": report["click_examples"],
      "examples": report["examples"],
      "test_rows": int(data.num_examples["test"]),
  }


def _diff(results, table, row, reference, metric) -> Optional[Dict[str, Any]]:
  return (results.get("paired_differences", {}).get(table, {}).get(row, {})
          .get(f"vs_{reference}", {}).get(metric))


def _not_worse(diff: Optional[Mapping[str, Any]]) -> Optional[bool]:
  """True when a paired difference's interval reaches 0 or below."""
  if not diff:
    return None
  return bool(diff["ci95"][0] <= 0)


def check(results: Mapping[str, Any]) -> Dict[str, Dict[str, Any]]:
  """Answers the questions of issue 6 on a reproduction's results."""
  out: Dict[str, Dict[str, Any]] = {}
  for row in results.get("balance", {}):
    if row in ("fixed", "best_fixed"):
      continue
    caba = _diff(results, "balance", row, "best_fixed", "caba_ne")
    cabb = _diff(results, "balance", row, "best_fixed", "cabb_ne")
    out[f"balance_{row}_reaches_best_fixed"] = {
        "claim": f"{row} reaches the CABA and CABB NE of the best swept λ "
                 f"(λ = {results.get('balance_best_lambda')}) without a sweep",
        "holds": bool(_not_worse(caba) and _not_worse(cabb)),
        "caba_ne_minus_best": caba, "cabb_ne_minus_best": cabb,
    }
  for row in results.get("bottoms", {}):
    diff = _diff(results, "bottoms", row, "shared_mlp", "overall_ne")
    if diff is None:
      continue
    out[f"bottom_{row}_beats_shared_mlp"] = {
        "claim": f"the {row} bottom has a lower overall NE than the shared MLP",
        "holds": bool(diff["mean"] < 0),
        "significant": bool(diff["ci95"][1] < 0),
        "overall_ne_minus_shared_mlp": diff,
    }
  truth = results.get("ground_truth_ne", {})
  if "taxonomy_cf" in truth:
    base = truth["taxonomy_cf"].get("alpha_auc", {}).get("mean")
    for row, cell in truth.items():
      if row.startswith("taxonomy_cf_") and base is not None:
        auc = cell.get("alpha_auc", {}).get("mean")
        out[f"ground_truth_{row}_separates_better"] = {
            "claim": f"{row} separates genuine from noise CABB rows better "
                     "than taxonomy_cf (AUC of α on the test rows)",
            "holds": bool(auc is not None and auc > base),
            "alpha_auc": {row: auc, "taxonomy_cf": base},
        }
  return out


def _ci(cell: Optional[Mapping[str, Any]], digits: int = 4) -> str:
  if not cell:
    return "—"
  lo, hi = cell["ci95"]
  return f"{cell['mean']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _signed(cell: Optional[Mapping[str, Any]]) -> str:
  if not cell:
    return "—"
  lo, hi = cell["ci95"]
  mark = "*" if lo > 0 or hi < 0 else ""
  return f"{cell['mean']:+.4f} [{lo:+.4f}, {hi:+.4f}]{mark}"


def render_serving(cell: Mapping[str, Any]) -> List[str]:
  """The β table of `serving_over_seeds` as markdown lines."""
  targets = cell["targets"]
  lines = ["Candidates: clicked items of a test session; GAUC: the AUC of "
           "the score among a session's candidates, averaged over sessions "
           "with a positive and a negative candidate "
           f"({cell['sessions']} sessions, {cell['candidates']} candidates); "
           "targets: bought A, converted genuinely (A or a substitute / "
           "complement of A), any purchase after the click.", "",
           "| β | " + " | ".join(f"GAUC {t}" for t in targets) + " |",
           "|---|" + "---:|" * len(targets)]
  for row in cell["by_beta"]:
    lines.append(f"| {row['beta']:g} | " +
                 " | ".join(_ci(row[t]) for t in targets) + " |")
  lines += ["", "Best β per seed: " + "; ".join(
      f"{t}: {', '.join('—' if b is None else f'{b:g}' for b in betas)}"
      for t, betas in cell["best_beta_per_seed"].items())]
  return lines


def render(results: Mapping[str, Any]) -> List[str]:
  """The extra tables as markdown lines (empty when none were run)."""
  lines: List[str] = []
  if "balance" in results:
    best = results.get("balance_best_lambda")
    lines += ["", "## Beyond the paper: learned task balance", "",
              f"Fixed λ = the selected 0.75; best fixed = the λ of Table 2 "
              f"with the lowest test mean NE (λ = {best}; chosen on test, an "
              "optimistic bar); the learned balances set λ themselves "
              "(final λ = w_cabb / w_caba at the end of training). Δ is paired "
              "against the best fixed λ.", "",
              "| balance | CABA NE | CABB NE | overall NE | mean NE | final λ "
              "| Δ CABA NE vs best | Δ CABB NE vs best |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row, cell in results["balance"].items():
      label = {"fixed": "fixed λ = 0.75",
               "best_fixed": f"best swept λ = {best}"}.get(row, row)
      lines.append(
          f"| {label} | {_ci(cell['caba_ne'])} | {_ci(cell['cabb_ne'])} | "
          f"{_ci(cell['overall_ne'])} | {_ci(cell['mean_ne'])} | "
          f"{_ci(cell.get('final_lambda'), 3)} | "
          f"{_signed(_diff(results, 'balance', row, 'best_fixed', 'caba_ne'))}"
          f" | {_signed(_diff(results, 'balance', row, 'best_fixed', 'cabb_ne'))}"
          " |")
    trajectories = results.get("balance_lambda_by_epoch", {})
    if trajectories:
      lines += ["", "λ at the end of each epoch (TensorBoard `balance/lambda`), "
                "first seed:"]
      lines += [f"- {row}: " + ", ".join(f"{v:.3f}" for v in runs[0])
                for row, runs in trajectories.items() if runs and runs[0]]
  if "bottoms" in results:
    lines += ["", "## Beyond the paper: shared bottoms (λ = 0.75, taxonomy + CF)",
              "", "| bottom | overall NE | mean NE | CABA NE | CABB NE | "
              "Δ overall vs shared MLP | Δ overall vs last click |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for row, cell in results["bottoms"].items():
      lines.append(
          f"| {row} | {_ci(cell['overall_ne'])} | {_ci(cell['mean_ne'])} | "
          f"{_ci(cell['caba_ne'])} | {_ci(cell['cabb_ne'])} | "
          f"{_signed(_diff(results, 'bottoms', row, 'shared_mlp', 'overall_ne'))}"
          f" | {_signed(_diff(results, 'bottoms', row, 'last_click', 'overall_ne'))}"
          " |")
  if "windows" in results:
    lines += ["", "## Beyond the paper: attribution window", "",
              "Each window is its own dataset (same simulated log, labels from "
              "purchases by the same user within the window after the click, "
              "across sessions); NE is on that dataset's test split, so rows "
              "are comparable within a window, not across. CABB share as the "
              "data report gives it (`labels.purchase_stats`): with the "
              "session rule, of the purchases in sessions with a click; with "
              "a window, of all purchases, by the user's clicks in the window "
              "before each.", "",
              "| window | CABB share | CABA positives | CABB rows | multitask "
              "overall NE | last click overall NE | Δ overall (multitask − "
              "last click) | multitask CABA NE | multitask CABB NE |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row, cell in results["windows"].items():
      data = results.get("window_data", {}).get(row, {})
      base = results.get("windows_last_click", {}).get(row, {})
      lines.append(
          f"| {row} | {data.get('cabb_share', float('nan')):.3f} | "
          f"{data.get('caba_positives', '—')} | "
          f"{data.get('cabb_positive_rows', '—')} | "
          f"{_ci(cell['overall_ne'])} | {_ci(base.get('overall_ne'))} | "
          f"{_signed(_diff(results, 'windows', row, 'last_click', 'overall_ne'))}"
          f" | {_ci(cell['caba_ne'])} | {_ci(cell['cabb_ne'])} |")
  if "ground_truth_ne" in results:
    lines += ["", "## Beyond the paper: genuine vs noise CABB rows "
              "(simulator ground truth)", "",
              "Test CABB-positive rows are genuine (B a substitute or "
              "complement of A) or noise (unrelated). α AUC: genuine vs noise "
              "positives ranked by α. CABB NE on genuine / noise: the CABB "
              "head's NE over those positives plus every negative row.", "",
              "| scheme | α AUC | CABB NE genuine | CABB NE noise | "
              "mean p_cabb genuine | mean p_cabb noise |",
              "|---|---:|---:|---:|---:|---:|"]
    for row, cell in results["ground_truth_ne"].items():
      lines.append(
          f"| {row} | {_ci(cell.get('alpha_auc'), 3)} | "
          f"{_ci(cell.get('ne_genuine'))} | {_ci(cell.get('ne_noise'))} | "
          f"{_ci(cell.get('mean_p_genuine'))} | {_ci(cell.get('mean_p_noise'))}"
          " |")
  if "serving" in results:
    lines += ["", "## Beyond the paper: serving score p_caba + β·p_cabb "
              "(the selected model)", ""]
    lines += ["A click's labels count only the purchases after it, so among "
              "all of a session's clicks the later ones have fewer purchases "
              "ahead: a score can win GAUC by ranking click order. Among the "
              "converting clicks (something was bought after each) the "
              "targets only ask which clicked item the purchase relates to.",
              "", "**All clicks of a session**", ""]
    lines += render_serving(results["serving"]["all_clicks"])
    lines += ["", "**Converting clicks only**", ""]
    lines += render_serving(results["serving"]["converting_clicks"])
  checks = results.get("beyond_paper", {})
  if checks:
    lines += ["", "## Beyond the paper: answers", "",
              "| question | holds |", "|---|---|"]
    for item in checks.values():
      lines.append(f"| {item['claim']} | {'yes' if item['holds'] else 'no'} |")
  return lines
