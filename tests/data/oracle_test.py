"""Tests for cabb_tf.data.oracle."""

import json
import math
import os
from unittest import mock

from absl.testing import parameterized
import numpy as np
import pandas as pd
import tensorflow as tf

from cabb_tf import metrics
from cabb_tf.data import labels
from cabb_tf.data import oracle
from cabb_tf.data import schema
from cabb_tf.data import simulator


def _closed_forms(state, clicks):
  """P(buy A), P(no other purchase), P(any purchase) of one-click sessions.

  In a session with one click every purchase follows that click and is
  credited to it; A is bought only as `same` (substitutes, complements and
  noise are other items), and no other item is bought iff there is no
  substitute, no complement and no noise purchase.
  """
  p = state.probs
  session = state.clicks.session[clicks]
  same, sub = p.same[clicks], p.substitute[clicks]
  has = p.has_complement[clicks]
  comp = np.where(has, p.complement[clicks], 0.0)
  comp_bought = np.where(has, p.complement_bought[clicks], 0.0)
  noise = p.noise[session]
  no_other = (1 - noise) * (same * (1 - comp_bought)
                            + (1 - same) * (1 - sub) * (1 - comp))
  nothing = (1 - same) * (1 - sub) * (1 - comp) * (1 - noise)
  return same, no_other, 1 - nothing


def _plain_counts(state, estimate, draws, seed, window_s, keep):
  """`estimate`'s counts the plain way, independently of its batches.

  Each draw has all its rows (`keep`) in session order and is labelled
  alone by `labels.label_clicks`; its rows are matched to the examples by
  (session, item A) and summed per group of draws.
  """
  counts = np.zeros_like(estimate.counts)
  per_group = draws // oracle.GROUPS
  for d in range(draws):
    rng = np.random.default_rng(np.random.SeedSequence([seed, 99, d]))
    draw = simulator.redraw_events(state, rng, keep=keep)
    rows = labels.label_clicks(pd.DataFrame({
        "user_id": draw.user_id, "session_id": draw.session_id,
        "timestamp": draw.timestamp, "item_id": draw.item_id,
        "event_type": pd.Categorical.from_codes(
            draw.event_type, dtype=schema.EVENT_TYPE_DTYPE)}),
                               attribution_window_s=window_s)
    example = oracle.split_rows(estimate, rows["session_id"], rows["item_a"])
    w = rows["w_caba"].to_numpy()
    group = counts[d // per_group]
    for column, values in ((0, rows["y_caba"] * w),
                           (1, rows["y_last_click"] * w),
                           (2, rows["y_cabb"]), (3, rows["y_cabb"] * w)):
      np.add.at(group[:, column], example, np.asarray(values, np.int32))
    same = np.unique(oracle.split_rows(
        estimate, state.click_session_id[draw.same_clicks],
        state.click_item_id[draw.same_clicks]))
    group[same, 4] += 1
  return counts


class OracleTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.log, cls.state = simulator.simulate_with_state(num_users=500,
                                                       num_days=14, seed=3)
    cls.rows = oracle.split_labels(cls.log.events, "all")

  def test_one_click_sessions_match_the_closed_forms(self):
    draws = 800
    estimate = oracle.estimate(self.state, draws=draws, seed=1)
    sessions = self.state.sessions
    one = np.flatnonzero(sessions.clicks[self.state.clicks.session] == 1)
    self.assertGreater(len(one), 100)
    index = oracle.split_rows(estimate, self.state.click_session_id[one],
                              self.state.click_item_id[one])
    p_same, p_no_other, p_any = _closed_forms(self.state, one)
    plain = estimate.probabilities(smoothing=0.0, control_variate=False)
    checks = (("caba", plain["caba"][index], p_same),
              ("no_other", estimate.no_other_probability()[index],
               p_no_other),
              ("last_click", plain["last_click"][index], p_any))
    for name, got, want in checks:
      se = np.sqrt(want * (1 - want) / draws) + 1e-12
      z = (got - want) / se
      # Per example within 6 standard errors (allowing one count on
      # near-certain events); the mean of the z-scores near 0.
      self.assertLess(np.max(np.abs(got - want) - 6 * se - 1.0 / draws), 0,
                      name)
      self.assertLess(abs(z.mean()) * math.sqrt(len(z)), 4.5, name)
    # With one click, y_caba is the drawn purchase of A itself: the control
    # variate leaves nothing to estimate.
    self.assertAllClose(estimate.probabilities()["caba"][index], p_same,
                        rtol=1e-12, atol=1e-15)

  def test_mean_probability_matches_the_realized_rate(self):
    estimate = oracle.estimate(self.state, draws=200, seed=2)
    rows = self.rows
    index = oracle.split_rows(estimate, rows["session_id"], rows["item_a"])
    first = rows["w_caba"].to_numpy() > 0
    p = estimate.probabilities(smoothing=0.0)
    for task, column in (("caba", "y_caba"), ("last_click", "y_last_click")):
      prob = p[task][index[first]]
      y = rows[column].to_numpy()[first]
      z = (y.sum() - prob.sum()) / np.sqrt(np.sum(prob * (1 - prob)))
      self.assertLess(abs(z), 4.0, task)
    # CABB: positive rows per click, realized against E[K].
    k = rows.groupby("click_id")["y_cabb"].sum()
    expected = estimate.expected_other()[index[first]]
    z = (k.sum() - expected.sum()) / np.sqrt(expected.sum())
    self.assertLess(abs(z), 4.0)

  @parameterized.parameters(
      (None, "all"), (None, "sessions"), (86400.0, "all"),
      (86400.0, "users"), (604800.0, "users"))
  def test_counts_equal_those_of_each_draw_labelled_alone(self, window_s,
                                                          keep):
    # The estimate labels only the sessions a draw's purchases can label,
    # in time order, many draws per label_clicks call; labelling every
    # draw's rows by themselves must count the same, example by example.
    draws, seed = 16, 4
    estimate = oracle.estimate(self.state, draws=draws, seed=seed,
                               attribution_window_s=window_s, batch=3)
    plain = _plain_counts(self.state, estimate, draws, seed, window_s, keep)
    self.assertGreater(plain[:, :, :4].sum(axis=(0, 1)).min(), 0)
    np.testing.assert_array_equal(estimate.counts, plain)
    np.testing.assert_array_equal(
        estimate.draws, np.full(oracle.GROUPS, draws // oracle.GROUPS))

  def test_richardson_and_halves_by_hand(self):
    # NE_D = N + b / D is corrected exactly: 2 (N + b/D) - (N + 2b/D) = N.
    self.assertAllClose(oracle.richardson(0.7 + 0.2 / 100,
                                          [0.7 + 0.2 / 50] * 2), 0.7)
    groups = [0.60, 0.62, 0.58, 0.60, 0.61, 0.59, 0.60, 0.60]
    summary = oracle.mc_summary(0.50, [0.52, 0.54],
                                [0.56, 0.60, 0.58, 0.58], groups)
    self.assertAllClose(summary["ne"], 2 * 0.50 - 0.53)
    self.assertAllClose(summary["bias_estimate"], 0.03)
    # Halves corrected with their quarters: 2*0.52-0.58 = 0.46 and
    # 2*0.54-0.58 = 0.50, mean 0.48; residual (0.48 - 0.47) / 3.
    self.assertAllClose(summary["residual_bias"], 0.01 / 3)
    # Deviations 0, .02, -.02, 0, .01, -.01, 0, 0: variance 0.001 / 7.
    se = math.sqrt(0.001 / 7) / math.sqrt(8)
    self.assertAllClose(summary["std_error"], se)
    self.assertAllClose(summary["mc_error"], 2 * se + 0.01 / 3)
    self.assertEqual(summary["ne_halves"], [0.52, 0.54])

  def test_score_uses_the_metrics_definitions(self):
    estimate = oracle.estimate(self.state, draws=16, seed=0)
    rows = self.rows
    result = oracle.score(estimate, rows["session_id"].astype(str),
                          rows["item_a"].astype(str).str.encode("utf-8"),
                          rows["y_caba"], rows["w_caba"], rows["y_cabb"],
                          rows["y_last_click"])
    self.assertEqual(result["draws"], 16)
    self.assertEqual(result["rows"], len(rows))
    index = oracle.split_rows(estimate, rows["session_id"], rows["item_a"])
    p = estimate.probabilities()
    ne_all = metrics.overall_normalized_entropy([
        (rows["y_caba"], p["caba"][index], rows["w_caba"]),
        (rows["y_cabb"], p["cabb"][index], None)])
    self.assertAllClose(result["mc"]["overall"]["ne_all_draws"], ne_all)
    cabb = metrics.normalized_entropy(rows["y_cabb"], p["cabb"][index])
    self.assertAllClose(result["mc"]["cabb"]["ne_all_draws"], cabb)
    json.dumps(result)  # JSON-ready.
    with self.assertRaisesRegex(ValueError, "not click examples"):
      oracle.score(estimate, [123456789], [1], [0], [1.0], [0], [0])

  def test_draws_must_split_into_groups(self):
    with self.assertRaisesRegex(ValueError, "multiple of 8"):
      oracle.estimate(self.state, draws=12)

  def test_certain_purchases_have_zero_oracle_ne(self):
    p = self.state.probs
    rng = np.random.default_rng(0)
    sure = np.where(rng.random(len(p.same)) < 0.3, 1 - 1e-12, 1e-12)
    tiny = np.full(len(p.same), 1e-12)
    # Purchases right after their click: which click gets the last-click
    # credit is then certain too.
    state = self.state._replace(checkout_at_end_prob=0.0, probs=p._replace(
        same=sure, substitute=tiny, complement=tiny, complement_bought=tiny,
        noise=np.full(len(p.noise), 1e-12)))
    estimate = oracle.estimate(state, draws=16, seed=0)
    # The realized labels of one more draw of this nearly certain world.
    draw = simulator.redraw_events(state, np.random.default_rng(9))
    events = pd.DataFrame({
        "user_id": draw.user_id, "session_id": draw.session_id,
        "timestamp": draw.timestamp, "item_id": draw.item_id,
        "event_type": pd.Categorical.from_codes(
            draw.event_type, dtype=schema.EVENT_TYPE_DTYPE)})
    rows = labels.label_clicks(events)
    result = oracle.score(estimate, rows["session_id"], rows["item_a"],
                          rows["y_caba"], rows["w_caba"], rows["y_cabb"],
                          rows["y_last_click"])
    self.assertLess(result["caba_ne"], 0.01)
    self.assertLess(result["last_click_ne"], 0.01)

  def test_oracle_ne_falls_with_the_signal_scale(self):
    overall = []
    for scale in (0.5, 1.0, 2.0, 4.0):
      log, state = simulator.simulate_with_state(
          num_users=1500, num_days=14, seed=5, signal_scale=scale)
      rows = oracle.split_labels(log.events, "all")
      result = oracle.oracle_for_log(state, rows, draws=32)
      overall.append([result[f"{t}_ne"] for t in ("caba", "cabb",
                                                  "last_click", "overall")])
    overall = np.array(overall)
    self.assertTrue((np.diff(overall, axis=0) < 0).all(), overall)


class _Info:

  def __init__(self, metadata):
    self.metadata = metadata
    self.full_name = "cabb_synthetic/fake/1.0.0"


class _Builder:

  def __init__(self, metadata):
    self.info = _Info(metadata)


class OracleForBuilderTest(tf.test.TestCase):

  def _stored(self, **simulate_kwargs):
    log = simulator.simulate_events(4000, seed=0, **simulate_kwargs)
    return oracle.split_labels(log.events, "test")

  def _run(self, bindings, stored, cache_dir=None):
    builder = _Builder({
        "config": {"num_events": 4000, "seed": 0,
                   "validation_fraction": 0.1, "test_fraction": 0.2},
        "gin_bindings": bindings})
    with mock.patch.object(oracle, "_read_split",
                           return_value=stored) as read:
      result = oracle.oracle_for_builder(builder, draws=16,
                                         cache_dir=cache_dir)
    return result, read

  def test_matching_world_is_scored_and_cached(self):
    stored = self._stored(num_days=7)
    bindings = {"cabb_tf.data.simulator.simulate.num_days": "7"}
    cache = self.create_tempdir().full_path
    result, read = self._run(bindings, stored, cache)
    self.assertEqual(read.call_count, 1)
    for key in ("caba_ne", "cabb_ne", "last_click_ne", "overall_ne",
                "mc_error", "draws"):
      self.assertIn(key, result)
    self.assertLen(os.listdir(cache), 1)
    again, read = self._run(bindings, stored, cache)
    self.assertEqual(read.call_count, 0)
    self.assertEqual(again["overall_ne"], result["overall_ne"])

  def test_other_world_raises(self):
    # Built with num_days = 7, but the metadata records no such binding.
    stored = self._stored(num_days=7)
    with self.assertRaisesRegex(ValueError, "does not match"):
      self._run({}, stored)

  def test_other_labels_raise(self):
    stored = self._stored().copy()
    row = stored.index[stored["w_caba"] > 0][0]
    stored.loc[row, "y_caba"] = 1 - stored.loc[row, "y_caba"]
    with self.assertRaisesRegex(ValueError, "does not match"):
      self._run({}, stored)

  def test_not_a_simulated_dataset_raises(self):
    with self.assertRaisesRegex(ValueError, "simulator config"):
      oracle.oracle_for_builder(_Builder({}), draws=16)


if __name__ == "__main__":
  tf.test.main()
