"""Tests of the model factory: structure, shared tables, baselines, DCN."""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import cabb_tf  # pylint: disable=unused-import
from cabb_tf.data import features
from cabb_tf.models import factory


def statistics():
  numeric = {name: {"mean": 0.5, "std": 2.0, "missing": 0.0}
             for name in features.NUMERIC_FEATURES}
  numeric["price_a"]["missing"] = 0.1
  vocabulary = {"user_id": ["u1", "u2"], "item_a": ["i1", "i2", "i3"],
                "leaf_a": ["a/b", "a/c"], "top_category_a": ["a"],
                "brand_a": ["", "acme"]}
  return {"numeric": numeric, "vocabulary": vocabulary, "num_examples": 10}


def batch(n=4):
  rng = np.random.default_rng(0)
  out = {name: tf.constant(rng.random(n).astype(np.float32) * 5)
         for name in features.NUMERIC_FEATURES}
  out["price_a"] = tf.constant([1.0, np.nan, 3.0, 4.0][:n], tf.float32)
  out["u_item_since_s"] = tf.constant([-1.0, 3.0, 5.0, -1.0][:n], tf.float32)
  out.update(user_id=tf.constant(["u1", "u2", "zz", "u1"][:n]),
             item_a=tf.constant(["i1", "i2", "i3", "new"][:n]),
             leaf_a=tf.constant(["a/b"] * n), top_category_a=tf.constant(
                 ["a"] * n), brand_a=tf.constant(["acme"] * n))
  return out


class BuildModelTest(tf.test.TestCase, parameterized.TestCase):

  def test_two_heads_give_probabilities(self):
    model = factory.build_model(statistics())
    out = model(batch())
    self.assertCountEqual(out.keys(), ["caba", "cabb"])
    for head in out.values():
      self.assertEqual(head.shape, (4, 1))
      self.assertTrue(np.all((head.numpy() > 0) & (head.numpy() < 1)))
      self.assertFalse(np.any(np.isnan(head.numpy())))

  def test_one_table_per_id_space(self):
    model = factory.build_model(statistics())
    names = [layer.name for layer in model.layers
             if isinstance(layer, tf.keras.layers.Embedding)]
    self.assertCountEqual(names, [
        "user_embedding", "item_embedding", "leaf_embedding",
        "top_category_embedding", "brand_embedding", "hour_embedding",
        "weekday_embedding"])
    # Vocabulary + one OOV bucket.
    self.assertEqual(model.get_layer("item_embedding").input_dim, 4)

  @parameterized.parameters(("conversion",), ("caba",))
  def test_single_head_baseline(self, head):
    model = factory.build_model(statistics(), heads=(head,))
    self.assertEqual(list(model(batch()).keys()), [head])

  def test_dcn_cross_layers(self):
    model = factory.build_model(statistics(), cross_layers=2)
    self.assertLen([l for l in model.layers if l.name.startswith("cross_")], 2)
    self.assertEqual(model(batch())["caba"].shape, (4, 1))

  def test_excluded_features_are_not_inputs(self):
    model = factory.build_model(statistics(),
                                excluded_features=("user_id", "price_a"))
    self.assertNotIn("user_id", model.input_names)
    self.assertNotIn("price_a", model.input_names)

  def test_no_heads_is_an_error(self):
    with self.assertRaisesRegex(ValueError, "head"):
      factory.build_model(statistics(), heads=())


if __name__ == "__main__":
  tf.test.main()
