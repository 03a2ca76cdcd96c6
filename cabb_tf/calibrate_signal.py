"""Fixes the simulator's signal scale of a regime by one calibration target.

A regime is a simulated world whose `simulate.signal_scale` is chosen in
advance, not tuned on the results it is meant to test. `run` trains one
model that is not a treatment row of the paper's tables — by default the
CABA-only baseline (Baseline 2), scored on its own CABA NE — on datasets
simulated at a grid of signal scales, and interpolates the scale at which
that NE meets the target (by default the paper's 0.398, Table 2's λ = 0
row). The grid's datasets are built into `base_dir/datasets/signal_<s>`, the
names `reproduce.run` uses, so a reproduction with the same `base_dir`
reuses them.

Outputs in `base_dir`: `calibration.json` (every grid point, the target, the
chosen scale) and `regime.gin` (the binding to copy into
`gin/simulator/<regime>.gin`).
"""

import json
import os
from typing import Any, Dict, Optional, Sequence

from absl import logging
import gin
import numpy as np
import tensorflow as tf

from cabb_tf import gin_utils
from cabb_tf import train
from cabb_tf.data import report as report_lib


def interpolate(scales: Sequence[float], values: Sequence[float],
                target: float) -> Optional[float]:
  """The scale at which piecewise-linear `values` first reach `target`.

  Args:
    scales: increasing grid of signal scales.
    values: the metric at each scale.
    target: the wanted value.

  Returns:
    The interpolated scale of the first grid segment whose ends bracket the
    target, or None when no segment does (the target is off the grid).
  """
  for (s0, v0), (s1, v1) in zip(zip(scales, values),
                                zip(scales[1:], values[1:])):
    if min(v0, v1) <= target <= max(v0, v1):
      if v1 == v0:
        return float(s0)
      return float(s0 + (target - v0) * (s1 - s0) / (v1 - v0))
  return None


@gin.configurable(denylist=["base_dir"])
def run(base_dir: str,
        signal_scales: Sequence[float] = (1.0, 2.0, 3.0, 4.0),
        task: str = "caba_only",
        metric: str = "caba_ne",
        target: float = 0.398,
        regime: str = "paper",
        seed: int = 0) -> Dict[str, Any]:
  """Trains `task` at each signal scale and interpolates the target's scale.

  Args:
    base_dir: output directory (resumable: finished grid points are reused).
    signal_scales: the grid, increasing.
    task: the calibration model (`train.run.task`): not a treatment row.
    metric: the `metrics.json` key calibrated.
    target: its wanted value.
    regime: the regime's name (for `regime.gin`).
    seed: the training seed.

  Returns:
    The dict written to `calibration.json`.

  Raises:
    ValueError: if the grid is not increasing.
  """
  scales = [float(s) for s in signal_scales]
  if len(scales) < 2 or any(b <= a for a, b in zip(scales, scales[1:])):
    raise ValueError(f"signal_scales must increase, with at least two "
                     f"values; got {signal_scales!r}.")
  points = []
  for scale in scales:
    name = f"signal_{scale:g}"
    run_dir = os.path.join(base_dir, "calibration", name, f"seed_{seed}")
    path = os.path.join(run_dir, "metrics.json")
    if not os.path.exists(path):
      with gin.unlock_config():
        gin.bind_parameter("simulate.signal_scale", scale)
        gin.bind_parameter("load_data.data_dir",
                           os.path.join(base_dir, "datasets", name))
        gin.bind_parameter("train.run.task", task)
        gin.bind_parameter("train.run.seed", seed)
      tf.keras.backend.clear_session()
      train.run(run_dir, export=False)
    with open(path) as f:
      value = float(json.load(f)[metric])
    logging.info("signal_scale %g: %s %s = %.4f", scale, task, metric, value)
    points.append({"signal_scale": scale, metric: value})
  values = [p[metric] for p in points]
  chosen = interpolate(scales, values, target)
  if chosen is None:
    logging.warning("%s %s = %.3f is not reached on the grid %s (values %s); "
                    "the closest grid point is used.", task, metric, target,
                    scales, [round(v, 4) for v in values])
    chosen = scales[int(np.argmin(np.abs(np.asarray(values) - target)))]
  result = {"regime": regime, "task": task, "metric": metric,
            "target": target, "seed": seed, "points": points,
            "signal_scale": round(float(chosen), 2),
            "reached": interpolate(scales, values, target) is not None}
  report_lib.write_json(result, os.path.join(base_dir, "calibration.json"))
  gin_utils.write_text_atomic(
      os.path.join(base_dir, "regime.gin"),
      f"# Regime '{regime}': {task} {metric} = {target} "
      f"(calibrate_signal.run; grid {scales}).\n"
      f"simulate.signal_scale = {result['signal_scale']}\n")
  print(json.dumps(result, indent=1))
  return result
