"""Renders a reproduction's `results.json` as `results.md`."""

from typing import Any, Dict, List, Optional

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


def _cell(cell: Optional[Dict[str, Any]], digits: int = 4) -> str:
  return "—" if not cell else _ci(cell) if digits == 4 else (
      f"{cell['mean']:.{digits}f} [{cell['ci95'][0]:.{digits}f}, "
      f"{cell['ci95'][1]:.{digits}f}]")


def _headroom(results, table, row, metric) -> str:
  cell = (results.get("floors", {}).get(table, {}).get(row, {})
          .get(metric))
  if not cell:
    return "—"
  return f"{cell['floor']:.3f} / {_cell(cell['headroom_closed'], 2)}"


def _floor_note(results) -> List[str]:
  if not results.get("floors"):
    return []
  return ["Floor / closed: the oracle NE floor of the dataset "
          "(`cabb_tf/data/oracle.py`) and the share of the headroom the "
          "cell closes, (1 − NE) / (1 − floor), mean [95 % interval] over "
          "seeds. Recalibrated: the same predictions under a Platt map "
          "fitted on the validation split per task (docs/metrics.md).", ""]


def _table1(results, prefix: str = "") -> List[str]:
  table = prefix + "table1"
  lines = ["| variant | paper NE | overall NE | floor / closed | "
           "recalibrated overall NE | floor / closed | mean NE | "
           "Δ overall vs last click | Δ overall vs CABA-only |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
  names = {"last_click": "Baseline 1 (last click)",
           "caba_only": "Baseline 2 (CABA only)",
           "multitask": f"Multitask ({beyond.selected_label(results)})"}
  for row, cell in results[table].items():
    lines.append(
        f"| {names.get(row, row)} | "
        f"{claims_lib.PAPER['table1'].get(row, float('nan')):.3f}"
        f" | {_ci(cell['overall_ne'])} | "
        f"{_headroom(results, table, row, 'overall_ne')} | "
        f"{_cell(cell.get('overall_ne_recalibrated'))} | "
        f"{_headroom(results, table, row, 'overall_ne_recalibrated')} | "
        f"{_ci(cell['mean_ne'])} | "
        f"{_diff(_paired(results, table, row, 'last_click', 'overall_ne'))} |"
        f" {_diff(_paired(results, table, row, 'caba_only', 'overall_ne'))} |")
  return lines


def _table2(results, prefix: str = "") -> List[str]:
  table = prefix + "table2"
  lines = ["| λ | paper CABA / CABB NE | CABA NE | CABB NE | "
           "α-weighted CABB NE | recalibrated CABA NE | recalibrated CABB NE "
           "| CABB floor / closed | Δ CABB NE vs last click |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for row, cell in results[table].items():
    p = claims_lib.PAPER["table2"].get(row, (float("nan"), float("nan")))
    label = "single task (last click)" if row == "single_task" else (
        f"{row} (CABA only)" if float(row) == 0 else row)
    lines.append(
        f"| {label} | {p[0]:.3f} / {p[1]:.3f} | {_ci(cell['caba_ne'])} | "
        f"{_ci(cell['cabb_ne'])} | {_ci(cell['cabb_ne_alpha_weighted'])} | "
        f"{_cell(cell.get('caba_ne_recalibrated'))} | "
        f"{_cell(cell.get('cabb_ne_recalibrated'))} | "
        f"{_headroom(results, table, row, 'cabb_ne')} | "
        f"{_diff(_paired(results, table, row, 'last_click', 'cabb_ne'))} |")
  return lines


def _table3(results, prefix: str = "") -> List[str]:
  table = prefix + "table3"
  lines = ["| scheme | paper CABA / CABB NE | CABA NE | CABB NE | "
           "recalibrated CABA NE | recalibrated CABB NE | CABA floor / closed "
           "| Δ CABA NE vs CABA-only |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
  for row, cell in results[table].items():
    p = claims_lib.PAPER["table3"].get(row, (float("nan"), float("nan")))
    lines.append(
        f"| {row} | {p[0]:.3f} / {p[1]:.3f} | {_ci(cell['caba_ne'])} | "
        f"{_ci(cell['cabb_ne'])} | "
        f"{_cell(cell.get('caba_ne_recalibrated'))} | "
        f"{_cell(cell.get('cabb_ne_recalibrated'))} | "
        f"{_headroom(results, table, row, 'caba_ne')} | "
        f"{_diff(_paired(results, table, row, 'caba_only', 'caba_ne'))} |")
  return lines


def _claims(results, prefix: str = "") -> List[str]:
  raw = results.get(prefix + "paper_directions", {})
  recalibrated = results.get(prefix + "paper_directions_recalibrated", {})
  lines = ["| claim | holds (raw NE) | significant | holds (recalibrated) | "
           "significant |", "|---|---|---|---|---|"]

  def flag(value):
    return "—" if value is None else ("yes" if value else "no")

  for name, check in raw.items():
    other = recalibrated.get(name, {})
    lines.append(f"| {check['claim']} | {flag(check['holds'])} | "
                 f"{flag(check.get('significant'))} | "
                 f"{flag(other.get('holds'))} | "
                 f"{flag(other.get('significant'))} |")
  return lines


def _oracle(results) -> List[str]:
  oracles = results.get("oracle")
  if not oracles:
    return []
  lines = ["", "## The simulator's NE floor (oracle)", "",
           "The NE of the true purchase probabilities given everything but "
           "the purchases (world, users, sessions, clicks), estimated by "
           "re-drawing the purchases and labelling each draw with the "
           "package's own label code; Monte-Carlo error as stated "
           "(`cabb_tf/data/oracle.py`). No model can go below it.", "",
           "| dataset | CABA NE | CABB NE | last-click NE | overall NE | "
           "MC error | draws |", "|---|---:|---:|---:|---:|---:|---:|"]
  for name, o in oracles.items():
    lines.append(f"| {name} | {o['caba_ne']:.4f} | {o['cabb_ne']:.4f} | "
                 f"{o['last_click_ne']:.4f} | {o['overall_ne']:.4f} | "
                 f"{o.get('mc_error', float('nan')):.4f} | "
                 f"{o.get('draws', '?')} |")
  below = results.get("below_floor", [])
  lines += ["", (f"Runs below their floor by more than the MC error: "
                 f"{len(below)}." + ("" if not below else " " + "; ".join(
                     f"{b['table']}/{b['row']} {b['metric']} "
                     f"{b['ne']:.4f} < {b['floor']:.4f}" for b in below)))]
  return lines


def summary(results: Dict[str, Any], path: str) -> str:
  """What a reproduction prints at its end: Table 1 and where the rest is."""
  lines = ["## Table 1: overall NE", ""] + _floor_note(results)
  lines += _table1(results)
  lines += ["", f"All tables, the claims and the tables beyond the paper: "
            f"{path}"]
  return "\n".join(lines)


def render(results: Dict[str, Any]) -> str:
  """The three tables, paired differences, RQ-4, the claims and the tables
  beyond the paper, as markdown."""
  seeds = results.get("seeds", [])
  total = results.get("wall_time_total_s", results.get("wall_time_s", 0))
  lines: List[str] = [
      "# Click A, Buy B: reproduction results", "",
      f"Means over {len(seeds)} seeds ({', '.join(map(str, seeds))}) with "
      "95 % Student-t intervals over seeds in brackets. Differences are "
      "paired (same seeds, same test rows) with 95 % intervals from a "
      "bootstrap over test sessions; `*` marks an interval that excludes 0. "
      "CABA NE is over click examples, CABB NE over all rows uniformly, "
      "overall NE pools both tasks' sums (docs/metrics.md).", "",
      f"Test rows: {results.get('num_examples', {}).get('test', '?')}. "
      f"Wall time: {results.get('wall_time_s', 0) / 60:.1f} min (this "
      f"invocation), {total / 60:.1f} min over all invocations.", "",
  ]
  lines += _oracle(results)
  lines += ["", "## Table 1: overall NE", ""] + _floor_note(results)
  lines += _table1(results)
  lines += ["", "## Table 2: CABA and CABB NE as λ varies", ""]
  lines += _table2(results)
  lines += ["", "## Table 3: weighting schemes at λ = 0.75", ""]
  lines += _table3(results)
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
  lines += ["", "## The paper's claims here", ""] + _claims(results)
  for regime, scale in results.get("regimes", {}).items():
    if regime == "main":
      continue
    prefix = f"{regime}/"
    lines += ["", f"## Regime '{regime}' (simulator signal_scale = {scale:g})",
              "", f"Oracle floor: see `{regime}` datasets above.", "",
              "### Table 1", ""] + _table1(results, prefix)
    lines += ["", "### Table 2", ""] + _table2(results, prefix)
    lines += ["", "### Table 3", ""] + _table3(results, prefix)
    lines += ["", "### The paper's claims in this regime", ""]
    lines += _claims(results, prefix)
  lines += beyond.render(results)
  return "\n".join(lines) + "\n"
