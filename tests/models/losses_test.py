"""Tests of the α-weighted losses (Eq. 4–6) against hand-derived values."""

import math

import numpy as np
import tensorflow as tf

import cabb_tf  # pylint: disable=unused-import
from cabb_tf.models import losses


class LossesTest(tf.test.TestCase):

  def test_weighted_bce_divides_by_batch_size_not_sum_of_weights(self):
    # y = [1, 0, 1], p = [.8, .3, .4], α = [.5, 1, 0].
    # Σ α·CE = .5·(−ln .8) + 1·(−ln .7) + 0 = .11157 + .35667 = .46824;
    # divided by |B| = 3 → .15608 (dividing by Σα = 1.5 would give .31216).
    loss = losses.weighted_binary_crossentropy("cabb")
    got = loss(np.array([[1.], [0.], [1.]]), np.array([[.8], [.3], [.4]]),
               sample_weight=np.array([.5, 1., 0.]))
    expected = (-.5 * math.log(.8) - math.log(.7)) / 3
    self.assertAllClose(got, expected, rtol=1e-5)

  def test_total_loss_is_caba_plus_lambda_cabb(self):
    # A model whose two outputs are fixed inputs: the compiled loss is then
    # L_caba + λ L_cabb of the given predictions.
    p_caba = tf.keras.Input(shape=(1,), name="p_caba")
    p_cabb = tf.keras.Input(shape=(1,), name="p_cabb")
    identity = tf.keras.layers.Lambda(lambda x: x)
    model = tf.keras.Model(
        [p_caba, p_cabb],
        {"caba": identity(p_caba), "cabb": tf.keras.layers.Lambda(
            lambda x: x)(p_cabb)})
    model.compile(**losses.multitask_losses(cabb_weight=0.25))
    x = [np.array([[.9], [.2]]), np.array([[.6], [.1]])]
    y = {"caba": np.array([[1.], [0.]]), "cabb": np.array([[1.], [1.]])}
    w = {"caba": np.array([1., 1.]), "cabb": np.array([.5, 2.])}
    got = model.evaluate(x, y, sample_weight=w, verbose=0)[0]
    l_caba = (-math.log(.9) - math.log(.8)) / 2
    l_cabb = (-.5 * math.log(.6) - 2 * math.log(.1)) / 2
    self.assertAllClose(got, l_caba + 0.25 * l_cabb, rtol=1e-4)

  def test_negative_lambda_is_rejected(self):
    with self.assertRaisesRegex(ValueError, "λ"):
      losses.multitask_losses(cabb_weight=-1)


if __name__ == "__main__":
  tf.test.main()
