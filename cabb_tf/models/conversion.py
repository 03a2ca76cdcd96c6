"""The conversion model and the objective it owns (paper §3.2, Eq. 6).

`ConversionModel` is a Keras functional model (`factory.build_model` builds
one) that takes the objective as constructor arguments — λ of Eq. (6)
(`cabb_weight`) and a task balance (`task_balance.Balance`) — and applies
them in the one train step of the package:

* `compile(optimizer, ...)` compiles Eq. (4)–(6): one weighted binary
  cross-entropy per head (`losses.multitask_losses`) with loss weights
  {caba: 1, cabb: λ}, and builds the balancer;
* `train_step` takes a batch's rows from the row source the trainer chose
  (`read_rows_from`: e.g. `input_pipeline.InMemoryRows`, which turns an
  index element into the rows inside the step), then runs Keras' own step
  (fixed λ) or the learned balance's (`task_balance.Balancer.train_step`).

A one-head baseline stands for both tasks: `task_outputs` maps any model's
outputs onto the CABA and CABB tasks, the one place that says so.
"""

from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import tensorflow as tf

from cabb_tf.models import losses
from cabb_tf.models import task_balance

# The two tasks every model is scored on (docs/metrics.md).
TASK_NAMES = ("caba", "cabb")

# An element of the training dataset → (features, labels, sample weights).
RowSource = Callable[[Any], Any]


def task_outputs(outputs: Mapping[str, Any]) -> Dict[str, Any]:
  """A model's outputs as the CABA and CABB tasks' predictions.

  The multitask model predicts each task with its own head; a one-head
  baseline (Baseline 1 or 2) predicts both with its one head.

  Args:
    outputs: {head: prediction} of a model (`model(...)`, `model.predict`,
      or arrays keyed by head).

  Returns:
    {'caba': ..., 'cabb': ...}: the head of that name, or the only head.

  Raises:
    ValueError: for several heads without a 'caba' and a 'cabb' one.
  """
  heads = list(outputs)
  if len(heads) == 1:
    return {task: outputs[heads[0]] for task in TASK_NAMES}
  missing = [task for task in TASK_NAMES if task not in outputs]
  if missing:
    raise ValueError(f"a model with heads {heads} has no head for the "
                     f"task(s) {missing}.")
  return {task: outputs[task] for task in TASK_NAMES}


class ConversionModel(tf.keras.Model):
  """A functional conversion model that owns its objective, Eq. (6).

  Build it like a functional model, `ConversionModel(inputs, outputs,
  cabb_weight=λ, balance=...)` with `outputs` a dict {head: probabilities
  [batch, 1]}; `factory.build_model` does. Layers, weights and checkpoints
  are those of the same `tf.keras.Model(inputs, outputs)`; the learned
  balances add their state as `model.task_balance`.
  """

  def __init__(self, inputs, outputs: Mapping[str, tf.Tensor], *,
               cabb_weight: float = 0.75,
               balance: task_balance.Balance = task_balance.Balance(),
               name: Optional[str] = None):
    """Builds the model.

    Args:
      inputs: the functional inputs (a dict of `tf.keras.Input`).
      outputs: {head: probabilities}; ('caba', 'cabb') for the multitask
        model, one head for a baseline.
      cabb_weight: λ of Eq. (6), the weight of the CABB loss (≥ 0).
      balance: how the task losses are balanced (`task_balance.config()`
        reads it from gin); `fixed` is Eq. (6) with λ.
      name: the model's name.

    Raises:
      ValueError: for a negative or non-finite λ.
    """
    super().__init__(inputs=inputs, outputs=dict(outputs), name=name)
    if not (isinstance(cabb_weight, (int, float)) and
            float(cabb_weight) >= 0 and float(cabb_weight) < float("inf")):
      raise ValueError(f"cabb_weight (λ of Eq. 6) must be a finite number "
                       f">= 0; got {cabb_weight!r}.")
    self._heads = tuple(outputs)
    self._cabb_weight = float(cabb_weight)
    self._balance = balance
    self._balancer: Optional[task_balance.Balancer] = None
    self._row_source: Optional[RowSource] = None
    self._step_state_built = False

  @property
  def heads(self) -> Sequence[str]:
    """The output heads, in the order the model was built with."""
    return self._heads

  @property
  def cabb_weight(self) -> float:
    """λ of Eq. (6)."""
    return self._cabb_weight

  @property
  def balancer(self) -> task_balance.Balancer:
    """The task balance `compile` built."""
    if self._balancer is None:
      raise ValueError("compile the model first: the balancer is built by "
                       "ConversionModel.compile.")
    return self._balancer

  def compile(self, optimizer="adam", **kwargs) -> None:  # pylint: disable=arguments-differ,line-too-long
    """Compiles Eq. (6) and builds the task balance.

    Args:
      optimizer: the optimizer of the model's weights.
      **kwargs: further `tf.keras.Model.compile` arguments (metrics,
        `weighted_metrics`, ...); not `loss` or `loss_weights`, which the
        model owns.

    Raises:
      ValueError: if `loss` or `loss_weights` is given.
    """
    for owned in ("loss", "loss_weights"):
      if owned in kwargs:
        raise ValueError(f"ConversionModel.compile sets {owned} itself (Eq. "
                         "6 with the model's cabb_weight); do not pass it.")
    objective = losses.multitask_losses(self._cabb_weight, self._heads)
    super().compile(optimizer=optimizer, loss=objective["loss"],
                    loss_weights=objective["loss_weights"], **kwargs)
    self._balancer = task_balance.make_balancer(
        self, objective["loss_weights"], self._balance)
    if self._balancer.method != "fixed":
      # Tracked: checkpoints of the model save and restore the balance.
      self.task_balance = self._balancer.state

  @property
  def loss_weights(self) -> Dict[str, float]:
    """The fixed loss weights of Eq. (6) by head: caba 1, cabb λ."""
    return losses.multitask_losses(self._cabb_weight,
                                   self._heads)["loss_weights"]

  def read_rows_from(self, source: Optional[RowSource]) -> None:
    """Makes train steps turn each dataset element into rows with `source`.

    The source runs inside the compiled step, in the same graph as the
    forward and backward pass (`input_pipeline.InMemoryRows` gathers or
    slices a batch of an in-memory split there). None: elements are the
    rows themselves.
    """
    self._row_source = source
    self.train_function = None  # rebuilt with the source on the next fit

  def build_step_state(self, element) -> None:
    """Creates now what the first train step would create: the loss and
    metric trackers and the optimizer's slots.

    A `tf.function` that creates variables on its first call is traced
    twice (once to create them, once without), so every run paid for two
    traces of its train step. Built from one dataset element beforehand
    (a forward pass, no update), the step is traced once. The variables
    start as they would (zero trackers and slots), so training is the same.
    Only for an element that can be read twice (`input_pipeline.
    index_batches`' are): reading it must not move a stream.
    """
    if self._step_state_built:
      return
    data = (self._row_source(element) if self._row_source is not None
            else element)
    x, y, _ = tf.keras.utils.unpack_x_y_sample_weight(data)
    y_pred = self(x, training=False)
    self.compiled_loss.build(y_pred)
    self.compiled_metrics.build(y_pred, y)
    self.optimizer.build(self.trainable_variables)
    self._step_state_built = True

  def train_step(self, data):
    """One step on Eq. (6), or on the learned balance's objective."""
    if self._row_source is not None:
      data = self._row_source(data)
    if self._balancer is None or self._balancer.method == "fixed":
      return super().train_step(data)
    return self._balancer.train_step(data)
