"""Tests for cabb_tf.analysis.serving."""

import collections

from absl.testing import absltest
from absl.testing import parameterized
import gin
import numpy as np

from cabb_tf.analysis import serving

_SUB, _COMP, _UNREL = 1, 2, 3  # data.truth.RELATIONS codes.


def _hand_arrays():
  """Three sessions, six clicks (values exact in binary); see the test."""
  # Rows: click c0 has two CABB rows (substitute, unrelated); c1 bought A;
  # c2 an unrelated B; c3 nothing; c4 a complement; c5 is alone in its
  # session.
  return {
      "click_id": np.array([10, 10, 11, 12, 20, 21, 30]),
      "session_id": np.array([0, 0, 0, 0, 1, 1, 2]),
      "w_caba": np.array([1, 0, 1, 1, 1, 1, 1], np.float32),
      "y_caba": np.array([0, 0, 1, 0, 0, 0, 1], np.float32),
      "y_cabb": np.array([1, 1, 0, 1, 0, 1, 0], np.float32),
      "relation": np.array([_SUB, _UNREL, 0, _UNREL, 0, _COMP, 0], np.int8),
      "p_caba": np.array([.125, .125, .375, .25, .5, .125, .25], np.float32),
      "p_cabb": np.array([.5, .5, 0, .125, .125, .25, .25], np.float32),
      "alpha": np.ones(7, np.float32),
  }


def _reference(arrays, betas):
  """Plain-Python per-session GAUC (unweighted, weighted) per β and target."""
  clicks = {}
  for i, click in enumerate(arrays["click_id"]):
    c = clicks.setdefault(int(click), {"bought_a": 0, "genuine": 0, "any": 0})
    if arrays["w_caba"][i] > 0:
      c.update(session=int(arrays["session_id"][i]),
               p_caba=float(arrays["p_caba"][i]),
               p_cabb=float(arrays["p_cabb"][i]),
               bought_a=int(arrays["y_caba"][i] > 0))
    if arrays["y_cabb"][i] > 0:
      c["any"] = 1
      if arrays["relation"][i] in (_SUB, _COMP):
        c["genuine"] = 1
  out = {}
  for beta in betas:
    for target in ("bought_a", "converted_genuinely", "any_purchase"):
      sessions = collections.defaultdict(list)
      for c in clicks.values():
        label = c["bought_a"] or (
            c["genuine"] if target == "converted_genuinely" else
            c["any"] if target == "any_purchase" else 0)
        sessions[c["session"]].append((c["p_caba"] + beta * c["p_cabb"],
                                       label))
      aucs, sizes = [], []
      for items in sessions.values():
        pos = [s for s, y in items if y]
        neg = [s for s, y in items if not y]
        if pos and neg:
          wins = sum(1.0 if p > n else 0.5 if p == n else 0.0
                     for p in pos for n in neg)
          aucs.append(wins / (len(pos) * len(neg)))
          sizes.append(len(items))
      out[(beta, target)] = (
          (sum(aucs) / len(aucs),
           sum(a * s for a, s in zip(aucs, sizes)) / sum(sizes), len(aucs))
          if aucs else (None, None, 0))
  return out


def _random_arrays(seed):
  rng = np.random.default_rng(seed)
  rows = collections.defaultdict(list)
  click = 0
  for session in rng.permutation(40) * 7 + 3:  # Sparse, unordered codes.
    for _ in range(rng.integers(1, 6)):
      p_caba, p_cabb = rng.integers(0, 5, size=2) / 4.0  # Many ties.
      y_caba = rng.random() < 0.3
      num_b = rng.integers(0, 3)
      relations = rng.integers(1, 4, size=num_b) if num_b else [0]
      for j, relation in enumerate(relations):
        rows["click_id"].append(click * 3 + 1)
        rows["session_id"].append(session)
        rows["w_caba"].append(1.0 if j == 0 else 0.0)
        rows["y_caba"].append(float(y_caba))
        rows["y_cabb"].append(float(relation > 0))
        rows["relation"].append(relation)
        rows["p_caba"].append(p_caba)
        rows["p_cabb"].append(p_cabb)
      click += 1
  arrays = {k: np.array(v) for k, v in rows.items()}
  order = rng.permutation(len(arrays["click_id"]))  # Rows in any order.
  return {k: v[order] for k, v in arrays.items()}


class ServingTest(parameterized.TestCase):

  def test_serving_score(self):
    np.testing.assert_allclose(
        serving.serving_score(np.array([0.1, 0.2]), np.array([0.5, 0.0]),
                              2.0), [1.1, 0.2])
    with self.assertRaisesRegex(ValueError, "beta must be finite and >= 0"):
      serving.serving_score(0.1, 0.1, -1.0)

  def test_hand_worked_case(self):
    report = serving.serving_report(_hand_arrays(), betas=(0.0, 1.0, 4.0))
    self.assertEqual(report["candidates"], 6)
    self.assertEqual(report["sessions"], 3)
    # Targets per click c0..c5: bought_a 0 1 0 0 0 1; genuine 1 1 0 0 1 1;
    # any 1 1 1 0 1 1.
    self.assertEqual(report["positives"],
                     {"bought_a": 2, "converted_genuinely": 4,
                      "any_purchase": 5})
    b0, b1, b4 = report["by_beta"]
    # β = 0, scores (.125, .375, .25 | .5, .125 | .25): bought_a only
    # defined in session 0, c1 is top: 1. Genuine: session 0 c0 loses and c1
    # wins against c2 (1/2), session 1 c4 < c3 (0). Any: session 1 only, 0.
    self.assertEqual(b0["bought_a"]["gauc"], 1.0)
    self.assertEqual(b0["bought_a"]["sessions"], 1)
    self.assertEqual(b0["converted_genuinely"]["gauc"], 0.25)
    self.assertAlmostEqual(b0["converted_genuinely"]["gauc_weighted"],
                           (3 * 0.5 + 2 * 0) / 5, places=12)
    self.assertEqual(b0["any_purchase"]["gauc"], 0.0)
    # β = 1: (.625, .375, .375 | .625, .375): c1 ties c2 and loses to c0
    # (1/4); genuine: c0 beats c2, c1 ties it (3/4), session 1 still 0.
    self.assertEqual(b1["bought_a"]["gauc"], 0.25)
    self.assertEqual(b1["converted_genuinely"]["gauc"], 0.375)
    self.assertAlmostEqual(b1["converted_genuinely"]["gauc_weighted"],
                           3 * 0.75 / 5, places=12)
    # β = 4: (2.125, .375, .75 | 1, 1.125): c1 is last (0); genuine 1/2 and
    # 1 (c4 > c3); any: 1.
    self.assertEqual(b4["bought_a"]["gauc"], 0.0)
    self.assertEqual(b4["converted_genuinely"]["gauc"], 0.75)
    self.assertAlmostEqual(b4["converted_genuinely"]["gauc_weighted"],
                           (3 * 0.5 + 2 * 1.0) / 5, places=12)
    self.assertEqual(b4["any_purchase"]["gauc"], 1.0)
    self.assertEqual(report["best_beta"]["bought_a"],
                     {"beta": 0.0, "gauc": 1.0})
    self.assertEqual(report["best_beta"]["converted_genuinely"],
                     {"beta": 4.0, "gauc": 0.75})
    self.assertEqual(report["best_beta"]["any_purchase"],
                     {"beta": 4.0, "gauc": 1.0})
    # Pooled AUC of bought_a at β = 0 over the six candidates: positives c1
    # (.375) and c5 (.25) against .125, .25, .5, .125; c1 beats three, c5
    # beats two and ties one -> (3 + 2.5) / 8.
    self.assertAlmostEqual(b0["bought_a"]["auc"], 5.5 / 8, places=12)

  def test_converting_candidates_only(self):
    report = serving.serving_report(_hand_arrays(), betas=(0.0, 4.0),
                                    converting_only=True)
    # c3 (nothing bought after it) is left out; any_purchase is constant.
    self.assertEqual(report["candidates"], 5)
    self.assertNotIn("any_purchase", report["best_beta"])
    b0, b4 = report["by_beta"]
    # β = 0, session 0 (c0 .125, c1 .375, c2 .25): bought_a c1 top, 1;
    # genuine {c0, c1} vs c2: c1 wins, c0 loses, 1/2. Session 1 (c4 only)
    # and session 2 have one class.
    self.assertEqual(b0["bought_a"]["gauc"], 1.0)
    self.assertEqual(b0["converted_genuinely"]["gauc"], 0.5)
    self.assertEqual(b0["converted_genuinely"]["sessions"], 1)
    # β = 4 (c0 2.125, c1 .375, c2 .75): c1 last for bought_a (0); genuine
    # c0 beats c2, c1 loses: 1/2.
    self.assertEqual(b4["bought_a"]["gauc"], 0.0)
    self.assertEqual(b4["converted_genuinely"]["gauc"], 0.5)

  def test_row_order_does_not_matter(self):
    arrays = _hand_arrays()
    order = np.array([6, 3, 1, 5, 0, 4, 2])
    shuffled = {k: v[order] for k, v in arrays.items()}
    self.assertEqual(serving.serving_report(arrays),
                     serving.serving_report(shuffled))

  @parameterized.parameters(0, 1, 2)
  def test_matches_per_session_reference(self, seed):
    arrays = _random_arrays(seed)
    betas = (0.0, 0.25, 1.0, 3.0)
    report = serving.serving_report(arrays, betas=betas)
    expected = _reference(arrays, betas)
    checked = 0
    for row in report["by_beta"]:
      for target in serving.TARGETS:
        gauc, weighted, sessions = expected[(row["beta"], target)]
        cell = row[target]
        self.assertEqual(cell["sessions"], sessions)
        if gauc is None:
          self.assertIsNone(cell["gauc"])
          continue
        self.assertAlmostEqual(cell["gauc"], gauc, places=12)
        self.assertAlmostEqual(cell["gauc_weighted"], weighted, places=12)
        checked += 1
    self.assertGreater(checked, 6)
    for target in serving.TARGETS:
      best = max(expected[(b, target)][0] for b in betas)
      self.assertAlmostEqual(report["best_beta"][target]["gauc"], best,
                             places=12)

  def test_session_aucs_midranks(self):
    # One session: scores 1, 2, 2, 3 with labels 0, 1, 0, 1: the positive at
    # 2 ties one negative and beats one (3/2), the one at 3 beats both (2):
    # AUC = 3.5 / 4. A second session has only positives (NaN).
    auc, candidates = serving.session_aucs(
        np.array([1, 0, 1, 1, 1, 0]), np.array([2, 5, 1, 3, 2, 4.0]),
        np.array([1, 1, 0, 1, 0, 1]))
    self.assertTrue(np.isnan(auc[0]))
    self.assertEqual(auc[1], 3.5 / 4)
    np.testing.assert_array_equal(candidates, [2, 4])

  def test_without_relation_and_baselines(self):
    arrays = _hand_arrays()
    del arrays["relation"]
    report = serving.serving_report(arrays, betas=(0.0, 4.0))
    self.assertNotIn("converted_genuinely", report["best_beta"])
    self.assertEqual(report["by_beta"][1]["any_purchase"]["gauc"], 1.0)
    # A baseline's one prediction for both heads: the ranking, so the GAUC,
    # is the same for every β.
    arrays["p_conversion"] = arrays.pop("p_caba")
    del arrays["p_cabb"]
    report = serving.serving_report(arrays, betas=(0.0, 4.0))
    self.assertEqual(report["by_beta"][0]["bought_a"],
                     report["by_beta"][1]["bought_a"])

  def test_gin_betas(self):
    self.addCleanup(gin.clear_config)
    gin.bind_parameter("serving_report.betas", [0.5])
    report = serving.serving_report(_hand_arrays())
    self.assertEqual([row["beta"] for row in report["by_beta"]], [0.5])
    self.assertEqual(len(serving.serving_report(
        _hand_arrays(), betas=serving.DEFAULT_BETAS)["by_beta"]), 7)

  def test_validation(self):
    arrays = _hand_arrays()
    with self.assertRaisesRegex(ValueError, "exactly one row with w_caba"):
      serving.serving_report(dict(arrays, w_caba=np.ones(7, np.float32)))
    with self.assertRaisesRegex(ValueError, "spans several sessions"):
      serving.serving_report(dict(arrays, session_id=np.array(
          [0, 1, 0, 0, 1, 1, 2])))
    with self.assertRaisesRegex(ValueError, "lack.*click_id"):
      serving.serving_report({k: v for k, v in arrays.items()
                              if k != "click_id"})
    with self.assertRaisesRegex(ValueError, "different lengths"):
      serving.serving_report(dict(arrays, p_cabb=np.zeros(3)))
    with self.assertRaisesRegex(ValueError, "betas is empty"):
      serving.serving_report(arrays, betas=())
    with self.assertRaisesRegex(ValueError, "beta must be"):
      serving.serving_report(arrays, betas=(1.0, -0.5))
    with self.assertRaisesRegex(ValueError, "disagrees"):
      serving.serving_report(dict(arrays, relation=np.zeros(7, np.int8)))

  def test_render_markdown(self):
    report = serving.serving_report(_hand_arrays(), betas=(0.0, 1.0, 4.0))
    text = serving.render_markdown(report)
    lines = text.split("\n")
    self.assertEqual(lines[0], "| β | GAUC bought_a | GAUC converted_genuinely "
                     "| GAUC any_purchase |")
    self.assertEqual(lines[2], "| 0 | **1.0000 (1.0000)** | 0.2500 (0.3000) "
                     "| 0.0000 (0.0000) |")
    self.assertEqual(lines[4], "| 4 | 0.0000 (0.0000) | **0.7500 (0.7000)** "
                     "| **1.0000 (1.0000)** |")
    self.assertIn("Best β: bought_a 0, converted_genuinely 4, "
                  "any_purchase 4.", text)


if __name__ == "__main__":
  absltest.main()
