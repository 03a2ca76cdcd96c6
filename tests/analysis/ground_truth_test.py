"""Tests for cabb_tf.analysis.ground_truth."""

import math

from absl.testing import absltest
import numpy as np

from cabb_tf.analysis import ground_truth
from cabb_tf.data import truth


def _arrays(**overrides):
  """Six rows: substitute, complement, unrelated positives, three negatives."""
  arrays = {
      "y_cabb": np.array([1, 1, 1, 0, 0, 0], np.float32),
      "p_cabb": np.array([0.5, 0.5, 0.2, 0.2, 0.2, 0.5], np.float32),
      "relation": truth.relation_codes(
          ["substitute", "complement", "unrelated", "", "", ""]),
  }
  arrays.update(overrides)
  return arrays


class GroundTruthTest(absltest.TestCase):

  def test_relation_codes(self):
    codes = truth.relation_codes(
        np.array([b"", b"complement", b"unrelated", b"substitute"],
                 dtype=object))
    np.testing.assert_array_equal(codes, [0, 2, 3, 1])
    self.assertEqual(codes.dtype, np.int8)
    np.testing.assert_array_equal(
        truth.relation_codes([["substitute"], [""]]), [[1], [0]])
    self.assertEqual(truth.RELATIONS[2], "complement")
    with self.assertRaisesRegex(ValueError, "unknown relation.*noise"):
      truth.relation_codes(["noise"])

  def test_hand_computed_report(self):
    report = ground_truth.cabb_ground_truth_report(_arrays())
    # Genuine subset: rows 0, 1 (positives, p = .5) and 3, 4, 5 (negatives,
    # p = .2, .2, .5). CE = -(2 ln .5 + 2 ln .8 + ln .5); base rate 2/5.
    genuine_ne = ((-3 * math.log(0.5) - 2 * math.log(0.8)) /
                  (-2 * math.log(0.4) - 3 * math.log(0.6)))
    # Noise subset: row 2 (positive, p = .2) and the negatives; base rate 1/4.
    noise_ne = ((-math.log(0.2) - 2 * math.log(0.8) - math.log(0.5)) /
                (-math.log(0.25) - 3 * math.log(0.75)))
    genuine, noise = report["genuine_subset"], report["noise_subset"]
    self.assertAlmostEqual(genuine["ne"], genuine_ne, places=6)
    self.assertAlmostEqual(noise["ne"], noise_ne, places=6)
    self.assertAlmostEqual(report["ne_noise_minus_genuine"],
                           noise_ne - genuine_ne, places=6)
    self.assertEqual((genuine["rows"], genuine["positives"]), (5, 2))
    self.assertEqual((noise["rows"], noise["positives"]), (4, 1))
    self.assertEqual(report["all_rows"]["rows"], 6)
    # AUC: each genuine positive (.5) beats two negatives and ties one.
    self.assertAlmostEqual(genuine["auc"], 2.5 / 3, places=12)
    # The noise positive (.2) ties two negatives and loses to one.
    self.assertAlmostEqual(noise["auc"], 1.0 / 3, places=12)
    mean_p = report["mean_p_cabb"]
    self.assertAlmostEqual(mean_p["genuine_positives"], 0.5, places=6)
    self.assertAlmostEqual(mean_p["noise_positives"], 0.2, places=6)
    self.assertAlmostEqual(mean_p["negatives"], 0.3, places=6)
    by_relation = report["mean_p_cabb_by_relation"]
    self.assertAlmostEqual(by_relation["substitute"], 0.5, places=6)
    self.assertAlmostEqual(by_relation["complement"], 0.5, places=6)
    self.assertAlmostEqual(by_relation["unrelated"], 0.2, places=6)
    self.assertEqual(report["rows_by_relation"],
                     {"none": 3, "substitute": 1, "complement": 1,
                      "unrelated": 1})

  def test_baseline_prediction_and_missing_class(self):
    arrays = _arrays()
    arrays["p_conversion"] = arrays.pop("p_cabb")
    self.assertAlmostEqual(
        ground_truth.cabb_ground_truth_report(arrays)["mean_p_cabb"][
            "noise_positives"], 0.2, places=6)
    # No noise positive: the noise subset has only negatives, NE undefined.
    report = ground_truth.cabb_ground_truth_report(_arrays(
        relation=truth.relation_codes(
            ["substitute", "complement", "complement", "", "", ""])))
    self.assertIsNone(report["noise_subset"]["ne"])
    self.assertIsNone(report["mean_p_cabb"]["noise_positives"])
    self.assertIsNone(report["ne_noise_minus_genuine"])

  def test_validation(self):
    with self.assertRaisesRegex(ValueError, "no 'relation'"):
      arrays = _arrays()
      del arrays["relation"]
      ground_truth.cabb_ground_truth_report(arrays)
    with self.assertRaisesRegex(ValueError, "disagrees with 'y_cabb'"):
      ground_truth.cabb_ground_truth_report(_arrays(
          relation=np.array([1, 2, 0, 0, 0, 0])))
    with self.assertRaisesRegex(ValueError, "disagrees with 'y_cabb'"):
      ground_truth.cabb_ground_truth_report(_arrays(
          relation=np.array([1, 2, 3, 3, 0, 0])))
    with self.assertRaisesRegex(ValueError, r"codes must lie in \[0, 4\)"):
      ground_truth.cabb_ground_truth_report(_arrays(
          relation=np.array([1, 2, 4, 0, 0, 0])))
    with self.assertRaisesRegex(ValueError, "int codes"):
      ground_truth.cabb_ground_truth_report(_arrays(
          relation=np.array(["substitute"] * 6)))
    with self.assertRaisesRegex(ValueError, "no CABB prediction"):
      arrays = _arrays()
      del arrays["p_cabb"]
      ground_truth.cabb_ground_truth_report(arrays)

  def test_cause_codes(self):
    codes = truth.cause_codes(
        np.array([b"", b"other_click", b"noise", b"complement",
                  b"substitute"], dtype=object))
    np.testing.assert_array_equal(codes, [0, 4, 3, 2, 1])
    self.assertEqual(codes.dtype, np.int8)
    np.testing.assert_array_equal(
        truth.cause_codes([["noise"], [""]]), [[3], [0]])
    self.assertEqual(truth.CAUSES[4], "other_click")
    self.assertEqual(truth.CAUSAL_GENUINE_CODES, (1, 2))
    with self.assertRaisesRegex(ValueError, "unknown cause.*unrelated"):
      truth.cause_codes(["unrelated"])
    with self.assertRaisesRegex(ValueError, "unknown cause.*same"):
      truth.cause_codes(["same"])

  def test_hand_computed_causal_report(self):
    # Positives: leaf substitute / complement / unrelated, generated by A
    # (substitute), by another click, and by A as noise; plus a fourth
    # positive, a leaf substitute bought through another click.
    arrays = {
        "y_cabb": np.array([1, 1, 1, 1, 0, 0, 0], np.float32),
        "p_cabb": np.array([0.5, 0.25, 0.2, 0.5, 0.2, 0.2, 0.5]),
        "relation": truth.relation_codes(
            ["substitute", "complement", "unrelated", "substitute", "", "",
             ""]),
        "cause": truth.cause_codes(
            ["substitute", "other_click", "noise", "other_click", "", "",
             ""]),
        "alpha": np.array([0.9, 0.6, 0.1, 0.9, 1.0, 1.0, 1.0]),
    }
    report = ground_truth.cabb_ground_truth_report(arrays)
    causal = report["causal"]
    # Causal genuine subset: row 0 (p .5) and the negatives (.2, .2, .5).
    genuine_ne = ((-math.log(0.5) - 2 * math.log(0.8) - math.log(0.5)) /
                  (-math.log(0.25) - 3 * math.log(0.75)))
    # Other subset: rows 1, 2, 3 (p .25, .2, .5) and the negatives.
    other_ce = (-math.log(0.25) - math.log(0.2) - math.log(0.5)
                - 2 * math.log(0.8) - math.log(0.5))
    other_ne = other_ce / (-3 * math.log(0.5) - 3 * math.log(0.5))
    self.assertAlmostEqual(causal["genuine_subset"]["ne"], genuine_ne,
                           places=6)
    self.assertAlmostEqual(causal["other_subset"]["ne"], other_ne, places=6)
    self.assertAlmostEqual(causal["ne_other_minus_genuine"],
                           other_ne - genuine_ne, places=6)
    self.assertEqual((causal["genuine_subset"]["rows"],
                      causal["genuine_subset"]["positives"]), (4, 1))
    self.assertEqual((causal["other_subset"]["rows"],
                      causal["other_subset"]["positives"]), (6, 3))
    # Row 0 (.5) beats two negatives and ties one.
    self.assertAlmostEqual(causal["genuine_subset"]["auc"], 2.5 / 3)
    self.assertAlmostEqual(causal["genuine_share_of_positives"], 0.25)
    self.assertAlmostEqual(causal["mean_p_cabb"]["genuine_positives"], 0.5)
    self.assertAlmostEqual(causal["mean_p_cabb"]["other_positives"],
                           (0.25 + 0.2 + 0.5) / 3)
    self.assertAlmostEqual(causal["mean_p_cabb"]["negatives"], 0.3)
    self.assertEqual(causal["rows_by_cause"],
                     {"none": 3, "substitute": 1, "complement": 0,
                      "noise": 1, "other_click": 2})
    self.assertIsNone(causal["mean_p_cabb_by_cause"]["complement"])
    self.assertAlmostEqual(causal["mean_p_cabb_by_cause"]["other_click"],
                           0.375)
    # α, leaf pair: genuine rows 0, 1, 3 (.9, .6, .9) all beat noise row 2
    # (.1): 1. Causal: row 0 (.9) beats rows 1 and 2, ties row 3: 2.5 / 3.
    self.assertAlmostEqual(report["alpha_auc"]["leaf_pair"], 1.0)
    self.assertAlmostEqual(report["alpha_auc"]["causal"], 2.5 / 3)
    # The leaf-pair figures are those of the same arrays without `cause`.
    del arrays["cause"]
    old = ground_truth.cabb_ground_truth_report(arrays)
    self.assertNotIn("causal", old)
    self.assertIsNone(old["alpha_auc"]["causal"])
    for key in old:
      if key != "alpha_auc":
        self.assertEqual(old[key], report[key])

  def test_cause_validation(self):
    with self.assertRaisesRegex(ValueError, "'cause' disagrees with"):
      ground_truth.cabb_ground_truth_report(_arrays(
          cause=truth.cause_codes(
              ["substitute", "noise", "", "", "", ""])))
    with self.assertRaisesRegex(ValueError, "cause_codes"):
      ground_truth.cabb_ground_truth_report(_arrays(
          cause=np.array(["noise"] * 6)))
    with self.assertRaisesRegex(ValueError, r"codes must lie in \[0, 5\)"):
      ground_truth.cabb_ground_truth_report(_arrays(
          cause=np.array([1, 2, 5, 0, 0, 0])))
    with self.assertRaisesRegex(ValueError, "'alpha' has 2 rows"):
      ground_truth.cabb_ground_truth_report(_arrays(alpha=np.ones(2)))

  def test_render_markdown(self):
    report = ground_truth.cabb_ground_truth_report(_arrays())
    text = ground_truth.render_markdown({"multitask": report,
                                         "baseline": report})
    lines = text.strip().split("\n")
    self.assertLen(lines, 4)
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    self.assertEqual(cells[0], "multitask")
    self.assertEqual(cells[2], f"{report['genuine_subset']['ne']:.4f}")
    self.assertEqual(cells[5], "0.50000")
    self.assertEqual(cells[6], "0.20000")
    self.assertEqual(len(cells), lines[0].count("|") - 1)
    self.assertEqual(cells[10:], ["—"] * 5)  # no `cause`: no causal cells.
    causal = ground_truth.cabb_ground_truth_report(_arrays(
        cause=truth.cause_codes(
            ["substitute", "other_click", "noise", "", "", ""])))
    line = ground_truth.render_markdown({"m": causal}).strip().split("\n")[2]
    cells = [c.strip() for c in line.strip("|").split("|")]
    self.assertEqual(cells[10],
                     f"{causal['causal']['genuine_subset']['ne']:.4f}")
    self.assertEqual(cells[13:], ["0.50000", "0.35000"])


if __name__ == "__main__":
  absltest.main()
