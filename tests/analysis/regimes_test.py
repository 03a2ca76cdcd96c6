"""Tests of regime views, the signal sweep's checks and recalibrated claims."""

from absl.testing import absltest

from cabb_tf.analysis import claims
from cabb_tf.analysis import regimes
from cabb_tf.analysis import stats


def _cell(**metrics):
  return {k: stats.mean_ci([v, v, v]) for k, v in metrics.items()}


class RegimesTest(absltest.TestCase):

  def test_view_strips_the_prefix(self):
    results = {"table1": {"a": 1}, "paper/table1": {"b": 2},
               "paired_differences": {"paper/table1": {"b": {}}}}
    view = regimes.view(results, "paper/")
    self.assertEqual(view["table1"], {"b": 2})
    self.assertEqual(view["paired_differences"], {"table1": {"b": {}}})

  def test_sweep_directions_raw_and_recalibrated(self):
    # At signal 2 the raw ordering fails (CABA only is worst) but the
    # recalibrated one holds; taxonomy + CF (the multitask row) has the best
    # CABA NE raw, static the best recalibrated.
    results = {"signal_2": {
        "last_click": _cell(overall_ne=1.2, overall_ne_recalibrated=0.95,
                            caba_ne=0.9, caba_ne_recalibrated=0.9),
        "caba_only": _cell(overall_ne=1.4, overall_ne_recalibrated=0.9,
                           caba_ne=0.8, caba_ne_recalibrated=0.8),
        "multitask": _cell(overall_ne=1.1, overall_ne_recalibrated=0.85,
                           caba_ne=0.70, caba_ne_recalibrated=0.75),
        "static": _cell(overall_ne=1.0, overall_ne_recalibrated=0.85,
                        caba_ne=0.72, caba_ne_recalibrated=0.74),
    }}
    out = regimes.sweep(results, [2.0, 3.0])
    self.assertEqual(out["scales"], [2.0, 3.0])
    self.assertNotIn("signal_3", out["directions"])
    point = out["directions"]["signal_2"]
    self.assertEqual(point["raw"], {
        "table1_multitask_lt_caba_only_lt_last_click": False,
        "table3_taxonomy_cf_best_caba_ne": True})
    self.assertEqual(point["recalibrated"], {
        "table1_multitask_lt_caba_only_lt_last_click": True,
        "table3_taxonomy_cf_best_caba_ne": False})

  def test_claims_read_the_suffixed_metrics(self):
    results = {"table1": {
        "last_click": _cell(overall_ne=1.0, overall_ne_recalibrated=0.99),
        "caba_only": _cell(overall_ne=1.2, overall_ne_recalibrated=0.98),
        "multitask": _cell(overall_ne=0.9, overall_ne_recalibrated=0.97)}}
    key = "table1_multitask_lt_caba_only_lt_last_click"
    self.assertFalse(claims.check(results)[key]["holds"])
    self.assertTrue(claims.check(results, claims.RECALIBRATED)[key]["holds"])


if __name__ == "__main__":
  absltest.main()
