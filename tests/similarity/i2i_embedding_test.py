"""Tests for cabb_tf.similarity.i2i_embedding."""

import collections
import io
import os

from absl.testing import absltest
from absl.testing import parameterized
import gin
import numpy as np
import pandas as pd
import tensorflow as tf

from cabb_tf.data import schema
from cabb_tf.similarity import i2i_embedding

_MINUTE_MS = 60_000
_ITEMS_PER_CLUSTER = 15
# Small but enough steps for two clusters to separate (about 2 s per fit).
_FIT_ARGS = dict(embedding_dim=16, epochs=5, batch_size=128,
                 learning_rate=0.2, min_count=1, seed=3)


def _events(rows, with_sessions=True):
  """Canonical events from (user, session, minute, item, type) rows."""
  columns = {
      "user_id": np.array([r[0] for r in rows], dtype=np.int64),
      "session_id": np.array([r[1] for r in rows], dtype=np.int64),
      "timestamp": np.array([r[2] for r in rows], dtype=np.int64) * _MINUTE_MS,
      "item_id": np.array([r[3] for r in rows], dtype=object
                          if any(isinstance(r[3], str) for r in rows)
                          else np.int64),
      "event_type": pd.Categorical([r[4] for r in rows],
                                   dtype=schema.EVENT_TYPE_DTYPE),
  }
  if not with_sessions:
    del columns["session_id"]
  return pd.DataFrame(columns)


# Rows are out of time order on purpose; "first distinct items" go by time.
_HAND_ROWS = [
    # user 1, session 10: engaged in time order 1, 2, 3 (9 is an impression,
    # the second click on 1 is a repeat).
    (1, 10, 4, 3, "purchase"),
    (1, 10, 0, 1, "click"),
    (1, 10, 1, 9, "impression"),
    (1, 10, 2, 2, "add_to_cart"),
    (1, 10, 3, 1, "click"),
    # user 1, session 11: a single item gives no pair.
    (1, 11, 100, 1, "click"),
    # user 2 reuses session id 10: still a session of its own.
    (2, 10, 0, 2, "click"),
    (2, 10, 1, 4, "purchase"),
]


def _multiset(pairs: pd.DataFrame):
  return collections.Counter(zip(pairs["item_a"], pairs["item_b"]))


def _cluster_log(num_sessions: int = 600, seed: int = 0) -> pd.DataFrame:
  """Sessions of 2–5 events, all inside one of two item clusters.

  Items 0..14 form cluster 0 and 15..29 cluster 1; no session mixes them.
  """
  rng = np.random.default_rng(seed)
  cluster = rng.integers(0, 2, num_sessions)
  size = rng.integers(2, 6, num_sessions)
  session = np.repeat(np.arange(num_sessions, dtype=np.int64), size)
  item = (rng.integers(0, _ITEMS_PER_CLUSTER, len(session)) +
          np.repeat(cluster, size) * _ITEMS_PER_CLUSTER)
  types = rng.choice(
      [schema.IMPRESSION, schema.CLICK, schema.ADD_TO_CART, schema.PURCHASE],
      size=len(session), p=[0.15, 0.6, 0.15, 0.1])
  return pd.DataFrame({
      "user_id": session // 3,
      "session_id": session,
      "timestamp": np.arange(len(session), dtype=np.int64) * 1000,
      "item_id": item.astype(np.int64),
      "event_type": pd.Categorical.from_codes(
          types, dtype=schema.EVENT_TYPE_DTYPE),
  })


def _hand_similarity(fallback=0.25):
  # Unit rows by construction; cosines derived by hand below.
  return i2i_embedding.ItemEmbeddingSimilarity(
      ["a", "b", "c", 7],
      [[1.0, 0.0], [0.6, 0.8], [-1.0, 0.0], [0.0, 2.0]],  # 7 → (0, 1).
      fallback=fallback)


class PairsTest(parameterized.TestCase):

  def test_hand_log_pairs(self):
    pairs = i2i_embedding.session_item_pairs(_events(_HAND_ROWS))
    self.assertEqual(list(pairs.columns), ["item_a", "item_b"])
    expected = collections.Counter({
        ("1", "2"): 1, ("2", "1"): 1, ("1", "3"): 1, ("3", "1"): 1,
        ("2", "3"): 1, ("3", "2"): 1, ("2", "4"): 1, ("4", "2"): 1})
    self.assertEqual(_multiset(pairs), expected)

  def test_cap_keeps_the_first_distinct_items_by_time(self):
    pairs = i2i_embedding.session_item_pairs(_events(_HAND_ROWS),
                                             max_items_per_session=2)
    self.assertEqual(_multiset(pairs), collections.Counter({
        ("1", "2"): 1, ("2", "1"): 1, ("2", "4"): 1, ("4", "2"): 1}))

  def test_repeated_co_engagement_counts_per_session(self):
    rows = [(1, 1, 0, "x", "click"), (1, 1, 1, "y", "click"),
            (1, 2, 0, "y", "purchase"), (1, 2, 1, "x", "click"),
            (1, 2, 2, "x", "click")]
    pairs = i2i_embedding.session_item_pairs(_events(rows))
    self.assertEqual(_multiset(pairs),
                     collections.Counter({("x", "y"): 2, ("y", "x"): 2}))

  def test_derived_sessions_split_at_the_gap(self):
    # No session_id: the 31-minute gap (default 30) splits user 5's events.
    rows = [(5, 0, 0, 1, "click"), (5, 0, 10, 2, "click"),
            (5, 0, 41, 3, "click"), (5, 0, 50, 4, "purchase")]
    pairs = i2i_embedding.session_item_pairs(
        _events(rows, with_sessions=False))
    self.assertEqual(_multiset(pairs), collections.Counter({
        ("1", "2"): 1, ("2", "1"): 1, ("3", "4"): 1, ("4", "3"): 1}))

  def test_subsampling_keeps_both_directions_of_a_subset(self):
    events = _cluster_log(num_sessions=50)
    full = _multiset(i2i_embedding.session_item_pairs(events))
    sub = i2i_embedding.session_item_pairs(events, max_pairs=31, seed=1)
    self.assertLen(sub, 30)  # 15 unordered pairs, both directions.
    counts = _multiset(sub)
    for (a, b), count in counts.items():
      self.assertEqual(counts[(b, a)], count)
      self.assertLessEqual(count, full[(a, b)])
    again = i2i_embedding.session_item_pairs(events, max_pairs=31, seed=1)
    pd.testing.assert_frame_equal(sub, again)

  def test_vectorized_pairs_equal_a_per_session_loop(self):
    events = _cluster_log(num_sessions=200, seed=4)
    got = _multiset(i2i_embedding.session_item_pairs(
        events, max_items_per_session=3))
    expected = collections.Counter()
    ordered = events.sort_values(["session_id", "timestamp"], kind="stable")
    engaged = ordered[ordered["event_type"] != "impression"]
    for _, group in engaged.groupby("session_id"):
      items = list(dict.fromkeys(group["item_id"].astype(str)))[:3]
      for a in items:
        for b in items:
          if a != b:
            expected[(a, b)] += 1
    self.assertEqual(got, expected)

  def test_int_and_str_ids_are_one_item(self):
    keys = i2i_embedding.item_keys(np.array([7, "7", b"x", "y"],
                                            dtype=object))
    self.assertEqual(list(keys), ["7", "7", "x", "y"])
    self.assertEqual(list(i2i_embedding.item_keys(np.array([-3, 12]))),
                     ["-3", "12"])

  @parameterized.parameters(
      (dict(max_items_per_session=1), "max_items_per_session"),
      (dict(max_pairs=1), "max_pairs"),
  )
  def test_bad_pair_options(self, kwargs, message):
    with self.assertRaisesRegex(ValueError, message):
      i2i_embedding.session_item_pairs(_events(_HAND_ROWS), **kwargs)

  def test_bad_events(self):
    events = _events(_HAND_ROWS)
    with self.assertRaisesRegex(ValueError, "EVENT_TYPE_DTYPE"):
      i2i_embedding.session_item_pairs(
          events.assign(event_type=events["event_type"].astype(str)))
    with self.assertRaisesRegex(ValueError, "timestamp"):
      i2i_embedding.session_item_pairs(
          events.drop(columns=["session_id", "timestamp"]))
    with self.assertRaisesRegex(ValueError, "float"):
      i2i_embedding.session_item_pairs(
          events.assign(item_id=events["item_id"].astype(float)))


class FitTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.events = _cluster_log()
    cls.sim = i2i_embedding.fit_i2i_embeddings(cls.events, **_FIT_ARGS)

  def test_embeddings_and_vocabulary(self):
    sim = self.sim
    self.assertEqual(sorted(sim.item_ids), list(sim.item_ids))
    self.assertEqual(set(sim.item_ids), {str(i) for i in range(30)})
    self.assertEqual(sim.embeddings.dtype, np.float32)
    self.assertEqual(sim.embeddings.shape, (30, 16))
    self.assertAllClose(np.linalg.norm(sim.embeddings, axis=1),
                        np.ones(30), atol=1e-6)
    self.assertEqual(sim.stats["items"], 30)
    self.assertEqual(sim.stats["pairs_used"],
                     len(i2i_embedding.session_item_pairs(self.events)))

  def test_within_cluster_alpha_exceeds_across(self):
    items = np.arange(2 * _ITEMS_PER_CLUSTER)
    a, b = np.repeat(items, len(items)), np.tile(items, len(items))
    alpha = self.sim.alpha(a, b)
    same = (a // _ITEMS_PER_CLUSTER) == (b // _ITEMS_PER_CLUSTER)
    within = alpha[same & (a != b)].mean()
    across = alpha[~same].mean()
    self.assertGreater(within - across, 0.3)
    self.assertAllEqual(alpha[a == b], np.ones(len(items)))
    self.assertTrue(((alpha >= 0) & (alpha <= 1)).all())

  def test_deterministic_with_a_seed(self):
    again = i2i_embedding.fit_i2i_embeddings(self.events, **_FIT_ARGS)
    self.assertAllEqual(again.item_ids, self.sim.item_ids)
    self.assertAllClose(again.embeddings, self.sim.embeddings, atol=1e-6,
                        rtol=0)

  def test_rare_items_are_unknown(self):
    # Item 99 is co-engaged once only: below min_count=2 it is unknown.
    extra = pd.DataFrame({
        "user_id": np.array([10_000, 10_000], dtype=np.int64),
        "session_id": np.array([10_000, 10_000], dtype=np.int64),
        "timestamp": np.array([0, 1], dtype=np.int64),
        "item_id": np.array([0, 99], dtype=np.int64),
        "event_type": pd.Categorical(["click", "purchase"],
                                     dtype=schema.EVENT_TYPE_DTYPE)})
    events = pd.concat([self.events.iloc[:200], extra], ignore_index=True)
    sim = i2i_embedding.fit_i2i_embeddings(
        events, **dict(_FIT_ARGS, min_count=2, epochs=1))
    self.assertNotIn("99", set(sim.item_ids))
    self.assertEqual(sim.index_of([99, "0"]).tolist()[0], -1)
    self.assertEqual(sim.alpha(0, 99), 0.0)

  def test_gin_bindings_reach_the_fit(self):
    gin.bind_parameter("i2i_embedding_test/fit_i2i_embeddings.embedding_dim",
                       4)
    with gin.config_scope("i2i_embedding_test"):
      sim = i2i_embedding.fit_i2i_embeddings(
          self.events.iloc[:300], epochs=1, min_count=1)
    self.assertEqual(sim.dim, 4)
    self.assertEqual(sim.stats["options"]["embedding_dim"], 4)

  def test_string_ids_without_session_column(self):
    events = self.events.iloc[:300].drop(columns=["session_id"])
    events = events.assign(item_id=events["item_id"].map("i{}".format))
    sim = i2i_embedding.fit_i2i_embeddings(events, epochs=1, min_count=1)
    self.assertTrue(all(i.startswith("i") for i in sim.item_ids))
    self.assertEqual(sim.alpha("i3", "i3"), 1.0)
    self.assertEqual(sim.alpha(3, "i3"), 0.0)  # "3" is unknown.

  def test_no_pairs_is_an_error(self):
    events = _events([(1, 1, 0, 1, "click"), (1, 1, 1, 2, "impression")])
    with self.assertRaisesRegex(ValueError, "co-engaged"):
      i2i_embedding.fit_i2i_embeddings(events, **_FIT_ARGS)

  def test_bad_fit_options(self):
    for kwargs, message in ((dict(batch_size=1), "batch_size"),
                            (dict(epochs=0), "epochs"),
                            (dict(learning_rate=0.0), "learning_rate"),
                            (dict(optimizer="sgd"), "optimizer"),
                            (dict(fallback=2.0), "fallback")):
      with self.assertRaisesRegex(ValueError, message):
        i2i_embedding.fit_i2i_embeddings(self.events, **kwargs)


class ItemEmbeddingSimilarityTest(tf.test.TestCase):

  def test_hand_alpha(self):
    sim = _hand_similarity(fallback=0.25)
    got = sim.alpha(np.array(["a", "a", "b", "a", "c", 7, "7", "zz", "zz"],
                             dtype=object),
                    np.array(["b", "c", 7, "a", "c", "b", 7, "a", "zz"],
                             dtype=object))
    # cos(a, b) = 0.6; cos(a, c) = -1 → 0; cos(b, 7) = 0.8; same → 1;
    # unknown "zz" → fallback, also paired with itself.
    self.assertAllClose(got, [0.6, 0.0, 0.8, 1.0, 1.0, 0.8, 1.0, 0.25, 0.25],
                        atol=1e-6, rtol=0)
    self.assertAlmostEqual(sim.alpha("a", "b"), 0.6, places=6)
    self.assertIsInstance(sim.alpha("a", "b"), float)
    self.assertEqual(sim.index_of([["c", 7], ["q", "a"]]).tolist(),
                     [[2, 3], [-1, 0]])

  def test_broadcasting(self):
    sim = _hand_similarity()
    got = sim.alpha(np.array(["a"]), np.array([["a"], ["b"]]))
    self.assertEqual(got.shape, (2, 1))
    self.assertAllClose(got, [[1.0], [0.6]])

  def test_alpha_fn_in_tf_data_equals_alpha(self):
    sim = i2i_embedding.fit_i2i_embeddings(
        _cluster_log(num_sessions=80), **dict(_FIT_ARGS, epochs=1))
    rng = np.random.default_rng(0)
    items = np.append(rng.integers(0, 32, 500), [3, 3]).astype(str)
    other = np.append(rng.integers(0, 32, 500), [3, 40]).astype(str)
    expected = sim.alpha(items, other)
    lookup = sim.as_tf_lookup()
    dataset = tf.data.Dataset.from_tensor_slices(
        {"a": items, "b": other}).batch(64).map(
            lambda x: lookup.alpha_fn(x["a"], x["b"]))
    got = np.concatenate([x.numpy() for x in dataset])
    self.assertEqual(got.dtype, np.float32)
    self.assertAllClose(got, expected, atol=1e-5, rtol=0)
    # Per example and with int64 ids, too.
    per_example = tf.data.Dataset.from_tensor_slices(
        (items.astype(np.int64), other.astype(np.int64))).map(lookup.alpha_fn)
    self.assertAllClose(np.array([x.numpy() for x in per_example]), expected,
                        atol=1e-5, rtol=0)

  def test_tf_lookup_is_string_lookup_compatible(self):
    sim = _hand_similarity(fallback=0.5)
    lookup = sim.as_tf_lookup()
    layer = tf.keras.layers.StringLookup(vocabulary=lookup.vocabulary)
    rows = layer(tf.constant(["b", "7", "nope"]))
    self.assertAllEqual(rows, [2, 4, 0])
    self.assertAllClose(tf.gather(lookup.embeddings, rows),
                        [[0.6, 0.8], [0.0, 1.0], [0.0, 0.0]])
    self.assertAllClose(lookup.alpha_fn(tf.constant([["a", "nope"]]),
                                        tf.constant([["b", "nope"]])),
                        [[0.6, 0.5]])
    self.assertEqual(lookup.fallback, 0.5)

  def test_save_load_roundtrip(self):
    sim = _hand_similarity(fallback=0.3)
    sim.stats = {"items": 4, "epoch_losses": [1.5, np.float32(1.25)]}
    path = os.path.join(self.create_tempdir().full_path, "sub", "i2i.npz")
    sim.save(path)
    self.assertEqual(os.listdir(os.path.dirname(path)), ["i2i.npz"])
    loaded = i2i_embedding.ItemEmbeddingSimilarity.load(path)
    self.assertAllEqual(loaded.item_ids, sim.item_ids)
    self.assertAllEqual(loaded.embeddings, sim.embeddings)
    self.assertEqual(loaded.fallback, 0.3)
    self.assertEqual(loaded.stats, {"items": 4, "epoch_losses": [1.5, 1.25]})
    buffer = io.BytesIO()
    sim.save(buffer)
    buffer.seek(0)
    self.assertAllEqual(
        i2i_embedding.ItemEmbeddingSimilarity.load(buffer).embeddings,
        sim.embeddings)

  def test_load_rejects_other_files(self):
    path = os.path.join(self.create_tempdir().full_path, "other.npz")
    np.savez(path, keys=np.arange(3))
    with self.assertRaisesRegex(ValueError, "not an ItemEmbeddingSimilarity"):
      i2i_embedding.ItemEmbeddingSimilarity.load(path)

  def test_constructor_validation(self):
    cls = i2i_embedding.ItemEmbeddingSimilarity
    with self.assertRaisesRegex(ValueError, "repeat"):
      cls([7, "7"], np.eye(2))
    with self.assertRaisesRegex(ValueError, "shape"):
      cls(["a", "b"], np.eye(3))
    with self.assertRaisesRegex(ValueError, "zero"):
      cls(["a", "b"], [[1.0, 0.0], [0.0, 0.0]])
    with self.assertRaisesRegex(ValueError, "fallback"):
      cls(["a"], [[1.0]], fallback=-0.1)


if __name__ == "__main__":
  absltest.main()
