"""Tests for cabb_tf.similarity.category_cf (Eq. 1–3)."""

import collections
import csv
import math
import os

from absl.testing import absltest
from absl.testing import parameterized
import gin
import hypothesis
from hypothesis import strategies as st
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cabb_tf.data import schema
from cabb_tf.similarity import category_cf
from tests import shared_data
from tests.similarity import random_log

_KC, _GB, _GC = "kitchen/coffee", "grocery/beans", "garden/coffee"


def _hand_log(user_kind: str = "int"):
  """Three users, three seen leaves; see test_hand_derived_cosines."""
  catalog = schema.make_catalog(
      [1, 2, 3, 4, 5, 6],
      [("kitchen", "coffee"), ("grocery", "beans"), ("garden", "coffee"), None,
       ("grocery", "beans"), ("toys", "cars")])
  rows = [  # (user, item, type)
      ("u1", 1, "click"), ("u1", 1, "click"), ("u1", 2, "purchase"),
      ("u2", 1, "click"), ("u2", 5, "add_to_cart"), ("u2", 3, "click"),
      ("u3", 3, "purchase"), ("u3", 4, "click"), ("u3", 6, "impression"),
      ("u3", 2, "click"), ("u3", 7, "purchase"),
  ]
  users = [r[0] for r in rows]
  if user_kind == "int":
    users = [int(u[1:]) for u in users]
  elif user_kind == "huge_int":  # Too sparse a range: factorized.
    users = [int(u[1:]) * 10**17 for u in users]
  elif user_kind == "categorical":
    users = pd.Categorical(users, categories=["u3", "u2", "u1"])
  events = pd.DataFrame({
      "user_id": users,
      "timestamp": np.arange(len(rows), dtype=np.int64),
      "item_id": np.array([r[1] for r in rows], dtype=np.int64),
      "event_type": pd.Categorical([r[2] for r in rows],
                                   dtype=schema.EVENT_TYPE_DTYPE),
  })
  return events, catalog


def _reference_cosines(rows, weights):
  """Independent Eq. (1)–(2): plain dicts and math.sqrt.

  Args:
    rows: iterable of (user, leaf, event type name).
    weights: event type name -> weight.

  Returns:
    {(leaf_a, leaf_b): cosine} for every co-engaged pair, both orders.
  """
  vectors = collections.defaultdict(lambda: collections.defaultdict(float))
  for user, leaf, event_type in rows:
    w = weights.get(event_type, 0.0)
    if w:
      vectors[leaf][user] += w
  norms = {leaf: math.sqrt(sum(x * x for x in v.values()))
           for leaf, v in vectors.items()}
  by_user = collections.defaultdict(dict)
  for leaf, v in vectors.items():
    for user, x in v.items():
      by_user[user][leaf] = x
  dots = collections.defaultdict(float)
  for leaf_values in by_user.values():
    for a, xa in leaf_values.items():
      for b, xb in leaf_values.items():
        dots[(a, b)] += xa * xb
  return {(a, b): d / (norms[a] * norms[b]) for (a, b), d in dots.items()}


def _read_taobao(path):
  """Parses the Taobao sample with the csv module (no header)."""
  mapping = {"pv": "click", "cart": "add_to_cart", "fav": "add_to_cart",
             "buy": "purchase"}
  rows = []
  with open(path, newline="") as f:
    for fields in csv.reader(f):
      if len(fields) != 5 or not fields[4].isdigit():
        continue  # The truncated last line.
      user, item, category, behavior, ts = fields
      rows.append((int(user), int(item), category, mapping[behavior],
                   int(ts) * 1000))
  return rows


class CategorySimilarityTest(parameterized.TestCase):

  @parameterized.parameters("int", "huge_int", "str", "categorical")
  def test_hand_derived_cosines(self, user_kind):
    # Default weights click 1, add_to_cart 2, purchase 4, impression 0.
    # Vectors over users (u1, u2, u3), Eq. (1):
    #   kitchen/coffee = (1+1, 1, 0)     = (2, 1, 0)   |v|^2 = 5
    #   grocery/beans  = (4, 2, 1)       (items 2 and 5 pool)  |v|^2 = 21
    #   garden/coffee  = (0, 1, 4)                      |v|^2 = 17
    # Item 4 has no category, item 7 is not in the catalog and toys/cars
    # only has an impression: none of them counts.
    # Eq. (2): kc.gb = 2*4 + 1*2 + 0*1 = 10 -> 10 / sqrt(5 * 21)
    #          kc.gc = 0 + 1*1 + 0     = 1  ->  1 / sqrt(5 * 17)
    #          gb.gc = 0 + 2*1 + 1*4   = 6  ->  6 / sqrt(21 * 17)
    events, catalog = _hand_log(user_kind)
    sim = category_cf.category_similarity(events, catalog)
    self.assertEqual(list(sim.leaves), sorted([_KC, _GB, _GC]))
    a = np.array([_KC, _KC, _GB, _GB, _GC, _KC])
    b = np.array([_GB, _GC, _GC, _KC, _GB, _KC])
    expected = [10 / math.sqrt(105), 1 / math.sqrt(85), 6 / math.sqrt(357),
                10 / math.sqrt(105), 6 / math.sqrt(357), 1.0]
    np.testing.assert_allclose(sim.alpha(a, b), expected, rtol=0, atol=1e-15)
    self.assertEqual(sim.stats["events_in"], 11)
    self.assertEqual(sim.stats["events_used"], 8)
    self.assertEqual(sim.stats["dropped"],
                     {"zero_weight": 1, "unknown_leaf": 2})
    self.assertEqual(sim.stats["users"], 3)

  def test_hand_derived_with_custom_weights(self):
    # Only purchases (weight 1): kc has no purchase (unseen), gb = (1, 0, 0),
    # gc = (0, 0, 1); gb.gc = 0, so the pair is absent and alpha is 0.
    events, catalog = _hand_log()
    sim = category_cf.category_similarity(events, catalog, {"purchase": 1.0},
                                          fallback=0.25)
    self.assertEqual(list(sim.leaves), [_GC, _GB])
    self.assertEqual(sim.alpha(_GB, _GC), 0.0)
    self.assertEqual(sim.alpha(_KC, _GB), 0.25)
    self.assertEqual(sim.matrix.nnz, 2)

  def test_matches_independent_implementation_on_taobao(self):
    rows = _read_taobao(shared_data.require(shared_data.TAOBAO))
    self.assertGreater(len(rows), 80_000)
    leaf_of_item = {}
    for _, item, category, _, _ in rows:
      leaf_of_item.setdefault(item, category)
    catalog = schema.make_catalog(list(leaf_of_item),
                                  [(c,) for c in leaf_of_item.values()])
    events = pd.DataFrame({
        "user_id": np.array([r[0] for r in rows], dtype=np.int64),
        "timestamp": np.array([r[4] for r in rows], dtype=np.int64),
        "item_id": np.array([r[1] for r in rows], dtype=np.int64),
        "event_type": pd.Categorical([r[3] for r in rows],
                                     dtype=schema.EVENT_TYPE_DTYPE),
    })
    weights = category_cf.DEFAULT_EVENT_WEIGHTS
    sim = category_cf.category_similarity(events, catalog)
    expected = _reference_cosines(
        ((u, leaf_of_item[i], t) for u, i, _, t, _ in rows), weights)
    coo = sim.matrix.tocoo()
    got = {(sim.leaves[i], sim.leaves[j]): s
           for i, j, s in zip(coo.row, coo.col, coo.data)}
    self.assertEqual(set(got), set(expected))
    self.assertGreater(len(got), 10_000)
    errors = [abs(got[k] - min(expected[k], 1.0)) for k in expected]
    self.assertLess(max(errors), 1e-12)

  @parameterized.parameters(0, 1, 2)
  def test_matches_independent_implementation_on_random_logs(self, seed):
    events, catalog = random_log.random_log(seed=seed)
    weights = {"click": 1.0, "add_to_cart": 3.0, "purchase": 5.5}
    sim = category_cf.category_similarity(events, catalog, weights)
    leaves = dict(zip(catalog["item_id"], catalog["leaf"]))
    expected = _reference_cosines(
        ((u, leaves[i], t) for u, i, t in zip(
            events["user_id"], events["item_id"], events["event_type"])
         if i in leaves and leaves[i] != schema.UNKNOWN_LEAF), weights)
    a, b = zip(*expected)
    np.testing.assert_allclose(sim.alpha(np.array(a), np.array(b)),
                               np.minimum(list(expected.values()), 1.0),
                               rtol=0, atol=1e-12)
    self.assertEqual(sim.matrix.nnz, len(expected))

  @hypothesis.settings(max_examples=40, deadline=None)
  @hypothesis.given(st.lists(
      st.tuples(st.integers(0, 5), st.integers(0, 7),
                st.sampled_from(schema.EVENT_TYPES)), max_size=40),
                    st.one_of(st.just(0.0), st.floats(1e-3, 3.0)),
                    st.floats(0.5, 9.0))
  def test_property_matches_reference(self, rows, w_cart, w_buy):
    # Items 0..7 sit in leaves "l0".."l3" (item // 2); item 7 has no leaf.
    catalog = schema.make_catalog(
        list(range(8)), [(f"l{i // 2}",) for i in range(7)] + [None])
    events = pd.DataFrame({
        "user_id": np.array([r[0] for r in rows], dtype=np.int64),
        "item_id": np.array([r[1] for r in rows], dtype=np.int64),
        "event_type": pd.Categorical([r[2] for r in rows],
                                     dtype=schema.EVENT_TYPE_DTYPE),
    })
    weights = {"click": 1.0, "add_to_cart": w_cart, "purchase": w_buy}
    sim = category_cf.category_similarity(events, catalog, weights)
    expected = _reference_cosines(
        ((u, f"l{i // 2}", t) for u, i, t in rows if i < 7), weights)
    self.assertEqual(sorted(sim.leaves),
                     sorted({a for a, _ in expected}))
    self.assertEqual(sim.matrix.nnz, len(expected))
    for (a, b), value in expected.items():
      self.assertAlmostEqual(sim.alpha(a, b), min(value, 1.0), delta=1e-12)
    self.assertEqual((sim.matrix != sim.matrix.T).nnz, 0)

  def test_extreme_weights_do_not_underflow(self):
    # Cosines are scale-invariant: click weights of 1e-200 (squares would
    # underflow to 0) or 1e200 (overflow) give the same S as weight 1.
    events, catalog = random_log.random_log(seed=7)
    expected = category_cf.category_similarity(events, catalog,
                                               {"click": 1.0})
    for w in (1e-200, 1e200):
      got = category_cf.category_similarity(events, catalog, {"click": w})
      np.testing.assert_array_equal(got.leaves, expected.leaves)
      self.assertLess(abs(got.matrix - expected.matrix).max(), 1e-12)
    # Mixed: purchases dominate, but leaves with only clicks stay valid.
    mixed = category_cf.category_similarity(
        events, catalog, {"click": 1e-200, "purchase": 1e200})
    self.assertTrue(np.all(np.isfinite(mixed.matrix.data)))
    np.testing.assert_array_equal(mixed.matrix.diagonal(), 1.0)

  def test_constructor_validation(self):
    with self.assertRaisesRegex(ValueError, "square and aligned"):
      category_cf.CategorySimilarity(["a", "b"], sp.eye(3))
    with self.assertRaisesRegex(ValueError, "repeat"):
      category_cf.CategorySimilarity(["a", "a"], sp.eye(2))
    with self.assertRaisesRegex(ValueError, "symmetric"):
      category_cf.CategorySimilarity(
          ["a", "b"], sp.csr_matrix([[1.0, 0.5], [0.0, 1.0]]))
    with self.assertRaisesRegex(ValueError, "unit diagonal"):
      category_cf.CategorySimilarity(["a", "b"], sp.eye(2) * 0.5)
    with self.assertRaisesRegex(ValueError, r"\[0, 1\]"):
      category_cf.CategorySimilarity(
          ["a", "b"], sp.csr_matrix([[1.0, 2.0], [2.0, 1.0]]))

  @parameterized.parameters(0, 1)
  def test_symmetric_in_range_unit_diagonal(self, seed):
    events, catalog = random_log.random_log(seed=seed, num_events=5000)
    matrix = category_cf.category_similarity(events, catalog).matrix
    self.assertEqual(matrix.format, "csr")
    self.assertEqual(matrix.dtype, np.float64)
    self.assertEqual((matrix != matrix.T).nnz, 0)  # Exactly symmetric.
    self.assertTrue(np.all(matrix.data >= 0) and np.all(matrix.data <= 1))
    np.testing.assert_array_equal(matrix.diagonal(), 1.0)

  @parameterized.named_parameters(
      ("unknown_type", {"view": 1.0}, "unknown event type"),
      ("negative", {"click": -1.0}, "finite and >= 0"),
      ("nan", {"click": float("nan")}, "finite and >= 0"),
      ("all_zero", {"click": 0.0, "impression": 0.0}, "no event type"),
  )
  def test_event_weights_validation(self, weights, message):
    events, catalog = _hand_log()
    with self.assertRaisesRegex(ValueError, message):
      category_cf.category_similarity(events, catalog, weights)

  def test_default_weights_come_from_gin(self):
    self.addCleanup(gin.clear_config)
    gin.bind_parameter("default_event_weights.click", 0.0)
    gin.bind_parameter("default_event_weights.add_to_cart", 0.0)
    events, catalog = _hand_log()
    sim = category_cf.category_similarity(events, catalog)
    self.assertEqual(sim.stats["event_weights"]["click"], 0.0)
    self.assertEqual(sim.stats["event_weights"]["purchase"], 4.0)
    self.assertEqual(list(sim.leaves), [_GC, _GB])  # Purchases only.

  def test_gin_configurable_wrapper(self):
    self.addCleanup(gin.clear_config)
    gin.parse_config("fit_category_similarity.fallback = 0.5")
    events, catalog = _hand_log()
    sim = category_cf.fit_category_similarity(events, catalog)
    self.assertEqual(sim.alpha("nowhere", _KC), 0.5)

  def test_event_type_categories_in_another_order(self):
    events, catalog = _hand_log()
    expected = category_cf.category_similarity(events, catalog).matrix
    shuffled = events.copy()
    shuffled["event_type"] = shuffled["event_type"].cat.reorder_categories(
        ["purchase", "click", "impression", "add_to_cart"])
    self.assertEqual(shuffled["event_type"].dtype, schema.EVENT_TYPE_DTYPE)
    got = category_cf.category_similarity(shuffled, catalog).matrix
    self.assertEqual(abs(got - expected).max(), 0.0)

  def test_alpha_fallback_and_shapes(self):
    events, catalog = _hand_log()
    sim = category_cf.category_similarity(events, catalog, fallback=0.3)
    self.assertEqual(sim.alpha(_KC, _KC), 1.0)
    self.assertIsInstance(sim.alpha(_KC, _GB), float)
    self.assertEqual(sim.alpha("toys/cars", "toys/cars"), 0.3)  # Impressions.
    self.assertEqual(sim.alpha(schema.UNKNOWN_LEAF, schema.UNKNOWN_LEAF), 0.3)
    self.assertEqual(sim.alpha("never/seen", _KC), 0.3)
    grid = sim.alpha(np.array([[_KC], [_GB], ["x"]]), np.array([_KC, _GC]))
    self.assertEqual(grid.shape, (3, 2))
    self.assertEqual(grid.dtype, np.float64)
    np.testing.assert_allclose(grid[:, 0], [1.0, 10 / math.sqrt(105), 0.3])
    np.testing.assert_array_equal(sim.index_of(["x", _GB]), [-1, 1])

  def test_alpha_for_items(self):
    events, catalog = _hand_log()
    sim = category_cf.category_similarity(events, catalog, fallback=0.1)
    got = sim.alpha_for_items(catalog, [1, 2, 5, 4, 99], [2, 5, 2, 4, 1])
    np.testing.assert_allclose(got, [10 / math.sqrt(105), 1.0, 1.0, 0.1, 0.1])

  def test_top_k_union_is_symmetric(self):
    events, catalog = random_log.random_log(seed=3, num_events=4000)
    full = category_cf.category_similarity(events, catalog)
    pruned = category_cf.category_similarity(events, catalog, top_k=2)
    dense, kept = full.matrix.toarray(), pruned.matrix.toarray()
    self.assertEqual((pruned.matrix != pruned.matrix.T).nnz, 0)
    np.testing.assert_array_equal(np.diag(kept), 1.0)
    n = len(dense)
    nominated = np.zeros_like(dense, dtype=bool)
    for i in range(n):  # Brute force: each row's 2 largest off-diagonal.
      candidates = [(-dense[i, j], j) for j in range(n)
                    if j != i and dense[i, j] > 0]
      for _, j in sorted(candidates)[:2]:
        nominated[i, j] = True
    expected = np.where(nominated | nominated.T | np.eye(n, dtype=bool),
                        dense, 0.0)
    np.testing.assert_array_equal(kept, expected)
    self.assertLess(pruned.matrix.nnz, full.matrix.nnz)

  def test_min_similarity(self):
    events, catalog = _hand_log()
    sim = category_cf.category_similarity(events, catalog, min_similarity=0.2)
    # 1/sqrt(85) = 0.108 goes; 6/sqrt(357) = 0.318 and 0.976 stay.
    self.assertEqual(sim.alpha(_KC, _GC), 0.0)
    self.assertAlmostEqual(sim.alpha(_GB, _GC), 6 / math.sqrt(357))
    self.assertEqual(sim.matrix.nnz, 3 + 4)

  @parameterized.parameters(0, -1, 1.5, True)
  def test_bad_top_k(self, top_k):
    events, catalog = _hand_log()
    with self.assertRaisesRegex(ValueError, "top_k"):
      category_cf.category_similarity(events, catalog, top_k=top_k)

  def test_bad_fallback_and_min_similarity(self):
    events, catalog = _hand_log()
    with self.assertRaisesRegex(ValueError, "fallback"):
      category_cf.category_similarity(events, catalog, fallback=2.0)
    with self.assertRaisesRegex(ValueError, "min_similarity"):
      category_cf.category_similarity(events, catalog, min_similarity=-0.1)

  def test_top_pairs(self):
    events, catalog = _hand_log()
    top = category_cf.category_similarity(events, catalog).top_pairs(2)
    self.assertEqual(list(top.columns), ["leaf_a", "leaf_b", "similarity"])
    self.assertEqual(
        [tuple(sorted(p)) for p in zip(top["leaf_a"], top["leaf_b"])],
        [tuple(sorted((_KC, _GB))), tuple(sorted((_GB, _GC)))])
    np.testing.assert_allclose(top["similarity"],
                               [10 / math.sqrt(105), 6 / math.sqrt(357)])

  def test_save_load_roundtrip(self):
    events, catalog = random_log.random_log(seed=4)
    sim = category_cf.category_similarity(events, catalog, fallback=0.2)
    path = os.path.join(self.create_tempdir().full_path, "sim.npz")
    sim.save(path)
    loaded = category_cf.CategorySimilarity.load(path)
    np.testing.assert_array_equal(loaded.leaves, sim.leaves)
    self.assertEqual(abs(loaded.matrix - sim.matrix).max(), 0.0)
    self.assertEqual(loaded.fallback, 0.2)
    self.assertEqual(loaded.stats, sim.stats)
    self.assertEqual(loaded.alpha("x", "y"), 0.2)
    self.assertEqual(sorted(os.listdir(os.path.dirname(path))), ["sim.npz"])

  def test_load_other_class_fails(self):
    events, catalog = _hand_log()
    path = os.path.join(self.create_tempdir().full_path, "sim.npz")
    category_cf.category_similarity(events, catalog).save(path)
    # pylint: disable-next=g-import-not-at-top
    from cabb_tf.similarity import item_cf
    with self.assertRaisesRegex(ValueError, "CategorySimilarity"):
      item_cf.ItemSimilarity.load(path)

  def test_no_usable_events_gives_empty_similarity(self):
    events, catalog = _hand_log()
    events = events[events["event_type"] == "impression"]
    sim = category_cf.category_similarity(events, catalog, fallback=0.4)
    self.assertEqual(len(sim), 0)
    self.assertEqual(sim.matrix.shape, (0, 0))
    self.assertEqual(sim.alpha(_KC, _KC), 0.4)

  def test_input_validation(self):
    events, catalog = _hand_log()
    with self.assertRaisesRegex(ValueError, "event_type.*EVENT_TYPE_DTYPE"):
      category_cf.category_similarity(
          events.assign(event_type=events["event_type"].astype(str)), catalog)
    with self.assertRaisesRegex(ValueError, "lack column"):
      category_cf.category_similarity(events.drop(columns="user_id"), catalog)
    with self.assertRaisesRegex(ValueError, "catalog lacks"):
      category_cf.category_similarity(events, catalog.drop(columns="leaf"))
    with self.assertRaisesRegex(ValueError, "different types"):
      category_cf.category_similarity(
          events.assign(item_id=events["item_id"].astype(str)), catalog)
    with self.assertRaisesRegex(ValueError, "repeat"):
      category_cf.category_similarity(
          events, pd.concat([catalog, catalog.iloc[:1]]))



def _reference_debiased(rows, weights, user_damping, beta, gamma):
  """Independent damped Eq. (1)–(2): dicts, math.log, math.sqrt.

  User u's terms of every dot product are multiplied by d_u (1 / ln(1 + k_u)
  or k_u^-beta, k_u = distinct leaves of u), then the cosine is multiplied by
  (min norm / max norm)^gamma.
  """
  vectors = collections.defaultdict(lambda: collections.defaultdict(float))
  for user, leaf, event_type in rows:
    w = weights.get(event_type, 0.0)
    if w:
      vectors[leaf][user] += w
  leaves_of = collections.defaultdict(set)
  for leaf, v in vectors.items():
    for user in v:
      leaves_of[user].add(leaf)
  damping = {}
  for user, leaves in leaves_of.items():
    k = len(leaves)
    if user_damping == "log":
      damping[user] = 1.0 / math.log(1.0 + k)
    elif user_damping == "power":
      damping[user] = k ** -beta
    else:
      damping[user] = 1.0
  def dot(a, b):
    return sum(x * vectors[b].get(u, 0.0) * damping[u]
               for u, x in vectors[a].items())
  norms = {leaf: math.sqrt(dot(leaf, leaf)) for leaf in vectors}
  out = {}
  for a in vectors:
    for b in vectors:
      d = dot(a, b)
      if d > 0:
        ratio = min(norms[a], norms[b]) / max(norms[a], norms[b])
        out[(a, b)] = d / (norms[a] * norms[b]) * ratio ** gamma
  return out


class DebiasedCategorySimilarityTest(parameterized.TestCase):

  def test_hand_derived_power_damping_and_full_popularity_penalty(self):
    # _hand_log vectors over (u1, u2, u3): kc = (2, 1, 0), gb = (4, 2, 1),
    # gc = (0, 1, 4). Distinct leaves: u1 {kc, gb}, u2 {kc, gb, gc},
    # u3 {gc, gb} -> k = (2, 3, 2); power, beta = 1: d = (1/2, 1/3, 1/2).
    # Damped dots: kc.gb = 8/2 + 2/3 = 14/3, kc.gc = 1/3,
    #   gb.gc = 2/3 + 4/2 = 8/3; |kc|^2 = 4/2 + 1/3 = 7/3,
    #   |gb|^2 = 16/2 + 4/3 + 1/2 = 59/6, |gc|^2 = 1/3 + 16/2 = 25/3.
    events, catalog = _hand_log()
    a = np.array([_KC, _KC, _GB, _GC])
    b = np.array([_GB, _GC, _GC, _GC])
    sim = category_cf.category_similarity(events, catalog,
                                          user_damping="power", user_beta=1.0)
    np.testing.assert_allclose(
        sim.alpha(a, b),
        [(14 / 3) / math.sqrt(7 / 3 * 59 / 6),
         (1 / 3) / math.sqrt(7 / 3 * 25 / 3),
         (8 / 3) / math.sqrt(59 / 6 * 25 / 3), 1.0], rtol=0, atol=1e-15)
    # gamma = 1: cos * min/max norm = dot / max(|v|^2); gb is the largest.
    sim = category_cf.category_similarity(
        events, catalog, user_damping="power", user_beta=1.0,
        popularity_gamma=1.0)
    np.testing.assert_allclose(sim.alpha(a, b),
                               [28 / 59, 1 / 25, 16 / 59, 1.0], rtol=0,
                               atol=1e-15)
    self.assertEqual(sim.stats["debiasing"],
                     {"user_damping": "power", "user_beta": 1.0,
                      "popularity_gamma": 1.0})

  def test_hand_derived_log_damping_and_half_popularity_penalty(self):
    # d = (1/ln 3, 1/ln 4, 1/ln 3) =: (x, y, x). kc.gb = 8x + 2y,
    # |kc|^2 = 4x + y, |gb|^2 = 17x + 4y; gamma = 1/2 multiplies the cosine
    # by sqrt(|kc| / |gb|) = ((4x + y) / (17x + 4y))^(1/4).
    events, catalog = _hand_log()
    x, y = 1 / math.log(3), 1 / math.log(4)
    cosine = (8 * x + 2 * y) / math.sqrt((4 * x + y) * (17 * x + 4 * y))
    sim = category_cf.category_similarity(events, catalog, user_damping="log")
    self.assertAlmostEqual(sim.alpha(_KC, _GB), cosine, delta=1e-15)
    sim = category_cf.category_similarity(events, catalog, user_damping="log",
                                          popularity_gamma=0.5)
    self.assertAlmostEqual(
        sim.alpha(_GB, _KC),
        cosine * ((4 * x + y) / (17 * x + 4 * y)) ** 0.25, delta=1e-15)

  def test_popularity_penalty_alone(self):
    # No user damping: |kc|^2 = 5, |gb|^2 = 21; gamma = 1 gives 10 / 21.
    events, catalog = _hand_log()
    sim = category_cf.category_similarity(events, catalog,
                                          popularity_gamma=1.0)
    self.assertAlmostEqual(sim.alpha(_KC, _GB), 10 / 21, delta=1e-15)
    self.assertNotIn("debiasing",
                     category_cf.category_similarity(events, catalog).stats)

  @parameterized.parameters(("log", 1.0, 0.0, 0), ("power", 0.5, 0.3, 1),
                            ("none", 1.0, 0.7, 2), ("power", 2.0, 1.0, 3))
  def test_matches_independent_implementation(self, damping, beta, gamma,
                                              seed):
    events, catalog = random_log.random_log(seed=seed, num_events=2000)
    weights = {"click": 1.0, "add_to_cart": 3.0, "purchase": 5.5}
    sim = category_cf.category_similarity(
        events, catalog, weights, user_damping=damping, user_beta=beta,
        popularity_gamma=gamma)
    leaves = dict(zip(catalog["item_id"], catalog["leaf"]))
    expected = _reference_debiased(
        ((u, leaves[i], t) for u, i, t in zip(
            events["user_id"], events["item_id"], events["event_type"])
         if i in leaves and leaves[i] != schema.UNKNOWN_LEAF), weights,
        damping, beta, gamma)
    a, b = zip(*expected)
    np.testing.assert_allclose(sim.alpha(np.array(a), np.array(b)),
                               np.minimum(list(expected.values()), 1.0),
                               rtol=0, atol=1e-12)
    # Same sparsity as Eq. 2; symmetric, in [0, 1], unit diagonal.
    self.assertEqual(sim.matrix.nnz, len(expected))
    self.assertEqual(
        sim.matrix.nnz,
        category_cf.category_similarity(events, catalog, weights).matrix.nnz)
    self.assertEqual((sim.matrix != sim.matrix.T).nnz, 0)
    self.assertTrue(np.all(sim.matrix.data >= 0) and
                    np.all(sim.matrix.data <= 1))
    np.testing.assert_array_equal(sim.matrix.diagonal(), 1.0)

  def test_penalty_is_scale_invariant(self):
    # The norm ratio does not change when every weight is scaled, even to
    # 1e-200 (the vectors are rescaled before the product).
    events, catalog = random_log.random_log(seed=5)
    expected = category_cf.category_similarity(
        events, catalog, {"click": 1.0}, user_damping="log",
        popularity_gamma=0.8)
    for w in (1e-200, 1e200):
      got = category_cf.category_similarity(
          events, catalog, {"click": w}, user_damping="log",
          popularity_gamma=0.8)
      self.assertLess(abs(got.matrix - expected.matrix).max(), 1e-12)

  def test_penalty_lowers_only_pairs_of_unequal_popularity(self):
    events, catalog = random_log.random_log(seed=2)
    plain = category_cf.category_similarity(events, catalog)
    damped = category_cf.category_similarity(events, catalog,
                                             popularity_gamma=0.5)
    self.assertTrue(np.all(damped.matrix.data <= plain.matrix.data + 1e-15))
    self.assertLess(damped.matrix.sum(), plain.matrix.sum())

  def test_debiased_wrapper_defaults_and_gin(self):
    self.addCleanup(gin.clear_config)
    events, catalog = _hand_log()
    default = category_cf.fit_debiased_category_similarity(events, catalog)
    self.assertEqual(default.stats["debiasing"],
                     {"user_damping": "power", "user_beta": 1.0,
                      "popularity_gamma": 0.25})
    gin.bind_parameter("fit_debiased_category_similarity.user_damping",
                       "power")
    gin.bind_parameter("fit_debiased_category_similarity.user_beta", 1.0)
    gin.bind_parameter("fit_debiased_category_similarity.popularity_gamma",
                       1.0)
    sim = category_cf.fit_debiased_category_similarity(events, catalog)
    self.assertAlmostEqual(sim.alpha(_KC, _GB), 28 / 59, delta=1e-15)
    # taxonomy_cf is untouched by the debiased scheme's bindings.
    self.assertAlmostEqual(
        category_cf.fit_category_similarity(events, catalog).alpha(_KC, _GB),
        10 / math.sqrt(105), delta=1e-15)

  @parameterized.named_parameters(
      ("unknown_damping", dict(user_damping="idf"), "user_damping"),
      ("negative_beta", dict(user_damping="power", user_beta=-1.0),
       "user_beta"),
      ("gamma_above_one", dict(popularity_gamma=1.5), "popularity_gamma"),
      ("negative_gamma", dict(popularity_gamma=-0.1), "popularity_gamma"),
  )
  def test_damping_validation(self, kwargs, message):
    events, catalog = _hand_log()
    with self.assertRaisesRegex(ValueError, message):
      category_cf.category_similarity(events, catalog, **kwargs)


if __name__ == "__main__":
  absltest.main()
