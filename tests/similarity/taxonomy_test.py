"""Tests for cabb_tf.similarity.taxonomy."""

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import pandas as pd

from cabb_tf.data import schema
from cabb_tf.similarity import taxonomy


class TaxonomyTest(parameterized.TestCase):

  def test_paths_from_dotted_with_category_id_fallback(self):
    got = taxonomy.paths_from_dotted(
        ["appliances.kitchen.washer", None, "", np.nan, "a.b"],
        [1, 2053013552326770905, None, 4.0, 5])
    self.assertEqual(got, [("appliances", "kitchen", "washer"),
                           ("2053013552326770905",), (), ("4",), ("a", "b")])
    self.assertEqual(taxonomy.leaves_from_paths(got).tolist(), [
        "appliances/kitchen/washer", "2053013552326770905",
        schema.UNKNOWN_LEAF, "4", "a/b"])

  def test_dotted_code_with_empty_component(self):
    with self.assertRaisesRegex(ValueError, "empty component"):
      taxonomy.path_from_dotted("a..b")
    with self.assertRaisesRegex(ValueError, "aligned"):
      taxonomy.paths_from_dotted(["a"], [1, 2])

  def test_flat_ids(self):
    self.assertEqual(taxonomy.paths_from_flat_ids([3, None, "x", 4.0]),
                     [("3",), (), ("x",), ("4",)])

  def test_paths_from_tree(self):
    tree = {1: ("r", "a"), "2": ["r", "b"]}
    self.assertEqual(taxonomy.paths_from_tree([1, "2", 2, None, 9], tree),
                     [("r", "a"), ("r", "b"), ("r", "b"), (), ()])

  def test_paths_from_tree_file(self):
    try:
      # pylint: disable-next=g-import-not-at-top,unused-import
      from cabb_tf.data import category_tree
    except ImportError:
      self.skipTest("cabb_tf.data.category_tree is not available")
    path = self.create_tempfile(
        "tree.csv", content="categoryid,parentid\n1,\n2,1\n3,2\n4,\n")
    got = taxonomy.paths_from_tree_file([3, "4", 2, 9, None], path.full_path)
    self.assertEqual(got, [("1", "2", "3"), ("4",), ("1", "2"), (), ()])

  @parameterized.named_parameters(
      ("compact_ints", [10, 11, 12], [12, 99, 10, 11]),
      ("sparse_ints", [10, 10**15, 12], [12, 99, 10, 10**15]),
      ("strings", ["a", "b", "c"], ["c", "zz", "a", "b"]),
  )
  def test_item_leaves(self, catalog_items, query):
    catalog = schema.make_catalog(catalog_items, [("x", "y"), ("z",), None])
    got = taxonomy.item_leaves(catalog, np.array(query))
    self.assertEqual(got.tolist(), [schema.UNKNOWN_LEAF, schema.UNKNOWN_LEAF,
                                    "x/y", "z"])
    self.assertEqual(got.dtype, object)

  def test_lookup_items_errors(self):
    with self.assertRaisesRegex(ValueError, "repeat"):
      taxonomy.lookup_items(pd.Series([1, 1]), [1], np.array([0, 1]))
    with self.assertRaisesRegex(ValueError, "repeat"):
      taxonomy.lookup_items(pd.Series(["a", "a"]), ["a"], np.array([0, 1]))
    with self.assertRaisesRegex(ValueError, "different types"):
      taxonomy.lookup_items(pd.Series([1, 2]), ["1"], np.array([0, 1]))
    with self.assertRaisesRegex(ValueError, "catalog lacks"):
      taxonomy.item_leaves(pd.DataFrame({"item_id": [1]}), [1])


if __name__ == "__main__":
  absltest.main()
