"""Tests of the gated bottoms against a NumPy forward pass, and gate weights."""

from absl.testing import parameterized
import gin
import numpy as np
import tensorflow as tf

import cabb_tf  # pylint: disable=unused-import
from cabb_tf.models import experts
from cabb_tf.models import factory
from tests.models import factory_test

HEADS = ("caba", "cabb")


def _bind(bindings):
  gin.clear_config()
  for name, value in bindings.items():
    gin.bind_parameter(name, value)


def _randomize(model, seed=0):
  """Random Dense kernels and biases, so that biases and gates matter."""
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    if isinstance(layer, tf.keras.layers.Dense):
      layer.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32)
                         for w in layer.get_weights()])


def _relu(x):
  return np.maximum(x, 0.0)


def _softmax(z):
  e = np.exp(z - z.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


class NumpyModel:
  """An independent forward pass that reads the model's weights by name."""

  def __init__(self, model):
    self.model = model

  def dense(self, x, name, relu=True):
    kernel, bias = self.model.get_layer(name).get_weights()
    y = x @ kernel.astype(np.float64) + bias
    return _relu(y) if relu else y

  def mlp(self, x, prefix, depth):
    for i in range(depth):
      x = self.dense(x, f"{prefix}_dense_{i}")
    return x

  def gate(self, x, name):
    return _softmax(self.dense(x, f"{name}_logits", relu=False))

  def heads(self, tower_inputs, tower_depth):
    return {head: 1 / (1 + np.exp(-self.dense(
        self.mlp(x, head, tower_depth), f"{head}_logit", relu=False)))
            for head, x in tower_inputs.items()}


def _features(model, batch):
  probe = tf.keras.Model(model.input, model.get_layer("features").output)
  return probe(batch).numpy().astype(np.float64)


def _tower_inputs(model, batch, heads):
  probe = tf.keras.Model(model.input, {
      head: model.get_layer(f"{head}_dense_0").input for head in heads})
  return {k: v.numpy() for k, v in probe(batch).items()}


class MMoETest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    _bind({"experts.mmoe.num_experts": 3, "experts.mmoe.expert_units": (5, 4)})
    cls.model = factory.build_model(factory_test.statistics(), heads=HEADS,
                                    bottom="mmoe", tower_units=(3,))
    gin.clear_config()
    _randomize(cls.model)
    cls.batch = factory_test.batch()
    ref = NumpyModel(cls.model)
    x = _features(cls.model, cls.batch)
    expert_out = [ref.mlp(x, f"mmoe_expert_{j}", 2) for j in range(3)]
    cls.gates = {head: ref.gate(x, f"mmoe_gate_{head}") for head in HEADS}
    # Eq. (7): f^k(x) = Σ_i g^k(x)_i f_i(x).
    cls.mix = {head: sum(cls.gates[head][:, [j]] * expert_out[j]
                         for j in range(3)) for head in HEADS}
    cls.expected = ref.heads(cls.mix, 1)

  def test_outputs_match_numpy(self):
    out = self.model(self.batch)
    for head in HEADS:
      self.assertAllClose(out[head].numpy(), self.expected[head], atol=1e-5)
    # The heads are really different functions of the input.
    self.assertGreater(np.abs(self.mix["caba"] - self.mix["cabb"]).max(), 1e-3)

  def test_tower_input_is_gate_weighted_expert_sum(self):
    tower_inputs = _tower_inputs(self.model, self.batch, HEADS)
    for head in HEADS:
      self.assertAllClose(tower_inputs[head], self.mix[head], atol=1e-5)

  def test_gate_weights_are_mean_softmax_and_sum_to_one(self):
    weights = experts.gate_weights(self.model, self.batch, batch_size=3)
    self.assertCountEqual(weights, ["mmoe_gate_caba", "mmoe_gate_cabb"])
    for head in HEADS:
      self.assertAllClose(self.gates[head].sum(axis=1), np.ones(4))
      mean = weights[f"mmoe_gate_{head}"]
      self.assertEqual(mean.shape, (3,))
      self.assertAllClose(mean, self.gates[head].mean(axis=0), atol=1e-6)
      self.assertAllClose(mean.sum(), 1.0, atol=1e-6)

  def test_a_probe_averages_batch_after_batch_with_one_trace(self):
    probe = experts.GateProbe(self.model)
    for rows in (slice(0, 4), slice(1, 3), slice(0, 1)):
      batch = {name: value[rows] for name, value in self.batch.items()}
      weights = probe.mean_weights(batch, batch_size=3)
      for head in HEADS:
        self.assertAllClose(weights[f"mmoe_gate_{head}"],
                            self.gates[head][rows].mean(axis=0), atol=1e-6)
    # pylint: disable-next=protected-access
    self.assertEqual(
        probe._probe.predict_function.experimental_get_tracing_count(), 1)


class PLETest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    _bind({"experts.ple.num_levels": 2, "experts.ple.experts_per_task": 2,
           "experts.ple.shared_experts": 1, "experts.ple.expert_units": (4,)})
    cls.model = factory.build_model(factory_test.statistics(), heads=HEADS,
                                    bottom="ple", tower_units=(3,))
    gin.clear_config()
    _randomize(cls.model, seed=1)
    cls.batch = factory_test.batch()
    ref = NumpyModel(cls.model)
    x = _features(cls.model, cls.batch)
    head_in = {head: x for head in HEADS}
    shared_in = x
    cls.gates = {}
    for level in range(2):
      own = {head: [ref.mlp(head_in[head], f"ple_{level}_{head}_expert_{j}", 1)
                    for j in range(2)] for head in HEADS}
      shared = [ref.mlp(shared_in, f"ple_{level}_shared_expert_0", 1)]
      out = {}
      for head in HEADS:
        g = ref.gate(head_in[head], f"ple_gate_{level}_{head}")
        cls.gates[f"ple_gate_{level}_{head}"] = g
        out[head] = sum(g[:, [j]] * e
                        for j, e in enumerate(own[head] + shared))
      if level == 0:
        everything = own["caba"] + own["cabb"] + shared
        g = ref.gate(shared_in, "ple_gate_0_shared")
        cls.gates["ple_gate_0_shared"] = g
        shared_in = sum(g[:, [j]] * e for j, e in enumerate(everything))
      head_in = out
    cls.mix = head_in
    cls.expected = ref.heads(head_in, 1)

  def test_outputs_match_numpy(self):
    out = self.model(self.batch)
    for head in HEADS:
      self.assertAllClose(out[head].numpy(), self.expected[head], atol=1e-5)

  def test_tower_input_is_last_level_mixture(self):
    tower_inputs = _tower_inputs(self.model, self.batch, HEADS)
    for head in HEADS:
      self.assertAllClose(tower_inputs[head], self.mix[head], atol=1e-5)

  def test_gate_weights(self):
    weights = experts.gate_weights(self.model, self.batch)
    # No shared gate in the last level.
    self.assertCountEqual(weights, self.gates)
    self.assertEqual(weights["ple_gate_0_shared"].shape, (5,))
    self.assertEqual(weights["ple_gate_1_caba"].shape, (3,))
    for name, g in self.gates.items():
      self.assertAllClose(g.sum(axis=1), np.ones(4))
      self.assertAllClose(weights[name], g.mean(axis=0), atol=1e-6)

  def test_task_experts_are_private(self):
    # Head caba's level-0 experts feed no cabb gate: only caba's gates and the
    # shared gate (which mixes every expert) read them.
    expert = self.model.get_layer("ple_0_caba_expert_0_dense_0")
    consumers = {node.outbound_layer.name for node in expert.outbound_nodes}
    self.assertCountEqual(consumers, ["ple_gate_0_caba_experts",
                                      "ple_gate_0_shared_experts"])


class GatedBottomTest(tf.test.TestCase, parameterized.TestCase):

  def tearDown(self):
    gin.clear_config()
    super().tearDown()

  @parameterized.parameters(("mmoe", ["mmoe_gate_conversion"]),
                            ("ple", ["ple_gate_0_conversion",
                                     "ple_gate_0_shared",
                                     "ple_gate_1_conversion"]))
  def test_single_head(self, bottom, gates):
    model = factory.build_model(factory_test.statistics(),
                                heads=("conversion",), bottom=bottom)
    self.assertEqual(model(factory_test.batch())["conversion"].shape, (4, 1))
    self.assertCountEqual(experts.gate_names(model), gates)

  @parameterized.parameters("shared_mlp", "dcn")
  def test_no_gates(self, bottom):
    model = factory.build_model(factory_test.statistics(), bottom=bottom)
    self.assertEqual(experts.gate_weights(model, factory_test.batch()), {})

  def test_gated_bottoms_take_cross_layers(self):
    model = factory.build_model(factory_test.statistics(), bottom="mmoe",
                                cross_layers=1)
    self.assertIs(model.get_layer("mmoe_expert_0_dense_0").input,
                  model.get_layer("cross_0").output)

  @parameterized.parameters(
      ("experts.mmoe.num_experts", 0, "mmoe", "num_experts"),
      ("experts.mmoe.expert_units", (), "mmoe", "expert_units"),
      ("experts.ple.num_levels", 0, "ple", "num_levels"),
      ("experts.ple.experts_per_task", 0, "ple", "experts_per_task"),
      ("experts.ple.shared_experts", -1, "ple", "shared_experts"))
  def test_bad_sizes_are_errors(self, binding, value, bottom, message):
    _bind({binding: value})
    with self.assertRaisesRegex(ValueError, message):
      factory.build_model(factory_test.statistics(), bottom=bottom)


if __name__ == "__main__":
  tf.test.main()
