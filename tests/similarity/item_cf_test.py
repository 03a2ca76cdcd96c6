"""Tests for cabb_tf.similarity.item_cf."""

import math
import os

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import pandas as pd

from cabb_tf.data import schema
from cabb_tf.similarity import category_cf
from cabb_tf.similarity import item_cf
from tests.similarity import random_log


def _events(rows, item_kind="int"):
  items = [r[1] if item_kind == "int" else f"i{r[1]}" for r in rows]
  return pd.DataFrame({
      "user_id": np.array([r[0] for r in rows], dtype=np.int64),
      "timestamp": np.arange(len(rows), dtype=np.int64),
      "item_id": np.array(items, dtype=np.int64 if item_kind == "int"
                          else object),
      "event_type": pd.Categorical([r[2] for r in rows],
                                   dtype=schema.EVENT_TYPE_DTYPE),
  })


_ROWS = [(1, 1, "click"), (1, 2, "purchase"),
         (2, 1, "click"), (2, 1, "click"), (2, 3, "add_to_cart"),
         (3, 2, "click"), (3, 3, "impression"), (3, 4, "impression")]


class ItemCfTest(parameterized.TestCase):

  @parameterized.parameters("int", "str")
  def test_hand_derived_cosines(self, item_kind):
    # Default weights; vectors over users (1, 2, 3), Eq. (1) per item:
    #   item 1 = (1, 1+1, 0) = (1, 2, 0)   |v|^2 = 5
    #   item 2 = (4, 0, 1)                 |v|^2 = 17
    #   item 3 = (0, 2, 0) (the impression weighs 0)   |v|^2 = 4
    #   item 4 has only an impression: unseen.
    # Cosines: 1.2 = 4 / sqrt(5 * 17); 1.3 = 4 / sqrt(5 * 4); 2.3 = 0.
    key = (lambda i: i) if item_kind == "int" else (lambda i: f"i{i}")
    sim = item_cf.i2i_cf(_events(_ROWS, item_kind), fallback=0.5)
    self.assertEqual(list(sim.items), [key(1), key(2), key(3)])
    got = sim.alpha(np.array([key(1), key(1), key(2), key(2), key(4)]),
                    np.array([key(2), key(3), key(3), key(2), key(1)]))
    np.testing.assert_allclose(
        got, [4 / math.sqrt(85), 4 / math.sqrt(20), 0.0, 1.0, 0.5],
        rtol=0, atol=1e-15)
    self.assertEqual(sim.stats["dropped"], {"zero_weight": 2,
                                            "unknown_item": 0})

  def test_agrees_with_category_cf_when_each_item_is_its_own_leaf(self):
    events, _ = random_log.random_log(seed=5)
    items = np.unique(events["item_id"])
    catalog = schema.make_catalog(items, [(str(i),) for i in items])
    by_leaf = category_cf.category_similarity(events, catalog)
    by_item = item_cf.i2i_cf(events)
    a = np.repeat(items, len(items))
    b = np.tile(items, len(items))
    np.testing.assert_allclose(
        by_item.alpha(a, b),
        by_leaf.alpha(a.astype(str).astype(object),
                      b.astype(str).astype(object)), rtol=0, atol=1e-15)

  def test_top_k_and_save_load(self):
    events, _ = random_log.random_log(seed=6)
    sim = item_cf.i2i_cf(events, top_k=3)
    self.assertEqual((sim.matrix != sim.matrix.T).nnz, 0)
    path = os.path.join(self.create_tempdir().full_path, "items.npz")
    sim.save(path)
    loaded = item_cf.ItemSimilarity.load(path)
    np.testing.assert_array_equal(loaded.items, sim.items)
    self.assertEqual(loaded.items.dtype, np.int64)
    self.assertEqual(abs(loaded.matrix - sim.matrix).max(), 0.0)
    self.assertEqual(sim.stats["top_k"], 3)

  def test_validation(self):
    with self.assertRaisesRegex(ValueError, "unknown event type"):
      item_cf.i2i_cf(_events(_ROWS), {"buy": 1.0})
    with self.assertRaisesRegex(ValueError, "top_k"):
      item_cf.i2i_cf(_events(_ROWS), top_k=0)


if __name__ == "__main__":
  absltest.main()
