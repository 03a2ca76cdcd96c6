"""Training and evaluation of the conversion models (paper §3.4, §4).

`run(base_dir)` is the one entry point (`experiments/train.py` calls it): it
prepares the TFDS dataset, fits the weighting scheme on the training-period
events, trains the model of a task (multitask or a baseline) epoch by epoch
with early stopping on the validation loss, evaluates the best weights on
the test split and exports a SavedModel. Everything it needs to resume is in
`base_dir/checkpoints`: a run that is interrupted continues from its last
finished epoch when started again with the same `base_dir`, and (with op
determinism on) ends with the same metrics as an uninterrupted run, except
under `strategy = 'parameter_server'`, whose asynchronous steps no run
repeats (docs/distributed.md, "Parameter servers").

`base_dir` afterwards holds `config.gin`, `metrics.json`, `train/` and
`eval/` TensorBoard logs (what they hold: docs/metrics.md, "TensorBoard";
`cabb_tf.summaries`), `checkpoints/`, `best/` and `export/`.
"""

import contextlib
import dataclasses
import functools
import inspect
import json
import math
import os
import tempfile
import time
from typing import (Any, Callable, ContextManager, Dict, Iterable, Mapping,
                    Optional, Sequence, Tuple)

from absl import logging
import gin
import numpy as np
import pandas as pd
import tensorflow as tf

from cabb_tf import calibration
from cabb_tf import distribute
from cabb_tf import files
from cabb_tf import gin_utils
from cabb_tf import input_pipeline
from cabb_tf import metrics as metrics_lib
from cabb_tf import summaries
from cabb_tf.data import report as report_lib
from cabb_tf.datasets import click_examples
from cabb_tf.inputs import cache as cache_lib
from cabb_tf.inputs import weighting
from cabb_tf.models import conversion
from cabb_tf.models import experts
from cabb_tf.models import factory
from cabb_tf.models import task_balance

RAW_METRIC_KEYS = ("caba_ne", "cabb_ne", "cabb_ne_alpha_weighted",
                   "overall_ne", "mean_ne", "caba_auc", "cabb_auc",
                   "caba_calibration", "cabb_calibration")
# The same predictions mapped onto each task by a Platt map fitted on the
# validation split (`cabb_tf.calibration`, docs/metrics.md).
RECALIBRATED_METRIC_KEYS = (
    "caba_ne_recalibrated", "cabb_ne_recalibrated",
    "cabb_ne_alpha_weighted_recalibrated", "overall_ne_recalibrated",
    "mean_ne_recalibrated", "caba_calibration_recalibrated",
    "cabb_calibration_recalibrated")
METRIC_KEYS = RAW_METRIC_KEYS + RECALIBRATED_METRIC_KEYS
# The metrics that score the CABB task (alone or pooled with CABA): withheld
# (NaN) when the test split has too few CABB-positive rows to mean anything.
CABB_METRIC_KEYS = tuple(k for k in METRIC_KEYS if k.startswith(
    ("cabb_", "overall_", "mean_")))

# `train.run.optimizer`: Adam and Adagrad scale each step by the gradient's
# own magnitude, so a constant factor on a loss term (λ on the CABB head's
# own weights) cancels in their updates; plain SGD keeps it (docs/metrics.md).
OPTIMIZERS = {
    "adam": tf.keras.optimizers.Adam,
    "adagrad": tf.keras.optimizers.Adagrad,
    "sgd": tf.keras.optimizers.SGD,
}


class NanLossError(FloatingPointError):
  """Raised when the training loss becomes NaN or infinite."""


def _nan_loss(loss, where: str) -> NanLossError:
  """The error of a non-finite training loss `where` it happened."""
  return NanLossError(
      f"training loss is {loss} {where}: lower the learning rate (gin: "
      "train.run.learning_rate) or check the inputs for NaNs.")


class _PerStep(tf.keras.callbacks.Callback):
  """The run's batch callback: after each train step, stops training with a
  message naming the step of a non-finite loss and, every `every_steps`
  steps of the run, writes the step scalars (`step_scalars`)."""

  def __init__(self, step_offset: int, writer=None, every_steps: int = 0):
    """`step_offset`: the steps before this `fit`; `writer`: where the step
    scalars go (with `every_steps` > 0)."""
    super().__init__()
    self._step_offset = step_offset
    self._writer = writer
    self._every_steps = every_steps

  def on_train_batch_end(self, batch, logs=None):
    logs = logs or {}
    step = self._step_offset + batch + 1
    loss = logs.get("loss")
    if loss is not None and not math.isfinite(float(loss)):
      raise _nan_loss(loss, f"at step {step}")
    if self._every_steps and step % self._every_steps == 0:
      # Every worker reads the scalars (under multi_worker reading a metric
      # is a collective op); a worker other than the chief writes nowhere.
      _write_scalars(self._writer, step, step_scalars(self.model))


def step_scalars(model: conversion.ConversionModel) -> Dict[str, float]:
  """The per-step TensorBoard scalars of a model in training.

  `steps/total/loss` and `steps/<head>/loss` are Keras' running means over
  the epoch so far, read from the model's metrics: a batch's Keras logs
  would do under one replica, but with several they hold the sum of each
  replica's own mean (tf-keras reduces a step's outputs by summing them).
  The total is Eq. (6) with the compiled λ, L_CABA + λ·L_CABB.
  `steps/lambda` is the λ in force after the step (`effective_lambda`: the
  compiled λ, or a learned balance's w_cabb / w_caba; two-head models
  only) and `steps/learning_rate` the optimizer's current learning rate.
  """
  # Only the loss trackers: `get_metrics_result` would also compute every
  # AUC from its confusion-matrix buckets, the most of this call's cost.
  results = {metric.name: float(metric.result()) for metric in model.metrics
             if metric.name == "loss" or metric.name.endswith("_loss")}
  out = {f"steps/{tag}": value
         for tag, value in _keras_logs(results, model.heads).items()
         if tag.endswith("/loss")}
  if len(model.heads) > 1:
    out["steps/lambda"] = model.balancer.effective_lambda()
  out["steps/learning_rate"] = float(tf.keras.backend.get_value(
      model.optimizer.learning_rate))
  return out


def set_seed(seed: int, deterministic: bool = True) -> None:
  """Seeds Python, NumPy and TensorFlow; optionally makes ops deterministic."""
  logging.info("Seed: %d", seed)
  tf.keras.utils.set_random_seed(seed)
  if deterministic:
    tf.config.experimental.enable_op_determinism()


def _check_range(name: str, value, low=None, high=None, integer=False,
                 allow_none=False) -> None:
  """Raises a one-line ValueError unless low <= value <= high (finite)."""
  if value is None and allow_none:
    return
  ok = isinstance(value, (int, float, np.integer, np.floating)) and not (
      isinstance(value, bool))
  ok = ok and math.isfinite(float(value))
  ok = ok and (not integer or float(value) == int(value))
  ok = ok and (low is None or value >= low) and (high is None or
                                                 value <= high)
  if not ok:
    bounds = ("an integer" if integer else "a finite number") + (
        f" >= {low}" if low is not None else "") + (
            f" and <= {high}" if high is not None else "")
    none = " or None" if allow_none else ""
    raise ValueError(f"gin train.run.{name} must be {bounds}{none}; got "
                     f"{value!r}.")


def check_arguments(task: str, weighting_scheme: str, cabb_weight: float,
                    batch_size: int, max_epochs: int, patience: int,
                    learning_rate: float, optimizer: str,
                    negative_weight: float,
                    shuffle_buffer: int, max_steps_per_epoch: Optional[int],
                    eval_batch_size: int, seed: int, in_memory: bool,
                    strategy: str) -> None:
  """Checks `run`'s arguments before any work starts (one-line errors)."""
  input_pipeline.heads_of(task)
  distribute.check_strategy(strategy)
  if strategy == "parameter_server" and not in_memory:
    raise ValueError(
        "train.run.strategy = 'parameter_server' trains from memory only "
        "(train.run.in_memory = True); stream with 'multi_worker' "
        "(docs/distributed.md).")
  if task == "multitask":
    weighting.check_scheme(weighting_scheme)
  check_optimizer(optimizer)
  _check_range("batch_size", batch_size, 1, integer=True)
  _check_range("max_epochs", max_epochs, 1, integer=True)
  _check_range("patience", patience, 1, integer=True)
  _check_range("learning_rate", learning_rate, 0.0)
  if not learning_rate > 0:
    raise ValueError(f"gin train.run.learning_rate must be > 0; got "
                     f"{learning_rate!r}.")
  _check_range("negative_weight", negative_weight, 0.0)
  _check_range("shuffle_buffer", shuffle_buffer, 1, integer=True)
  _check_range("max_steps_per_epoch", max_steps_per_epoch, 1, integer=True,
               allow_none=True)
  _check_range("eval_batch_size", eval_batch_size, 1, integer=True)
  _check_range("seed", seed, 0, integer=True)
  _check_range("cabb_weight", cabb_weight, 0.0)


def _check_writable(base_dir: str) -> None:
  """Creates base_dir and checks that a file can be written there."""
  try:
    tf.io.gfile.makedirs(base_dir)
    probe = os.path.join(base_dir, ".write_check")
    with tf.io.gfile.GFile(probe, "w") as f:
      f.write("")
    tf.io.gfile.remove(probe)
  except (OSError, tf.errors.OpError) as e:
    raise ValueError(f"base_dir {base_dir!r} is not writable: "
                     f"{getattr(e, 'message', None) or e}") from None


# Below this many CABB-positive rows the CABB head and its NE mean little.
MIN_CABB_ROWS = 100
# Fewer click examples than this in the validation or test split is warned.
MIN_SPLIT_CLICKS = 200


def check_dataset(report: Mapping[str, Any], task: str, name: str) -> None:
  """Fails before training when the dataset cannot train `task`'s heads.

  Args:
    report: the dataset's data report (`builder.info.metadata`).
    task: the task to train.
    name: the dataset's name, for messages.

  Raises:
    ValueError: no CABA positives (multitask, caba_only), no last-click
      positives (last_click) or no CABB-positive rows (multitask).
  """
  needs = {"multitask": ("caba_positives", "cabb_positive_rows"),
           "caba_only": ("caba_positives",),
           "last_click": ("last_click_positives",)}[task]
  for key in needs:
    if key in report and int(report[key]) == 0:
      hint = (" Train task='caba_only' instead." if key ==
              "cabb_positive_rows" else " Does the log have purchases after "
              "clicks in the same session (event-type mapping, sessions)?")
      raise ValueError(f"dataset {name} has no {key.replace('_', ' ')}: "
                       f"task {task!r} cannot learn from it.{hint}")
  by_split = report.get("click_examples_by_split", {})
  for split in ("validation", "test"):
    if split in by_split and int(by_split[split]) < MIN_SPLIT_CLICKS:
      logging.warning(
          "Dataset %s has only %d click examples in its %s split (%s in all): "
          "early stopping, recalibration and scoring rest on it. The split is "
          "by time range (docs/method.md, \"Features\"); a log whose events "
          "crowd into part of its range needs other split fractions.", name,
          int(by_split[split]), split, by_split)
  rows = report.get("cabb_positive_rows")
  if task == "multitask" and rows is not None and int(rows) < MIN_CABB_ROWS:
    logging.warning(
        "Dataset %s has only %d CABB-positive rows (< %d): the CABB head and "
        "its NE will mean little.", name, int(rows), MIN_CABB_ROWS)


def withhold_cabb_metrics(result: Dict[str, float],
                          y_cabb: np.ndarray) -> Optional[Dict[str, Any]]:
  """Sets the CABB metrics to NaN when the test split has too few positives.

  With fewer than `MIN_CABB_ROWS` CABB-positive test rows the CABB NE is
  noise (tens, for a head that saw almost no positive): it is not reported,
  nor the pooled overall and mean NEs that contain it (docs/metrics.md).

  Args:
    result: the test metrics, changed in place.
    y_cabb: the test rows' CABB labels.

  Returns:
    None, or {"keys": the withheld keys, "reason": why}.
  """
  positives = int(np.count_nonzero(np.asarray(y_cabb) > 0))
  if positives >= MIN_CABB_ROWS:
    return None
  keys = [k for k in CABB_METRIC_KEYS if k in result]
  for key in keys:
    result[key] = float("nan")
  reason = (f"the test split has {positives} CABB-positive rows (< "
            f"{MIN_CABB_ROWS}): its CABB NE and the pooled NEs would be noise")
  logging.warning("Metrics %s are withheld (NaN): %s.", keys, reason)
  return {"keys": keys, "reason": reason}


def check_optimizer(optimizer: str) -> None:
  if optimizer not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer {optimizer!r}; gin train.run.optimizer "
                     f"must be one of {sorted(OPTIMIZERS)}.")


def _compile(model: conversion.ConversionModel, learning_rate: float,
             optimizer: str = "adam",
             epoch_metrics: Sequence[str] = summaries.EPOCH_METRICS) -> None:
  """Compiles the model (its Eq. 6) with `epoch_metrics` of each head
  (`summaries.EPOCH_METRICS`: NE and AUC)."""
  make = {"ne": lambda: metrics_lib.NormalizedEntropy(name="ne"),
          "auc": lambda: tf.keras.metrics.AUC(name="auc")}
  model.compile(
      optimizer=OPTIMIZERS[optimizer](learning_rate),
      weighted_metrics={head: [make[name]() for name in epoch_metrics]
                        for head in model.heads} if epoch_metrics else [])


def predict_arrays(model: tf.keras.Model, features: Mapping[str, tf.Tensor],
                   columns: Dict[str, tf.Tensor],
                   batch_size: int) -> Dict[str, np.ndarray]:
  """A model's predictions on an in-memory split, with its labels and weights.

  Single-head baselines are scored on both tasks with their one prediction:
  `p_caba` and `p_cabb` are set for every task.

  Args:
    model: the trained model (`factory.build_model`'s, or its
      `factory.string_model`).
    features: the model's inputs for the split's rows
      (`input_pipeline.model_inputs(columns, ...)`, with the training
      `factory.id_lookups` for a model that takes id features as indices).
    columns: the split as columns with its α (`input_pipeline.with_alpha`
      of `split_columns`; α for the α-weighted CABB NE).
    batch_size: prediction batch size.

  Returns:
    {`p_<head>` per head, `p_caba`, `p_cabb`, the evaluation columns (with
    the row ids), and the simulator's ground truth as codes where the split
    has it (`input_pipeline.GROUND_TRUTH`)}: NumPy arrays, one value per
    row.
  """
  outputs = model.predict(features, batch_size=batch_size, verbose=0)
  arrays = {f"p_{head}": value.reshape(-1) for head, value in outputs.items()}
  arrays.update({f"p_{task}": value.reshape(-1) for task, value in
                 conversion.task_outputs(outputs).items()})
  arrays.update({key: value.numpy() for key, value in
                 input_pipeline.evaluation_columns(columns).items()})
  for name, codes in input_pipeline.GROUND_TRUTH.items():
    if name in columns:
      arrays[name] = codes(columns[name].numpy())
  return arrays


def _alpha_weights(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
  """The α-weighted CABB NE's weights: α on positives, 1 on negatives."""
  return input_pipeline.cabb_weight(arrays["y_cabb"], arrays["alpha"])


def scored_tasks(arrays: Mapping[str, np.ndarray]
                 ) -> Dict[str, summaries.Task]:
  """The tasks a split is scored on (docs/metrics.md), as (labels,
  predictions, sample weights or None).

  Args:
    arrays: `predict_arrays` of a split.

  Returns:
    {'caba': y_caba and p_caba weighted by w_caba (each click once),
    'cabb': y_cabb and p_cabb over rows uniformly, 'cabb_alpha_weighted':
    the same with α on positive rows (`_alpha_weights`)}.
  """
  return {
      "caba": (arrays["y_caba"], arrays["p_caba"], arrays["w_caba"]),
      "cabb": (arrays["y_cabb"], arrays["p_cabb"], None),
      "cabb_alpha_weighted": (arrays["y_cabb"], arrays["p_cabb"],
                              _alpha_weights(arrays)),
  }


def fit_recalibration(arrays: Mapping[str, np.ndarray]
                      ) -> Dict[str, calibration.PlattMap]:
  """Platt maps of `p_caba` / `p_cabb` onto each evaluated task.

  Args:
    arrays: `predict_arrays` of the validation split.

  Returns:
    A map per task of `scored_tasks`: 'caba' (on y_caba weighted by w_caba),
    'cabb' (on y_cabb over rows uniformly) and 'cabb_alpha_weighted' (on
    y_cabb with α on positive rows).
  """
  return {task: calibration.fit_platt(labels, predictions, weights)
          for task, (labels, predictions, weights) in
          scored_tasks(arrays).items()}


def score_recalibrated(arrays: Mapping[str, np.ndarray],
                       maps: Mapping[str, calibration.PlattMap]
                       ) -> Dict[str, float]:
  """`RECALIBRATED_METRIC_KEYS` of a split under `fit_recalibration`'s maps."""
  q_caba = maps["caba"](arrays["p_caba"])
  q_cabb = maps["cabb"](arrays["p_cabb"])
  q_cabb_alpha = maps["cabb_alpha_weighted"](arrays["p_cabb"])
  y_caba, y_cabb, w_caba = arrays["y_caba"], arrays["y_cabb"], arrays["w_caba"]
  caba_ne = metrics_lib.normalized_entropy(y_caba, q_caba, w_caba)
  cabb_ne = metrics_lib.normalized_entropy(y_cabb, q_cabb)
  return {
      "caba_ne_recalibrated": caba_ne,
      "cabb_ne_recalibrated": cabb_ne,
      "cabb_ne_alpha_weighted_recalibrated": metrics_lib.normalized_entropy(
          y_cabb, q_cabb_alpha, _alpha_weights(arrays)),
      "overall_ne_recalibrated": metrics_lib.overall_normalized_entropy(
          [(y_caba, q_caba, w_caba), (y_cabb, q_cabb, None)]),
      "mean_ne_recalibrated": (caba_ne + cabb_ne) / 2,
      "caba_calibration_recalibrated": metrics_lib.calibration(
          y_caba, q_caba, w_caba),
      "cabb_calibration_recalibrated": metrics_lib.calibration(y_cabb, q_cabb),
  }


def score(y_caba, y_cabb, w_caba, alpha, p_caba, p_cabb) -> Dict[str, float]:
  """docs/metrics.md: CABA NE over clicks (w_caba), CABB NE over rows uniformly,
  α-weighted CABB NE, pooled overall NE, mean NE, AUC and calibration."""
  w_cabb_alpha = input_pipeline.cabb_weight(np.asarray(y_cabb), alpha)
  caba = metrics_lib.task_metrics(y_caba, p_caba, w_caba)
  cabb = metrics_lib.task_metrics(y_cabb, p_cabb, None)
  return {
      "caba_ne": caba["ne"],
      "cabb_ne": cabb["ne"],
      "cabb_ne_alpha_weighted": metrics_lib.normalized_entropy(
          y_cabb, p_cabb, w_cabb_alpha),
      "overall_ne": metrics_lib.overall_normalized_entropy(
          [(y_caba, p_caba, w_caba), (y_cabb, p_cabb, None)]),
      "mean_ne": (caba["ne"] + cabb["ne"]) / 2,
      "caba_auc": caba["auc"],
      "cabb_auc": cabb["auc"],
      "caba_calibration": caba["calibration"],
      "cabb_calibration": cabb["calibration"],
  }


def _write_scalars(writer, step: int, values: Dict[str, float]) -> None:
  with writer.as_default(step=step):
    for name, value in values.items():
      if value is not None and math.isfinite(value):
        tf.summary.scalar(name, value)
  writer.flush()


def _tag(key: str) -> str:
  """'caba_ne' → 'caba/ne'; 'overall_ne' → 'overall/ne'."""
  head, _, metric = key.partition("_")
  return f"{head}/{metric}"


# The SavedModel's description of its inputs (docs/serving.md).
FEATURE_SPEC_FILE = "feature_spec.json"


def feature_spec(model_dtypes: Mapping[str, tf.DType],
                 record_dtypes: Mapping[str, tf.DType]) -> Dict[str, Any]:
  """The export's feature spec: each input feature's dtype as the records
  hold it (what `serving_default` takes), its tf.train.Example list (what
  `from_examples` parses) and the dtype the model computes with."""
  return {
      "signatures": {
          "serving_default": "one tensor of shape [batch] per feature, in "
                             "the dtype below",
          "from_examples": "examples: a string tensor of shape [batch] of "
                           "serialized tf.train.Example, one feature each",
      },
      "outputs": {"caba": "P(the clicked item is bought)",
                  "cabb": "P(another item is bought)"},
      "features": {
          name: {"dtype": record_dtypes[name].name,
                 "example": click_examples.EXAMPLE_LISTS[
                     click_examples.example_dtype(record_dtypes[name])],
                 "model_dtype": dtype.name}
          for name, dtype in sorted(model_dtypes.items())},
  }


def export_model(model: tf.keras.Model, task: str, export_dir: str,
                 feature_statistics,
                 record_dtypes: Mapping[str, tf.DType]) -> None:
  """Saves a SavedModel that serves the `caba` and `cabb` probabilities (a
  baseline returns its one prediction as both), each of shape [batch].

  Two signatures (docs/serving.md):

  * `serving_default`: one tensor per raw feature, in the dtype the dataset's
    records hold it (`record_dtypes`; ids as strings, counts as int32); the
    graph casts to the model's dtypes;
  * `from_examples`: `examples`, a 1-D string tensor of serialized
    `tf.train.Example` (TF Serving's and TFX's convention), parsed in the
    graph as the training input parses records
    (`click_examples.parse_examples`).

  The id vocabularies (`assets/<space>.vocab`, one entry a line) and the
  feature spec (`assets/feature_spec.json`, `feature_spec`) are asset files.

  Args:
    model: the trained model (`factory.build_model`'s: id features as
      indices).
    task: its task.
    export_dir: where the SavedModel goes (replaced atomically).
    feature_statistics: the training statistics the model was built from:
      the export looks raw string ids up in their vocabularies
      (`factory.string_model`), so serving takes the records' raw features.
    record_dtypes: the dtype of each feature in the dataset's records
      (`builder.info.features`); it may hold more features than the model
      takes.

  Raises:
    ValueError: naming the model's input features `record_dtypes` lacks.
  """
  tmp = export_dir + ".tmp"
  # The vocabularies become asset files of the SavedModel (`assets/`), not
  # constants of its graph: a 10^6-id vocabulary stays out of saved_model.pb.
  assets = export_dir + ".vocabularies"
  model = factory.string_model(model, feature_statistics, assets)
  wanted = factory.input_dtypes(model)
  missing = sorted(set(wanted) - set(record_dtypes))
  if missing:
    raise ValueError(f"record_dtypes has no dtype for the model's input "
                     f"feature(s) {missing}: pass the dtype of every feature "
                     "the dataset's records hold.")
  stored = {name: tf.as_dtype(record_dtypes[name]) for name in wanted}
  spec_path = os.path.join(assets, FEATURE_SPEC_FILE)
  tf.io.gfile.makedirs(assets)
  with tf.io.gfile.GFile(spec_path, "w") as f:
    f.write(json.dumps(feature_spec(wanted, stored), indent=1) + "\n")
  model.feature_spec_file = tf.saved_model.Asset(spec_path)

  def probabilities(features):
    features = {name: tf.cast(value, wanted[name])
                if value.dtype != wanted[name] else value
                for name, value in features.items()}
    outputs = conversion.task_outputs(model(features, training=False))
    return {task: tf.reshape(p, [-1]) for task, p in outputs.items()}

  @tf.function(input_signature=[{
      name: tf.TensorSpec([None], dtype, name=name)
      for name, dtype in stored.items()}])
  def serve(features):
    return probabilities(features)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string,
                                              name="examples")])
  def from_examples(examples):
    return probabilities(click_examples.parse_examples(examples, stored))

  tf.saved_model.save(model, tmp, signatures={
      "serving_default": serve, "from_examples": from_examples})
  if tf.io.gfile.exists(assets):
    tf.io.gfile.rmtree(assets)
  if tf.io.gfile.exists(export_dir):
    tf.io.gfile.rmtree(export_dir)
  tf.io.gfile.rename(tmp, export_dir)


@gin.configurable(denylist=["base_dir", "cache"])
def run(base_dir: str,
        task: str = "multitask",
        weighting_scheme: str = "taxonomy_cf",
        cabb_weight: float = 0.75,
        batch_size: int = 1024,
        max_epochs: int = 20,
        patience: int = 2,
        learning_rate: float = 1e-3,
        optimizer: str = "adam",
        negative_weight: float = 1.0,
        shuffle_buffer: int = 200_000,
        max_steps_per_epoch: Optional[int] = None,
        eval_batch_size: int = 8192,
        seed: int = 0,
        deterministic: bool = True,
        stop_after_epochs: Optional[int] = None,
        export: bool = True,
        save_predictions: bool = False,
        in_memory: bool = True,
        strategy: str = "default",
        cache: Optional[cache_lib.Cache] = None) -> Dict[str, float]:
  """Trains, evaluates and exports one model.

  Args:
    base_dir: the run directory (created; a run in it is resumed).
    task: 'multitask', 'last_click' (Baseline 1) or 'caba_only' (Baseline 2).
    weighting_scheme: the α scheme of the CABB rows (`weighting.SCHEMES`).
    cabb_weight: λ of Eq. (6), the weight of the CABB loss (multitask; the
      starting weights of a learned `task_balance`).
    batch_size: training batch size.
    max_epochs: upper bound on epochs.
    patience: epochs without a lower validation loss before stopping.
    learning_rate: the optimizer's learning rate.
    optimizer: 'adam' (the default), 'adagrad' or 'sgd' (`OPTIMIZERS`). Adam
      and Adagrad are invariant to a constant loss scale, so λ of Eq. (6)
      reaches the CABB head's own weights only under 'sgd'.
    negative_weight: `w_cabb` of rows without a CABB purchase.
    shuffle_buffer: shuffle buffer of the training rows.
    max_steps_per_epoch: cap on steps per epoch (None: the whole split).
    eval_batch_size: batch size of evaluation.
    seed: the one seed (Python, NumPy, TF, shuffling).
    deterministic: enable TF op determinism (needed for exact resumption).
    stop_after_epochs: stop (as if interrupted) after this many epochs of
      this invocation; for tests and time-sliced runs.
    export: write the SavedModel to `base_dir/export`.
    save_predictions: write the test predictions, labels, weights, α,
      session and click ids, the recalibrated `p_caba_recalibrated` /
      `p_cabb_recalibrated` (and, on the simulator, each row's ground-truth
      relation and cause codes, `data.truth.RELATIONS` and `CAUSES`) to
      `base_dir/predictions.npz` (for paired comparisons and the
      ground-truth and serving analyses).
    in_memory: read the training split into memory once, as columns, and
      gather each shuffled batch inside the train step (fast); False
      streams serialized records through a shuffle buffer of
      `shuffle_buffer` rows and parses a batch at a time (for splits that
      do not fit in memory).
    strategy: 'default', 'mirrored', 'multi_worker' or 'parameter_server'
      (`cabb_tf.distribute`, docs/distributed.md): the steps see the same
      rows under the first three; 'parameter_server' is asynchronous, and
      its worker and ps tasks only serve. Only the chief writes `base_dir`
      and scores the test split.
    cache: the splits in memory and α tables shared with other runs of
      this process (None: the process's `cache.default()`; `reproduce`
      passes its own and frees it).

  Returns:
    The test metrics (`METRIC_KEYS`); {} on a worker of a synchronous
    cluster other than the chief, and when stopped by `stop_after_epochs`.
    The worker and ps tasks of a 'parameter_server' cluster never return
    (`distribute.serve`).

  Raises:
    ValueError: before any work, on an argument out of its range (sizes,
      epochs, patience and steps >= 1; learning rate > 0; negative weight and
      λ finite and >= 0), an unknown task, scheme, optimizer or strategy, or
      'parameter_server' with `in_memory = False`; before training, on an
      unwritable `base_dir`, a cluster missing from `TF_CONFIG`, or a
      dataset without the positives the task learns from.
  """
  check_arguments(task, weighting_scheme, cabb_weight, batch_size, max_epochs,
                  patience, learning_rate, optimizer, negative_weight,
                  shuffle_buffer, max_steps_per_epoch, eval_batch_size, seed,
                  in_memory, strategy)
  # A parameter-server cluster's worker and ps tasks serve until stopped.
  distribute.serve(strategy)
  # First: a multi-worker strategy must exist before the TF runtime starts.
  distribution = distribute.make_strategy(strategy)
  chief = distribute.is_chief(distribution)
  # What every worker must write (checkpoints); only the chief's is kept.
  own_dir = base_dir if chief else distribute.scratch_dir(base_dir,
                                                          distribution)
  settings = summaries.config()
  build_kwargs = model_kwargs(task, cabb_weight)
  _check_writable(own_dir)
  set_seed(seed, deterministic)
  # Only the chief builds a missing dataset; the other workers wait for it.
  data = input_pipeline.load_data(build=chief)
  check_dataset(data.builder.info.metadata.get("data_report", {}), task,
                data.builder.info.full_name)
  statistics = data.feature_statistics
  alpha_fn = None
  if task == "multitask":
    alpha_fn = weighting.make_alpha_fn(weighting_scheme, data.builder,
                                       cache=cache)

  with distribution.scope():
    model = factory.build_model(statistics, **build_kwargs)
    _compile(model, learning_rate, optimizer, settings.epoch_metrics)
  for name, devices in distribute.split_variables(model).items():
    logging.info("%s is split in %d: %s", name, len(devices),
                 ", ".join(devices))
  # The model takes id features as row indices: the pipeline looks each
  # split's strings up once, not every train step. The lookups are the
  # dataset's, shared by the runs of a process.
  id_lookups = (cache or cache_lib.default()).id_lookups(
      (str(data.builder.data_path),
       tuple(sorted(factory.hash_buckets().items()))),
      lambda: factory.id_lookups(statistics))
  # Every configurable the run uses has been called by now: the run's one
  # config.gin (`cli.train` leaves it to the run), also there for a run
  # that is interrupted.
  if chief:
    gin_utils.record(base_dir)
  example_fn = input_pipeline.make_example_fn(
      task, factory.input_dtypes(model), negative_weight, id_lookups)

  def columns_of(split):
    """A split in memory with its α column (α is looked up on every call)."""
    return input_pipeline.with_alpha(
        input_pipeline.split_columns(data, split, cache), alpha_fn)

  # A streamed record is parsed for these fields only.
  fields = input_pipeline.example_fields(
      factory.input_dtypes(model),
      weighting.KEYS[weighting_scheme] if alpha_fn else ())
  distributed = strategy != "default"
  rows = TrainingRows(model, data, columns_of, example_fn, alpha_fn, fields,
                      in_memory, distribution if distributed else None,
                      batch_size, shuffle_buffer, max_steps_per_epoch)
  if in_memory:
    # Read once: the per-epoch validation loss and the final scoring.
    validation_columns = columns_of("validation")

    def eval_batches(split):
      """The split in memory: one batch of every row."""
      return [validation_columns if split == "validation" else
              columns_of(split)]
    validation = tf.data.Dataset.from_tensor_slices(
        input_pipeline.prepare_columns(validation_columns, example_fn)
    ).batch(eval_batch_size).cache()
    reading_validation = contextlib.nullcontext  # read already
  else:
    # Evaluation streams too: the splits are read a batch at a time, only
    # the fields scoring uses, and never held whole.
    scored_fields = input_pipeline.evaluation_fields(
        data, factory.input_dtypes(model),
        weighting.KEYS[weighting_scheme] if alpha_fn else ())

    def eval_batches(split):
      return input_pipeline.stream_columns(data, split, scored_fields,
                                           alpha_fn, eval_batch_size)
    validation = input_pipeline.split_batches(
        data, "validation", fields, alpha_fn, eval_batch_size).map(example_fn)
    # Each epoch reads it again: a damaged file is a clear error.
    reading_validation = functools.partial(click_examples.reading_split,
                                           data.builder, "validation")
    if distributed:
      validation = distribute.with_shard_policy(
          validation, len(data.builder.info.splits["validation"].filepaths),
          distribution)
  # Under parameter_server the steps run remotely: the chief validates a
  # plain copy of the weights.
  validator = None
  if distribute.is_parameter_server(distribution):
    if settings.every_steps:
      logging.info("No per-step scalars under parameter_server: Keras runs "
                   "no batch callback there (docs/distributed.md).")
    plain = factory.build_model(statistics, **build_kwargs)
    _compile(plain, learning_rate, optimizer, settings.epoch_metrics)
    validator = PlainCopy(plain)
  state = RunState(model, base_dir, own_dir, distribution)
  state.resume()
  writers = Writers.of(base_dir, chief, settings)
  if state.epoch_number == 0:
    writers.record_config(task, weighting_scheme, seed, model)

  epochs_this_call = 0
  try:
    while state.should_continue(max_epochs, patience):
      val_loss = train_epoch(model, rows, seed + state.epoch_number,
                             validation, writers, state.epoch_number,
                             validator, reading_validation)
      state.end_epoch(val_loss)
      epochs_this_call += 1
      if stop_after_epochs and epochs_this_call >= stop_after_epochs:
        logging.info("Stopping after %d epochs as asked.", epochs_this_call)
        return {}
  finally:
    if validator:
      validator.close()

  if not chief:
    # The chief alone scores the test split and writes the results.
    tf.io.gfile.rmtree(own_dir)
    logging.info("Worker done; the chief evaluates and writes %s.", base_dir)
    distribute.barrier(distribution)
    return {}
  step = int(model.optimizer.iterations.numpy())
  balancer = model.balancer
  # Evaluation and export need no replicas and no optimizer: the best
  # weights in an undistributed model without one (the export would
  # otherwise hold the optimizer's slots, twice the weights under Adam):
  # under parameter_server, the validator's; under another strategy, a
  # model built anew; without one, the trained model's own layers.
  if validator:
    plain = weights_only(validator.model)
  elif distributed:
    plain = factory.build_model(statistics, **build_kwargs)
  else:
    plain = weights_only(model)
  model = read_weights(plain, state.best_prefix)
  scored = evaluate(
      model, eval_batches("validation"), eval_batches("test"), id_lookups,
      task, eval_batch_size, writers, step,
      os.path.join(base_dir, "predictions.npz") if save_predictions else None)
  result = scored.metrics
  report_lib.write_json(dict(result, **scored.extra, epochs=state.epoch_number,
                             best_validation_loss=state.best_validation_loss,
                             task=task, weighting_scheme=weighting_scheme,
                             seed=seed, optimizer=optimizer,
                             recalibration={k: m.as_dict() for k, m in
                                            scored.recalibration.items()},
                             task_balance=balancer.method,
                             final_lambda=balancer.effective_lambda(),
                             gates={gate: w.tolist()
                                    for gate, w in scored.gates.items()}),
                        os.path.join(base_dir, "metrics.json"))
  writers.record_projector(model, statistics)
  if export:
    features = data.builder.info.features
    export_model(model, task, os.path.join(base_dir, "export"), statistics,
                 {name: tf.as_dtype(features[name].tf_dtype)
                  for name in factory.raw_features(statistics)})
  distribute.barrier(distribution)
  workers = os.path.join(base_dir, "workers")
  if tf.io.gfile.isdir(workers) and not tf.io.gfile.listdir(workers):
    tf.io.gfile.rmtree(workers)
  writers.end_session(step)
  logging.info("Test metrics: %s", json.dumps(result, indent=1))
  return result


class TrainingRows:
  """The batches of each epoch: from memory, or streamed (`in_memory`).

  In memory, the split's prepared columns are the model's row source
  (`input_pipeline.InMemoryRows`) and an epoch is `index_batches` of the
  epoch's seed (one piece per replica under a distribution strategy,
  `distribute.index_batches`). Streamed, an epoch is
  `input_pipeline.stream_batches` of the split's serialized records, parsed
  for the example's `fields` only.
  """

  def __init__(self, model: conversion.ConversionModel, data,
               columns_of: Callable[[str], Dict[str, tf.Tensor]],
               example_fn, alpha_fn, fields: Tuple[str, ...],
               in_memory: bool,
               distribution: Optional[tf.distribute.Strategy],
               batch_size: int, shuffle_buffer: int,
               max_steps: Optional[int]):
    """`distribution` is None for the default strategy (one device)."""
    self._model = model
    self._distribution = distribution
    self._batch_size = batch_size
    self._shuffle_buffer = shuffle_buffer
    self._max_steps = max_steps
    self._in_memory = in_memory
    self._remote = (distribution is not None and
                    distribute.is_parameter_server(distribution))
    if in_memory:
      columns = input_pipeline.prepare_columns(columns_of("train"),
                                               example_fn)
      self._num_rows = input_pipeline.num_rows(columns)
      if self._remote:
        # The workers' datasets gather the rows; the step takes them as is.
        self._gather = input_pipeline.row_gatherer(columns)
        model.read_rows_from(None)
      else:
        model.read_rows_from(input_pipeline.InMemoryRows(columns))
      return
    # Never under parameter_server (`check_arguments`).
    records = click_examples.serialized_records(data.builder, "train")
    if distribution is not None:
      records = distribute.with_shard_policy(
          records, len(data.builder.info.splits["train"].filepaths),
          distribution)
    self._records = records
    self._parse = click_examples.record_parser(data.builder, fields)
    self._example_fn, self._alpha_fn = example_fn, alpha_fn

  def epoch(self, seed: int) -> Tuple[Any, Optional[int]]:
    """(the epoch's batches, its steps when Keras must be told them)."""
    if self._remote:
      steps = distribute.num_steps(self._num_rows, self._batch_size, 1)
      if self._max_steps:
        steps = min(steps, self._max_steps)
      return distribute.worker_batches(self._gather, self._num_rows,
                                       self._batch_size, seed), steps
    if self._in_memory and self._distribution is not None:
      return distribute.index_batches(self._distribution, self._num_rows,
                                      self._batch_size, seed, self._max_steps)
    if self._in_memory:
      batches = input_pipeline.index_batches(self._num_rows, self._batch_size,
                                             seed)
      self._model.build_step_state(next(iter(batches)))
    else:
      batches = input_pipeline.stream_batches(
          self._records, self._parse, self._example_fn, self._alpha_fn,
          self._batch_size, self._shuffle_buffer, seed)
    if self._max_steps:
      batches = batches.take(self._max_steps)
    return batches, None


class RunState:
  """What an interrupted run resumes from, checkpointed after every epoch.

  The model, the optimizer, the epoch and early stopping's state (the best
  validation loss and the epochs since it) go into `checkpoints/`; the best
  weights into `best/`. Keras' `EarlyStopping` keeps its best loss and wait
  in Python, where `BackupAndRestore` does not save them, so a resumed run
  would stop at another epoch than an uninterrupted one: they are variables
  here, and a resumed run ends with the same metrics.

  Under a distribution strategy every worker saves (the strategy needs
  them all); the chief into `base_dir`, the others into their `own_dir`.
  All resume from the chief's.
  """

  def __init__(self, model: conversion.ConversionModel, base_dir: str,
               own_dir: str, distribution: tf.distribute.Strategy):
    self._model = model
    self._distribution = distribution
    self.epoch = tf.Variable(0, dtype=tf.int64, name="epoch")
    self.best_loss = tf.Variable(np.inf, dtype=tf.float64, name="best_loss")
    self.wait = tf.Variable(0, dtype=tf.int64, name="wait")
    self._checkpoint = tf.train.Checkpoint(
        model=model, optimizer=model.optimizer, epoch=self.epoch,
        best_loss=self.best_loss, wait=self.wait)
    self._directory = os.path.join(base_dir, "checkpoints")
    self._manager = _checkpoint_manager(self._checkpoint,
                                        os.path.join(own_dir, "checkpoints"))
    self._best = tf.train.Checkpoint(model=model)
    self.best_prefix = os.path.join(base_dir, "best", "ckpt")
    self._own_best_prefix = os.path.join(own_dir, "best", "ckpt")

  @property
  def epoch_number(self) -> int:
    return int(self.epoch.numpy())

  @property
  def best_validation_loss(self) -> float:
    return float(self.best_loss.numpy())

  def resume(self) -> None:
    """Restores the newest readable checkpoint of the chief, if any."""
    if not _checkpoint_prefixes(self._directory, warn=False):
      return
    # Build the optimizer's slots first so that they are restored too.
    with self._distribution.scope():
      self._model.optimizer.build(self._model.trainable_variables)
    resumed = restore_latest_good(self._checkpoint, self._directory)
    logging.info("Resumed from %s at epoch %d", resumed, self.epoch_number)

  def should_continue(self, max_epochs: int, patience: int) -> bool:
    """Early stopping: epochs left, and fewer than `patience` without a
    lower validation loss."""
    return (self.epoch_number < max_epochs and
            int(self.wait.numpy()) < patience)

  def end_epoch(self, val_loss: float) -> None:
    """Keeps the best weights, counts the epoch and checkpoints the run."""
    if val_loss < self.best_validation_loss:
      self.best_loss.assign(val_loss)
      self.wait.assign(0)
      self._best.write(self._own_best_prefix)
    else:
      self.wait.assign_add(1)
    self.epoch.assign_add(1)
    self._manager.save(checkpoint_number=self.epoch_number)


class Writers:
  """The run's TensorBoard logs (`train/`, `eval/`) and what goes into them
  (`settings`, docs/metrics.md "TensorBoard"); no-ops on a worker other
  than the chief."""

  def __init__(self, train_writer, eval_writer,
               settings: summaries.Settings = summaries.Settings(),
               eval_dir: Optional[str] = None):
    """`eval_dir`: the `eval/` directory (None: write nothing there)."""
    self.train = train_writer
    self.eval = eval_writer
    self.settings = settings
    self._eval_dir = eval_dir

  @classmethod
  def of(cls, base_dir: str, chief: bool,
         settings: summaries.Settings = summaries.Settings()) -> "Writers":
    if not chief:
      noop = tf.summary.create_noop_writer()
      return cls(noop, noop, settings)
    eval_dir = os.path.join(base_dir, "eval")
    return cls(tf.summary.create_file_writer(os.path.join(base_dir, "train")),
               tf.summary.create_file_writer(eval_dir), settings, eval_dir)

  def record_config(self, task: str, weighting_scheme: str, seed: int,
                    model: conversion.ConversionModel) -> None:
    """The operative gin config and the HParams of the run (the session's
    start), at step 0."""
    with self.eval.as_default(step=0):
      tf.summary.text("config", tf.constant(
          "```\n" + gin.operative_config_str() + "\n```"))
      summaries.start_session(_hparams(
          task, weighting_scheme, seed, model.loss_weights.get("cabb", 0.0),
          model.balancer.method,
          gin_utils.bound("build_model.bottom", "shared_mlp")))

  def record_evaluation(self, step: int,
                        arrays: Mapping[str, np.ndarray]) -> None:
    """The test split's PR curve and reliability diagram of each scored task
    (`scored_tasks`) and histograms of the predictions and CABB weights
    (`settings.evaluation`, `settings.images`).

    Args:
      step: the summaries' step.
      arrays: `predict_arrays` of the test split.
    """
    if self._eval_dir is None or not self.settings.evaluation:
      return
    tasks = scored_tasks(arrays)
    summaries.write_tasks(self.eval, step, "test", tasks,
                          self.settings.images)
    summaries.write_histograms(self.eval, step, {
        "test/caba/predictions": arrays["p_caba"],
        "test/cabb/predictions": arrays["p_cabb"],
        # α of the rows it weighs (Eq. 5), and the weight of every row.
        "test/alpha": arrays["alpha"][arrays["y_cabb"] > 0],
        "test/w_cabb": tasks["cabb_alpha_weighted"][2],
    })

  def record_projector(self, model: tf.keras.Model,
                       feature_statistics) -> None:
    """The tables of `settings.projector_spaces` for the projector, with a
    label per row (`factory.embedding_rows`), into `eval/`."""
    if self._eval_dir is None:
      return
    tables = {}
    for space in self.settings.projector_spaces:
      rows = factory.embedding_rows(model, feature_statistics, space)
      if rows is None:
        logging.info("The model has no %s table: none for the projector.",
                     space)
        continue
      tables[space] = rows
    summaries.write_projector(self._eval_dir, tables)

  def end_session(self, step: int) -> None:
    """The end of the run's HParams session (status success)."""
    if self._eval_dir is not None:
      summaries.end_session(self.eval, step)


class PlainCopy:
  """An undistributed model given another's current weights.

  Under `parameter_server` a model's steps run on the workers, and the
  chief computes the validation loss on this copy instead. The weights go
  through a checkpoint of the weights alone (`weights_only`, without the
  optimizer's slots), which also joins a table split across ps tasks.
  """

  def __init__(self, model: conversion.ConversionModel):
    """`model`: built and compiled like the one it copies, outside any
    strategy's scope."""
    self.model = model
    # Removed by `close`, or when the copy is garbage collected.
    self._directory = tempfile.TemporaryDirectory(prefix="cabb_plain_copy_")

  def of(self, model: tf.keras.Model) -> conversion.ConversionModel:
    """`self.model`, given `model`'s current weights."""
    prefix = tf.train.Checkpoint(model=weights_only(model)).write(
        os.path.join(self._directory.name, "ckpt"))
    return read_weights(self.model, prefix)

  def close(self) -> None:
    self._directory.cleanup()


def train_epoch(model: conversion.ConversionModel, rows: TrainingRows,
                seed: int, validation: tf.data.Dataset, writers: Writers,
                epoch: int, validator: Optional[PlainCopy] = None,
                reading_validation: Callable[[], ContextManager] = (
                    contextlib.nullcontext)) -> float:
  """One epoch of training, then the validation loss (logged and written).

  `validator`: where the validation loss is computed when it cannot be on
  `model` itself (`parameter_server`). `reading_validation`: the context
  the validation split is read in (`click_examples.reading_split` when it
  streams).

  Returns:
    The validation loss.

  Raises:
    NanLossError: if the training loss stops being finite.
  """
  batches, steps = rows.epoch(seed)
  start = time.time()
  step_offset = int(model.optimizer.iterations.numpy())
  # Keras runs no batch-level callback under parameter_server, whose steps
  # are remote: there the epoch's loss is checked instead, and no per-step
  # scalars are written.
  remote = distribute.is_parameter_server(model.distribute_strategy)
  per_step = [] if remote else [
      _PerStep(step_offset, writers.train, writers.settings.every_steps)]
  history = model.fit(batches, epochs=1, verbose=0, steps_per_epoch=steps,
                      callbacks=[*per_step, *model.balancer.callbacks()])
  step = int(model.optimizer.iterations.numpy())
  logs = {k: v[-1] for k, v in history.history.items()}
  if remote and not math.isfinite(float(logs["loss"])):
    raise _nan_loss(logs["loss"], f"in epoch {epoch} (steps "
                    f"{step_offset + 1}–{step})")
  _write_scalars(writers.train, step, _keras_logs(logs, model.heads))
  _write_scalars(writers.train, step, model.balancer.summary_scalars())
  scorer = validator.of(model) if validator else model
  with reading_validation():
    val_logs = scorer.evaluate(validation, verbose=0, return_dict=True)
  _write_scalars(writers.eval, step, _keras_logs(val_logs, model.heads))
  val_loss = float(val_logs["loss"])
  logging.info("epoch %d: train loss %.5f, validation loss %.5f (%.1fs)",
               epoch, logs["loss"], val_loss, time.time() - start)
  return val_loss


@dataclasses.dataclass
class Evaluation:
  """The test scores of a run's best weights."""
  metrics: Dict[str, float]
  # Withheld metrics and Baseline 1's NE on its own label, when they apply.
  extra: Dict[str, Any]
  # The Platt map of each task, fitted on the validation split.
  recalibration: Dict[str, Any]
  # Mean gate weight per expert (MMoE / PLE bottoms).
  gates: Dict[str, np.ndarray]


def predict_split(model: tf.keras.Model,
                  batches: Iterable[Mapping[str, tf.Tensor]], id_lookups,
                  batch_size: int, split: str, with_gates: bool = True
                  ) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
  """`predict_arrays` of a split given as batches of columns (with α), and
  the mean gate weights (`experts.gate_weights`) over its rows.

  A split in memory is one batch; a streamed one is many, and only their
  predictions, labels and weights are kept.

  Args:
    model: the model to score.
    batches: the split's batches of columns.
    id_lookups: the training `factory.id_lookups`.
    batch_size: prediction batch size.
    split: the split's name, for messages.
    with_gates: also average the gate weights (False: none, {}).

  Raises:
    ValueError: naming the split, if it has no rows.
  """
  dtypes = factory.input_dtypes(model)
  probe = experts.GateProbe(model) if with_gates else None
  parts, gates, rows = [], [], []
  for columns in batches:
    features = input_pipeline.model_inputs(columns, dtypes, id_lookups)
    parts.append(predict_arrays(model, features, columns, batch_size))
    gates.append(probe.mean_weights(features, batch_size) if probe else {})
    rows.append(len(parts[-1]["p_caba"]))
  if not parts or not sum(rows):
    raise ValueError(f"the {split} split has no rows to score.")
  if len(parts) == 1:
    return parts[0], gates[0]
  arrays = {key: np.concatenate([part[key] for part in parts])
            for key in parts[0]}
  mean_gates = {gate: sum(g[gate] * n for g, n in zip(gates, rows)) /
                sum(rows) for gate in gates[0]}
  return arrays, mean_gates


def evaluate(model: tf.keras.Model,
             validation: Iterable[Mapping[str, tf.Tensor]],
             test: Iterable[Mapping[str, tf.Tensor]],
             id_lookups, task: str, batch_size: int, writers: Writers,
             step: int, predictions_path: Optional[str] = None) -> Evaluation:
  """Scores the best weights on the test split (done once, by the chief).

  The Platt maps of the recalibrated metrics are fitted on the validation
  split (docs/metrics.md).

  Args:
    model: the best weights.
    validation: the validation split as batches of columns with α (one
      batch when it is in memory; `input_pipeline.stream_columns`).
    test: the test split, the same way.
    id_lookups: the training `factory.id_lookups`.
    task: the run's task.
    batch_size: prediction batch size.
    writers: the run's summary writers.
    step: the summaries' step.
    predictions_path: where to save the test predictions, or None.

  Returns:
    The `Evaluation`; its metrics are also written to `writers.eval`, with
    the split's PR curves, reliability diagrams and histograms
    (`Writers.record_evaluation`).
  """
  recalibration = fit_recalibration(predict_split(
      model, validation, id_lookups, batch_size, "validation",
      with_gates=False)[0])
  arrays, gates = predict_split(model, test, id_lookups, batch_size, "test")
  result = score(arrays["y_caba"], arrays["y_cabb"], arrays["w_caba"],
                 arrays["alpha"], arrays["p_caba"], arrays["p_cabb"])
  result.update(score_recalibrated(arrays, recalibration))
  extra = {}
  withheld = withhold_cabb_metrics(result, arrays["y_cabb"])
  if withheld:
    extra["withheld"] = withheld
  if task == "last_click":  # Baseline 1 on its own label.
    extra["last_click_ne"] = float(metrics_lib.normalized_entropy(
        arrays["y_last_click"], arrays["p_caba"], arrays["w_caba"]))
  if predictions_path:
    arrays["p_caba_recalibrated"] = recalibration["caba"](arrays["p_caba"])
    arrays["p_cabb_recalibrated"] = recalibration["cabb"](arrays["p_cabb"])
    save_arrays(predictions_path, arrays)
  result = {k: float(v) for k, v in result.items()}
  _write_scalars(writers.eval, step, {f"test/{_tag(k)}": v
                                      for k, v in result.items()})
  # Mean gate weight per expert on the test split (MMoE / PLE bottoms).
  _write_scalars(writers.eval, step, {
      f"gates/{gate}/expert_{i}": float(w)
      for gate, weights in gates.items() for i, w in enumerate(weights)})
  writers.record_evaluation(step, arrays)
  return Evaluation(result, extra, recalibration, gates)


def _checkpoint_prefixes(directory: str, warn: bool = True) -> list:
  """The `ckpt-<n>` prefixes with an index file in `directory`, newest first.

  Data files without an index (an interrupted save) are named in a warning
  when `warn`.
  """
  def number(path):
    tail = os.path.basename(path).split(".")[0].rpartition("-")[2]
    return int(tail) if tail.isdigit() else -1

  indexed = tf.io.gfile.glob(os.path.join(directory, "ckpt-*.index"))
  prefixes = sorted((p[:-len(".index")] for p in indexed), key=number,
                    reverse=True)
  orphans = sorted({p.split(".data-")[0] for p in tf.io.gfile.glob(
      os.path.join(directory, "ckpt-*.data-*"))} - set(prefixes))
  for orphan in orphans if warn else ():
    logging.warning("Checkpoint %s has data but no .index file (an "
                    "interrupted save): ignored.", orphan)
  return prefixes


def _checkpoint_manager(checkpoint: tf.train.Checkpoint,
                        directory: str) -> tf.train.CheckpointManager:
  """A CheckpointManager; a damaged state file is set aside, saying so."""
  try:
    return tf.train.CheckpointManager(checkpoint, directory, max_to_keep=2)
  except Exception as e:  # pylint: disable=broad-except
    state = os.path.join(directory, "checkpoint")
    logging.warning("The checkpoint state file %s cannot be read (%s); it is "
                    "renamed to checkpoint.damaged and rebuilt from the "
                    "ckpt-* files.", state, str(e).splitlines()[0])
    tf.io.gfile.rename(state, state + ".damaged", overwrite=True)
    return tf.train.CheckpointManager(checkpoint, directory, max_to_keep=2)


def restore_latest_good(checkpoint: tf.train.Checkpoint,
                        directory: str) -> str:
  """Restores the newest checkpoint in `directory` that can be read.

  A damaged one (truncated, a flipped byte, a missing index) is skipped with
  a warning, and the one before it is tried.

  Returns:
    The prefix restored.

  Raises:
    ValueError: if none can be read, saying what to delete.
  """
  prefixes = _checkpoint_prefixes(directory)
  for prefix in prefixes:
    try:
      checkpoint.restore(prefix).assert_existing_objects_matched()
    except Exception as e:  # pylint: disable=broad-except
      # A damaged file surfaces as DataLossError, IndexError, ValueError, ...
      logging.warning("Checkpoint %s cannot be read (%s); trying the one "
                      "before it.", prefix,
                      (str(e).splitlines() or [type(e).__name__])[0])
      continue
    if prefix != prefixes[0]:
      logging.warning("Resuming from %s: the newer checkpoint(s) %s are "
                      "damaged; their epochs are trained again.", prefix,
                      prefixes[:prefixes.index(prefix)])
    return prefix
  raise ValueError(
      f"no checkpoint in {directory} can be read ({len(prefixes)} tried): "
      f"delete {directory} (and best/ beside it) to train the run from the "
      "start.")


def save_arrays(path: str, arrays: Dict[str, np.ndarray]) -> None:
  """Writes arrays to an .npz file atomically; string arrays (session ids)
  are stored as dense integer codes."""
  files.write_npz(path, {k: (pd.factorize(v)[0] if v.dtype == object else v)
                         for k, v in arrays.items()}, compressed=True)


def model_kwargs(task: str, cabb_weight: float) -> Dict[str, Any]:
  """`factory.build_model`'s arguments for a run: the heads of `task`, λ and
  the task balance (`task_balance.config`); gin binds the rest."""
  return dict(heads=input_pipeline.heads_of(task), cabb_weight=cabb_weight,
              balance=task_balance.config())


def weights_only(model: tf.keras.Model) -> tf.keras.Model:
  """`model`'s layers and weights, without its optimizer.

  A functional model of the same inputs and outputs, not compiled: its
  checkpoint names the weights as `model`'s own does (`read_weights` reads
  it into a model built alike), and an export of it holds them alone.
  """
  return tf.keras.Model(model.input, model.output, name=model.name)


def read_weights(model: tf.keras.Model, prefix: str) -> tf.keras.Model:
  """`model`, given the weights of the checkpoint `prefix` of a model built
  alike: a run's `best/ckpt` (whose optimizer state is left unread) or a
  `weights_only` one. Returns `model`."""
  tf.train.Checkpoint(model=model).read(prefix).expect_partial()
  return model


def load_best_model(base_dir: str, feature_statistics,
                    task: str) -> tf.keras.Model:
  """Rebuilds a run's model with its best weights, not compiled.

  The model is built as `run` builds it (`model_kwargs`), from the gin in
  force: parse the run's `config.gin` first. Like `factory.build_model`'s,
  it takes id features as row indices (`factory.id_lookups` of
  `feature_statistics`, or `factory.string_model` for raw strings).
  """
  cabb_weight = gin_utils.bound(
      "train.run.cabb_weight",
      inspect.signature(run).parameters["cabb_weight"].default)
  return read_weights(
      factory.build_model(feature_statistics,
                          **model_kwargs(task, cabb_weight)),
      os.path.join(base_dir, "best", "ckpt"))


def _keras_logs(logs: Dict[str, float], heads) -> Dict[str, float]:
  """Keras log names → grouped TensorBoard tags (caba/loss, cabb/ne, ...)."""
  out = {"total/loss": float(logs["loss"])}
  for head in heads:
    prefix = f"{head}_" if len(heads) > 1 else ""
    for metric in ("loss", "ne", "auc"):
      key = f"{prefix}{metric}" if metric != "loss" or len(heads) > 1 else None
      if key and key in logs:
        out[f"{head}/{metric}"] = float(logs[key])
  return out


def _hparams(task: str, weighting_scheme: str, seed: int,
             cabb_weight: float, balance: str, bottom: str) -> Dict[str, Any]:
  """The run's hyperparameters for TensorBoard's HParams view (the names
  `reproduce._hparams_config` declares)."""
  return {"task": task, "weighting_scheme": weighting_scheme, "seed": seed,
          "lambda": float(cabb_weight), "task_balance": balance,
          "bottom": bottom}
