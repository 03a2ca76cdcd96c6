"""What a run writes to TensorBoard besides its epoch scalars.

docs/metrics.md, "TensorBoard", lists every tag. `config()` (gin:
`summaries.*`) says what is written:

* `every_steps`: every that many train steps, the step's losses, λ and
  learning rate to `train/` (`train.py`'s batch callback; 0: none);
* `evaluation`: on the test split, each scored task's PR curve (the task's
  own labels and weights, docs/metrics.md) and histograms of the
  predictions and of the CABB weights, to `eval/`;
* `images`: each scored task's reliability diagram as an image
  (`figures.reliability_png`), to `eval/`;
* `projector_spaces`: the id spaces whose embedding tables go to the
  TensorBoard projector, one label per row (`factory.embedding_rows`).

The run's HParams session (`start_session`, `end_session`) is always
written. The functions take a summary writer or a log directory and NumPy
arrays; `train.Writers` calls them, on the chief only.
"""

import dataclasses
import os
from typing import Mapping, Optional, Sequence, Tuple

import gin
import numpy as np
import tensorflow as tf

from cabb_tf.models import factory

# Thresholds of a PR curve, evenly spaced in [0, 1] (TensorBoard's default).
PR_THRESHOLDS = 201
# Quantile bins of a reliability diagram (as the reproduction's plot).
RELIABILITY_BINS = 10
# What the projector's checkpoint is called in its log directory.
PROJECTOR_CHECKPOINT = "projector"
# The per-epoch metrics a run can compute of each head
# (`config.epoch_metrics`).
EPOCH_METRICS = ("ne", "auc")

# (labels, predictions, sample weights or None) of one scored task.
Task = Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]


@dataclasses.dataclass(frozen=True)
class Settings:
  """What a run writes to TensorBoard (see the module doc and `config`)."""
  every_steps: int = 10
  evaluation: bool = True
  images: bool = True
  projector_spaces: Tuple[str, ...] = ("leaf",)
  epoch_metrics: Tuple[str, ...] = ("ne", "auc")


@gin.configurable("summaries")
def config(every_steps: int = 10, evaluation: bool = True,
           images: bool = True,
           projector_spaces: Sequence[str] = ("leaf",),
           epoch_metrics: Sequence[str] = ("ne", "auc")) -> Settings:
  """The run's `Settings`, from gin (`summaries.every_steps = 0`, ...).

  Args:
    every_steps: write the per-step scalars every that many train steps
      (counted over the whole run); 0 writes none.
    evaluation: write the test split's PR curves and histograms.
    images: write the test split's reliability diagrams (with
      `evaluation`).
    projector_spaces: id spaces (`factory.ID_SPACES` values) whose tables
      go to the projector; () writes none.
    epoch_metrics: each head's metrics of every epoch, on the training
      rows (running over the epoch) and on the validation split, from
      `EPOCH_METRICS`. They are computed in every train step, and their
      AUC is a step's costly part on a small model: () computes none
      (the losses stay, and no test score depends on them).

  Raises:
    ValueError: for a negative or fractional `every_steps`, an unknown
      id space or an unknown epoch metric, naming the field.
  """
  if (isinstance(every_steps, bool) or not isinstance(every_steps, int) or
      every_steps < 0):
    raise ValueError("gin summaries.every_steps must be an integer >= 0 (0: "
                     f"no per-step scalars); got {every_steps!r}.")
  spaces = sorted(set(factory.ID_SPACES.values()))
  if isinstance(projector_spaces, str):
    projector_spaces = (projector_spaces,)
  for space in projector_spaces:
    if space not in spaces:
      raise ValueError(f"gin summaries.projector_spaces: unknown id space "
                       f"{space!r}; the spaces are {spaces}.")
  if isinstance(epoch_metrics, str):
    epoch_metrics = (epoch_metrics,)
  for metric in epoch_metrics:
    if metric not in EPOCH_METRICS:
      raise ValueError(f"gin summaries.epoch_metrics: unknown metric "
                       f"{metric!r}; the metrics are {list(EPOCH_METRICS)}.")
  return Settings(every_steps, bool(evaluation), bool(images),
                  tuple(projector_spaces), tuple(epoch_metrics))


def write_tasks(writer, step: int, split: str, tasks: Mapping[str, Task],
                images: bool) -> None:
  """Each task's PR curve and, with `images`, its reliability diagram.

  Tags `<split>/<task>/pr_curves` (TensorBoard's PR curve plugin: the
  weighted true/false positive and negative counts, precision and recall at
  `PR_THRESHOLDS` thresholds; a row counts at threshold i when
  floor(p · (PR_THRESHOLDS − 1)) >= i) and `<split>/<task>/reliability`
  (one PNG image).

  Args:
    writer: the summary writer.
    step: the summaries' step.
    split: the split's name, the tags' first part.
    tasks: {task: (labels, predictions, sample weights or None)}.
    images: draw the reliability diagrams.
  """
  from tensorboard.plugins.pr_curve import summary as pr_curve  # pylint: disable=g-import-not-at-top
  with writer.as_default(step=step):
    for task, (labels, predictions, weights) in tasks.items():
      predictions = np.asarray(predictions, np.float32)
      curve = pr_curve.pb(
          f"{split}/{task}", np.asarray(labels) > 0, predictions,
          num_thresholds=PR_THRESHOLDS,
          weights=None if weights is None else np.asarray(weights,
                                                          np.float64))
      tf.summary.experimental.write_raw_pb(curve.SerializeToString(),
                                           step=step)
      if images:
        from cabb_tf import figures  # pylint: disable=g-import-not-at-top
        png = figures.reliability_png(
            f"{task}, {split} split", labels, predictions,
            weights, RELIABILITY_BINS, label=f"step {step}")
        tf.summary.image(f"{split}/{task}/reliability",
                         tf.image.decode_png(png)[tf.newaxis], step=step)
  writer.flush()


def write_histograms(writer, step: int,
                     values: Mapping[str, np.ndarray]) -> None:
  """A histogram of each array (one count per value); empty ones are left
  out."""
  with writer.as_default(step=step):
    for tag, array in values.items():
      if np.size(array):
        tf.summary.histogram(tag, np.asarray(array).reshape(-1), step=step)
  writer.flush()


def _metadata_line(label: str) -> str:
  """A label as one line of a one-column metadata file."""
  for control in "\t\n\r":
    label = label.replace(control, " ")
  return label or "<empty>"


def write_projector(log_dir: str,
                    tables: Mapping[str, Tuple[np.ndarray, Sequence[str]]]
                    ) -> None:
  """Writes embedding tables for TensorBoard's projector into `log_dir`.

  Each table `<space>` becomes the variable `<space>_embedding` of a
  checkpoint `PROJECTOR_CHECKPOINT-<n>` (with its `checkpoint` state file,
  which the projector finds by itself), a label per row in
  `<space>_metadata.tsv` (one column, no header: line r names row r) and an
  entry of `projector_config.pbtxt`.

  Args:
    log_dir: the run's log directory (e.g. `eval/`).
    tables: {space: (weights [rows, width], a label per row)}.

  Raises:
    ValueError: when a table and its labels differ in length.
  """
  from tensorboard.plugins import projector  # pylint: disable=g-import-not-at-top
  projector_config = projector.ProjectorConfig()
  variables = {}
  for space, (weights, labels) in tables.items():
    if len(labels) != len(weights):
      raise ValueError(f"the {space} table has {len(weights)} rows but "
                       f"{len(labels)} labels.")
    key = f"{space}_embedding"
    variables[key] = tf.Variable(weights, trainable=False, name=key)
    metadata = f"{space}_metadata.tsv"
    with tf.io.gfile.GFile(os.path.join(log_dir, metadata), "w") as f:
      f.write("".join(_metadata_line(label) + "\n" for label in labels))
    embedding = projector_config.embeddings.add()
    embedding.tensor_name = f"{key}/.ATTRIBUTES/VARIABLE_VALUE"
    embedding.metadata_path = metadata
  if not variables:
    return
  tf.train.CheckpointManager(
      tf.train.Checkpoint(**variables), log_dir, max_to_keep=1,
      checkpoint_name=PROJECTOR_CHECKPOINT).save()
  projector.visualize_embeddings(log_dir, projector_config)


def start_session(hparams: Mapping[str, object]) -> None:
  """The HParams session's start: the run's hyperparameters, to the
  default writer (TensorBoard's HParams view)."""
  from tensorboard.plugins.hparams import api as hp  # pylint: disable=g-import-not-at-top
  hp.hparams(dict(hparams))


def end_session(writer, step: int) -> None:
  """The HParams session's end, status success: the view then lists the
  run as done, with the last value of each metric scalar of its log
  directory."""
  from tensorboard.plugins.hparams import api_pb2  # pylint: disable=g-import-not-at-top
  from tensorboard.plugins.hparams import summary as hparams_summary  # pylint: disable=g-import-not-at-top
  end = hparams_summary.session_end_pb(api_pb2.STATUS_SUCCESS)
  with writer.as_default(step=step):
    tf.summary.experimental.write_raw_pb(end.SerializeToString(), step=step)
  writer.flush()
