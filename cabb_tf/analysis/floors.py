"""The oracle floor beside a reproduction's NEs (docs/metrics.md).

On simulated data every NE has a floor: the NE of the simulator's true
probabilities (`cabb_tf.data.oracle`), which no model can beat but by
Monte-Carlo and sampling noise. A table cell then reads as the share of the
headroom it closes,

    headroom closed = (1 − NE) / (1 − floor),

0 for the base rate, 1 for the oracle, negative for worse than the base rate.
It is computed per seed and averaged with a Student-t interval, like the NEs.
"""

from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

from cabb_tf.analysis import stats

# The oracle NE that floors each table metric (raw and recalibrated alike).
FLOOR_OF = {
    "caba_ne": "caba_ne", "cabb_ne": "cabb_ne", "overall_ne": "overall_ne",
    "last_click_ne": "last_click_ne",
    "caba_ne_recalibrated": "caba_ne", "cabb_ne_recalibrated": "cabb_ne",
    "overall_ne_recalibrated": "overall_ne",
}


def headroom_closed(ne: float, floor: float) -> float:
  """(1 − NE) / (1 − floor); NaN when the floor is not below 1."""
  if not floor < 1.0:
    return float("nan")
  return (1.0 - ne) / (1.0 - floor)


def _floored(results, dataset_of, oracles) -> Iterator[Tuple]:
  """(table, row, metric, per-seed NEs, floor, oracle) of every floored cell:
  rows whose dataset has an oracle, metrics of `FLOOR_OF` they have."""
  for table, rows in dataset_of.items():
    for row, dataset in rows.items():
      oracle = oracles.get(dataset)
      cells = results.get(table, {}).get(row)
      if not oracle or not cells:
        continue
      for metric, floor_key in FLOOR_OF.items():
        if metric in cells and floor_key in oracle:
          yield (table, row, metric, cells[metric]["runs"],
                 float(oracle[floor_key]), oracle)


def table_floors(results: Mapping[str, Any],
                 dataset_of: Mapping[str, Mapping[str, str]],
                 oracles: Mapping[str, Mapping[str, Any]]
                 ) -> Dict[str, Dict[str, Dict[str, Any]]]:
  """The floor and the headroom closed of every floored cell.

  Args:
    results: a reproduction's results ({table: {row: {metric: cell}}}, cells
      from `stats.mean_ci` with per-seed `runs`).
    dataset_of: {table: {row: the key of the dataset the row ran on}}.
    oracles: {dataset key: `oracle.oracle_for_builder`'s dict}.

  Returns:
    {table: {row: {metric: {'floor', 'mc_error', 'headroom_closed': a
    `stats.mean_ci` cell over seeds}}}} for the rows whose dataset has an
    oracle and the metrics of `FLOOR_OF` they have.
  """
  out: Dict[str, Dict[str, Dict[str, Any]]] = {}
  for table, row, metric, runs, floor, oracle in _floored(results, dataset_of,
                                                          oracles):
    out.setdefault(table, {}).setdefault(row, {})[metric] = {
        "floor": floor,
        "mc_error": oracle.get("mc_error"),
        "headroom_closed": stats.mean_ci(
            [headroom_closed(ne, floor) for ne in runs]),
    }
  return out


def below_floor(results: Mapping[str, Any],
                dataset_of: Mapping[str, Mapping[str, str]],
                oracles: Mapping[str, Mapping[str, Any]],
                margin: Optional[float] = None) -> List[Dict[str, Any]]:
  """Runs whose NE is below its floor by more than the oracle's stated error.

  A model cannot beat the true probabilities in expectation; a run below the
  floor beyond the Monte-Carlo error (`margin`, default the oracle's own
  `mc_error`) points at a bug or at test-set luck, and is listed.

  Returns:
    [{'table', 'row', 'metric', 'seed_index', 'ne', 'floor', 'margin'}].
  """
  found = []
  for table, row, metric, runs, floor, oracle in _floored(results, dataset_of,
                                                          oracles):
    allowed = float(oracle.get("mc_error", 0.0) if margin is None
                    else margin)
    for i, ne in enumerate(runs):
      if ne < floor - allowed:
        found.append({"table": table, "row": row, "metric": metric,
                      "seed_index": i, "ne": ne, "floor": floor,
                      "margin": allowed})
  return found
