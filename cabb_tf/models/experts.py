"""Gated expert bottoms (MMoE, PLE) and the mean gate weights of a model.

Both bottoms map the feature vector to one tower input per head:

* `mmoe` — Multi-gate Mixture-of-Experts (Ma et al., KDD 2018, §4.2,
  Eqs. (6)–(8)): `num_experts` expert MLPs f_i shared by every head and one
  softmax gate per head, g^k(x) = softmax(W_gk x); head k's tower input is
  f^k(x) = Σ_i g^k(x)_i f_i(x).
* `ple` — Progressive Layered Extraction (Tang et al., RecSys 2020, §4.1
  Customized Gate Control and §4.2 its multi-level extension): every level
  has `experts_per_task` experts per head plus `shared_experts` shared ones.
  Head k's gate, a softmax over a Dense of head k's input to the level, mixes
  head k's own experts and the shared ones, w^k(x)ᵀ S^k(x); below the last
  level a shared gate mixes all of the level's experts into the next level's
  shared input. Level 0 reads the feature vector for every input; a later
  level's head-k experts read head k's output of the level below, its shared
  experts the shared output. The last level's head outputs feed the towers.

Layer names (level ℓ counted from 0):

* MMoE: experts `mmoe_expert_<j>_dense_<i>`; gate logits
  `mmoe_gate_<head>_logits`; gate softmax `mmoe_gate_<head>`; mixture
  `mmoe_mix_<head>`.
* PLE: experts `ple_<ℓ>_<head>_expert_<j>_dense_<i>` and
  `ple_<ℓ>_shared_expert_<j>_dense_<i>`; gates `ple_gate_<ℓ>_<head>` and
  `ple_gate_<ℓ>_shared` (softmax) after `..._logits` (Dense); mixtures
  `ple_mix_<ℓ>_<head>` / `ple_mix_<ℓ>_shared`. Gate `ple_gate_<ℓ>_<head>`
  weighs head k's experts first, then the shared ones; the shared gate weighs
  the heads' experts in head order, then the shared ones.

The softmax layers are the gates `gate_names` finds and `gate_weights` (or a
`GateProbe`, batch after batch) averages.
"""

from typing import Dict, List, Mapping, Sequence

import gin
import numpy as np
import tensorflow as tf

# Name prefixes of the gate softmax layers.
GATE_PREFIXES = ("mmoe_gate_", "ple_gate_")


def mlp(x: tf.Tensor, units: Sequence[int], dropout: float, l2: float,
        prefix: str) -> tf.Tensor:
  """ReLU dense layers `<prefix>_dense_<i>`, each followed by dropout.

  Args:
    x: input of shape [batch, d].
    units: the layers' widths (empty: `x` unchanged).
    dropout: dropout rate after each layer (0: no dropout layers).
    l2: L2 penalty on the kernels (0: none).
    prefix: layer name prefix.

  Returns:
    The last layer's output, shape [batch, units[-1]].
  """
  for i, n in enumerate(units):
    x = tf.keras.layers.Dense(
        n, activation="relu",
        kernel_regularizer=tf.keras.regularizers.l2(l2) if l2 else None,
        name=f"{prefix}_dense_{i}")(x)
    if dropout:
      x = tf.keras.layers.Dropout(dropout, name=f"{prefix}_dropout_{i}")(x)
  return x


def _gate(x: tf.Tensor, experts: List[tf.Tensor], l2: float,
          name: str) -> tf.Tensor:
  """Softmax gate over `experts` computed from `x`, and their mixture.

  Args:
    x: the gate's input, shape [batch, d].
    experts: expert outputs, each of shape [batch, width].
    l2: L2 penalty on the gate kernel.
    name: the gate's name; the softmax layer is named `name`.

  Returns:
    Σ_i softmax(W x)_i · experts[i], shape [batch, width].
  """
  logits = tf.keras.layers.Dense(
      len(experts),
      kernel_regularizer=tf.keras.regularizers.l2(l2) if l2 else None,
      name=f"{name}_logits")(x)
  weights = tf.keras.layers.Softmax(name=name)(logits)
  width = experts[0].shape[-1]
  stacked = experts[0]
  if len(experts) > 1:
    stacked = tf.keras.layers.Concatenate(name=f"{name}_experts")(experts)
  stacked = tf.keras.layers.Reshape((len(experts), width),
                                    name=f"{name}_stack")(stacked)
  # [batch, E] · [batch, E, width] → [batch, width].
  mix_name = name.replace("_gate_", "_mix_", 1)
  return tf.keras.layers.Dot(axes=(1, 1), name=mix_name)([weights, stacked])


def _check(name: str, value: int, minimum: int = 1) -> None:
  if value < minimum:
    raise ValueError(f"{name} must be at least {minimum}, got {value}.")


def _check_units(name: str, units: Sequence[int]) -> None:
  if not units:
    raise ValueError(f"{name} needs at least one layer width, got {units!r}.")


@gin.configurable(denylist=["x", "heads", "dropout", "l2"])
def mmoe(x: tf.Tensor,
         heads: Sequence[str],
         num_experts: int = 4,
         expert_units: Sequence[int] = (64, 32),
         dropout: float = 0.0,
         l2: float = 0.0) -> Dict[str, tf.Tensor]:
  """The MMoE bottom: shared experts, one softmax gate per head.

  Ma et al. 2018, Eqs. (6)–(8): f^k(x) = Σ_i softmax(W_gk x)_i f_i(x).

  Args:
    x: the feature vector, shape [batch, d].
    heads: head names, one gate each.
    num_experts: number of expert MLPs.
    expert_units: widths of each expert MLP.
    dropout: dropout rate after each expert layer.
    l2: L2 penalty on the expert and gate kernels.

  Returns:
    {head: tower input of shape [batch, expert_units[-1]]}.

  Raises:
    ValueError: if `num_experts` < 1 or `expert_units` is empty.
  """
  _check("experts.mmoe.num_experts", num_experts)
  _check_units("experts.mmoe.expert_units", expert_units)
  experts = [mlp(x, expert_units, dropout, l2, f"mmoe_expert_{j}")
             for j in range(num_experts)]
  return {head: _gate(x, experts, l2, f"mmoe_gate_{head}") for head in heads}


@gin.configurable(denylist=["x", "heads", "dropout", "l2"])
def ple(x: tf.Tensor,
        heads: Sequence[str],
        num_levels: int = 2,
        experts_per_task: int = 2,
        shared_experts: int = 2,
        expert_units: Sequence[int] = (64, 32),
        dropout: float = 0.0,
        l2: float = 0.0) -> Dict[str, tf.Tensor]:
  """The PLE bottom: `num_levels` stacked CGC levels.

  Tang et al. 2020, §4.1–4.2: head k's output of a level is
  softmax(W^k x^k)ᵀ [E_k,1(x^k) … E_k,m(x^k), E_s,1(x^s) … E_s,n(x^s)], where
  x^k and x^s are head k's and the shared input to the level.

  Args:
    x: the feature vector, shape [batch, d].
    heads: head names, with their own experts and gate each.
    num_levels: number of CGC levels.
    experts_per_task: task-specific experts per head and level.
    shared_experts: shared experts per level (0: a level is per-head towers
      of experts without sharing).
    expert_units: widths of each expert MLP (the same at every level).
    dropout: dropout rate after each expert layer.
    l2: L2 penalty on the expert and gate kernels.

  Returns:
    {head: tower input of shape [batch, expert_units[-1]]}.

  Raises:
    ValueError: if a count is out of range or `expert_units` is empty.
  """
  _check("experts.ple.num_levels", num_levels)
  _check("experts.ple.experts_per_task", experts_per_task)
  _check("experts.ple.shared_experts", shared_experts, minimum=0)
  _check_units("experts.ple.expert_units", expert_units)
  head_inputs = {head: x for head in heads}
  shared_input = x
  for level in range(num_levels):
    own = {head: [mlp(head_inputs[head], expert_units, dropout, l2,
                      f"ple_{level}_{head}_expert_{j}")
                  for j in range(experts_per_task)] for head in heads}
    shared = [mlp(shared_input, expert_units, dropout, l2,
                  f"ple_{level}_shared_expert_{j}")
              for j in range(shared_experts)]
    outputs = {head: _gate(head_inputs[head], own[head] + shared, l2,
                           f"ple_gate_{level}_{head}") for head in heads}
    if level + 1 < num_levels:
      everything = [e for head in heads for e in own[head]] + shared
      shared_input = _gate(shared_input, everything, l2,
                           f"ple_gate_{level}_shared")
    head_inputs = outputs
  return head_inputs


def gate_names(model: tf.keras.Model) -> List[str]:
  """Names of the model's gate softmax layers, in layer order."""
  return [layer.name for layer in model.layers
          if isinstance(layer, tf.keras.layers.Softmax)
          and layer.name.startswith(GATE_PREFIXES)]


class GateProbe:
  """The mean gate weights of a model over batch after batch of examples.

  Made once per model and evaluation: it holds a Keras model of the gates'
  outputs, whose `predict` traces its function on the first batch only.
  """

  def __init__(self, model: tf.keras.Model):
    """`model`: a model from `factory.build_model`."""
    self._names = gate_names(model)
    self._probe = tf.keras.Model(
        inputs=model.input,
        outputs={name: model.get_layer(name).output for name in self._names}
    ) if self._names else None

  def mean_weights(self, features: Mapping[str, tf.Tensor],
                   batch_size: int = 8192) -> Dict[str, np.ndarray]:
    """`gate_weights` of `features` (n ≥ 1 examples)."""
    if self._probe is None:
      return {}
    outputs = self._probe.predict(dict(features), batch_size=batch_size,
                                  verbose=0)
    return {name: np.asarray(outputs[name], np.float64).mean(axis=0)
            for name in self._names}


def gate_weights(model: tf.keras.Model,
                 features: Mapping[str, tf.Tensor],
                 batch_size: int = 8192) -> Dict[str, np.ndarray]:
  """Mean weight each gate gives each of its experts over some examples.

  Args:
    model: a model from `factory.build_model`.
    features: the model's inputs, {name: tensor of shape [n]} (as
      `input_pipeline.model_inputs` gives them: id features as row
      indices for a `factory.build_model` model); n ≥ 1.
    batch_size: prediction batch size.

  Returns:
    {gate layer name: float64 array [num_experts_of_gate] of mean weights
    (each sums to 1)}, in the experts' order described in the module
    docstring; empty for a model without gates ('shared_mlp', 'dcn'). Over
    many batches, make one `GateProbe` instead.
  """
  return GateProbe(model).mean_weights(features, batch_size)
