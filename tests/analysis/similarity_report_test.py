"""Tests for the ground-truth part of cabb_tf.analysis.similarity_report."""

import tempfile
import types
from unittest import mock

from absl.testing import absltest
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from cabb_tf.analysis import similarity_report as report
from cabb_tf.datasets import cabb_synthetic
from cabb_tf.datasets import click_examples
from cabb_tf.inputs import weighting
from tests.datasets import builder_testing

_SCHEMES = ("static", "taxonomy_cf")


def _pairwise_auc(genuine, alpha):
  """P(α of a genuine row > α of another row), ties half, by a double loop."""
  wins, pairs = 0.0, 0
  for g, a in zip(genuine, alpha):
    if not g:
      continue
    for h, b in zip(genuine, alpha):
      if h:
        continue
      pairs += 1
      wins += 1.0 if a > b else 0.5 if a == b else 0.0
  return wins / pairs


class GroundTruthReportTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    data_dir = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    cls.builder = builder_testing.prepare(
        cabb_synthetic.Builder,
        cabb_synthetic.SyntheticConfig(name="report", num_events=4_000),
        data_dir)
    cls.report = report.ground_truth_report(cls.builder, _SCHEMES)
    # The CABB-positive rows, read one record at a time.
    cls.rows = [ex for split in click_examples.SPLITS
                for ex in tfds.as_numpy(cls.builder.as_dataset(split=split))
                if ex["y_cabb"] > 0]

  def _alpha(self, scheme):
    events, catalog = click_examples.load_training_events(self.builder)
    similarity = weighting.fit_scheme(scheme, events, catalog)
    field_a, field_b = weighting.KEYS[scheme]
    keys_a = np.array([ex[field_a].decode() for ex in self.rows], object)
    keys_b = np.array([ex[field_b].decode() for ex in self.rows], object)
    return weighting.score_pairs(similarity, keys_a, keys_b)

  def test_causal_auc_against_a_pairwise_count(self):
    causes = [ex["cause"].decode() for ex in self.rows]
    self.assertEqual(self.report["rows"], len(self.rows))
    self.assertEqual(self.report["cause_counts"],
                     {c: causes.count(c) for c in set(causes)})
    genuine = [c in ("substitute", "complement") for c in causes]
    self.assertGreater(sum(genuine), 0)
    for scheme in _SCHEMES:
      alpha = self._alpha(scheme)
      scored = self.report["schemes"][scheme]
      self.assertAlmostEqual(scored["auc_causal"],
                             _pairwise_auc(genuine, alpha), places=10)
      for cause in set(causes):
        self.assertAlmostEqual(
            scored["mean_alpha_by_cause"][cause],
            np.mean([a for a, c in zip(alpha, causes) if c == cause]))
    self.assertEqual(self.report["schemes"]["static"]["auc_causal"], 0.5)

  def test_leaf_pair_auc_against_a_pairwise_count(self):
    relations = [ex["relation"].decode() for ex in self.rows]
    genuine = [r in ("substitute", "complement") for r in relations]
    alpha = self._alpha("taxonomy_cf")
    self.assertAlmostEqual(
        self.report["schemes"]["taxonomy_cf"]["auc_genuine_vs_noise"],
        _pairwise_auc(genuine, alpha), places=10)

  def test_a_dataset_without_cause_gives_the_leaf_pair_check(self):
    features = {name: feature for name, feature in
                self.builder.info.features.items() if name != "cause"}
    # The same files, described without the `cause` feature.
    old = types.SimpleNamespace(
        info=types.SimpleNamespace(features=features,
                                   splits=self.builder.info.splits,
                                   full_name=self.builder.info.full_name),
        data_path=self.builder.data_path)
    training = click_examples.load_training_events(self.builder)
    with mock.patch.object(report.datasets_lib, "load_training_events",
                           return_value=training):
      out = report.ground_truth_report(old, ("taxonomy_cf",))
    self.assertNotIn("cause_counts", out)
    scored = out["schemes"]["taxonomy_cf"]
    self.assertNotIn("auc_causal", scored)
    self.assertEqual(
        scored["auc_genuine_vs_noise"],
        self.report["schemes"]["taxonomy_cf"]["auc_genuine_vs_noise"])


if __name__ == "__main__":
  tf.test.main()
