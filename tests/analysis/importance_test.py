"""Tests for cabb_tf.analysis.importance on the index-input model."""

import numpy as np
import tensorflow as tf

import cabb_tf  # pylint: disable=unused-import
from cabb_tf import metrics
from cabb_tf.analysis import importance
from cabb_tf.data import features
from cabb_tf.models import factory
from tests.models import factory_test

ROWS = 64


def _columns(seed=0):
  """A split in memory: every raw feature plus labels and weights."""
  rng = np.random.default_rng(seed)
  vocabulary = factory_test.statistics()["vocabulary"]
  columns = {name: tf.constant(rng.random(ROWS).astype(np.float64) * 5)
             for name in features.NUMERIC_FEATURES}
  for name, words in vocabulary.items():
    columns[name] = tf.constant(rng.choice(list(words) + ["unseen"], ROWS))
  columns.update(
      y_caba=tf.constant(rng.integers(0, 2, ROWS)),
      y_cabb=tf.constant(rng.integers(0, 2, ROWS)),
      w_caba=tf.constant(rng.integers(0, 2, ROWS).astype(np.float32)))
  return columns


class LoadSplitTest(tf.test.TestCase):

  def test_ids_are_the_vocabulary_rows_numpy_gives(self):
    columns = _columns()
    statistics = factory_test.statistics()
    inputs, labels = importance.load_split(columns, statistics)
    self.assertCountEqual(inputs, factory.model_features(statistics))
    for name, words in statistics["vocabulary"].items():
      strings = [v.decode() for v in columns[name].numpy()]
      self.assertEqual(inputs[name].dtype, np.int32)
      np.testing.assert_array_equal(inputs[name],
                                    factory_test.numpy_index(words, strings))
    self.assertEqual(inputs["price_a"].dtype, np.float32)
    np.testing.assert_array_equal(
        inputs["price_a"], columns["price_a"].numpy().astype(np.float32))
    self.assertEqual(labels["y_cabb"].dtype, np.float64)

  def test_permutation_importance_of_the_built_model(self):
    statistics = factory_test.statistics()
    tf.keras.utils.set_random_seed(0)
    model = factory.build_model(statistics, excluded_features=("user_id",))
    inputs, labels = importance.load_split(_columns(), statistics)
    got = importance.permutation_importance(model, inputs, labels, seed=4,
                                            families=False)
    # A feature the model does not take is not ranked.
    self.assertNotIn("user_id", got["caba"])
    # By hand for one id feature: the same permutation of its rows.
    order = None
    rng = np.random.default_rng(4)
    for name in inputs:
      if name in model.input_names:
        permutation = rng.permutation(ROWS)
        if name == "brand_a":
          order = permutation
    shuffled = {n: v for n, v in inputs.items() if n in model.input_names}
    base = model.predict(shuffled, verbose=0)
    shuffled["brand_a"] = inputs["brand_a"][order]
    moved = model.predict(shuffled, verbose=0)
    expected = (metrics.normalized_entropy(labels["y_cabb"],
                                           moved["cabb"].reshape(-1)) -
                metrics.normalized_entropy(labels["y_cabb"],
                                           base["cabb"].reshape(-1)))
    self.assertAlmostEqual(got["cabb"]["brand_a"], expected, places=6)


if __name__ == "__main__":
  tf.test.main()
