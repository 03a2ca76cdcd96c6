"""Log sources for `pipeline.prepare_to_dir`: callables returning
`(events, catalog, report)`, bound in gin (`prepare_to_dir.source = @...`).

The loaders in `loaders` are sources as they are (bind their `path`); this
module adds the simulator.
"""

from typing import Any, Dict, Tuple

import gin
import pandas as pd

from cabb_tf.data import report as report_lib
from cabb_tf.data import simulator


@gin.configurable
def simulated(seed: int = 0) -> Tuple[pd.DataFrame, pd.DataFrame,
                                      Dict[str, Any]]:
  """The embedded simulator as a log source (sizes set on `simulate` in gin).

  Args:
    seed: the simulator seed.

  Returns:
    `(events, catalog, report)`; the report also counts the ground-truth
    relation of every purchase (`ground_truth_relations`).
  """
  log = simulator.simulate(seed=seed)
  report = report_lib.new_report(f"simulator(seed={seed})")
  report["rows_in"] = report["rows_kept"] = int(len(log.events))
  report["ground_truth_relations"] = {
      str(k): int(v) for k, v in
      log.purchases["relation"].value_counts().sort_index().items()}
  return log.events, log.catalog, report
