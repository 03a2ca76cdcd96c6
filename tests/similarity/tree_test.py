"""Tests for cabb_tf.similarity.tree."""

from absl.testing import absltest
from absl.testing import parameterized
import gin
import numpy as np

from cabb_tf.data import schema
from cabb_tf.similarity import tree

_PATHS = [("home", "kitchen", "coffee_makers"), ("home", "kitchen", "kettles"),
          ("home", "garden", "hoses"), ("grocery", "beverages", "coffee_beans"),
          ("grocery", "snacks"), ("toys",), ("home", "kitchen")]


class TreeSimilarityTest(parameterized.TestCase):

  @parameterized.parameters(
      # |common prefix| / max(depth_a, depth_b):
      ("home/kitchen/coffee_makers", "home/kitchen/coffee_makers", 1.0),
      ("home/kitchen/coffee_makers", "home/kitchen/kettles", 2 / 3),
      ("home/kitchen/coffee_makers", "home/garden/hoses", 1 / 3),
      ("home/kitchen/coffee_makers", "grocery/beverages/coffee_beans", 0.0),
      ("grocery/beverages/coffee_beans", "grocery/snacks", 1 / 3),
      ("grocery/snacks", "grocery/snacks", 1.0),
      ("home/kitchen", "home/kitchen/kettles", 2 / 3),
      ("toys", "toys", 1.0),
      ("toys", "home/kitchen", 0.0),
      ("toys", "nowhere", 0.25),
      (schema.UNKNOWN_LEAF, schema.UNKNOWN_LEAF, 0.25),
  )
  def test_hand_examples(self, a, b, expected):
    sim = tree.TreeSimilarity(_PATHS + [None, ()], fallback=0.25)
    self.assertAlmostEqual(sim.alpha(a, b), expected, places=15)
    self.assertAlmostEqual(sim.alpha(b, a), expected, places=15)

  def test_vectorized_and_from_catalog(self):
    catalog = schema.make_catalog([10, 11, 12, 13], _PATHS[:3] + [None])
    sim = tree.TreeSimilarity.from_catalog(catalog)
    self.assertEqual(len(sim), 3)
    got = sim.alpha_for_items(catalog, [[10, 10], [12, 13]],
                              [[11, 12], [10, 13]])
    np.testing.assert_allclose(got, [[2 / 3, 1 / 3], [1 / 3, 0.0]])
    sim2 = tree.TreeSimilarity.from_catalog(catalog[["item_id", "leaf"]])
    np.testing.assert_array_equal(sim2.leaves, sim.leaves)

  def test_flat_taxonomy(self):
    sim = tree.TreeSimilarity([("1",), ("2",)])
    np.testing.assert_array_equal(
        sim.alpha(np.array(["1", "1", "2"]), np.array(["1", "2", "2"])),
        [1.0, 0.0, 1.0])

  def test_colliding_leaf_names(self):
    with self.assertRaisesRegex(ValueError, "must not contain"):
      tree.TreeSimilarity([("a/b",), ("a", "b")])

  def test_gin_wrapper(self):
    self.addCleanup(gin.clear_config)
    gin.bind_parameter("fit_tree_similarity.fallback", 0.7)
    catalog = schema.make_catalog([1], [("a", "b")])
    self.assertEqual(tree.fit_tree_similarity(catalog).alpha("x", "a/b"), 0.7)


if __name__ == "__main__":
  absltest.main()
