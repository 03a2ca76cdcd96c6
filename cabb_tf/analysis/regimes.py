"""Simulator regimes and the signal-scale sweep of a reproduction.

The simulator's `signal_scale` (docs/simulator.md) sets how strongly latent
intent drives purchases, and with it the oracle NE floor. A *regime* is
Tables 1–3 repeated on a dataset of one signal scale (its tables are named
'<regime>/table1', ...); the *sweep* trains the Table 1 variants and the
weighting schemes at several scales ('signal_<s>' tables) and asks the
paper's Table 1 and Table 3 questions at each point.
"""

from typing import Any, Dict, Mapping, Optional, Sequence

from cabb_tf.analysis import claims as claims_lib

_TABLES = ("table1", "table2", "table3")


def view(results: Mapping[str, Any], prefix: str) -> Dict[str, Any]:
  """The results of the tables named `prefix + 'table1'`, ... as if they were
  the main tables (for `claims.check` and rendering)."""
  paired = results.get("paired_differences", {})
  out: Dict[str, Any] = {t: results[prefix + t] for t in _TABLES
                         if prefix + t in results}
  out["paired_differences"] = {t: paired[prefix + t] for t in _TABLES
                               if prefix + t in paired}
  for key in ("floors",):
    if key in results:
      out[key] = {t: results[key][prefix + t] for t in _TABLES
                  if prefix + t in results[key]}
  return out


def _signal_view(results: Mapping[str, Any], table: str) -> Dict[str, Any]:
  """A sweep point's rows as Table 1 and Table 3 (the selected model is the
  Table 3 row of its scheme)."""
  rows = results[table]
  paired = results.get("paired_differences", {}).get(table, {})
  table1 = {k: rows[k] for k in ("last_click", "caba_only", "multitask")
            if k in rows}
  scheme_rows = {k: v for k, v in rows.items()
                 if k not in ("last_click", "caba_only", "multitask")}
  return {"table1": table1, "table3": scheme_rows,
          "paired_differences": {"table1": paired, "table3": paired}}


def sweep(results: Mapping[str, Any], signal_scales: Sequence[float],
          datasets: Optional[Mapping[str, str]] = None,
          selected_scheme: str = "taxonomy_cf") -> Dict[str, Any]:
  """The sweep's directions at each signal scale.

  Args:
    results: a reproduction's results with 'signal_<s>' tables.
    signal_scales: the swept scales.
    datasets: {signal key: the key of its dataset} ('main' for the main
      dataset's own scale), for the oracle floors.
    selected_scheme: the scheme of the 'multitask' row.

  Returns:
    {'scales': [...], 'directions': {signal key: {check: holds}} for the
    Table 1 ordering and Table 3's best CABA NE, on raw and recalibrated NE,
    'oracle': {signal key: the dataset's oracle}}.
  """
  directions: Dict[str, Any] = {}
  for value in signal_scales:
    key = f"signal_{float(value):g}"
    if key not in results:
      continue
    point = _signal_view(results, key)
    point["table3"] = dict(point["table3"],
                           **{selected_scheme: point["table1"]["multitask"]})
    directions[key] = {}
    for suffix, name in (("", "raw"),
                         (claims_lib.RECALIBRATED, "recalibrated")):
      checks = claims_lib.check(point, suffix=suffix)
      directions[key][name] = {
          k: v["holds"] for k, v in checks.items()
          if k in ("table1_multitask_lt_caba_only_lt_last_click",
                   "table3_taxonomy_cf_best_caba_ne")}
  oracles = results.get("oracle", {})
  datasets = dict(datasets or {})
  return {"scales": [float(v) for v in signal_scales],
          "directions": directions,
          "oracle": {key: oracles[datasets.get(key, key)] for key in directions
                     if datasets.get(key, key) in oracles}}
