"""Reproduces the paper's experiments (§4): Tables 1–3 and RQ-4, and beyond.

`run(base_dir)` trains every variant the tables need over several seeds,
reusing runs shared between tables (the multitask model at the selected λ
with taxonomy + CF is a row of all three; Baseline 2 is the λ = 0 row of
Table 2; Baseline 1 is Table 2's single-task row), then writes
`results.json`, `results.md`, PNG plots and a TensorBoard HParams view to
`base_dir`. Runs live in `base_dir/runs/<variant>/seed_<seed>`; a finished
run (one with `metrics.json`) is not run again, and an interrupted one
resumes from its checkpoints, so starting `run` again with the same
`base_dir` continues where it stopped.

Beyond the paper (issue 6; each table is off unless its gin argument is set,
as `gin/beyond.gin` does): learned task balances against the fixed and the
best swept λ, expert shared bottoms (MMoE, PLE), attribution windows that
cross sessions (each window is a dataset of its own, built into
`base_dir/datasets/`), the CABB head on the simulator's genuine vs noise CABB
rows per weighting scheme, and the serving score p_caba + β·p_cabb.
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

from cabb_tf import gin_utils
from cabb_tf import input_pipeline
from cabb_tf import train
from cabb_tf.analysis import beyond
from cabb_tf.analysis import claims as claims_lib
from cabb_tf.analysis import importance as importance_lib
from cabb_tf.analysis import plots
from cabb_tf.analysis import results_md
from cabb_tf.analysis import serving
from cabb_tf.analysis import stats
from cabb_tf.data import report as report_lib
from cabb_tf.similarity import weighting


@dataclasses.dataclass(frozen=True)
class Variant:
  """One trained configuration (trained once per seed).

  Attributes:
    task: 'multitask', 'last_click' or 'caba_only'.
    cabb_weight: λ of Eq. (6) (the starting point of a learned balance).
    scheme: the α weighting scheme.
    balance: the task balance ('fixed' or a learned one).
    bottom: the shared bottom ('shared_mlp', 'dcn', 'mmoe', 'ple').
    window_s: the attribution window in seconds (None: the session).
  """
  task: str
  cabb_weight: float = 0.0
  scheme: str = "static"
  balance: str = "fixed"
  bottom: str = "shared_mlp"
  window_s: Optional[float] = None

  @property
  def key(self) -> str:
    key = (self.task if self.task != "multitask" else
           f"multitask_lambda{self.cabb_weight:g}_{self.scheme}")
    if self.balance != "fixed":
      key += f"_{self.balance}"
    if self.bottom != "shared_mlp":
      key += f"_{self.bottom}"
    if self.window_s is not None:
      key += f"_window{self.window_s:g}s"
    return key


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


def window_key(window_s: Optional[float]) -> str:
  """Window table row key: 'session' or the window in seconds ('86400s')."""
  return "session" if window_s is None else f"{float(window_s):g}s"


def extra_variants(selected: Variant, balances: Sequence[str],
                   bottoms: Sequence[str],
                   windows_s: Sequence[Optional[float]],
                   ground_truth_schemes: Sequence[str]
                   ) -> Dict[str, Dict[str, Variant]]:
  """The rows of the tables beyond the paper (issue 6) and their variants.

  * `balance`: the selected model with a fixed λ and with each learned task
    balance (the best swept λ is added once Table 2 is known);
  * `bottoms`: the selected model with each shared bottom;
  * `windows` / `windows_last_click`: the selected model and Baseline 1 on
    labels from each attribution window (each window is its own dataset);
  * `ground_truth`: the selected model with each weighting scheme.
  """
  out: Dict[str, Dict[str, Variant]] = {}
  if balances:
    out["balance"] = {"fixed": selected}
    out["balance"].update({b: dataclasses.replace(selected, balance=b)
                           for b in balances if b != "fixed"})
  if bottoms:
    out["bottoms"] = {b: dataclasses.replace(selected, bottom=b)
                      for b in bottoms}
  if windows_s:
    out["windows"] = {window_key(w): dataclasses.replace(selected, window_s=w)
                      for w in windows_s}
    out["windows_last_click"] = {
        window_key(w): Variant("last_click", window_s=w) for w in windows_s}
  if ground_truth_schemes:
    out["ground_truth"] = {s: dataclasses.replace(selected, scheme=s)
                           for s in ground_truth_schemes}
  return out


# Gin parameters that `_bind` sets for every run.
BALANCE_PARAMETER = "task_balance.method"
BOTTOM_PARAMETER = "build_model.bottom"
WINDOW_PARAMETER = "label_clicks.attribution_window_s"
DATA_DIR_PARAMETER = "load_data.data_dir"


def _data_dir(base_dir: str, window_s: Optional[float],
              default: Optional[str]) -> Optional[str]:
  """The TFDS data dir of a window's dataset (the default one for None)."""
  if window_s is None:
    return default
  return os.path.join(base_dir, "datasets", f"window_{window_key(window_s)}")


def _bind(variant: Variant, seed: int, data_dir: Optional[str],
          windows: bool) -> None:
  """Binds the gin parameters of one run (`windows`: any window in use)."""
  with gin.unlock_config():
    gin.bind_parameter("train.run.task", variant.task)
    gin.bind_parameter("train.run.weighting_scheme", variant.scheme)
    gin.bind_parameter("train.run.seed", seed)
    gin.bind_parameter("multitask_losses.cabb_weight",
                       float(variant.cabb_weight))
    gin.bind_parameter(BALANCE_PARAMETER, variant.balance)
    gin.bind_parameter(BOTTOM_PARAMETER, variant.bottom)
    if windows:
      gin.bind_parameter(WINDOW_PARAMETER, variant.window_s)
    gin.bind_parameter(DATA_DIR_PARAMETER, data_dir)


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
        importance: bool = True,
        balances: Sequence[str] = (),
        bottoms: Sequence[str] = (),
        attribution_windows_s: Sequence[Optional[float]] = (),
        ground_truth_schemes: Sequence[str] = (),
        serving_betas: Sequence[float] = ()) -> Dict[str, Any]:
  """Runs the paper's experiments (and those beyond it) and writes the results.

  Args:
    base_dir: output directory (resumable).
    seeds: the seeds every variant is trained with (≥ 3 for intervals).
    lambdas: Table 2's λ values (0 is Baseline 2).
    selected_lambda: λ of Tables 1 and 3.
    schemes: Table 3's weighting schemes (`weighting.SCHEMES`).
    selected_scheme: the scheme of Tables 1 and 2.
    bootstrap_resamples: resamples of the paired session bootstrap.
    importance: compute RQ-4's permutation importance.
    balances: learned task balances compared with the fixed and the best
      swept λ (`task_balance.METHODS`); () leaves the table out.
    bottoms: shared bottoms compared at the selected λ and scheme
      (`factory.BOTTOMS`); () leaves the table out.
    attribution_windows_s: attribution windows in seconds (None: the session,
      the paper's rule); each builds its own dataset; () leaves it out.
    ground_truth_schemes: schemes whose CABB head is scored on the
      simulator's genuine vs noise CABB rows; () leaves it out.
    serving_betas: β grid of the serving score p_caba + β·p_cabb checked on
      the selected model's test sessions; () leaves it out.

  Returns:
    The results dict written to `results.json`.
  """
  for scheme in (tuple(schemes) + (selected_scheme,) +
                 tuple(ground_truth_schemes)):
    weighting.check_scheme(scheme)
  default_data_dir = gin_utils.bound(DATA_DIR_PARAMETER)
  tables = table_variants(lambdas, selected_lambda, schemes, selected_scheme)
  selected = tables["table1"]["multitask"]
  tables.update(extra_variants(selected, balances, bottoms,
                               attribution_windows_s, ground_truth_schemes))
  unique = list(dict.fromkeys(v for rows in tables.values()
                              for v in rows.values()))
  progress = _Progress(len(unique) * len(seeds))
  started_all = time.time()
  metrics: Dict[Tuple[Variant, int], Dict[str, Any]] = {}
  for variant in unique:
    data_dir = _data_dir(base_dir, variant.window_s, default_data_dir)
    for seed in seeds:
      run_dir = _run_dir(base_dir, variant, seed)
      started = progress.start(f"{variant.key} seed {seed}")
      done = _read_metrics(run_dir)
      trained = done is None
      if trained:
        _bind(variant, seed, data_dir, bool(attribution_windows_s))
        tf.keras.backend.clear_session()
        train.run(run_dir, export=False, save_predictions=True)
        done = _read_metrics(run_dir)
      metrics[(variant, seed)] = done
      progress.finish(started, trained)

  _bind(selected, seeds[0], default_data_dir, bool(attribution_windows_s))
  data = input_pipeline.load_data()
  results: Dict[str, Any] = {}
  for table, rows in tables.items():
    results[table] = {row: _seed_cells(metrics, v, seeds)
                      for row, v in rows.items()}
  comparisons = _comparisons(tables)
  if "balance" in tables:
    results["balance_lambda_by_epoch"] = {
        row: [beyond.scalar_series(
            os.path.join(_run_dir(base_dir, v, s), "train"), "balance/lambda")
              for s in seeds]
        for row, v in tables["balance"].items() if v.balance != "fixed"}
    best = beyond.best_lambda(results["table2"])
    results["balance_best_lambda"] = best
    if best is not None:
      best_variant = tables["table2"][best]
      tables["balance"] = _after_first(tables["balance"], "best_fixed",
                                       best_variant)
      results["balance"] = _after_first(results["balance"], "best_fixed",
                                        results["table2"][best])
      for row in tables["balance"]:
        if row != "best_fixed" and tables["balance"][row] != best_variant:
          comparisons["balance"][row]["references"]["best_fixed"] = (
              best_variant)
  results["paired_differences"] = _paired_differences(
      base_dir, comparisons, seeds, bootstrap_resamples)

  if "windows" in tables:
    results["window_data"] = {
        row: beyond.window_data(input_pipeline.load_data(
            data_dir=_data_dir(base_dir, v.window_s, default_data_dir)))
        for row, v in tables["windows"].items()}
  if "ground_truth" in tables and "relation" not in _predictions(
      base_dir, selected, seeds[0]):
    logging.warning("The dataset has no ground-truth relations (only the "
                    "simulator has them): the ground-truth table is left out.")
  elif "ground_truth" in tables:
    results["ground_truth_ne"] = {
        row: beyond.over_seeds([beyond.ground_truth_row(
            _predictions(base_dir, v, s)) for s in seeds])
        for row, v in tables["ground_truth"].items()}
  if serving_betas:
    results["serving"] = {
        name: beyond.serving_over_seeds(
            [serving.serving_report(_predictions(base_dir, selected, s),
                                    betas=serving_betas,
                                    converting_only=converting)
             for s in seeds])
        for name, converting in (("all_clicks", False),
                                 ("converting_clicks", True))}

  if importance:
    results["rq4"], results["rq4_families"], raw = _importance(
        base_dir, data, selected, seeds, default_data_dir,
        bool(attribution_windows_s))
  else:
    raw = None
  results["paper_directions"] = claims_lib.check(results)
  results["beyond_paper"] = beyond.check(results)
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


# Run outputs averaged over seeds besides `train.METRIC_KEYS`, where present.
EXTRA_METRIC_KEYS = ("final_lambda",)


def _seed_cells(metrics, variant: Variant, seeds) -> Dict[str, Any]:
  """Mean and interval over seeds of each metric of a variant's runs."""
  runs = [metrics[(variant, s)] for s in seeds]
  keys = list(train.METRIC_KEYS) + [
      k for k in EXTRA_METRIC_KEYS if all(k in r for r in runs)]
  return {key: stats.mean_ci([r[key] for r in runs]) for key in keys}


def _after_first(rows: Dict[str, Any], key: str, value: Any) -> Dict[str, Any]:
  """`rows` with `key: value` inserted after its first entry."""
  items = list(rows.items())
  return dict(items[:1] + [(key, value)] + items[1:])


def _comparisons(tables) -> Dict[str, Dict[str, Dict[str, Any]]]:
  """For each table row, the variants it is compared with (paired).

  Rows are compared with both baselines on the same dataset; a window's rows
  with that window's Baseline 1; shared bottoms also with the shared MLP.
  """
  baselines = {"last_click": tables["table1"]["last_click"],
               "caba_only": tables["table1"]["caba_only"]}
  out: Dict[str, Dict[str, Dict[str, Any]]] = {}
  for table, rows in tables.items():
    out[table] = {}
    for row, variant in rows.items():
      if table == "windows":
        references = {"last_click": tables["windows_last_click"][row]}
      elif table == "windows_last_click":
        references = {}
      else:
        references = dict(baselines)
        if table == "bottoms":
          references["shared_mlp"] = tables["table1"]["multitask"]
      out[table][row] = {
          "variant": variant,
          "references": {name: ref for name, ref in references.items()
                         if ref != variant}}
  return out


def _predictions(base_dir: str, variant: Variant,
                 seed: int) -> Dict[str, np.ndarray]:
  """A run's saved test arrays, with `p_caba`/`p_cabb` for every task."""
  with np.load(os.path.join(_run_dir(base_dir, variant, seed),
                            "predictions.npz")) as f:
    arrays = dict(f)
  heads = input_pipeline.heads_of(variant.task)
  arrays.setdefault("p_caba", arrays.get(f"p_{heads[0]}"))
  arrays.setdefault("p_cabb", arrays.get(f"p_{heads[0]}"))
  return arrays


def _paired_differences(base_dir, comparisons, seeds,
                        resamples) -> Dict[str, Any]:
  """Paired session-bootstrap differences of each row against its references."""
  sums_cache: Dict[Tuple[Variant, int], Tuple[Dict[str, np.ndarray], int]] = {}

  def sums(variant, seed):
    if (variant, seed) not in sums_cache:
      arrays = _predictions(base_dir, variant, seed)
      session = arrays["session_id"].astype(np.int64)
      num_sessions = int(session.max()) + 1
      sums_cache[(variant, seed)] = (stats.session_sums(
          arrays, arrays["p_caba"], arrays["p_cabb"], session, num_sessions),
                                     num_sessions)
    return sums_cache[(variant, seed)]

  out: Dict[str, Any] = {}
  for table, rows in comparisons.items():
    out[table] = {}
    for row, comparison in rows.items():
      out[table][row] = {}
      for name, reference in comparison["references"].items():
        pairs = [{"variant": sums(comparison["variant"], s)[0],
                  "reference": sums(reference, s)[0]} for s in seeds]
        num_sessions = sums(reference, seeds[0])[1]
        out[table][row][f"vs_{name}"] = stats.paired_bootstrap(
            pairs, num_sessions, resamples)
  return out


def _importance(base_dir, data, variant, seeds, data_dir, windows):
  inputs, columns = importance_lib.load_split(
      input_pipeline.split_columns(data, "test"), data.feature_statistics)
  raw = []
  for seed in seeds:
    _bind(variant, seed, data_dir, windows)
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
                 hp.HParam("lambda"), hp.HParam("task_balance"),
                 hp.HParam("bottom"), hp.HParam("seed")],
        metrics=[hp.Metric(f"test/{tag}", group="eval",
                           display_name=f"test {tag}")
                 for tag in ("caba/ne", "cabb/ne", "overall/ne", "mean/ne")])
  writer.flush()
