"""Tests of the conversion model that owns Eq. (6)."""

import numpy as np
import tensorflow as tf

import cabb_tf  # pylint: disable=unused-import
from cabb_tf.models import conversion

ROWS = 8


def _network(seed: int = 0):
  tf.keras.utils.set_random_seed(seed)
  x = tf.keras.Input((3,), name="x")
  h = tf.keras.layers.Dense(4, activation="tanh", name="bottom_dense_0")(x)
  return x, {head: tf.keras.layers.Dense(1, activation="sigmoid",
                                         name=head)(h)
             for head in ("caba", "cabb")}


def _data():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(ROWS, 3)).astype(np.float32)
  y = {h: rng.integers(0, 2, (ROWS, 1)).astype(np.float32)
       for h in ("caba", "cabb")}
  w = {h: rng.uniform(.2, 2., ROWS).astype(np.float32)
       for h in ("caba", "cabb")}
  return x, y, w


def _bce(y, p, w):
  """Σ_b w_b·CE_b / B in NumPy (Keras clips p to [ε, 1 − ε])."""
  p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
  ce = -(y * np.log(p) + (1 - y) * np.log(1 - p))[:, 0]
  return float(np.sum(w * ce) / len(y))


class TaskOutputsTest(tf.test.TestCase):

  def test_multitask_heads_are_their_tasks(self):
    out = conversion.task_outputs({"cabb": 2, "caba": 1})
    self.assertEqual(out, {"caba": 1, "cabb": 2})

  def test_one_head_stands_for_both_tasks(self):
    self.assertEqual(conversion.task_outputs({"conversion": 5}),
                     {"caba": 5, "cabb": 5})

  def test_several_heads_without_the_tasks_are_an_error(self):
    with self.assertRaisesRegex(ValueError, r"\['cabb'\]"):
      conversion.task_outputs({"caba": 1, "other": 2})


class ConversionModelTest(tf.test.TestCase):

  def test_loss_is_eq_6_with_the_constructor_lambda(self):
    x, y, w = _data()
    for cabb_weight in (0.0, 0.3, 2.0):
      inputs, outputs = _network()
      model = conversion.ConversionModel(inputs, outputs,
                                         cabb_weight=cabb_weight)
      model.compile(optimizer=tf.keras.optimizers.SGD(0.1))
      self.assertEqual(model.loss_weights, {"caba": 1.0, "cabb": cabb_weight})
      p = model.predict(x, verbose=0)
      want = (_bce(y["caba"], p["caba"], w["caba"]) +
              cabb_weight * _bce(y["cabb"], p["cabb"], w["cabb"]))
      got = model.evaluate(x, y, sample_weight=w, batch_size=ROWS, verbose=0,
                           return_dict=True)["loss"]
      self.assertAllClose(got, want, rtol=1e-5, msg=str(cabb_weight))

  def test_lambda_zero_leaves_the_cabb_head_untrained(self):
    x, y, w = _data()
    inputs, outputs = _network()
    model = conversion.ConversionModel(inputs, outputs, cabb_weight=0.0)
    model.compile(optimizer=tf.keras.optimizers.SGD(0.5))
    before = model.get_layer("cabb").get_weights()
    caba_before = model.get_layer("caba").get_weights()
    model.fit(x, y, sample_weight=w, batch_size=4, epochs=2, verbose=0)
    for got, want in zip(model.get_layer("cabb").get_weights(), before):
      self.assertAllEqual(got, want)
    # The CABA head did learn.
    self.assertNotAllClose(model.get_layer("caba").get_weights()[0],
                           caba_before[0])

  def test_row_source_runs_inside_the_step(self):
    # The source maps a row number to the whole batch's rows: a fit on the
    # numbers trains as a fit on the rows.
    x, y, w = _data()
    inputs, outputs = _network()
    direct = conversion.ConversionModel(inputs, outputs, cabb_weight=0.5)
    direct.compile(optimizer=tf.keras.optimizers.SGD(0.3))
    direct.fit(x, y, sample_weight=w, batch_size=ROWS, epochs=3,
               shuffle=False, verbose=0)
    inputs, outputs = _network()
    model = conversion.ConversionModel(inputs, outputs, cabb_weight=0.5)
    model.compile(optimizer=tf.keras.optimizers.SGD(0.3))
    rows = tf.nest.map_structure(tf.constant, (x, y, w))
    model.read_rows_from(lambda _: rows)
    model.fit(tf.data.Dataset.range(3), verbose=0)
    for got, want in zip(model.get_weights(), direct.get_weights()):
      self.assertAllClose(got, want, rtol=1e-6)


if __name__ == "__main__":
  tf.test.main()
