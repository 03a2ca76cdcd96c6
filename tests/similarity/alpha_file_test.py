"""Tests of α read from a similarity file (`make_alpha_fn.similarity_file`)."""

import os
from unittest import mock

from absl.testing import absltest
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from cabb_tf import datasets
from cabb_tf import input_pipeline
from cabb_tf.data import features
from cabb_tf.inputs import weighting
from cabb_tf.pipelines import similarity_beam
from cabb_tf.similarity import category_cf
from cabb_tf.similarity import item_cf

_NAME = "cabb_synthetic/tiny"


class AlphaFileTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.data_dir = absltest.TEST_TMPDIR.value + "/alpha_file_tfds"
    cls.builder = tfds.builder(_NAME, data_dir=cls.data_dir)
    cls.builder.download_and_prepare()
    cls.events, cls.catalog = datasets.load_training_events(cls.builder)
    cls.records = {
        split: next(iter(cls.builder.as_dataset(split=split).batch(1 << 20)))
        for split in ("train", "validation", "test")}

  def _alpha(self, alpha_fn):
    """α of every record of every split, concatenated."""
    return np.concatenate([alpha_fn(r).numpy() for r in self.records.values()])

  def _saved(self, similarity, name="category_similarity.npz"):
    path = os.path.join(self.create_tempdir().full_path, name)
    similarity.save(path)
    return path

  def test_in_memory_file_gives_the_refitted_alpha(self):
    path = self._saved(category_cf.fit_category_similarity(self.events,
                                                           self.catalog))
    refit = self._alpha(weighting.make_alpha_fn("taxonomy_cf", self.builder))
    loaded = self._alpha(weighting.make_alpha_fn(
        "taxonomy_cf", self.builder, similarity_file=path))
    self.assertGreater(np.count_nonzero(refit), 10)
    np.testing.assert_array_equal(loaded, refit)
    # 'mean_one' scales the file's table as it scales the refitted one.
    np.testing.assert_array_equal(
        self._alpha(weighting.make_alpha_fn("taxonomy_cf", self.builder,
                                            scale="mean_one",
                                            similarity_file=path)),
        self._alpha(weighting.make_alpha_fn("taxonomy_cf", self.builder,
                                            scale="mean_one")))

  def test_debiased_file_gives_the_refitted_alpha(self):
    path = self._saved(category_cf.fit_debiased_category_similarity(
        self.events, self.catalog))
    refit = self._alpha(weighting.make_alpha_fn("taxonomy_cf_debiased",
                                                self.builder))
    loaded = self._alpha(weighting.make_alpha_fn(
        "taxonomy_cf_debiased", self.builder, similarity_file=path))
    np.testing.assert_array_equal(loaded, refit)

  def test_beam_file_gives_the_refitted_alpha(self):
    out = self.create_tempdir().full_path
    catalog_csv = os.path.join(out, "catalog.csv")
    self.catalog[["item_id", "leaf"]].to_csv(catalog_csv, index=False)
    similarity_beam.run(
        os.path.join(self.builder.data_path, "train_events.parquet"),
        catalog_csv, os.path.join(out, "beam"), runner="DirectRunner")
    path = os.path.join(out, "beam", similarity_beam.NPZ_NAME)
    refit = self._alpha(weighting.make_alpha_fn("taxonomy_cf", self.builder))
    loaded = self._alpha(weighting.make_alpha_fn(
        "taxonomy_cf", self.builder, similarity_file=path))
    # The same sums in another order: equal to float rounding.
    np.testing.assert_allclose(loaded, refit, rtol=1e-6, atol=1e-7)

  def test_missing_leaves_get_the_files_fallback_with_a_warning(self):
    train = self.records["train"]
    positive = train["y_cabb"].numpy() > 0
    leaf = train["leaf_b"].numpy()[positive][0].decode()
    item_leaf = self.catalog.set_index("item_id")["leaf"]
    kept = self.events[item_leaf.reindex(
        self.events["item_id"]).to_numpy() != leaf]
    path = self._saved(category_cf.fit_category_similarity(
        kept, self.catalog, fallback=0.25))
    with self.assertLogs("absl", level="WARNING") as logs:
      alpha_fn = weighting.make_alpha_fn("taxonomy_cf", self.builder,
                                         similarity_file=path)
    text = "\n".join(logs.output)
    self.assertIn("not in the file", text)
    self.assertIn(path, text)
    self.assertIn("fallback: file 0.25, configured 0.0", text)
    alpha = alpha_fn(train).numpy()
    has_leaf = ((train["leaf_a"].numpy() == leaf.encode())
                | (train["leaf_b"].numpy() == leaf.encode()))
    np.testing.assert_allclose(alpha[positive & has_leaf], 0.25)
    self.assertTrue((alpha[positive & ~has_leaf] != 0.25).any())

  def test_errors_name_the_file(self):
    directory = self.create_tempdir().full_path
    missing = os.path.join(directory, "nothing.npz")
    with self.assertRaisesRegex(ValueError, "nothing.npz.*no such file"):
      weighting.make_alpha_fn("taxonomy_cf", self.builder,
                              similarity_file=missing)
    garbage = os.path.join(directory, "garbage.npz")
    with open(garbage, "wb") as f:
      f.write(b"not an npz file")
    with self.assertRaisesRegex(ValueError, "garbage.npz.*not a readable"):
      weighting.make_alpha_fn("taxonomy_cf", self.builder,
                              similarity_file=garbage)
    plain = self._saved(category_cf.fit_category_similarity(self.events,
                                                            self.catalog))
    for scheme in ("static", "i2i_cf", "taxonomy_tree", "i2i_embedding"):
      with self.assertRaisesRegex(ValueError, f"serves the schemes.*{scheme}"):
        weighting.make_alpha_fn(scheme, self.builder, similarity_file=plain)
    with self.assertRaisesRegex(ValueError, "plain Eq. \\(2\\)"):
      weighting.make_alpha_fn("taxonomy_cf_debiased", self.builder,
                              similarity_file=plain)
    debiased = self._saved(category_cf.fit_debiased_category_similarity(
        self.events, self.catalog))
    with self.assertRaisesRegex(ValueError, "debiased similarity"):
      weighting.make_alpha_fn("taxonomy_cf", self.builder,
                              similarity_file=debiased)
    items = self._saved(item_cf.fit_item_similarity(self.events), "item.npz")
    with self.assertRaisesRegex(ValueError, "item.npz"):
      weighting.make_alpha_fn("taxonomy_cf", self.builder,
                              similarity_file=items)
    other = self._saved(category_cf.CategorySimilarity(
        np.array(["x/y", "x/z"], dtype=object), np.eye(2)), "other.npz")
    with self.assertRaisesRegex(ValueError, "other.npz.*holds none of"):
      weighting.make_alpha_fn("taxonomy_cf", self.builder,
                              similarity_file=other)

  def test_feature_statistics_are_read_not_refitted(self):
    original = features.fit_feature_statistics

    def refit(*args, **kwargs):
      raise AssertionError("the feature statistics were refitted")

    refit.__module__, refit.__name__ = original.__module__, original.__name__
    with mock.patch.object(features, "fit_feature_statistics", refit):
      data = input_pipeline.load_data(_NAME, data_dir=self.data_dir)
    self.assertEqual(data.feature_statistics,
                     self.builder.info.metadata["feature_statistics"])


if __name__ == "__main__":
  absltest.main()
