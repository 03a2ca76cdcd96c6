"""Learned balance of the two task losses: a switch beside Eq. (6)'s fixed λ.

Eq. (6) trains on L = L_CABA + λ·L_CABB with λ a hyperparameter (the paper's
§7 proposes learning the balance instead). A `Balance` (gin: `task_balance.method`,
made by `config()`) is a constructor argument of the conversion model
(`models.conversion.ConversionModel`), which keeps Eq. (6) or, through the
`Balancer` that `make_balancer` builds when the model is compiled, minimizes
L = Σ_k w_k·L_k (+ regularization) with task weights w_k that change during
training:

* `fixed` — w = the compiled `loss_weights` (1 and λ); the model trains with
  Keras' own step.
* `uncertainty` — Kendall, Gal & Cipolla (CVPR 2018), Eq. (10) with the
  log-variance parametrization of their §3.2, s_k = log σ_k²:

      L = Σ_k exp(−s_k)·L_k + s_k / 2,

  the form they derive for a classification likelihood (1/σ²·L + log σ);
  w_k = exp(−s_k). s_k starts at 0 (w = 1) and is trained on L.
* `gradnorm` — Chen et al., GradNorm (ICML 2018), Algorithm 1: with G_k =
  ‖∇_W w_k·L_k‖₂ on the kernel W of the last shared layer, Ḡ = mean_k G_k,
  r_k = (L_k/L_k(0)) / mean_j (L_j/L_j(0)) and L_k(0) the losses of the
  first step, the weights follow the gradient of
  L_grad = Σ_k |G_k − Ḡ·r_k^a| with the target Ḡ·r_k^a held constant (their
  Eq. 2); w only gets ∇_w L_grad, the network only ∇ Σ_k w_k L_k. After each
  step w is floored at 1e-6 (not in the paper: keeps G_k = w_k·‖∇_W L_k‖ a
  norm) and rescaled to Σ_k w_k = K. Regularization losses are in the
  network's objective but not in the G_k.
* `dwa` — Liu, Johns & Davison, dynamic weight averaging (CVPR 2019, Eq. 7):
  w_k(t) = K·exp(r_k(t−1)/T) / Σ_j exp(r_j(t−1)/T), r_k(t−1) =
  L_k(t−1)/L_k(t−2) with L_k(t) the mean loss of epoch t; w = 1 in the first
  two epochs.

L_k is the head's compiled Keras loss with its sample weights (w_caba,
w_cabb = α), exactly the value Keras reports as `<head>_loss`. K is the number
of heads. The learned weights replace the compiled `loss_weights` in the
objective; Keras' `loss` metric (train and validation, hence early stopping)
stays the compiled Eq. (6) loss with the fixed λ, one yardstick for all
methods. All state — log-variances, GradNorm weights, initial losses and
optimizer slots, DWA's loss history and epoch accumulators — is in
non-trainable `tf.Variable`s of a `tf.Module` the model keeps as `model.task_balance`, so
`tf.train.Checkpoint(model=model, ...)` saves and restores it, and it stays
out of `model.trainable_variables` (and so out of `model.optimizer`).

The log-variances (`uncertainty`) and GradNorm's weights are updated by an
optimizer of their own, by default a copy of `model.optimizer` (same class
and hyperparameters). For per-coordinate optimizers (SGD, Adam) stepped once
per train step that is the same update as training them with
`model.optimizer` itself (Kendall et al. train s jointly with the network);
`learning_rate` overrides the copy's learning rate (GradNorm's weights often
get their own). The copy is built with the balancer, so its
slots exist before a checkpoint is restored.
"""

import dataclasses
import math
from typing import Dict, List, Mapping, Optional, Tuple

from absl import logging
import gin
import tensorflow as tf

METHODS = ("fixed", "uncertainty", "gradnorm", "dwa")
# Floor of the GradNorm weights before they are rescaled to sum to K.
_MIN_GRADNORM_WEIGHT = 1e-6


class Balancer:
  """Task weights of a multi-head model and the train step that uses them.

  `make_balancer` makes one; the model calls `train_step` (learned methods)
  and the trainer passes `callbacks()` to every `model.fit`. Its state is
  `self.state`, a `tf.Module` of non-trainable variables
  (`model.task_balance` for the learned methods):
  `epoch_loss_sum` ([K]: Σ over this epoch's steps of batch size × L_k),
  `epoch_objective_sum` (the same for the balanced objective),
  `epoch_count` (rows seen this epoch), the method's own variables and its
  optimizer.
  """

  method = "fixed"

  def __init__(self, model: tf.keras.Model, loss_weights: Mapping[str, float]):
    self._model = model
    self.heads: Tuple[str, ...] = tuple(loss_weights)
    self._fixed_weights = [float(loss_weights[h]) for h in self.heads]
    self.state = tf.Module(name=f"task_balance_{self.method}")
    k = len(self.heads)
    self.state.epoch_loss_sum = _variable(tf.zeros([k]), "epoch_loss_sum")
    self.state.epoch_objective_sum = _variable(0.0, "epoch_objective_sum")
    self.state.epoch_count = _variable(0.0, "epoch_count")

  def weights(self) -> Dict[str, float]:
    """The task weights the next train step uses, by head."""
    return dict(zip(self.heads, self._weights().numpy().tolist()))

  def effective_lambda(self) -> float:
    """w_cabb / w_caba for the next step: the λ of Eq. (6) in force now.

    0.0 for a model without both heads (a baseline trains no CABB loss).
    """
    w = self.weights()
    if "caba" not in w or "cabb" not in w:
      return 0.0
    return w["cabb"] / w["caba"]

  def summary_scalars(self) -> Dict[str, float]:
    """TensorBoard scalars: `balance/lambda` and `balance/weight_<head>`."""
    out = {"balance/lambda": self.effective_lambda()}
    out.update({f"balance/weight_{h}": v for h, v in self.weights().items()})
    return out

  def callbacks(self) -> List[tf.keras.callbacks.Callback]:
    """Keras callbacks to pass to every `model.fit` (epoch boundaries)."""
    return [] if self.method == "fixed" else [_EpochCallback(self)]

  def start_epoch(self) -> None:
    """Clears the epoch accumulators (at the start of each epoch)."""
    self.state.epoch_loss_sum.assign(tf.zeros_like(self.state.epoch_loss_sum))
    self.state.epoch_objective_sum.assign(0.0)
    self.state.epoch_count.assign(0.0)

  def end_epoch(self) -> None:
    """The epoch-level weight update (DWA); nothing for other methods."""

  def epoch_mean_losses(self) -> Dict[str, float]:
    """Each L_k averaged over this epoch's rows so far (batch-size weighted,
    as Keras averages `<head>_loss`)."""
    count = max(float(self.state.epoch_count.numpy()), 1e-12)
    return dict(zip(self.heads,
                    (self.state.epoch_loss_sum.numpy() / count).tolist()))

  # Method hooks.

  def _weights(self) -> tf.Tensor:
    """The current task weights, shape [K]."""
    return tf.constant(self._fixed_weights)

  def _own_variables(self) -> List[tf.Variable]:
    """The variables the balancer's own optimizer trains."""
    return []

  def _objective(self, losses: tf.Tensor) -> tf.Tensor:
    """The balanced objective (without regularization) of losses [K]."""
    return tf.reduce_sum(self._weights() * losses)

  def _apply(self, tape: tf.GradientTape, objective: tf.Tensor,
             head_losses: List[tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Applies one step's gradients of `objective` (taped, as each L_k);
    returns the method's extra logs of the step."""
    del head_losses  # Only GradNorm differentiates the losses one by one.
    variables = self._model.trainable_variables
    own = self._own_variables()
    grads = tape.gradient(objective, variables + own)
    self._model.optimizer.apply_gradients(
        zip(grads[:len(variables)], variables))
    if own:
      self._optimizer.apply_gradients(zip(grads[len(variables):], own))
    return {}

  # The train step.

  def train_step(self, data):
    """One step on the balanced objective (the model's step calls it).

    Args:
      data: (features, labels, sample weights) as Keras passes them; labels
        and sample weights are dicts by head.

    Returns:
      Keras' metrics — `loss` is still the compiled Eq. (6) loss with the
      fixed `loss_weights` (comparable with the validation loss), and
      `<head>_loss` each head's loss — plus `balanced_loss` (this epoch's
      mean of the objective minimized), `weight_<head>` and `lambda` (the
      weights this step used) and, for GradNorm, this step's L_grad
      (`gradnorm_loss`).
    """
    model = self._model
    x, y, sample_weight = tf.keras.utils.unpack_x_y_sample_weight(data)
    weights_used = tf.identity(self._weights())
    with tf.GradientTape(persistent=self.method == "gradnorm") as tape:
      if self.method == "uncertainty":
        tape.watch(self._own_variables())
      y_pred = model(x, training=True)
      head_losses = [
          self._loss_fns[h](y[h], y_pred[h], sample_weight=(
              None if sample_weight is None else sample_weight[h]))
          for h in self.heads]
      losses = tf.stack(head_losses)
      objective = self._objective(losses)
      if model.losses:
        objective += tf.add_n(model.losses)
    extra_logs = self._apply(tape, objective, head_losses)
    del tape
    rows = tf.cast(tf.shape(y_pred[self.heads[0]])[0], tf.float32)
    self.state.epoch_loss_sum.assign_add(rows * losses)
    self.state.epoch_objective_sum.assign_add(rows * objective)
    self.state.epoch_count.assign_add(rows)
    # Keras' loss trackers and compiled metrics, as its own train step.
    model.compute_loss(x, y, y_pred, sample_weight)
    logs = dict(model.compute_metrics(x, y, y_pred, sample_weight))
    logs.update(extra_logs)
    logs["balanced_loss"] = tf.math.divide_no_nan(
        self.state.epoch_objective_sum, self.state.epoch_count)
    for i, head in enumerate(self.heads):
      logs[f"weight_{head}"] = weights_used[i]
    if "caba" in self.heads and "cabb" in self.heads:
      logs["lambda"] = (weights_used[self.heads.index("cabb")] /
                        weights_used[self.heads.index("caba")])
    return logs

  def _build(self, learning_rate: Optional[float]) -> None:
    """Takes the compiled per-head losses; builds the own optimizer."""
    model = self._model
    # Keras keeps the compiled dict as a (non-Mapping) trackable DictWrapper.
    if not hasattr(model.loss, "keys") or any(
        h not in model.loss for h in self.heads):
      raise ValueError(
          f"task balance {self.method!r} needs the model compiled with a "
          f"dict of one loss per head {list(self.heads)}; got "
          f"loss={model.loss!r}.")
    self._loss_fns = {h: tf.keras.losses.get(model.loss[h])
                      for h in self.heads}
    own = self._own_variables()
    if own:
      config = model.optimizer.get_config()
      if learning_rate is not None:
        config["learning_rate"] = learning_rate
      self._optimizer = type(model.optimizer).from_config(config)
      self._optimizer.build(own)
      self.state.optimizer = self._optimizer


class _Uncertainty(Balancer):
  """Kendall et al. (2018) Eq. (10): Σ_k exp(−s_k)·L_k + s_k/2."""

  method = "uncertainty"

  def __init__(self, model, loss_weights):
    super().__init__(model, loss_weights)
    self.state.log_variance = _variable(tf.zeros([len(self.heads)]),
                                        "log_variance")

  def _weights(self):
    return tf.exp(-self.state.log_variance)

  def _own_variables(self):
    return [self.state.log_variance]

  def _objective(self, losses):
    s = self.state.log_variance
    return tf.reduce_sum(tf.exp(-s) * losses + 0.5 * s)


class _GradNorm(Balancer):
  """Chen et al. (2018) Algorithm 1 on the last shared layer's kernel."""

  method = "gradnorm"

  def __init__(self, model, loss_weights, asymmetry: float,
               shared_layer: Optional[str]):
    super().__init__(model, loss_weights)
    self.asymmetry = float(asymmetry)
    self.shared_kernel = _shared_kernel(model, shared_layer)
    k = len(self.heads)
    self.state.task_weights = _variable(tf.ones([k]), "task_weights")
    self.state.initial_losses = _variable(tf.ones([k]), "initial_losses")
    self.state.has_initial_losses = _variable(False, "has_initial_losses")

  def _weights(self):
    return tf.identity(self.state.task_weights)

  def _own_variables(self):
    return [self.state.task_weights]

  def _apply(self, tape, objective, head_losses):
    state = self.state
    # G_k = w_k·‖∇_W L_k‖ needs one backward pass per head, down to W only.
    norms = tf.stack([tf.norm(tape.gradient(loss, self.shared_kernel))
                      for loss in head_losses])
    losses = tf.stack(head_losses)
    variables = self._model.trainable_variables
    grads = tape.gradient(objective, variables)
    initial = tf.where(state.has_initial_losses, state.initial_losses, losses)
    state.initial_losses.assign(initial)
    state.has_initial_losses.assign(True)
    ratio = losses / initial
    rate = ratio / tf.reduce_mean(ratio)
    with tf.GradientTape() as weight_tape:
      weight_tape.watch(state.task_weights)
      g = state.task_weights * norms
      target = tf.stop_gradient(tf.reduce_mean(g) * rate ** self.asymmetry)
      gradnorm_loss = tf.reduce_sum(tf.abs(g - target))
    weight_grad = weight_tape.gradient(gradnorm_loss, state.task_weights)
    self._model.optimizer.apply_gradients(zip(grads, variables))
    self._optimizer.apply_gradients([(weight_grad, state.task_weights)])
    floored = tf.maximum(state.task_weights, _MIN_GRADNORM_WEIGHT)
    state.task_weights.assign(floored * len(self.heads) /
                              tf.reduce_sum(floored))
    return {"gradnorm_loss": gradnorm_loss}


class _DynamicWeightAverage(Balancer):
  """Liu et al. (2019) Eq. (7): weights from the last two epochs' losses."""

  method = "dwa"

  def __init__(self, model, loss_weights, temperature: float):
    super().__init__(model, loss_weights)
    self.temperature = float(temperature)
    k = len(self.heads)
    self.state.task_weights = _variable(tf.ones([k]), "task_weights")
    # Row 0: the mean losses of the last finished epoch; row 1: the one before.
    self.state.loss_history = _variable(tf.zeros([2, k]), "loss_history")
    self.state.epochs_done = _variable(tf.constant(0, tf.int64),
                                       "epochs_done")

  def _weights(self):
    return tf.identity(self.state.task_weights)

  def end_epoch(self):
    """Pushes this epoch's mean losses into the history; sets the weights
    of the next epoch (1 until two epochs are done)."""
    state = self.state
    if float(state.epoch_count.numpy()) <= 0:
      logging.warning("DWA: an epoch without steps leaves the weights as "
                      "they are.")
      return
    means = state.epoch_loss_sum / state.epoch_count
    state.loss_history.assign(tf.stack([means, state.loss_history[0]]))
    state.epochs_done.assign_add(1)
    if int(state.epochs_done.numpy()) >= 2:
      rate = tf.math.divide_no_nan(state.loss_history[0],
                                   state.loss_history[1])
      state.task_weights.assign(
          len(self.heads) * tf.nn.softmax(rate / self.temperature))


class _EpochCallback(tf.keras.callbacks.Callback):
  """Tells a balancer where epochs start and end."""

  def __init__(self, balancer: Balancer):
    super().__init__()
    self._balancer = balancer

  def on_epoch_begin(self, epoch, logs=None):
    self._balancer.start_epoch()

  def on_epoch_end(self, epoch, logs=None):
    self._balancer.end_epoch()


def _variable(value, name: str) -> tf.Variable:
  """A non-trainable variable: kept out of `model.trainable_variables`."""
  return tf.Variable(value, trainable=False, name=name)


def _shared_kernel(model: tf.keras.Model,
                   shared_layer: Optional[str]) -> tf.Variable:
  """The kernel of `shared_layer`, by default the last `bottom_dense_<i>`."""
  prefix = "bottom_dense_"
  if shared_layer is None:
    bottoms = [layer.name for layer in model.layers
               if layer.name.startswith(prefix) and
               layer.name[len(prefix):].isdigit()]
    if not bottoms:
      raise ValueError(
          "GradNorm needs the last shared layer, but the model has no "
          f"'{prefix}<i>' layer (the 'mmoe' and 'ple' bottoms have no "
          "shared dense layer, and an empty build_model.bottom_units leaves "
          "none); set task_balance.shared_layer to the name of a Dense "
          "layer.")
    shared_layer = max(bottoms, key=lambda n: int(n[len(prefix):]))
  try:
    layer = model.get_layer(shared_layer)
  except ValueError as e:
    raise ValueError(f"task_balance.shared_layer {shared_layer!r} is not a "
                     f"layer of the model: {e}") from e
  kernel = getattr(layer, "kernel", None)
  if kernel is None:
    raise ValueError(f"task_balance.shared_layer {shared_layer!r} has no "
                     "kernel; name a Dense layer.")
  return kernel


@dataclasses.dataclass(frozen=True)
class Balance:
  """How a multi-head model balances its task losses (see the module doc).

  Attributes:
    method: one of `METHODS`. A model with one head always gets `fixed`.
    learning_rate: learning rate of the log-variances (`uncertainty`) or
      weights (`gradnorm`); None: that of the model's optimizer.
    asymmetry: GradNorm's a (Chen et al. use 1.5 on NYUv2).
    temperature: DWA's T (Liu et al. use 2).
    shared_layer: name of the layer W whose kernel GradNorm takes gradient
      norms on (None: the last `bottom_dense_<i>` of `factory.build_model`).
  """
  method: str = "fixed"
  learning_rate: Optional[float] = None
  asymmetry: float = 1.5
  temperature: float = 2.0
  shared_layer: Optional[str] = None

  def __post_init__(self):
    if self.method not in METHODS:
      raise ValueError(f"unknown task_balance.method {self.method!r}; "
                       f"expected one of {list(METHODS)}.")
    if self.learning_rate is not None and not (
        math.isfinite(self.learning_rate) and self.learning_rate > 0):
      raise ValueError("task_balance.learning_rate must be > 0 or None, got "
                       f"{self.learning_rate}.")
    if not (math.isfinite(self.asymmetry) and self.asymmetry >= 0):
      raise ValueError("task_balance.asymmetry (GradNorm's a) must be >= 0, "
                       f"got {self.asymmetry}.")
    if not (math.isfinite(self.temperature) and self.temperature > 0):
      raise ValueError("task_balance.temperature (DWA's T) must be > 0, got "
                       f"{self.temperature}.")


@gin.configurable("task_balance")
def config(method: str = "fixed",
           learning_rate: Optional[float] = None,
           asymmetry: float = 1.5,
           temperature: float = 2.0,
           shared_layer: Optional[str] = None) -> Balance:
  """The run's `Balance`, from gin (`task_balance.method = 'dwa'`, ...).

  Raises:
    ValueError: for an unknown method or an out-of-range parameter.
  """
  return Balance(method, learning_rate, asymmetry, temperature, shared_layer)


def make_balancer(model: tf.keras.Model, loss_weights: Mapping[str, float],
                  balance: Balance = Balance()) -> Balancer:
  """The `Balancer` of a compiled multi-head model.

  The model calls it (`ConversionModel.compile` builds it, its train step
  calls `Balancer.train_step` for the learned methods); nothing here
  replaces a method of the model.

  Args:
    model: the compiled model, with `model.loss` a dict of one loss per head.
    loss_weights: the compiled loss weights by head (Eq. 6: caba 1, cabb λ):
      its keys are the heads balanced, its values the `fixed` weights.
    balance: the method and its parameters.

  Returns:
    The `Balancer` (method `fixed` for a one-head model).

  Raises:
    ValueError: for an uncompiled model or one without the layer GradNorm
      needs.
  """
  if getattr(model, "optimizer", None) is None:
    raise ValueError("make the task balance after model.compile.")
  if not loss_weights:
    raise ValueError("loss_weights is empty: pass the compiled loss weights "
                     "by head.")
  method = balance.method
  if method != "fixed" and len(loss_weights) < 2:
    logging.info("Task balance %r: the model has one head, using 'fixed'.",
                 method)
    method = "fixed"
  if method == "fixed":
    return Balancer(model, loss_weights)
  if method == "uncertainty":
    balancer = _Uncertainty(model, loss_weights)
  elif method == "gradnorm":
    balancer = _GradNorm(model, loss_weights, balance.asymmetry,
                         balance.shared_layer)
  else:
    balancer = _DynamicWeightAverage(model, loss_weights, balance.temperature)
  balancer._build(balance.learning_rate)  # pylint: disable=protected-access
  logging.info("Task balance %r on heads %s.", method, balancer.heads)
  return balancer
