"""Tests of the interval and bootstrap code against independent computations."""

import math

from absl.testing import absltest
import numpy as np

from cabb_tf import metrics
from cabb_tf.analysis import stats


class MeanCiTest(absltest.TestCase):

  def test_t_interval_by_hand(self):
    # Values 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.302653 → ±2.484138.
    out = stats.mean_ci([1.0, 2.0, 3.0])
    self.assertAlmostEqual(out["mean"], 2.0)
    self.assertAlmostEqual(out["ci95"][0], 2 - 4.302653 / math.sqrt(3), 5)
    self.assertAlmostEqual(out["ci95"][1], 2 + 4.302653 / math.sqrt(3), 5)
    self.assertEqual(out["runs"], [1.0, 2.0, 3.0])

  def test_single_value(self):
    self.assertEqual(stats.mean_ci([0.5])["ci95"], [0.5, 0.5])


class SessionSumsTest(absltest.TestCase):

  def test_sums_reproduce_the_metrics(self):
    rng = np.random.default_rng(1)
    n, sessions = 500, 60
    session = rng.integers(0, sessions, n)
    arrays = {"y_caba": (rng.random(n) < .2).astype(float),
              "y_cabb": (rng.random(n) < .3).astype(float),
              "w_caba": (rng.random(n) < .7).astype(float)}
    p_caba, p_cabb = rng.random(n), rng.random(n)
    sums = stats.session_sums(arrays, p_caba, p_cabb, session, sessions)
    got = stats.ne_metrics_from_sums(sums["caba"].sum(0), sums["cabb"].sum(0))
    self.assertAlmostEqual(float(got["caba_ne"]), metrics.normalized_entropy(
        arrays["y_caba"], p_caba, arrays["w_caba"]), places=10)
    self.assertAlmostEqual(float(got["cabb_ne"]), metrics.normalized_entropy(
        arrays["y_cabb"], p_cabb), places=10)
    self.assertAlmostEqual(
        float(got["overall_ne"]), metrics.overall_normalized_entropy(
            [(arrays["y_caba"], p_caba, arrays["w_caba"]),
             (arrays["y_cabb"], p_cabb, None)]), places=10)

  def test_bootstrap_matches_an_explicit_resampling_loop(self):
    rng = np.random.default_rng(2)
    n, sessions = 300, 40
    session = rng.integers(0, sessions, n)
    arrays = {"y_caba": (rng.random(n) < .3).astype(float),
              "y_cabb": (rng.random(n) < .4).astype(float),
              "w_caba": np.ones(n)}
    better = np.where(arrays["y_caba"] > 0, .7, .2)
    worse = np.full(n, .3)
    pair = {"variant": stats.session_sums(arrays, better, worse, session,
                                          sessions),
            "reference": stats.session_sums(arrays, worse, worse, session,
                                            sessions)}
    out = stats.paired_bootstrap([pair], sessions, num_resamples=200, seed=3)
    # Same resamples drawn the same way, computed row by row.
    boot_rng = np.random.default_rng(3)
    counts = boot_rng.multinomial(sessions, np.full(sessions, 1 / sessions),
                                  size=200)
    diffs = []
    for c in counts:
      w = c[session].astype(float)
      diffs.append(
          metrics.normalized_entropy(arrays["y_caba"], better, w) -
          metrics.normalized_entropy(arrays["y_caba"], worse, w))
    lo, hi = np.nanpercentile(diffs, [2.5, 97.5])
    self.assertAlmostEqual(out["caba_ne"]["ci95"][0], lo, places=9)
    self.assertAlmostEqual(out["caba_ne"]["ci95"][1], hi, places=9)
    self.assertLess(out["caba_ne"]["mean"], 0)  # the better model wins
    self.assertAlmostEqual(out["cabb_ne"]["mean"], 0.0)

  def test_shared_resamples_match_an_explicit_loop_per_comparison(self):
    # A reproduction resamples each run once and pairs the resamples in many
    # comparisons; each must be what resampling that comparison's rows
    # with the same counts gives, seed-averaged, row by row.
    rng = np.random.default_rng(5)
    n, sessions, seeds, resamples = 400, 50, 3, 150
    session = rng.integers(0, sessions, n)
    arrays = {"y_caba": (rng.random(n) < .3).astype(float),
              "y_cabb": (rng.random(n) < .4).astype(float),
              "w_caba": np.ones(n)}
    p_caba = {(name, s): rng.random(n) for name in "abc" for s in range(seeds)}
    shared = stats.SessionBootstrap(sessions, num_resamples=resamples, seed=7)
    resampled = {key: shared.resample(stats.session_sums(
        arrays, p, rng.random(n), session, sessions))
                 for key, p in p_caba.items()}
    counts = np.random.default_rng(7).multinomial(
        sessions, np.full(sessions, 1 / sessions), size=resamples)
    for variant, reference in (("a", "b"), ("a", "c"), ("c", "b")):
      got = stats.paired_differences(
          [(resampled[(variant, s)], resampled[(reference, s)])
           for s in range(seeds)])["caba_ne"]
      diffs = [np.mean([
          metrics.normalized_entropy(arrays["y_caba"], p_caba[(variant, s)],
                                     c[session].astype(float)) -
          metrics.normalized_entropy(arrays["y_caba"],
                                     p_caba[(reference, s)],
                                     c[session].astype(float))
          for s in range(seeds)]) for c in counts]
      lo, hi = np.nanpercentile(diffs, [2.5, 97.5])
      self.assertAlmostEqual(got["ci95"][0], lo, places=9)
      self.assertAlmostEqual(got["ci95"][1], hi, places=9)
      self.assertAlmostEqual(got["mean"], np.mean([
          metrics.normalized_entropy(arrays["y_caba"], p_caba[(variant, s)]) -
          metrics.normalized_entropy(arrays["y_caba"], p_caba[(reference, s)])
          for s in range(seeds)]), places=9)

if __name__ == "__main__":
  absltest.main()
