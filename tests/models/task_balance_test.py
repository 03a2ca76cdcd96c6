"""Tests of the learned task balances against a NumPy re-derivation."""

import os

from absl.testing import parameterized
import gin
import numpy as np
import tensorflow as tf

import cabb_tf  # pylint: disable=unused-import
from cabb_tf import input_pipeline
from cabb_tf.models import conversion
from cabb_tf.models import losses
from cabb_tf.models import task_balance

HEADS = ("caba", "cabb")
BATCH = 4
# The tiny model's starting weights: x [B, 3] → tanh Dense(2) → one logit
# per head.
INIT = {
    "bottom_dense_0/kernel": np.array([[.3, -.2], [.1, .4], [-.5, .2]]),
    "bottom_dense_0/bias": np.array([.05, -.1]),
    "caba_logit/kernel": np.array([[.7], [-.4]]),
    "caba_logit/bias": np.array([.1]),
    "cabb_logit/kernel": np.array([[-.3], [.9]]),
    "cabb_logit/bias": np.array([-.2]),
}


def _data(rows: int = 2 * BATCH, seed: int = 0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(rows, 3)).astype(np.float32)
  y = {"caba": np.array([1, 0, 1, 1, 0, 0, 1, 0] * (rows // 8 + 1),
                        np.float32)[:rows, None],
       "cabb": np.array([0, 1, 1, 0, 0, 1, 0, 0] * (rows // 8 + 1),
                        np.float32)[:rows, None]}
  w = {"caba": rng.uniform(.5, 1.5, rows).astype(np.float32),
       "cabb": rng.uniform(.2, 3., rows).astype(np.float32)}
  return x, y, w


def _network(init=None):
  """The tiny two-head network: its input and {head: output}."""
  init = INIT if init is None else init
  constant = lambda name: tf.keras.initializers.Constant(init[name])
  x = tf.keras.Input((3,), name="x")
  h = tf.keras.layers.Dense(
      2, activation="tanh", name="bottom_dense_0",
      kernel_initializer=constant("bottom_dense_0/kernel"),
      bias_initializer=constant("bottom_dense_0/bias"))(x)
  outputs = {}
  for head in HEADS:
    logit = tf.keras.layers.Dense(
        1, name=f"{head}_logit",
        kernel_initializer=constant(f"{head}_logit/kernel"),
        bias_initializer=constant(f"{head}_logit/bias"))(h)
    outputs[head] = tf.keras.layers.Activation("sigmoid", name=head)(logit)
  return x, outputs


def _plain(optimizer, cabb_weight=0.75):
  """The tiny model as a plain Keras model compiled with Eq. (6)."""
  x, outputs = _network()
  model = tf.keras.Model(x, outputs)
  model.compile(optimizer=optimizer,
                **losses.multitask_losses(cabb_weight=cabb_weight))
  return model


def _balanced(optimizer, cabb_weight=0.75, init=None, **balance):
  """The tiny model as a compiled `ConversionModel` and its balancer."""
  x, outputs = _network(init)
  model = conversion.ConversionModel(
      x, outputs, cabb_weight=cabb_weight,
      balance=task_balance.Balance(**balance))
  model.compile(optimizer=optimizer)
  return model, model.balancer


def _params(model):
  return {name: model.get_layer(name.split("/")[0]).weights[
      0 if name.endswith("kernel") else 1].numpy() for name in INIT}


def _reference(params, x, y, w):
  """NumPy forward and backward pass: per-head losses and their gradients.

  L_k = Σ_b w_b·CE_b / B (SUM_OVER_BATCH_SIZE); ∂L_k/∂z_b = w_b (p_b − y_b)/B.
  """
  x = x.astype(np.float64)
  h = np.tanh(x @ params["bottom_dense_0/kernel"] +
              params["bottom_dense_0/bias"])
  out_losses, out_grads = [], []
  for head in HEADS:
    z = h @ params[f"{head}_logit/kernel"] + params[f"{head}_logit/bias"]
    p = 1 / (1 + np.exp(-z))
    t = y[head]
    ce = -(t * np.log(p) + (1 - t) * np.log(1 - p))[:, 0]
    out_losses.append(np.sum(w[head] * ce) / len(x))
    dz = w[head][:, None] * (p - t) / len(x)
    da = (dz @ params[f"{head}_logit/kernel"].T) * (1 - h ** 2)
    grads = {name: np.zeros_like(value) for name, value in params.items()}
    grads[f"{head}_logit/kernel"] = h.T @ dz
    grads[f"{head}_logit/bias"] = dz.sum(0)
    grads["bottom_dense_0/kernel"] = x.T @ da
    grads["bottom_dense_0/bias"] = da.sum(0)
    out_grads.append(grads)
  return np.array(out_losses), out_grads


def _batch(data, i):
  x, y, w = data
  rows = slice(i * BATCH, (i + 1) * BATCH)
  return x[rows], {k: v[rows] for k, v in y.items()}, {
      k: v[rows] for k, v in w.items()}


def _sgd(params, grads, weights, lr):
  return {name: value - lr * sum(wk * g[name] for wk, g in zip(weights, grads))
          for name, value in params.items()}


def _fit(model, balancer, data, epochs=1, batch_size=BATCH):
  x, y, w = data
  return model.fit(x, y, sample_weight=w, batch_size=batch_size,
                   epochs=epochs, shuffle=False, verbose=0,
                   callbacks=balancer.callbacks()).history


class TaskBalanceTest(tf.test.TestCase, parameterized.TestCase):

  def tearDown(self):
    gin.clear_config()
    super().tearDown()

  def assertParamsClose(self, model, expected):
    got = _params(model)
    for name in INIT:
      self.assertAllClose(got[name], expected[name], atol=1e-6, rtol=1e-5,
                          msg=name)

  def test_fixed_trains_as_plain_keras(self):
    data = _data()
    plain = _plain(tf.keras.optimizers.SGD(.3))
    model, balancer = _balanced(tf.keras.optimizers.SGD(.3), method="fixed")
    self.assertFalse(hasattr(model, "task_balance"))
    # The same checkpointed variables as the plain model.
    self.assertEqual([v.name for v in model.variables],
                     [v.name for v in plain.variables])
    self.assertEqual(balancer.callbacks(), [])
    self.assertAllClose(balancer.effective_lambda(), .75)
    got = _fit(model, balancer, data)
    want = plain.fit(data[0], data[1], sample_weight=data[2],
                     batch_size=BATCH, shuffle=False, verbose=0).history
    self.assertEqual(got, want)
    self.assertParamsClose(model, _params(plain))

  def test_balanced_step_with_unit_weights_equals_keras_step(self):
    # DWA's first epoch has w = (1, 1): the same step as Keras with loss
    # weights (1, 1), and the same per-head losses in the logs.
    data = _data(3 * BATCH)
    plain = _plain(tf.keras.optimizers.SGD(.3), cabb_weight=1.0)
    model, balancer = _balanced(tf.keras.optimizers.SGD(.3), cabb_weight=1.0, method="dwa")
    got = _fit(model, balancer, data)
    want = plain.fit(data[0], data[1], sample_weight=data[2],
                     batch_size=BATCH, shuffle=False, verbose=0).history
    for key in ("loss", "caba_loss", "cabb_loss"):
      self.assertAllClose(got[key], want[key], rtol=1e-6, msg=key)
    self.assertParamsClose(model, _params(plain))
    self.assertEqual(got["lambda"], [1.0])

  def test_uncertainty_two_steps(self):
    lr = .5
    data = _data()
    model, balancer = _balanced(tf.keras.optimizers.SGD(lr), method="uncertainty")
    self.assertLen(model.trainable_variables, 6)  # s is not in there.
    history = _fit(model, balancer, data)

    params, s = dict(INIT), np.zeros(2)
    objectives, head_losses = [], []
    for i in range(2):
      l, grads = _reference(params, *_batch(data, i))
      objectives.append(np.sum(np.exp(-s) * l + s / 2))
      head_losses.append(l)
      weights = np.exp(-s)
      params = _sgd(params, grads, weights, lr)
      # ∂/∂s_k [exp(−s_k) L_k + s_k / 2] = −exp(−s_k) L_k + 1/2; the own
      # optimizer is a copy of the model's SGD.
      s = s - lr * (-np.exp(-s) * l + .5)
    self.assertParamsClose(model, params)
    self.assertAllClose(balancer.state.log_variance, s, rtol=1e-5)
    self.assertAllClose(balancer.weights()["cabb"], np.exp(-s[1]), rtol=1e-5)
    self.assertAllClose(balancer.effective_lambda(), np.exp(s[0] - s[1]),
                        rtol=1e-5)
    # Logs: the weights of the last step, epoch means of the losses.
    self.assertAllClose(history["weight_caba"][0], weights[0], rtol=1e-5)
    self.assertAllClose(history["lambda"][0], weights[1] / weights[0],
                        rtol=1e-5)
    self.assertAllClose(history["balanced_loss"][0], np.mean(objectives),
                        rtol=1e-5)
    self.assertAllClose(history["cabb_loss"][0], np.mean(head_losses, 0)[1],
                        rtol=1e-5)

  @parameterized.parameters(.2, 50.)
  def test_gradnorm_two_steps(self, weight_lr):
    # At 50 the first step drives a weight below 0: it is floored at 1e-6.
    lr, a = .3, 1.5
    data = _data()
    model, balancer = _balanced(tf.keras.optimizers.SGD(lr), method="gradnorm", learning_rate=weight_lr, asymmetry=a)
    history = _fit(model, balancer, data)

    params, w, initial = dict(INIT), np.ones(2), None
    for i in range(2):
      l, grads = _reference(params, *_batch(data, i))
      initial = l if initial is None else initial
      norms = np.array([np.linalg.norm(g["bottom_dense_0/kernel"])
                        for g in grads])
      g_w = w * norms
      ratio = l / initial
      target = g_w.mean() * (ratio / ratio.mean()) ** a
      # ∂/∂w_k Σ_j |w_j n_j − target_j| with the target constant.
      weight_grad = np.sign(g_w - target) * norms
      gradnorm_loss = np.abs(g_w - target).sum()
      params = _sgd(params, grads, w, lr)
      w = np.maximum(w - weight_lr * weight_grad, 1e-6)
      w = 2 * w / w.sum()
    self.assertParamsClose(model, params)
    self.assertAllClose(balancer.state.task_weights, w, rtol=1e-5)
    self.assertAllClose(balancer.state.initial_losses,
                        _reference(INIT, *_batch(data, 0))[0], rtol=1e-5)
    self.assertAllClose(sum(balancer.weights().values()), 2.0)
    # L_grad of the second step, where r ≠ 1 makes a matter.
    self.assertAllClose(history["gradnorm_loss"][0], gradnorm_loss,
                        rtol=1e-4)
    # The second step's r differs from 1: the weights moved apart twice.
    self.assertNotAllClose(w, np.ones(2), atol=1e-3)

  def test_gradnorm_finds_the_last_bottom_layer_or_the_named_one(self):
    x = tf.keras.Input((3,), name="x")
    h = tf.keras.layers.Dense(4, name="bottom_dense_0")(x)
    h = tf.keras.layers.Dense(3, name="bottom_dense_1")(h)
    model = tf.keras.Model(x, {head: tf.keras.layers.Dense(1, name=head)(h)
                               for head in HEADS})
    config = losses.multitask_losses()
    model.compile(optimizer="sgd", loss=config["loss"])
    weights = config["loss_weights"]
    default = task_balance.make_balancer(
        model, weights, task_balance.Balance("gradnorm"))
    self.assertEqual(default.shared_kernel.shape, (4, 3))
    named = task_balance.make_balancer(model, weights, task_balance.Balance(
        "gradnorm", shared_layer="bottom_dense_0"))
    self.assertEqual(named.shared_kernel.shape, (3, 4))
    with self.assertRaisesRegex(ValueError, "shared_layer 'nope'"):
      task_balance.make_balancer(model, weights, task_balance.Balance(
          "gradnorm", shared_layer="nope"))

  def test_dwa_step_uses_the_current_weights(self):
    lr = .4
    data = _data(BATCH)
    model, balancer = _balanced(tf.keras.optimizers.SGD(lr), method="dwa")
    balancer.state.task_weights.assign([.5, 1.5])
    history = _fit(model, balancer, data)
    _, grads = _reference(INIT, *data)
    self.assertParamsClose(model, _sgd(dict(INIT), grads, [.5, 1.5], lr))
    self.assertAllClose(history["lambda"], [3.0])

  def test_dwa_weights_follow_eq_7_over_epochs(self):
    temperature = 3.0
    model, balancer = _balanced(tf.keras.optimizers.SGD(.1), method="dwa", temperature=temperature)
    means = np.array([[.9, .6], [.8, .3], [.7, .27], [.69, .1]])
    expected = [np.ones(2), np.ones(2)]
    for t in range(2, len(means) + 1):
      r = means[t - 1] / means[t - 2]
      e = np.exp(r / temperature)
      expected.append(2 * e / e.sum())
    got = [balancer.state.task_weights.numpy()]
    for epoch_means in means:
      balancer.start_epoch()
      self.assertAllEqual(balancer.state.epoch_count, 0.0)
      balancer.state.epoch_loss_sum.assign(100 * epoch_means)
      balancer.state.epoch_count.assign(100.0)
      balancer.end_epoch()
      got.append(balancer.state.task_weights.numpy())
    self.assertAllClose(got, expected, rtol=1e-5)
    self.assertAllClose(balancer.effective_lambda(),
                        expected[-1][1] / expected[-1][0], rtol=1e-5)

  def test_dwa_epoch_losses_are_the_losses_keras_logs(self):
    # 10 rows in batches of 4, 4, 2: Keras weights batch means by size.
    data = _data(10)
    model, balancer = _balanced(tf.keras.optimizers.SGD(.1), method="dwa")
    history = _fit(model, balancer, data, epochs=2)
    self.assertAllClose(balancer.state.loss_history[0],
                        [history["caba_loss"][1], history["cabb_loss"][1]],
                        rtol=1e-5)
    self.assertAllClose(balancer.state.loss_history[1],
                        [history["caba_loss"][0], history["cabb_loss"][0]],
                        rtol=1e-5)
    self.assertEqual(int(balancer.state.epochs_done.numpy()), 2)

  @parameterized.parameters("uncertainty", "gradnorm", "dwa")
  def test_checkpoint_round_trip_resumes_identically(self, method):
    data = _data()
    model, balancer = _balanced(tf.keras.optimizers.Adam(.05), method=method)
    _fit(model, balancer, data, epochs=3)
    prefix = os.path.join(self.create_tempdir().full_path, "ckpt")
    tf.train.Checkpoint(model=model, optimizer=model.optimizer).write(prefix)

    other_init = {k: v + .1 for k, v in INIT.items()}
    restored, restored_balancer = _balanced(
        tf.keras.optimizers.Adam(.05), init=other_init, method=method)
    # As train.run does before restoring.
    restored.optimizer.build(restored.trainable_variables)
    tf.train.Checkpoint(model=restored, optimizer=restored.optimizer).read(
        prefix).assert_existing_objects_matched()
    state = {v.name: v.numpy() for v in balancer.state.variables}
    self.assertNotEmpty(state)
    for variable in restored_balancer.state.variables:
      self.assertAllEqual(variable, state[variable.name], msg=variable.name)
    self.assertEqual(restored_balancer.weights(), balancer.weights())

    _fit(model, balancer, data)
    _fit(restored, restored_balancer, data)
    self.assertAllClose(_params(restored), _params(model), rtol=0, atol=0)
    self.assertEqual(restored_balancer.weights(), balancer.weights())

  def test_composes_with_in_memory_rows(self):
    data = _data()
    direct, direct_balancer = _balanced(tf.keras.optimizers.SGD(.3),
                                        method="uncertainty")
    _fit(direct, direct_balancer, data)
    model, balancer = _balanced(tf.keras.optimizers.SGD(.3),
                                method="uncertainty")
    x, y, w = data
    model.read_rows_from(input_pipeline.InMemoryRows(
        tf.nest.map_structure(tf.constant, ({"x": x}, y, w))))
    model.fit(tf.data.Dataset.range(2 * BATCH).batch(BATCH), verbose=0,
              callbacks=balancer.callbacks())
    self.assertParamsClose(model, _params(direct))
    self.assertAllClose(balancer.state.log_variance,
                        direct_balancer.state.log_variance)

  def test_gin_switch(self):
    gin.parse_config("task_balance.method = 'dwa'\n"
                     "task_balance.temperature = 5.0")
    x, outputs = _network()
    model = conversion.ConversionModel(x, outputs,
                                       balance=task_balance.config())
    model.compile(optimizer=tf.keras.optimizers.SGD(.1))
    balancer = model.balancer
    self.assertEqual(balancer.method, "dwa")
    self.assertEqual(balancer.temperature, 5.0)

  def test_single_head_model_stays_fixed(self):
    x = tf.keras.Input((3,), name="x")
    model = conversion.ConversionModel(x, {"conversion": tf.keras.layers.Dense(
        1, activation="sigmoid", name="conversion")(x)},
                                       balance=task_balance.Balance("gradnorm"))
    model.compile(optimizer="sgd")
    self.assertEqual(model.balancer.method, "fixed")
    self.assertEqual(model.balancer.effective_lambda(), 0.0)
    self.assertFalse(hasattr(model, "task_balance"))

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, "expected one of"):
      task_balance.Balance("pcgrad")
    with self.assertRaisesRegex(ValueError, "temperature"):
      task_balance.Balance("dwa", temperature=0)
    with self.assertRaisesRegex(ValueError, "asymmetry"):
      task_balance.Balance("gradnorm", asymmetry=-1)
    with self.assertRaisesRegex(ValueError, "learning_rate"):
      task_balance.config(method="uncertainty", learning_rate=0)
    x, outputs = _network()
    uncompiled = tf.keras.Model(x, outputs)
    with self.assertRaisesRegex(ValueError, "after model.compile"):
      task_balance.make_balancer(uncompiled, {"caba": 1.0, "cabb": .75},
                                 task_balance.Balance("dwa"))
    with self.assertRaisesRegex(ValueError, "cabb_weight"):
      conversion.ConversionModel(x, outputs, cabb_weight=-1.0)
    model = conversion.ConversionModel(x, outputs)
    with self.assertRaisesRegex(ValueError, "compile the model first"):
      _ = model.balancer
    with self.assertRaisesRegex(ValueError, "sets loss_weights itself"):
      model.compile(optimizer="sgd", loss_weights={"caba": 1.0, "cabb": 2.0})


if __name__ == "__main__":
  tf.test.main()
