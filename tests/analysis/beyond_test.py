"""Tests of the tables beyond the paper: best λ, seed means, checks, markdown."""

import math

from absl.testing import absltest
import numpy as np

from cabb_tf.analysis import beyond


def _cell(mean, lo=None, hi=None):
  return {"mean": mean, "ci95": [mean if lo is None else lo,
                                 mean if hi is None else hi]}


def _row(mean_ne):
  return {key: _cell(mean_ne) for key in (
      "caba_ne", "cabb_ne", "overall_ne", "mean_ne")}


class SelectedLabelTest(absltest.TestCase):

  def test_label_names_the_run_selection(self):
    self.assertEqual(beyond.selected_label(
        {"selected": {"lambda": 0.5, "scheme": "static"}}), "λ = 0.5, static")
    # Results written before the selection was recorded: the paper's.
    self.assertEqual(beyond.selected_label({}), "λ = 0.75, taxonomy + CF")


class BestLambdaTest(absltest.TestCase):

  def test_lowest_mean_ne_among_positive_lambdas(self):
    table2 = {"single_task": _row(0.1), "0.0": _row(0.2), "0.1": _row(0.9),
              "0.5": _row(0.7), "0.9": _row(0.8)}
    # The single-task row and λ = 0 are lower but are not fixed-λ multitask.
    self.assertEqual(beyond.best_lambda(table2), "0.5")

  def test_none_without_a_positive_lambda(self):
    self.assertIsNone(beyond.best_lambda({"single_task": _row(0.1),
                                          "0.0": _row(0.2)}))


class OverSeedsTest(absltest.TestCase):

  def test_mean_and_t_interval(self):
    out = beyond.over_seeds([{"a": 1.0, "b": 2.0, "s": "x"},
                             {"a": 3.0, "b": 2.0, "s": "y"}])
    self.assertCountEqual(out, ["a", "b"])  # the string is left out
    self.assertAlmostEqual(out["a"]["mean"], 2.0)
    # t(0.975, 1) = 12.7062; std 1.41421 / sqrt(2) = 1.
    self.assertAlmostEqual(out["a"]["ci95"][1], 2.0 + 12.7062047, places=5)
    self.assertEqual(out["b"]["ci95"], [2.0, 2.0])


class CheckTest(absltest.TestCase):

  def _results(self, caba_diff, cabb_diff, bottom_diff):
    return {
        "balance_best_lambda": "0.5",
        "balance": {"fixed": _row(1.0), "best_fixed": _row(0.9),
                    "dwa": _row(0.95)},
        "bottoms": {"shared_mlp": _row(1.0), "mmoe": _row(0.9)},
        "paired_differences": {
            "balance": {"dwa": {"vs_best_fixed": {"caba_ne": caba_diff,
                                                  "cabb_ne": cabb_diff}}},
            "bottoms": {"mmoe": {"vs_shared_mlp": {"overall_ne":
                                                   bottom_diff}}}},
    }

  def test_reaches_best_when_both_intervals_reach_zero(self):
    out = beyond.check(self._results(_cell(0.01, -0.01, 0.03),
                                     _cell(-0.02, -0.05, 0.01),
                                     _cell(-0.1, -0.2, -0.05)))
    self.assertTrue(out["balance_dwa_reaches_best_fixed"]["holds"])
    self.assertTrue(out["bottom_mmoe_beats_shared_mlp"]["holds"])
    self.assertTrue(out["bottom_mmoe_beats_shared_mlp"]["significant"])

  def test_significantly_worse_on_one_task_does_not_reach(self):
    out = beyond.check(self._results(_cell(0.02, 0.01, 0.03),
                                     _cell(-0.02, -0.05, 0.01),
                                     _cell(-0.1, -0.2, 0.05)))
    self.assertFalse(out["balance_dwa_reaches_best_fixed"]["holds"])
    self.assertFalse(out["bottom_mmoe_beats_shared_mlp"]["significant"])

  def test_markdown_names_the_best_lambda_and_every_row(self):
    results = self._results(_cell(0.01, -0.01, 0.03), _cell(0.0),
                            _cell(-0.1))
    results["beyond_paper"] = beyond.check(results)
    text = "\n".join(beyond.render(results))
    self.assertIn("best swept λ = 0.5", text)
    self.assertIn("| dwa | 0.9500 [0.9500, 0.9500]", text)
    self.assertIn("| mmoe |", text)
    self.assertIn("+0.0100 [-0.0100, +0.0300] |", text)


def _ne(y, p):
  """NE by docs/metrics.md, written out for a handful of rows."""
  ce = -sum(t * math.log(q) + (1 - t) * math.log(1 - q) for t, q in zip(y, p))
  rate = sum(y) / len(y)
  base = -len(y) * (rate * math.log(rate) + (1 - rate) * math.log(1 - rate))
  return ce / base


class GroundTruthRowTest(absltest.TestCase):

  def test_alpha_auc_and_subset_ne_by_hand(self):
    # Positives: substitute (α 1.0), complement (α 0.2), unrelated (α 0.3);
    # two negatives.
    arrays = {"y_cabb": np.array([1, 1, 1, 0, 0], np.float32),
              "p_cabb": np.array([0.5, 0.25, 0.125, 0.25, 0.5]),
              "relation": np.array([1, 2, 3, 0, 0], np.int8),
              "alpha": np.array([1.0, 0.2, 0.3, 1.0, 1.0])}
    row = beyond.ground_truth_row(arrays)
    # Genuine α 1.0 beats noise 0.3, genuine 0.2 loses: AUC 1/2.
    self.assertAlmostEqual(row["alpha_auc"], 0.5)
    self.assertAlmostEqual(row["ne_genuine"],
                           _ne([1, 1, 0, 0], [0.5, 0.25, 0.25, 0.5]))
    self.assertAlmostEqual(row["ne_noise"], _ne([1, 0, 0], [0.125, 0.25, 0.5]))
    self.assertAlmostEqual(row["mean_p_genuine"], 0.375)
    self.assertAlmostEqual(row["mean_p_noise"], 0.125)
    # Without `cause` (an older predictions.npz): the leaf-pair check only.
    self.assertNotIn("alpha_auc_causal", row)
    self.assertEqual(set(row), {"alpha_auc", "ne_genuine", "ne_noise",
                                "ne_all", "mean_p_genuine", "mean_p_noise"})

  def test_causal_figures_by_hand(self):
    # The same rows with causes: the substitute-leaf row was bought because
    # of another click, the complement-leaf row was caused by A, the
    # unrelated row is noise attached to A's click.
    arrays = {"y_cabb": np.array([1, 1, 1, 0, 0], np.float32),
              "p_cabb": np.array([0.5, 0.25, 0.125, 0.25, 0.5]),
              "relation": np.array([1, 2, 3, 0, 0], np.int8),
              "cause": np.array([4, 2, 3, 0, 0], np.int8),
              "alpha": np.array([1.0, 0.2, 0.3, 1.0, 1.0])}
    row = beyond.ground_truth_row(arrays)
    # Causally genuine α 0.2 loses to both other positives (1.0, 0.3): 0.
    self.assertAlmostEqual(row["alpha_auc_causal"], 0.0)
    self.assertAlmostEqual(row["alpha_auc"], 0.5)  # leaf pair, unchanged.
    self.assertAlmostEqual(row["ne_causal_genuine"],
                           _ne([1, 0, 0], [0.25, 0.25, 0.5]))
    self.assertAlmostEqual(row["ne_causal_other"],
                           _ne([1, 1, 0, 0], [0.5, 0.125, 0.25, 0.5]))
    self.assertAlmostEqual(row["mean_p_causal_genuine"], 0.25)
    self.assertAlmostEqual(row["mean_p_causal_other"], 0.3125)
    self.assertAlmostEqual(row["causal_genuine_share"], 1 / 3)
    # Seed means and the markdown table carry the causal columns.
    results = {"ground_truth_ne": {
        "taxonomy_cf": beyond.over_seeds([row, row]),
        "taxonomy_cf_debiased": beyond.over_seeds([dict(
            row, alpha_auc_causal=0.25)])}}
    text = "\n".join(beyond.render(results))
    self.assertIn("α AUC causal", text)
    self.assertIn("| taxonomy_cf | 0.500 [0.500, 0.500] |", text)
    self.assertIn("| 0.000 [0.000, 0.000] |", text)
    checks = beyond.check(results)
    self.assertTrue(checks["ground_truth_taxonomy_cf_debiased_separates_"
                        "better_causal"]["holds"])
    self.assertFalse(checks["ground_truth_taxonomy_cf_debiased_separates_"
                         "better"]["holds"])

  def test_old_rows_render_without_causal_columns(self):
    row = {"alpha_auc": 0.9, "ne_genuine": 0.8, "ne_noise": 1.1,
           "ne_all": 0.9, "mean_p_genuine": 0.1, "mean_p_noise": 0.05}
    results = {"ground_truth_ne": {"taxonomy_cf": beyond.over_seeds([row]),
                                   "taxonomy_cf_debiased":
                                       beyond.over_seeds([row])}}
    line = [l for l in beyond.render(results)
            if l.startswith("| taxonomy_cf |")][0]
    self.assertTrue(line.endswith("| — | — | — | — | — |"))
    self.assertNotIn(
        "ground_truth_taxonomy_cf_debiased_separates_better_causal",
        beyond.check(results))


class ServingOverSeedsTest(absltest.TestCase):

  def test_means_per_beta_and_best_per_seed(self):
    def report(g0, g1, best):
      return {"sessions": 3, "candidates": 7,
              "best_beta": {"bought_a": {"beta": best, "gauc": max(g0, g1)}},
              "by_beta": [{"beta": 0.0, "bought_a": {"gauc": g0}},
                          {"beta": 1.0, "bought_a": {"gauc": g1}}]}
    out = beyond.serving_over_seeds([report(0.6, 0.5, 0.0),
                                     report(0.4, 0.7, 1.0)])
    self.assertEqual(out["targets"], ["bought_a"])
    self.assertAlmostEqual(out["by_beta"][0]["bought_a"]["mean"], 0.5)
    self.assertAlmostEqual(out["by_beta"][1]["bought_a"]["mean"], 0.6)
    self.assertEqual(out["best_beta_per_seed"], {"bought_a": [0.0, 1.0]})
    text = "\n".join(beyond.render_serving(out))
    self.assertIn("| 1 | 0.6000 [", text)
    self.assertIn("bought_a: 0, 1", text)


if __name__ == "__main__":
  absltest.main()
