"""Tests of the weighting switch: key types, the in-graph table, schemes."""

from absl.testing import absltest
import numpy as np
import pandas as pd
import tensorflow as tf

from cabb_tf.data import schema
from cabb_tf.inputs import weighting
from cabb_tf.similarity import item_cf


def _events():
  # Users 1 and 2 engage items 10 and 11; user 3 only item 12.
  rows = [(1, 10), (1, 11), (2, 10), (2, 11), (3, 12)]
  return pd.DataFrame({
      "user_id": [u for u, _ in rows], "item_id": [i for _, i in rows],
      "timestamp": np.arange(len(rows), dtype=np.int64),
      "event_type": pd.Categorical(["click"] * len(rows),
                                   dtype=schema.EVENT_TYPE_DTYPE)})


class ScorePairsTest(absltest.TestCase):

  def test_string_keys_reach_an_integer_keyed_similarity(self):
    similarity = item_cf.i2i_cf(_events())
    # Items 10 and 11 have identical user vectors (cosine 1); 12 shares no
    # user with them (0); "x" is not an item id (unseen: the fallback 0).
    got = weighting.score_pairs(
        similarity, np.array(["10", "10", "11", "x"], dtype=object),
        np.array(["11", "12", "11", "10"], dtype=object))
    np.testing.assert_allclose(got, [1.0, 0.0, 1.0, 0.0])

  def test_static_broadcasts_to_the_keys(self):
    got = weighting.score_pairs(weighting.fit_scheme("static", None, None),
                                np.array(["a", "b"], dtype=object),
                                np.array(["c", "d"], dtype=object))
    np.testing.assert_array_equal(got, [1.0, 1.0])

  def test_debiased_scheme_differs_from_taxonomy_cf_only_by_damping(self):
    # Leaves: items 10, 11 in "a", 12 in "b", 13 in "c". User 1 engages a
    # and b, user 2 a, b and c, user 3 only c. Plain Eq. 2 over (u1, u2, u3):
    # a = (1, 1, 0), b = (1, 1, 0), c = (0, 1, 1): S(a, c) = 1/2. Debiased
    # (default power damping, β = 1, γ = 1/4): d = (1/2, 1/3, 1) =: (x, y, z);
    # |a|^2 = x + y, |c|^2 = y + z, a.c = y.
    catalog = schema.make_catalog([10, 11, 12, 13], [("a",), ("a",), ("b",),
                                                     ("c",)])
    rows = [(1, 10), (1, 12), (2, 11), (2, 12), (2, 13), (3, 13)]
    events = pd.DataFrame({
        "user_id": [u for u, _ in rows], "item_id": [i for _, i in rows],
        "event_type": pd.Categorical(["click"] * len(rows),
                                     dtype=schema.EVENT_TYPE_DTYPE)})
    plain = weighting.fit_scheme("taxonomy_cf", events, catalog)
    debiased = weighting.fit_scheme("taxonomy_cf_debiased", events, catalog)
    self.assertIn("taxonomy_cf_debiased", weighting.SCHEMES)
    self.assertEqual(weighting.KEYS["taxonomy_cf_debiased"],
                     ("leaf_a", "leaf_b"))
    self.assertAlmostEqual(plain.alpha("a", "c"), 0.5, delta=1e-15)
    x, y, z = 1 / 2, 1 / 3, 1.0
    na, nc = np.sqrt(x + y), np.sqrt(y + z)
    self.assertAlmostEqual(debiased.alpha("a", "c"),
                           y / (na * nc) * (min(na, nc) / max(na, nc))**0.25,
                           delta=1e-15)
    # = (1/3) / sqrt(5/6 · 4/3) · (5/8)^(1/8).
    self.assertAlmostEqual(debiased.alpha("a", "c"),
                           (1 / 3) / np.sqrt(10 / 9) * (5 / 8)**0.125,
                           delta=1e-15)

  def test_unknown_scheme(self):
    with self.assertRaisesRegex(ValueError, "weighting scheme"):
      weighting.check_scheme("popularity")


class PairTableTest(tf.test.TestCase):

  def test_in_graph_lookup_equals_the_table(self):
    table = weighting.PairTable(
        keys_a=np.array(["a/b", "a/b"], dtype=object),
        keys_b=np.array(["c", "a/b"], dtype=object),
        alpha=np.array([0.25, 1.0], dtype=np.float32),
        fields=("leaf_a", "leaf_b"), fallback=0.5)
    alpha_fn = table.alpha_fn()
    records = tf.data.Dataset.from_tensor_slices({
        "leaf_a": ["a/b", "a/b", "c"], "leaf_b": ["c", "a/b", "a/b"]})
    got = np.concatenate([alpha_fn(r).numpy() for r in records.batch(2)])
    # The reversed pair (c, a/b) is not in the table: the fallback.
    np.testing.assert_allclose(got, [0.25, 1.0, 0.5])

  def test_lookup_and_scaling(self):
    table = weighting.PairTable(
        keys_a=np.array(["a", "a"], dtype=object),
        keys_b=np.array(["b", "c"], dtype=object),
        alpha=np.array([0.25, 1.0], dtype=np.float32),
        fields=("leaf_a", "leaf_b"), fallback=0.5, train_row_mean=0.4)
    np.testing.assert_allclose(
        table.lookup(["a", "b", "a", "a"], ["c", "a", "b", "c"]),
        [1.0, 0.5, 0.25, 1.0])
    doubled = table.scaled(2.0)
    np.testing.assert_allclose(doubled.alpha, [0.5, 2.0])
    self.assertEqual((doubled.fallback, doubled.train_row_mean), (1.0, 0.8))
    with self.assertRaisesRegex(ValueError, "mean_one"):
      weighting.check_scale("mean")


class MeanOneScaleTest(tf.test.TestCase):

  def test_mean_one_over_the_training_cabb_positive_rows(self):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    from cabb_tf import datasets  # pylint: disable=g-import-not-at-top,unused-import
    builder = tfds.builder("cabb_synthetic/tiny",
                           data_dir=self.create_tempdir().full_path)
    builder.download_and_prepare()
    raw = weighting.make_alpha_fn("taxonomy_cf", builder)
    scaled = weighting.make_alpha_fn("taxonomy_cf", builder, scale="mean_one")
    train = next(iter(builder.as_dataset(split="train").batch(1 << 20)))
    positive = train["y_cabb"].numpy() > 0
    raw_alpha = raw(train).numpy()[positive].astype(np.float64)
    scaled_alpha = scaled(train).numpy()[positive].astype(np.float64)
    self.assertGreater(positive.sum(), 10)
    # Raw α lies in [0, 1] with a mean well below 1; scaled, the positives
    # average exactly 1 and keep their ratios.
    self.assertLess(raw_alpha.mean(), 0.9)
    self.assertAllClose(scaled_alpha.mean(), 1.0, rtol=1e-5)
    self.assertAllClose(scaled_alpha, raw_alpha / raw_alpha.mean(), rtol=1e-5)


if __name__ == "__main__":
  absltest.main()
