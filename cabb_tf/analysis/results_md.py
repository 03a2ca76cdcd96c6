"""Renders a reproduction's `results.json` as `results.md`."""

from typing import Any, Dict, List

from cabb_tf.analysis import beyond
from cabb_tf.analysis import claims as claims_lib


def _ci(cell: Dict[str, Any]) -> str:
  lo, hi = cell["ci95"]
  return f"{cell['mean']:.4f} [{lo:.4f}, {hi:.4f}]"


def _diff(cell) -> str:
  if not cell:
    return "—"
  lo, hi = cell["ci95"]
  mark = "*" if lo > 0 or hi < 0 else ""
  return f"{cell['mean']:+.4f} [{lo:+.4f}, {hi:+.4f}]{mark}"


def _paired(results, table, row, reference, metric):
  return (results.get("paired_differences", {}).get(table, {}).get(row, {})
          .get(f"vs_{reference}", {}).get(metric))


def render(results: Dict[str, Any]) -> str:
  """The three tables, paired differences, RQ-4, the claims and the tables
  beyond the paper, as markdown."""
  paper = claims_lib.PAPER
  seeds = results.get("seeds", [])
  lines: List[str] = [
      "# Click A, Buy B: reproduction results", "",
      f"Means over {len(seeds)} seeds ({', '.join(map(str, seeds))}) with "
      "95 % Student-t intervals over seeds in brackets. Differences are "
      "paired (same seeds, same test rows) with 95 % intervals from a "
      "bootstrap over test sessions; `*` marks an interval that excludes 0. "
      "CABA NE is over click examples, CABB NE over all rows uniformly, "
      "overall NE pools both tasks' sums (SPEC §7).", "",
      f"Test rows: {results.get('num_examples', {}).get('test', '?')}. "
      f"Wall time: {results.get('wall_time_s', 0) / 60:.1f} min.", "",
      "## Table 1: overall NE", "",
      "| variant | paper NE | overall NE | mean NE | Δ overall vs last click "
      "| Δ overall vs CABA-only |",
      "|---|---:|---:|---:|---:|---:|",
  ]
  names = {"last_click": "Baseline 1 (last click)",
           "caba_only": "Baseline 2 (CABA only)",
           "multitask": "Multitask (λ = 0.75, taxonomy + CF)"}
  for row, cell in results["table1"].items():
    lines.append(
        f"| {names.get(row, row)} | {paper['table1'].get(row, float('nan')):.3f}"
        f" | {_ci(cell['overall_ne'])} | {_ci(cell['mean_ne'])} | "
        f"{_diff(_paired(results, 'table1', row, 'last_click', 'overall_ne'))} |"
        f" {_diff(_paired(results, 'table1', row, 'caba_only', 'overall_ne'))} |")
  lines += ["", "## Table 2: CABA and CABB NE as λ varies", "",
            "| λ | paper CABA NE | paper CABB NE | CABA NE | CABB NE | "
            "α-weighted CABB NE | Δ CABB NE vs last click |",
            "|---|---:|---:|---:|---:|---:|---:|"]
  for row, cell in results["table2"].items():
    p = paper["table2"].get(row, (float("nan"), float("nan")))
    label = "single task (last click)" if row == "single_task" else (
        f"{row} (CABA only)" if float(row) == 0 else row)
    lines.append(
        f"| {label} | {p[0]:.3f} | {p[1]:.3f} | {_ci(cell['caba_ne'])} | "
        f"{_ci(cell['cabb_ne'])} | {_ci(cell['cabb_ne_alpha_weighted'])} | "
        f"{_diff(_paired(results, 'table2', row, 'last_click', 'cabb_ne'))} |")
  lines += ["", "## Table 3: weighting schemes at λ = 0.75", "",
            "| scheme | paper CABA NE | paper CABB NE | CABA NE | CABB NE | "
            "Δ CABA NE vs CABA-only |",
            "|---|---:|---:|---:|---:|---:|"]
  for row, cell in results["table3"].items():
    p = paper["table3"].get(row, (float("nan"), float("nan")))
    lines.append(
        f"| {row} | {p[0]:.3f} | {p[1]:.3f} | {_ci(cell['caba_ne'])} | "
        f"{_ci(cell['cabb_ne'])} | "
        f"{_diff(_paired(results, 'table3', row, 'caba_only', 'caba_ne'))} |")
  if "rq4" in results:
    lines += ["", "## RQ-4: permutation importance (rise in the head's NE)",
              ""]
    for head in ("caba", "cabb"):
      families = ", ".join(f"{name} {value:+.4f}" for name, value in
                           results["rq4_families"][head])
      top = ", ".join(f"{name} {value:+.4f}" for name, value in
                      results["rq4"][head][:8])
      lines += [f"- **{head.upper()}** families: {families}",
                f"  - top features: {top}"]
  lines += ["", "## The paper's claims here", "",
            "| claim | holds | significant |", "|---|---|---|"]
  for check in results.get("paper_directions", {}).values():
    significant = check.get("significant")
    lines.append(f"| {check['claim']} | {'yes' if check['holds'] else 'no'} |"
                 f" {'—' if significant is None else ('yes' if significant else 'no')} |")
  lines += beyond.render(results)
  return "\n".join(lines) + "\n"
