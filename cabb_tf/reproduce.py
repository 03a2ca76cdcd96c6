"""Reproduces the paper's experiments (§4): Tables 1–3 and RQ-4.

`run(base_dir)` trains every variant the tables need over several seeds,
reusing runs shared between tables (the multitask model at the selected λ
with taxonomy + CF is a row of all three; Baseline 2 is the λ = 0 row of
Table 2; Baseline 1 is Table 2's single-task row), then writes
`results.json`, `results.md`, PNG plots and a TensorBoard HParams view to
`base_dir`. Runs live in `base_dir/runs/<variant>/seed_<seed>`; a finished
run (one with `metrics.json`) is not run again, and an interrupted one
resumes from its checkpoints, so starting `run` again with the same
`base_dir` continues where it stopped.
"""

import dataclasses
import json
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from absl import logging
import gin
import numpy as np
import tensorflow as tf

from cabb_tf import input_pipeline
from cabb_tf import train
from cabb_tf.analysis import claims as claims_lib
from cabb_tf.analysis import importance as importance_lib
from cabb_tf.analysis import plots
from cabb_tf.analysis import results_md
from cabb_tf.analysis import stats
from cabb_tf.data import report as report_lib
from cabb_tf.similarity import weighting


@dataclasses.dataclass(frozen=True)
class Variant:
  """One trained configuration (trained once per seed)."""
  task: str
  cabb_weight: float = 0.0
  scheme: str = "static"

  @property
  def key(self) -> str:
    if self.task != "multitask":
      return self.task
    return f"multitask_lambda{self.cabb_weight:g}_{self.scheme}"


def lambda_key(value: float) -> str:
  """Table 2 row key of a λ: '0.0', '0.1', '0.25', ..."""
  return str(float(value))


def table_variants(lambdas: Sequence[float], selected_lambda: float,
                   schemes: Sequence[str], selected_scheme: str
                   ) -> Dict[str, Dict[str, Variant]]:
  """The rows of Tables 1–3 and the variant behind each."""
  last_click = Variant("last_click")
  caba_only = Variant("caba_only")
  selected = Variant("multitask", selected_lambda, selected_scheme)
  table2 = {"single_task": last_click}
  for value in lambdas:
    table2[lambda_key(value)] = (caba_only if value == 0 else Variant(
        "multitask", float(value), selected_scheme))
  return {
      "table1": {"last_click": last_click, "caba_only": caba_only,
                 "multitask": selected},
      "table2": table2,
      "table3": {scheme: Variant("multitask", selected_lambda, scheme)
                 for scheme in schemes},
  }


def _bind(variant: Variant, seed: int) -> None:
  with gin.unlock_config():
    gin.bind_parameter("train.run.task", variant.task)
    gin.bind_parameter("train.run.weighting_scheme", variant.scheme)
    gin.bind_parameter("train.run.seed", seed)
    gin.bind_parameter("multitask_losses.cabb_weight",
                       float(variant.cabb_weight))


def _run_dir(base_dir: str, variant: Variant, seed: int) -> str:
  return os.path.join(base_dir, "runs", variant.key, f"seed_{seed}")


def _read_metrics(run_dir: str) -> Optional[Dict[str, float]]:
  path = os.path.join(run_dir, "metrics.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


class _Progress:
  """Logs which run of how many is starting, with an estimate of time left."""

  def __init__(self, total: int):
    self.total = total
    self.done = 0
    self.durations: List[float] = []

  def start(self, name: str) -> float:
    left = self.total - self.done
    eta = (f", about {np.mean(self.durations) * left / 60:.1f} min left"
           if self.durations else "")
    logging.info("Run %d of %d: %s%s", self.done + 1, self.total, name, eta)
    print(f"[reproduce] run {self.done + 1}/{self.total}: {name}{eta}",
          flush=True)
    return time.time()

  def finish(self, started: float, trained: bool) -> None:
    self.done += 1
    if trained:
      self.durations.append(time.time() - started)


@gin.configurable(denylist=["base_dir"])
def run(base_dir: str,
        seeds: Sequence[int] = (0, 1, 2),
        lambdas: Sequence[float] = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9),
        selected_lambda: float = 0.75,
        schemes: Sequence[str] = ("static", "i2i_embedding", "taxonomy_cf"),
        selected_scheme: str = "taxonomy_cf",
        bootstrap_resamples: int = 1000,
        importance: bool = True) -> Dict[str, Any]:
  """Runs the paper's experiments and writes the results.

  Args:
    base_dir: output directory (resumable).
    seeds: the seeds every variant is trained with (≥ 3 for intervals).
    lambdas: Table 2's λ values (0 is Baseline 2).
    selected_lambda: λ of Tables 1 and 3.
    schemes: Table 3's weighting schemes (`weighting.SCHEMES`).
    selected_scheme: the scheme of Tables 1 and 2.
    bootstrap_resamples: resamples of the paired session bootstrap.
    importance: compute RQ-4's permutation importance.

  Returns:
    The results dict written to `results.json`.
  """
  for scheme in tuple(schemes) + (selected_scheme,):
    weighting.check_scheme(scheme)
  tables = table_variants(lambdas, selected_lambda, schemes, selected_scheme)
  unique = list(dict.fromkeys(v for rows in tables.values()
                              for v in rows.values()))
  progress = _Progress(len(unique) * len(seeds))
  started_all = time.time()
  metrics: Dict[Tuple[Variant, int], Dict[str, float]] = {}
  for variant in unique:
    for seed in seeds:
      run_dir = _run_dir(base_dir, variant, seed)
      started = progress.start(f"{variant.key} seed {seed}")
      done = _read_metrics(run_dir)
      trained = done is None
      if trained:
        _bind(variant, seed)
        tf.keras.backend.clear_session()
        train.run(run_dir, export=False, save_predictions=True)
        done = _read_metrics(run_dir)
      metrics[(variant, seed)] = done
      progress.finish(started, trained)

  data = input_pipeline.load_data()
  results: Dict[str, Any] = {}
  for table, rows in tables.items():
    results[table] = {
        row: {key: stats.mean_ci([metrics[(v, s)][key] for s in seeds])
              for key in train.METRIC_KEYS}
        for row, v in rows.items()}
  results["paired_differences"] = _paired_differences(
      base_dir, tables, seeds, bootstrap_resamples)

  selected = tables["table1"]["multitask"]
  if importance:
    results["rq4"], results["rq4_families"], raw = _importance(
        base_dir, data, selected, seeds)
  else:
    raw = None
  results["paper_directions"] = claims_lib.check(results)
  results["seeds"] = list(seeds)
  results["num_examples"] = data.num_examples
  results["wall_time_s"] = time.time() - started_all

  report_lib.write_json(results, os.path.join(base_dir, "results.json"))
  markdown = results_md.render(results)
  with open(os.path.join(base_dir, "results.md"), "w") as f:
    f.write(markdown)
  plots.write_all(base_dir, results, tables, seeds, data, raw)
  _hparams_config(base_dir)
  print(markdown)
  return results


def _paired_differences(base_dir, tables, seeds, resamples) -> Dict[str, Any]:
  """Paired session-bootstrap differences of each row against both baselines."""
  sums_cache: Dict[Tuple[Variant, int], Dict[str, np.ndarray]] = {}
  num_sessions = None

  def sums(variant, seed):
    nonlocal num_sessions
    if (variant, seed) not in sums_cache:
      with np.load(os.path.join(_run_dir(base_dir, variant, seed),
                                "predictions.npz")) as f:
        arrays = dict(f)
      heads = input_pipeline.heads_of(variant.task)
      p_caba = arrays["p_caba" if "caba" in heads else f"p_{heads[0]}"]
      p_cabb = arrays["p_cabb" if "cabb" in heads else f"p_{heads[0]}"]
      session = arrays["session_id"].astype(np.int64)
      num_sessions = int(session.max()) + 1
      sums_cache[(variant, seed)] = stats.session_sums(
          arrays, p_caba, p_cabb, session, num_sessions)
    return sums_cache[(variant, seed)]

  references = {"last_click": tables["table1"]["last_click"],
                "caba_only": tables["table1"]["caba_only"]}
  out = {}
  for table, rows in tables.items():
    out[table] = {}
    for row, variant in rows.items():
      out[table][row] = {}
      for name, reference in references.items():
        if reference == variant:
          continue
        pairs = [{"variant": sums(variant, s), "reference": sums(reference, s)}
                 for s in seeds]
        out[table][row][f"vs_{name}"] = stats.paired_bootstrap(
            pairs, num_sessions, resamples)
  return out


def _importance(base_dir, data, variant, seeds):
  inputs, columns = importance_lib.load_split(
      input_pipeline.split_columns(data, "test"), data.feature_statistics)
  raw = []
  for seed in seeds:
    _bind(variant, seed)
    tf.keras.backend.clear_session()
    model = train.load_best_model(_run_dir(base_dir, variant, seed),
                                  data.feature_statistics, variant.task)
    raw.append(importance_lib.permutation_importance(
        model, inputs, columns, variant.task, seed=seed))
  rq4 = {head: [[name, value] for name, value in importance_lib.top_features(
      [r[head] for r in raw], n=15)] for head in ("caba", "cabb")}
  families = {head: [[name, value] for name, value in
                     importance_lib.family_importance([r[head] for r in raw])]
              for head in ("caba", "cabb")}
  return rq4, families, raw


def _hparams_config(base_dir: str) -> None:
  """Declares the HParams view over all runs (TensorBoard on base_dir/runs)."""
  from tensorboard.plugins.hparams import api as hp  # pylint: disable=g-import-not-at-top
  writer = tf.summary.create_file_writer(os.path.join(base_dir, "runs"))
  with writer.as_default():
    hp.hparams_config(
        hparams=[hp.HParam("task"), hp.HParam("weighting_scheme"),
                 hp.HParam("lambda"), hp.HParam("seed")],
        metrics=[hp.Metric(f"test/{tag}", group="eval",
                           display_name=f"test {tag}")
                 for tag in ("caba/ne", "cabb/ne", "overall/ne", "mean/ne")])
  writer.flush()
