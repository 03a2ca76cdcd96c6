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

Beyond the paper (each table is off unless its gin argument is set,
as `gin/beyond.gin` does): learned task balances against the fixed and the
best swept λ, expert shared bottoms (MMoE, PLE), attribution windows that
cross sessions (each window is a dataset of its own, built into
`base_dir/datasets/`), the CABB head on the simulator's genuine vs noise CABB
rows per weighting scheme, and the serving score p_caba + β·p_cabb.
"""

import collections
import concurrent.futures
import dataclasses
import json
import os
import shutil
import tempfile
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import logging
import gin
import numpy as np
import tensorflow as tf

from cabb_tf import gin_utils
from cabb_tf import input_pipeline
from cabb_tf import logs
from cabb_tf import parallel
from cabb_tf import train
from cabb_tf.analysis import beyond
from cabb_tf.analysis import claims as claims_lib
from cabb_tf.analysis import floors
from cabb_tf.analysis import importance as importance_lib
from cabb_tf.analysis import plots
from cabb_tf.analysis import regimes as regimes_lib
from cabb_tf.analysis import results_md
from cabb_tf.analysis import serving
from cabb_tf.analysis import stats
from cabb_tf.data import oracle as oracle_lib
from cabb_tf.data import report as report_lib
from cabb_tf.datasets import click_examples
from cabb_tf.inputs import weighting


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
    signal_scale: the simulator's `signal_scale` (None: the dataset as
      configured); each value is a dataset of its own.
    alpha_scale: `make_alpha_fn.scale`, 'raw' (Eq. 3) or 'mean_one'.
    optimizer: `train.run.optimizer`.
  """
  task: str
  cabb_weight: float = 0.0
  scheme: str = "static"
  balance: str = "fixed"
  bottom: str = "shared_mlp"
  window_s: Optional[float] = None
  signal_scale: Optional[float] = None
  alpha_scale: str = "raw"
  optimizer: str = "adam"

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
    if self.alpha_scale != "raw":
      key += f"_alpha_{self.alpha_scale}"
    if self.optimizer != "adam":
      key += f"_{self.optimizer}"
    if self.signal_scale is not None:
      key = f"signal{self.signal_scale:g}/{key}"
    return key

  @property
  def dataset(self) -> str:
    """The dataset's key: 'main', or e.g. 'window_86400s', 'signal_2'."""
    return dataset_key(self.window_s, self.signal_scale)


def lambda_key(value: float) -> str:
  """Table 2 row key of a λ: '0.0', '0.1', '0.25', ..."""
  return str(float(value))


def table_variants(lambdas: Sequence[float], selected_lambda: float,
                   schemes: Sequence[str], selected_scheme: str,
                   prefix: str = "", **common) -> Dict[str, Dict[str, Variant]]:
  """The rows of Tables 1–3 and the variant behind each.

  Args:
    lambdas: Table 2's λ values (0 is Baseline 2).
    selected_lambda: λ of Tables 1 and 3.
    schemes: Table 3's schemes.
    selected_scheme: the scheme of Tables 1 and 2.
    prefix: put before each table's name ('table1' → prefix + 'table1').
    **common: `Variant` fields every row shares (e.g. `optimizer`,
      `signal_scale`).
  """
  last_click = Variant("last_click", **common)
  caba_only = Variant("caba_only", **common)
  selected = Variant("multitask", selected_lambda, selected_scheme, **common)
  table2 = {"single_task": last_click}
  for value in lambdas:
    table2[lambda_key(value)] = (caba_only if value == 0 else Variant(
        "multitask", float(value), selected_scheme, **common))
  tables = {
      "table1": {"last_click": last_click, "caba_only": caba_only,
                 "multitask": selected},
      "table2": table2,
      "table3": {scheme: Variant("multitask", selected_lambda, scheme,
                                 **common)
                 for scheme in schemes},
  }
  return {prefix + name: rows for name, rows in tables.items()}


def signal_key(value: float) -> str:
  """A signal scale's key: 'signal_2', 'signal_0.5'."""
  return f"signal_{float(value):g}"


def regime_prefix(regime: str) -> str:
  """Tables of a simulator regime are named '<regime>/table1', ..."""
  return f"{regime}/"


def window_key(window_s: Optional[float]) -> str:
  """Window table row key: 'session' or the window in seconds ('86400s')."""
  return "session" if window_s is None else f"{float(window_s):g}s"


def dataset_key(window_s: Optional[float],
                signal_scale: Optional[float]) -> str:
  """'main' for the configured dataset, else the variant's own dataset."""
  parts = []
  if signal_scale is not None:
    parts.append(signal_key(signal_scale))
  if window_s is not None:
    parts.append(f"window_{window_key(window_s)}")
  return "_".join(parts) or "main"


def extra_variants(selected: Variant, balances: Sequence[str],
                   bottoms: Sequence[str],
                   windows_s: Sequence[Optional[float]],
                   ground_truth_schemes: Sequence[str],
                   alpha_scales: Sequence[str] = (),
                   signal_scales: Sequence[float] = (),
                   signal_schemes: Sequence[str] = (),
                   main_signal_scale: float = 1.0
                   ) -> Dict[str, Dict[str, Variant]]:
  """The rows of the tables beyond the paper and their variants.

  * `balance`: the selected model with a fixed λ and with each learned task
    balance (the best swept λ is added once Table 2 is known);
  * `bottoms`: the selected model with each shared bottom;
  * `windows` / `windows_last_click`: the selected model and Baseline 1 on
    labels from each attribution window (each window is its own dataset);
  * `ground_truth`: the selected model with each weighting scheme;
  * `alpha_scale`: the selected model with α raw (Eq. 3) and rescaled;
  * `signal_<s>`: at each simulator signal scale s (a dataset each; the
    main dataset's own scale `main_signal_scale` reuses its runs), the
    Table 1 variants and the selected model with each of `signal_schemes`.
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
  if alpha_scales:
    out["alpha_scale"] = {a: dataclasses.replace(selected, alpha_scale=a)
                          for a in alpha_scales}
  for value in signal_scales:
    scale = None if float(value) == main_signal_scale else float(value)
    at = dataclasses.replace(selected, signal_scale=scale)
    rows = {"last_click": Variant("last_click", signal_scale=scale),
            "caba_only": Variant("caba_only", signal_scale=scale),
            "multitask": at}
    rows.update({scheme: dataclasses.replace(at, scheme=scheme)
                 for scheme in signal_schemes if scheme != at.scheme})
    out[signal_key(value)] = rows
  return out


# Gin parameters that `_bind` sets for every run.
BALANCE_PARAMETER = "task_balance.method"
BOTTOM_PARAMETER = "build_model.bottom"
WINDOW_PARAMETER = "label_clicks.attribution_window_s"
SIGNAL_PARAMETER = "simulate.signal_scale"
ALPHA_SCALE_PARAMETER = "make_alpha_fn.scale"
OPTIMIZER_PARAMETER = "train.run.optimizer"
LEARNING_RATE_PARAMETER = "train.run.learning_rate"
DATA_DIR_PARAMETER = "load_data.data_dir"


def _data_dir(base_dir: str, variant: Variant,
              default: Optional[str]) -> Optional[str]:
  """The TFDS data dir of a variant's dataset (the default one for 'main')."""
  if variant.dataset == "main":
    return default
  return os.path.join(base_dir, "datasets", variant.dataset)


@dataclasses.dataclass(frozen=True)
class _Defaults:
  """What the configuration binds before `run` binds per-run values."""
  data_dir: Optional[str]
  signal_scale: float
  learning_rate: float
  learning_rates: Mapping[str, float]
  windows: bool
  signals: bool

  def learning_rate_of(self, optimizer: str) -> float:
    if optimizer == "adam":
      return self.learning_rate
    if optimizer not in self.learning_rates:
      raise ValueError(
          f"reproduce.run.optimizer_learning_rates has no learning rate for "
          f"{optimizer!r}; add one (a step size for Adam is not one for "
          f"{optimizer}).")
    return float(self.learning_rates[optimizer])


def _bind(variant: Variant, seed: int, data_dir: Optional[str],
          defaults: _Defaults) -> None:
  """Binds the gin parameters of one run."""
  with gin.unlock_config():
    gin.bind_parameter("train.run.task", variant.task)
    gin.bind_parameter("train.run.weighting_scheme", variant.scheme)
    gin.bind_parameter("train.run.seed", seed)
    gin.bind_parameter("train.run.cabb_weight",
                       float(variant.cabb_weight))
    gin.bind_parameter(BALANCE_PARAMETER, variant.balance)
    gin.bind_parameter(BOTTOM_PARAMETER, variant.bottom)
    gin.bind_parameter(ALPHA_SCALE_PARAMETER, variant.alpha_scale)
    gin.bind_parameter(OPTIMIZER_PARAMETER, variant.optimizer)
    gin.bind_parameter(LEARNING_RATE_PARAMETER,
                       defaults.learning_rate_of(variant.optimizer))
    if defaults.windows:
      gin.bind_parameter(WINDOW_PARAMETER, variant.window_s)
    if defaults.signals:
      gin.bind_parameter(SIGNAL_PARAMETER, defaults.signal_scale
                         if variant.signal_scale is None
                         else float(variant.signal_scale))
    gin.bind_parameter(DATA_DIR_PARAMETER, data_dir)


def check_categories(data: input_pipeline.Data,
                     schemes: Sequence[str]) -> None:
  """Fails before any training when leaf schemes meet a log without categories.

  In a log without categories every item's leaf is `<unknown>`, and the
  schemes of `weighting.CATEGORY_SCHEMES` give α = 0 to every CABB row: their
  CABB head would learn nothing.

  Args:
    data: the main dataset (`input_pipeline.load_data()`).
    schemes: the weighting schemes the reproduction trains.

  Raises:
    ValueError: naming the schemes and the gin file to add.
  """
  report = data.builder.info.metadata.get("data_report", {})
  items = report.get("items", 0)
  needing = sorted({s for s in schemes if s in weighting.CATEGORY_SCHEMES})
  if needing and items and report.get("items_unknown_category") == items:
    raise ValueError(
        f"{data.builder.info.full_name}: none of the log's {items} items has a "
        "category (every leaf is '<unknown>'), so the schemes "
        f"{needing} would give α = 0 to every CABB row. Add "
        "--gin_file=gin/reproduce_uncategorized.gin after gin/reproduce.gin "
        "(the static scheme selected, Table 3 with the item schemes only).")


def _run_dir(base_dir: str, variant: Variant, seed: int) -> str:
  return os.path.join(base_dir, "runs", variant.key, f"seed_{seed}")


def _read_metrics(run_dir: str) -> Optional[Dict[str, float]]:
  path = os.path.join(run_dir, "metrics.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


class _Progress:
  """One line per dataset built, run finished and analysis, with an ETA.

  The estimate counts what is left of all three. The builds' rate is their
  wall time so far over the builds finished. A run's time is its own, as its
  process measured it, and the runs' rate is their mean time over the
  number of processes: the α fits that the first runs of a table wait for
  (`_train_all`) are not a run's time. Until a run has finished, a dataset
  line gives the time left for the datasets only. The analysis counts as
  `analysis_runs` runs,
  4 plus one per 300 oracle draws of a dataset: on the 2-core machine of
  README's "Time and output" it took 84 s, about 15 runs' time, for `make
  reproduce`'s 4 datasets of 800 draws (most of it the oracles, in the
  pool), and 10 s for the quick one (the last line, `done`). A run found done (a resumed
  reproduction) costs nothing and is not counted.
  """

  def __init__(self, builds: int, runs: int, analysis_runs: float,
               processes: int = 1):
    self.builds, self.runs = builds, runs
    self.analysis_runs = analysis_runs
    self.processes = processes
    self.built = self.ran = self.trained = 0
    self._run_seconds = 0.0
    self._build_started = time.time()

  @staticmethod
  def analysis_runs_of(oracle_draws: int, datasets: int) -> float:
    return 4.0 + oracle_draws * datasets / 300.0

  def start_runs(self, already_done: int) -> None:
    self.ran = already_done

  def _left_s(self) -> Optional[float]:
    now = time.time()
    builds_left = self.builds - self.built
    per_build = ((now - self._build_started) / self.built
                 if self.built else None)
    if not self.trained:
      return builds_left * per_build if per_build is not None else None
    per_run = self._run_seconds / self.trained / self.processes
    return ((self.runs - self.ran) + self.analysis_runs) * per_run

  def _say(self, text: str) -> None:
    left = self._left_s()
    what = "" if self.trained else " for the datasets"
    eta = (f" · about {left / 60:.1f} min left{what}" if left is not None
           else "")
    print(f"[reproduce] {text}{eta}", flush=True)

  def dataset_built(self, name: str) -> None:
    self.built += 1
    self._say(f"dataset {self.built}/{self.builds} ready: {name}")

  def run_done(self, name: str, seconds: float) -> None:
    self.ran += 1
    self.trained += 1
    self._run_seconds += seconds
    self._say(f"run {self.ran}/{self.runs} done: {name}")

  def done(self, phases: Mapping[str, float]) -> None:
    """The last line: each phase's wall time (`PHASES`)."""
    said = ", ".join(f"{name} {_duration(phases[name])}" for name in PHASES)
    print(f"[reproduce] done: {said}", flush=True)


# The phases of an invocation whose wall times it reports (`results.json`,
# `phase_seconds`): building the datasets; fitting the α tables and training
# the runs; the analysis (the oracle floors, RQ-4 and the tables).
PHASES = ("datasets", "runs", "analysis")


def _duration(seconds: float) -> str:
  return f"{seconds:.0f} s" if seconds < 100 else f"{seconds / 60:.1f} min"


def _build_dataset(variant: Variant, seed: int, data_dir: Optional[str],
                   defaults: _Defaults) -> str:
  """Builds (or finds) the dataset of `variant`; runs in a pool process."""
  _bind(variant, seed, data_dir, defaults)
  # Each variant has a data_dir of its own (`_data_dir`).
  with logs.quiet_stdout(), click_examples.variants_apart():
    return str(input_pipeline.load_data().builder.data_path)


# Schemes whose fit trains a model (about 30 s on the simulator's default
# dataset, against about 3 s for a leaf similarity): fitted first, so that
# these run at once and the quick ones fill in beside them.
SLOW_FITS = ("i2i_embedding",)


def _fit_alpha(variant: Variant, seed: int, data_dir: Optional[str],
               defaults: _Defaults) -> None:
  """Fits the α table of `variant`'s scheme on its dataset into the pool's
  shared cache, as its first run would (seeded and deterministic as a run
  is: `train.set_seed`); runs in a pool process."""
  _bind(variant, seed, data_dir, defaults)
  train.set_seed(seed, gin_utils.bound("train.run.deterministic", True))
  weighting.make_alpha_fn(variant.scheme, input_pipeline.load_data().builder,
                          cache=parallel.cache())


def _alpha_key(variant: Variant) -> Optional[Tuple[str, str]]:
  """The (dataset, scheme) of the α table a run of `variant` fits; None if
  it needs none (a baseline, or α = 1)."""
  if variant.task == "multitask" and variant.scheme != "static":
    return variant.dataset, variant.scheme
  return None


def _train_all(pool: parallel.Pool, to_train):
  """Trains `to_train` [((variant, seed), `_train` args)] in `pool`, each α
  table fitted once, by one process, before the runs that need it.

  Otherwise every process would fit each table for its first run there.
  Each table is fitted with the arguments of its first run (`_fit_alpha`
  takes `_train`'s but the run directory). The fits go to the pool first,
  the slow ones first; the runs that need no α are queued beside them, and
  the runs of a table as soon as it is fitted.

  Yields:
    ((variant, seed), `_train`'s result) of each run, as it finishes.
  """
  waiting = collections.defaultdict(list)
  ready = []
  for key, args in to_train:
    table = _alpha_key(key[0])
    (ready if table is None else waiting[table]).append((key, args))
  fitting = {pool.submit(_fit_alpha, *waiting[table][0][1][1:]): table
             for table in sorted(waiting,
                                 key=lambda table: table[1] not in SLOW_FITS)}
  running = {pool.submit(_train, *args): key for key, args in ready}
  while fitting or running:
    done, _ = concurrent.futures.wait(
        [*fitting, *running], return_when=concurrent.futures.FIRST_COMPLETED)
    for future in done:
      if future in fitting:
        future.result()
        running.update({pool.submit(_train, *args): key for key, args in
                        waiting.pop(fitting.pop(future))})
      else:
        yield running.pop(future), future.result()


def _train(run_dir: str, variant: Variant, seed: int,
           data_dir: Optional[str],
           defaults: _Defaults) -> Tuple[Dict[str, Any], float]:
  """Trains one run; returns its metrics and its wall time in seconds; runs
  in a pool process."""
  run_started = time.time()
  _bind(variant, seed, data_dir, defaults)
  tf.keras.backend.clear_session()
  train.run(run_dir, export=False, save_predictions=True,
            cache=parallel.cache())
  return _read_metrics(run_dir), time.time() - run_started


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
        serving_betas: Sequence[float] = (),
        alpha_scales: Sequence[str] = (),
        lambda_optimizers: Sequence[str] = (),
        optimizer_learning_rates: Optional[Mapping[str, float]] = None,
        regimes: Optional[Mapping[str, float]] = None,
        signal_scales: Sequence[float] = (),
        signal_schemes: Sequence[str] = (),
        oracle_draws: int = oracle_lib.DEFAULT_DRAWS) -> Dict[str, Any]:
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
    alpha_scales: `make_alpha_fn.scale` values compared on the selected
      model (the α-scale ablation of Table 3); () leaves it out.
    lambda_optimizers: optimizers (besides Adam) under which Table 2's λ
      sweep is repeated, e.g. ('sgd',): Adam cancels a constant loss scale;
      () leaves it out.
    optimizer_learning_rates: the learning rate of each optimizer in
      `lambda_optimizers` (Adam keeps `train.run.learning_rate`).
    regimes: {name: simulator signal scale}: Tables 1–3 again on a
      simulated dataset of that signal scale, reported beside the main ones
      (e.g. {'paper': ...} from gin/simulator/paper.gin).
    signal_scales: the sweep of the simulator's signal scale: at each, a
      dataset with the Table 1 variants and `signal_schemes`; () leaves it
      out.
    signal_schemes: the weighting schemes of the sweep at the selected λ.
    oracle_draws: Monte-Carlo draws of the oracle NE floor of each simulated
      dataset (`cabb_tf.data.oracle`); 0 leaves the floors out.

  Returns:
    The results dict written to `results.json`.
  """
  for scheme in (tuple(schemes) + (selected_scheme,) +
                 tuple(ground_truth_schemes) + tuple(signal_schemes)):
    weighting.check_scheme(scheme)
  for scale in alpha_scales:
    weighting.check_scale(scale)
  for optimizer in lambda_optimizers:
    train.check_optimizer(optimizer)
  regimes = dict(regimes or {})
  dataset_name = str(gin_utils.bound("load_data.name", ""))
  if (regimes or signal_scales or ground_truth_schemes) and (
      not dataset_name.startswith("cabb_synthetic")):
    logging.warning("%s is not simulated: the simulator regimes %s, the "
                    "signal sweep and the ground-truth table (schemes %s) are "
                    "left out.", dataset_name, sorted(regimes),
                    list(ground_truth_schemes))
    regimes, signal_scales, ground_truth_schemes = {}, (), ()
  defaults = _Defaults(
      data_dir=gin_utils.bound(DATA_DIR_PARAMETER),
      signal_scale=float(gin_utils.bound(SIGNAL_PARAMETER, 1.0)),
      learning_rate=float(gin_utils.bound(LEARNING_RATE_PARAMETER, 1e-3)),
      learning_rates=dict(optimizer_learning_rates or {}),
      windows=bool(attribution_windows_s),
      signals=bool(signal_scales or regimes))
  for optimizer in lambda_optimizers:
    defaults.learning_rate_of(optimizer)
  tables = table_variants(lambdas, selected_lambda, schemes, selected_scheme)
  selected = tables["table1"]["multitask"]
  tables.update(extra_variants(selected, balances, bottoms,
                               attribution_windows_s, ground_truth_schemes,
                               alpha_scales, signal_scales, signal_schemes,
                               defaults.signal_scale))
  for optimizer in lambda_optimizers:
    prefix = regime_prefix(optimizer)
    tables[prefix + "table2"] = table_variants(
        lambdas, selected_lambda, schemes, selected_scheme, prefix=prefix,
        optimizer=optimizer)[prefix + "table2"]
  for regime, scale in regimes.items():
    if float(scale) == defaults.signal_scale:
      raise ValueError(f"regime {regime!r} has the main dataset's signal "
                       f"scale {scale}: its tables would be the main ones.")
    tables.update(table_variants(lambdas, selected_lambda, schemes,
                                 selected_scheme, prefix=regime_prefix(regime),
                                 signal_scale=float(scale)))
  unique = list(dict.fromkeys(v for rows in tables.values()
                              for v in rows.values()))
  runs = [(v, s) for v in unique for s in seeds]
  datasets: Dict[str, Variant] = {}  # Each dataset by its first variant.
  for variant in unique:
    datasets.setdefault(variant.dataset, variant)
  processes, threads = parallel.pool_size()
  progress = _Progress(len(datasets), len(runs), _Progress.analysis_runs_of(
      oracle_draws, len(datasets)), processes)
  tf.io.gfile.makedirs(base_dir)
  clock = _WallClock(base_dir)
  # Where the pool's processes share the α tables they fit (`_fit_alpha`);
  # local and gone with the invocation, so no later code reads a stale one.
  alpha_dir = tempfile.mkdtemp(prefix="cabb_alpha_tables_")
  pool = parallel.Pool(processes, threads, shared_dir=alpha_dir)
  phases: Dict[str, float] = {}
  started = time.time()
  try:
    # Every dataset first, at once, so that the runs only open them.
    for key, _ in pool.imap_unordered(_build_dataset, [
        (key, (v, seeds[0], _data_dir(base_dir, v, defaults.data_dir),
               defaults)) for key, v in datasets.items()]):
      progress.dataset_built(key)
    phases["datasets"] = time.time() - started
    _bind(selected, seeds[0], defaults.data_dir, defaults)
    data = input_pipeline.load_data()
    check_categories(data, [v.scheme for v in unique
                            if v.task == "multitask" and v.cabb_weight > 0])
    metrics: Dict[Tuple[Variant, int], Dict[str, Any]] = {
        (v, s): _read_metrics(_run_dir(base_dir, v, s)) for v, s in runs}
    progress.start_runs(sum(m is not None for m in metrics.values()))
    to_train = [((v, s), (_run_dir(base_dir, v, s), v, s,
                          _data_dir(base_dir, v, defaults.data_dir),
                          defaults))
                for (v, s), done in metrics.items() if done is None]
    for (variant, seed), (done, seconds) in _train_all(pool, to_train):
      metrics[(variant, seed)] = done
      progress.run_done(f"{variant.key} seed {seed}", seconds)
      clock.tick()
    # The floors and RQ-4 run in the pool while this process analyses.
    oracles = {key: pool.submit(_oracle, base_dir, v,
                                _data_dir(base_dir, v, defaults.data_dir),
                                defaults, oracle_draws)
               for key, v in datasets.items()} if oracle_draws else {}
    analysis_started = time.time()
    phases["runs"] = analysis_started - started - phases["datasets"]
    importances = [pool.submit(_importance_of, base_dir, selected, s,
                               defaults) for s in seeds] if importance else []
    _bind(selected, seeds[0], defaults.data_dir, defaults)
    results: Dict[str, Any] = {}
    for table, rows in tables.items():
      results[table] = {row: _seed_cells(metrics, v, seeds)
                        for row, v in rows.items()}
    comparisons = _comparisons(tables)
    if "balance" in tables:
      results["balance_lambda_by_epoch"] = {
          row: [beyond.scalar_series(
              os.path.join(_run_dir(base_dir, v, s), "train"),
              "balance/lambda") for s in seeds]
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
      results["window_data"] = {}
      for row, v in tables["windows"].items():
        _bind(v, seeds[0], _data_dir(base_dir, v, defaults.data_dir),
              defaults)
        results["window_data"][row] = beyond.window_data(
            input_pipeline.load_data())
      _bind(selected, seeds[0], defaults.data_dir, defaults)
    if "ground_truth" in tables and "relation" not in _predictions(
        base_dir, selected, seeds[0]):
      logging.warning("The dataset has no ground-truth relations (only the "
                      "simulator has them): the ground-truth table is left "
                      "out.")
    elif "ground_truth" in tables:
      results["ground_truth_ne"] = {
          row: beyond.over_seeds([beyond.ground_truth_row(
              _predictions(base_dir, v, s)) for s in seeds])
          for row, v in tables["ground_truth"].items()}
    if "alpha_scale" in tables and "cause" in _predictions(
        base_dir, selected, seeds[0]):
      results["alpha_scale_ground_truth"] = {
          row: beyond.over_seeds([beyond.ground_truth_row(
              _predictions(base_dir, v, s)) for s in seeds])
          for row, v in tables["alpha_scale"].items()}
    if serving_betas:
      results["serving"] = {
          name: beyond.serving_over_seeds(
              [serving.serving_report(_predictions(base_dir, selected, s),
                                      betas=serving_betas,
                                      converting_only=converting)
               for s in seeds])
          for name, converting in (("all_clicks", False),
                                   ("converting_clicks", True))}

    raw = [f.result() for f in importances] or None
    if raw:
      results["rq4"], results["rq4_families"] = _importance_tables(raw)
    if oracle_draws:
      results["oracle"] = {key: f.result() for key, f in oracles.items()}
      if None in results["oracle"].values():  # The data is not simulated.
        results["oracle"] = {}
      results["floors"] = floors.table_floors(results, _dataset_of_tables(
          tables), results["oracle"])
      results["below_floor"] = floors.below_floor(
          results, _dataset_of_tables(tables), results["oracle"])
      _bind(selected, seeds[0], defaults.data_dir, defaults)
    results["paper_directions"] = claims_lib.check(results)
    results["paper_directions_recalibrated"] = claims_lib.check(
        results, suffix=claims_lib.RECALIBRATED)
    for prefix in [regime_prefix(r) for r in regimes]:
      view = regimes_lib.view(results, prefix)
      results[prefix + "paper_directions"] = claims_lib.check(view)
      results[prefix + "paper_directions_recalibrated"] = claims_lib.check(
          view, suffix=claims_lib.RECALIBRATED)
    results["regimes"] = {"main": defaults.signal_scale, **regimes}
    if signal_scales:
      results["signal_sweep"] = regimes_lib.sweep(
          results, signal_scales, {
              key: rows["multitask"].dataset for key, rows in tables.items()
              if key.startswith("signal_")})
    results["beyond_paper"] = beyond.check(results)
    results["seeds"] = list(seeds)
    results["selected"] = {"lambda": float(selected_lambda),
                           "scheme": selected_scheme}
    results["num_examples"] = data.num_examples
  finally:
    pool.close()
    shutil.rmtree(alpha_dir, ignore_errors=True)
  phases["analysis"] = time.time() - analysis_started
  progress.done(phases)
  results["phase_seconds"] = phases
  clock.tick()
  results["wall_time_s"] = clock.seconds
  results["wall_time_total_s"] = clock.total_seconds

  report_lib.write_json(results, os.path.join(base_dir, "results.json"))
  markdown_path = os.path.join(base_dir, "results.md")
  with open(markdown_path, "w") as f:
    f.write(results_md.render(results))
  plots.write_all(base_dir, results, tables, seeds, data, raw)
  if signal_scales:
    plots.signal_sweep(results, os.path.join(base_dir, "signal_sweep.png"))
  _hparams_config(base_dir)
  print(results_md.summary(results, markdown_path), flush=True)
  return results


def _dataset_of_tables(tables) -> Dict[str, Dict[str, str]]:
  """{table: {row: the dataset key of the row's variant}}."""
  return {table: {row: v.dataset for row, v in rows.items()}
          for table, rows in tables.items()}


def _oracle(base_dir: str, variant: Variant, data_dir: Optional[str],
            defaults: _Defaults, draws: int) -> Optional[Dict[str, Any]]:
  """The oracle NE floor of `variant`'s dataset; None if not simulated."""
  _bind(variant, 0, data_dir, defaults)
  builder = input_pipeline.load_data().builder
  if builder.name != "cabb_synthetic":
    logging.info("%s is not simulated: no oracle floor.", builder.name)
    return None
  logging.info("Oracle NE floor of %s (%s, %d draws)", variant.dataset,
               builder.data_path, draws)
  return oracle_lib.oracle_for_builder(
      builder, split="test", draws=draws,
      cache_dir=os.path.join(base_dir, "oracle"))


class _WallClock:
  """Records this invocation's wall time in `base_dir/invocations.json` as it
  goes, so that an interrupted invocation still counts in the total."""

  def __init__(self, base_dir: str):
    self._path = os.path.join(base_dir, "invocations.json")
    self._started = time.time()
    self._runs = []
    if os.path.exists(self._path):
      with open(self._path) as f:
        self._runs = json.load(f)
    self._runs.append({"started": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                time.gmtime()),
                       "wall_time_s": 0.0})
    self.tick()

  def tick(self) -> None:
    self._runs[-1]["wall_time_s"] = self.seconds
    report_lib.write_json(self._runs, self._path)

  @property
  def seconds(self) -> float:
    return time.time() - self._started

  @property
  def total_seconds(self) -> float:
    return float(sum(r["wall_time_s"] for r in self._runs[:-1])) + self.seconds


# Run outputs averaged over seeds besides `train.METRIC_KEYS`, where present.
EXTRA_METRIC_KEYS = ("final_lambda", "last_click_ne")


def _seed_cells(metrics, variant: Variant, seeds) -> Dict[str, Any]:
  """Mean and interval over seeds of each metric of a variant's runs (the
  recalibrated and extra metrics where every run has them: runs finished
  before they existed lack them)."""
  runs = [metrics[(variant, s)] for s in seeds]
  keys = list(train.RAW_METRIC_KEYS) + [
      k for k in train.RECALIBRATED_METRIC_KEYS + EXTRA_METRIC_KEYS
      if all(k in r for r in runs)]
  return {key: stats.mean_ci([r[key] for r in runs]) for key in keys}


def _after_first(rows: Dict[str, Any], key: str, value: Any) -> Dict[str, Any]:
  """`rows` with `key: value` inserted after its first entry."""
  items = list(rows.items())
  return dict(items[:1] + [(key, value)] + items[1:])


def _comparisons(tables) -> Dict[str, Dict[str, Dict[str, Any]]]:
  """For each table row, the variants it is compared with (paired).

  Rows are compared with both baselines trained on the same dataset with the
  same optimizer; a window's rows with that window's Baseline 1; shared
  bottoms also with the shared MLP.
  """
  trained = {v for rows in tables.values() for v in rows.values()}
  out: Dict[str, Dict[str, Dict[str, Any]]] = {}
  for table, rows in tables.items():
    out[table] = {}
    for row, variant in rows.items():
      if table == "windows":
        references = {"last_click": tables["windows_last_click"][row]}
      elif table == "windows_last_click":
        references = {}
      else:
        # The baselines trained like the row: same dataset, same optimizer.
        references = {
            name: dataclasses.replace(
                Variant(name), signal_scale=variant.signal_scale,
                optimizer=variant.optimizer)
            for name in ("last_click", "caba_only")}
        if table == "bottoms":
          references["shared_mlp"] = tables["table1"]["multitask"]
      out[table][row] = {
          "variant": variant,
          "references": {name: ref for name, ref in references.items()
                         if ref != variant and ref in trained}}
  return out


def _predictions(base_dir: str, variant: Variant,
                 seed: int) -> Dict[str, np.ndarray]:
  """A run's saved test arrays (`p_caba`/`p_cabb` for every task: a
  baseline's one head stands for both, `conversion.task_outputs`)."""
  with np.load(os.path.join(_run_dir(base_dir, variant, seed),
                            "predictions.npz")) as f:
    return dict(f)


def _paired_differences(base_dir, comparisons, seeds,
                        resamples) -> Dict[str, Any]:
  """Paired session-bootstrap differences of each row against its references,
  of the raw NEs and, where both runs saved them, the recalibrated ones
  (`<metric>_recalibrated`).

  A run is compared with several references and serves as one itself, and
  all runs on a dataset share its test sessions: the resampling counts are
  drawn once per number of sessions and each run is resampled once
  (`stats.SessionBootstrap`), not once per comparison.
  """
  bootstraps: Dict[int, stats.SessionBootstrap] = {}
  resampled: Dict[Tuple[Variant, int, bool], Optional[stats.Resampled]] = {}

  def resample(variant, seed, recalibrated):
    key = (variant, seed, recalibrated)
    if key not in resampled:
      arrays = _predictions(base_dir, variant, seed)
      suffix = "_recalibrated" if recalibrated else ""
      if f"p_caba{suffix}" not in arrays:
        resampled[key] = None
      else:
        session = arrays["session_id"].astype(np.int64)
        num_sessions = int(session.max()) + 1
        if num_sessions not in bootstraps:
          bootstraps[num_sessions] = stats.SessionBootstrap(num_sessions,
                                                            resamples)
        resampled[key] = bootstraps[num_sessions].resample(stats.session_sums(
            arrays, arrays[f"p_caba{suffix}"], arrays[f"p_cabb{suffix}"],
            session, num_sessions))
    return resampled[key]

  out: Dict[str, Any] = {}
  for table, rows in comparisons.items():
    out[table] = {}
    for row, comparison in rows.items():
      out[table][row] = {}
      for name, reference in comparison["references"].items():
        cell = {}
        for recalibrated in (False, True):
          pairs = [(resample(comparison["variant"], s, recalibrated),
                    resample(reference, s, recalibrated)) for s in seeds]
          if any(v is None or r is None for v, r in pairs):
            continue
          diff = stats.paired_differences(pairs)
          suffix = "_recalibrated" if recalibrated else ""
          cell.update({f"{m}{suffix}": d for m, d in diff.items()})
        out[table][row][f"vs_{name}"] = cell
  return out


def _importance_of(base_dir: str, variant: Variant, seed: int,
                   defaults: _Defaults) -> Dict[str, Any]:
  """RQ-4's permutation importance of one seed's run of `variant` on the
  test split; runs in a pool process."""
  _bind(variant, seed, defaults.data_dir, defaults)
  data = input_pipeline.load_data()
  inputs, columns = importance_lib.load_split(
      input_pipeline.split_columns(data, "test", parallel.cache()),
      data.feature_statistics)
  tf.keras.backend.clear_session()
  model = train.load_best_model(_run_dir(base_dir, variant, seed),
                                data.feature_statistics, variant.task)
  return importance_lib.permutation_importance(model, inputs, columns,
                                               seed=seed)


def _importance_tables(raw: Sequence[Dict[str, Any]]):
  """RQ-4's top features and families per head over the seeds' `raw`."""
  rq4 = {head: [[name, value] for name, value in importance_lib.top_features(
      [r[head] for r in raw], n=15)] for head in ("caba", "cabb")}
  families = {head: [[name, value] for name, value in
                     importance_lib.family_importance([r[head] for r in raw])]
              for head in ("caba", "cabb")}
  return rq4, families


def _hparams_config(base_dir: str) -> None:
  """Declares the HParams view over all runs (TensorBoard on base_dir/runs).

  A run's HParams session is its `eval/` log (`train.Writers`), which also
  holds the test metrics: a metric's group is the session's own directory
  (''), as TensorBoard looks a metric up in <session>/<group>.
  """
  from tensorboard.plugins.hparams import api as hp  # pylint: disable=g-import-not-at-top
  writer = tf.summary.create_file_writer(os.path.join(base_dir, "runs"))
  with writer.as_default():
    hp.hparams_config(
        hparams=[hp.HParam("task"), hp.HParam("weighting_scheme"),
                 hp.HParam("lambda"), hp.HParam("task_balance"),
                 hp.HParam("bottom"), hp.HParam("seed")],
        metrics=[hp.Metric(f"test/{tag}", group="",
                           display_name=f"test {tag}")
                 for tag in ("caba/ne", "cabb/ne", "overall/ne", "mean/ne")])
  writer.flush()
