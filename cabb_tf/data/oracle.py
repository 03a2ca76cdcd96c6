"""The oracle NE floor of a simulated log: the NE of the true probabilities.

The simulator (`cabb_tf.data.simulator`, docs/simulator.md) knows, for every
click, the probabilities of every purchase it can lead to. The **oracle** is
the predictor that knows everything the log holds except the purchases
themselves (world, users, sessions, clicks, dwell, impressions and carts are
fixed) and predicts each click example's labels (paper §3.2) from the
simulator's generative model. Its NE is the floor no model can beat on
average: see docs/simulator.md, "The oracle NE floor".

Labels involve timing (an inline purchase precedes later clicks, a checkout
purchase follows all of them), a (session, item) bought once, and, with an
attribution window, purchases in later sessions, so the oracle does not
write them in closed form. It draws the purchases again D times from the
simulator's pre-purchase state (`simulator.redraw_events`, independent
seeds), labels each draw with the package's own `labels.label_clicks` (so
every label rule, windows included, lives in one place; only the sessions
a draw's purchases can label are passed, many draws per call) and
estimates, per click example (session, item A):

* `p_caba` = mean of y_caba over the draws and `p_last_click` = mean of
  y_last_click;
* `p_cabb` = E[K] / (E[K] + P(K = 0)), with K the number of positive CABB
  rows of the click (k other items bought: k positive rows, else one
  negative row). CABB NE weighs rows uniformly, so a per-click prediction q
  has expected row loss E[K]·(−log q) + P(K = 0)·(−log(1 − q)), which this
  q minimizes. No predictor that gives one value per click (as a model's
  CABB head does: its inputs are A-side only) can have a lower expected
  loss; a predictor that saw item_b could, since only positive rows have one.

Monte Carlo. Plugging estimates p̂ into the log loss biases the NE upward by
O(1/D) (the loss is convex). The draws are split into 8 groups; the report
gives the NE with all D draws, the NE of each half (D/2 draws), the
Richardson bias-corrected value 2·NE_D − mean(NE_halves) (the headline
figure), its Monte-Carlo standard error (the spread of the 8 group NEs over
√8: the bias correction keeps the first-order noise of NE_D), an estimate of
the bias left after the correction (from the same extrapolation one level
down, with quarters: O(1/D²)) and `mc_error` = 2 · standard error + |left
bias|. Each p̂ gets one pseudo-draw at the pooled mean r of its task (the
oracle's own rate over all examples and draws, not the realized labels):
(successes + r) / (draws + 1), for CABB (ΣK + r) / (ΣK + #[K = 0] + 1). A
click whose event never happened in D draws so gets r / (D + 1), not 0 (an
infinite loss if it happens in the log), and, unlike add-half smoothing,
rare events (CABA's rate is about 2 %) are not pulled up by 1/(2D) each.
The smoothing is an O(1/D) bias that the Richardson step removes with the
rest.
"""

import argparse
import ast
import hashlib
import inspect
import json
import math
import os
import sys
import time
from typing import Any, Dict, Mapping, NamedTuple, Optional, Sequence

import gin
import numpy as np
import pandas as pd

from cabb_tf import metrics
from cabb_tf.data import features as features_lib
from cabb_tf.data import labels as labels_lib
from cabb_tf.data import report as report_lib
from cabb_tf.data import schema
from cabb_tf.data import sessions as sessions_lib
from cabb_tf.data import simulator

GROUPS = 8
# On cabb_synthetic/default the Monte-Carlo error (`mc_error`) is below
# 0.002 NE with this many draws (docs/simulator.md).
DEFAULT_DRAWS = 3200
# Draws labelled together: one `label_clicks` call per batch.
_BATCH = 16
# Columns of `OracleDraws.counts`.
_CABA, _LAST_CLICK, _K, _HAS_OTHER, _SAME = range(5)
_TASKS = ("caba", "cabb", "last_click", "overall")
_SEED_TAG = 99  # SeedSequence([seed, _SEED_TAG, draw]): the draws' streams.


class OracleDraws(NamedTuple):
  """Label counts of the click examples over the redrawn purchases.

  Attributes:
    session_id: (E,) int64 session of each click example.
    item_a: (E,) int64 clicked item A.
    counts: (GROUPS, E, 5) int32 sums over the draws of each group of
      y_caba, y_last_click, K (positive CABB rows), 1[K > 0] and Y0 (some
      click on A in the session drew a purchase of A).
    draws: (GROUPS,) int64 draws per group.
    same_probability: (E,) E[Y0] = 1 − Π (1 − P(buy A)) over the clicks on
      A in the session, in closed form (the CABA control variate).
    attribution_window_s: the window the labels used (None: the session).
    seconds: time spent drawing and labelling.
  """
  session_id: np.ndarray
  item_a: np.ndarray
  counts: np.ndarray
  draws: np.ndarray
  same_probability: np.ndarray
  attribution_window_s: Optional[float]
  seconds: float

  def probabilities(self, groups: Optional[Sequence[int]] = None,
                    smoothing: float = 1.0,
                    control_variate: bool = True) -> Dict[str, np.ndarray]:
    """The oracle probabilities from the draws of `groups`.

    CABA is E[Y0] + mean(y_caba − Y0) (module docstring); without the
    control variate, and for the other tasks, each estimate gets
    `smoothing` pseudo-draws at the pooled mean of its task over all
    examples and draws.

    Args:
      groups: group indices (default: all).
      smoothing: pseudo-draws (0: the plain means).
      control_variate: use the CABA control variate.

    Returns:
      {'caba', 'cabb', 'last_click'}: (E,) float64 each.
    """
    groups = list(range(len(self.draws))) if groups is None else list(groups)
    counts = self.counts[groups].sum(axis=0, dtype=np.float64)
    draws = float(self.draws[groups].sum())
    no_other = draws - counts[:, _HAS_OTHER]
    prior = self.pooled_means()
    if control_variate:
      caba = np.clip(self.same_probability
                     + (counts[:, _CABA] - counts[:, _SAME]) / draws,
                     0.5 * self.same_probability, 1.0)
    else:
      caba = (counts[:, _CABA] + smoothing * prior["caba"]) / (
          draws + smoothing)
    with np.errstate(invalid="ignore", divide="ignore"):
      return {
          "caba": caba,
          "last_click": (counts[:, _LAST_CLICK]
                         + smoothing * prior["last_click"])
                        / (draws + smoothing),
          "cabb": (counts[:, _K] + smoothing * prior["cabb"])
                  / (counts[:, _K] + no_other + smoothing),
      }

  def pooled_means(self) -> Dict[str, float]:
    """Each task's rate over all examples and draws (the smoothing prior);
    for CABB the share of positive rows."""
    total = self.counts.sum(axis=(0, 1), dtype=np.float64)
    draws = float(self.draws.sum()) * self.counts.shape[1]
    no_other = draws - total[_HAS_OTHER]
    return {"caba": total[_CABA] / max(draws, 1.0),
            "last_click": total[_LAST_CLICK] / max(draws, 1.0),
            "cabb": total[_K] / max(total[_K] + no_other, 1.0)}

  def expected_other(self) -> np.ndarray:
    """(E,) mean K over all draws (unsmoothed)."""
    return self.counts[:, :, _K].sum(axis=0) / self.draws.sum()

  def no_other_probability(self) -> np.ndarray:
    """(E,) share of draws with K = 0 (unsmoothed)."""
    return 1.0 - self.counts[:, :, _HAS_OTHER].sum(axis=0) / self.draws.sum()


def _example_of_click(state: simulator.PrePurchaseState):
  """Click example of every click: the first click on its (session, item).

  Returns:
    (example, first): (C,) example index of each click, (E,) click index of
    each example's first click; examples in click order.
  """
  bound = int(state.click_item_id.max(initial=0)) + 1
  codes, _ = pd.factorize(state.click_session_id * bound
                          + state.click_item_id, sort=False)
  first = np.flatnonzero(np.r_[True, codes[1:] > np.maximum.accumulate(
      codes)[:-1]]) if len(codes) else np.zeros(0, np.int64)
  return codes.astype(np.int64), first


def estimate(state: simulator.PrePurchaseState, draws: int = DEFAULT_DRAWS,
             seed: int = 0,
             attribution_window_s: Optional[float] = None,
             batch: int = _BATCH) -> OracleDraws:
  """Draws the purchases `draws` times and counts the labels per example.

  Args:
    state: from `simulator.simulate_with_state`.
    draws: D, a positive multiple of `GROUPS`.
    seed: the seed of the draws (draw d uses SeedSequence([seed, 99, d])).
    attribution_window_s: passed to `labels.label_clicks` (None: the paper's
      session rule); `labels.configured_attribution_window()` gives gin's.
    batch: draws labelled per `label_clicks` call.

  Returns:
    An `OracleDraws`.

  Raises:
    ValueError: if `draws` is not a positive multiple of `GROUPS`.
  """
  if draws < GROUPS or draws % GROUPS:
    raise ValueError(f"draws must be a positive multiple of {GROUPS} (the "
                     f"Monte-Carlo error is estimated from {GROUPS} groups "
                     f"of draws), got {draws}.")
  begin = time.perf_counter()
  example, first = _example_of_click(state)
  num_examples = len(first)
  window_ms = labels_lib.window_milliseconds(attribution_window_s)
  keep = "sessions" if window_ms is None else "window"
  per_group = draws // GROUPS
  counts = np.zeros((GROUPS, num_examples, 5), np.int32)
  for group in range(GROUPS):
    for start in range(0, per_group, batch):
      size = min(batch, per_group - start)
      parts = []
      for k in range(size):
        d = group * per_group + start + k
        rng = np.random.default_rng(np.random.SeedSequence([seed, _SEED_TAG,
                                                            d]))
        parts.append((k, simulator.redraw_events(
            state, rng, keep=keep, window_ms=window_ms, order="user")))
      _count_labels(parts, example, attribution_window_s, counts[group])
  log_none = np.bincount(example, weights=np.log1p(-state.probs.same),
                         minlength=num_examples)
  return OracleDraws(
      session_id=state.click_session_id[first],
      item_a=state.click_item_id[first], counts=counts,
      draws=np.full(GROUPS, per_group, np.int64),
      same_probability=-np.expm1(log_none),
      attribution_window_s=attribution_window_s,
      seconds=time.perf_counter() - begin)


def _count_labels(parts, example: np.ndarray,
                  attribution_window_s: Optional[float],
                  counts: np.ndarray) -> None:
  """Labels a batch of draws in one `label_clicks` call and adds them up.

  Each draw's rows come user by user, each user's sessions in turn
  (`redraw_events(order="user")`); users and sessions get dense codes in
  that order, distinct across the draws, so the batch is a log of
  independent users whose labels are those of each draw alone, and whose
  user and session orders `label_clicks` finds without hashing or sorting.
  """
  num_examples = counts.shape[0]
  same = np.zeros(num_examples, bool)
  for _, events in parts:
    # Y0: the examples (not clicks) with a drawn purchase of A, once per draw.
    same[:] = False
    same[example[events.same_clicks]] = True
    counts[:, _SAME] += same
  if not any(len(events.click) for _, events in parts):
    return
  cat = lambda name: np.concatenate([getattr(e, name) for _, e in parts])
  click = cat("click")
  # copy=False keeps each column as its own block: no consolidation copy.
  frame = pd.DataFrame({
      "user_id": _run_codes([e.user_id for _, e in parts]),
      "session_id": _run_codes([e.session_id for _, e in parts]),
      "timestamp": cat("timestamp"),
      "item_id": cat("item_id"),
      "event_type": pd.Categorical.from_codes(
          cat("event_type"), dtype=schema.EVENT_TYPE_DTYPE),
  }, copy=False)
  rows = labels_lib.label_clicks(
      frame, attribution_window_s=attribution_window_s,
      columns=("event_index", "w_caba", "y_caba", "y_cabb", "y_last_click"))
  event = rows["event_index"].to_numpy()
  first = rows["w_caba"].to_numpy() > 0
  y_cabb = rows["y_cabb"].to_numpy() > 0
  # Labels are 0 / 1: each count is the number of positive rows.
  for column, positive in (
      (_CABA, first & (rows["y_caba"].to_numpy() > 0)),
      (_LAST_CLICK, first & (rows["y_last_click"].to_numpy() > 0)),
      (_K, y_cabb), (_HAS_OTHER, first & y_cabb)):
    counts[:, column] += np.bincount(
        example[click[event[positive]]],
        minlength=num_examples).astype(np.int32)


def _run_codes(ids: Sequence[np.ndarray]) -> np.ndarray:
  """0, 1, ... for the runs of equal ids, counted on across the arrays.

  Each id must form one run of its array (as users and sessions do in
  `redraw_events(order="user")`), or it would get several codes.
  """
  starts = []
  for values in ids:
    start = np.ones(len(values), bool)
    np.not_equal(values[1:], values[:-1], out=start[1:])
    starts.append(start)
  codes = np.cumsum(np.concatenate(starts), dtype=np.int64)
  codes -= 1
  return codes


def richardson(ne_all: float, ne_halves: Sequence[float]) -> float:
  """2 · NE_D − mean(NE_halves): removes the O(1/D) bias of NE_D."""
  return 2.0 * ne_all - float(np.mean(ne_halves))


def mc_summary(ne_all: float, ne_halves: Sequence[float],
               ne_quarters: Sequence[float],
               ne_groups: Sequence[float]) -> Dict[str, Any]:
  """The Monte-Carlo figures of one NE (module docstring).

  Args:
    ne_all: NE with all D draws.
    ne_halves: NE of each half (D/2 draws): groups 0-3 and 4-7.
    ne_quarters: NE of each quarter (D/4 draws), in order, two per half.
    ne_groups: NE of each of the `GROUPS` groups (D/8 draws).

  Returns:
    {'ne': the corrected NE, 'ne_all_draws', 'ne_halves', 'bias_estimate'
    (NE_D − corrected), 'std_error', 'residual_bias', 'mc_error'}.
  """
  corrected = richardson(ne_all, ne_halves)
  # The same extrapolation with half the draws, once per half.
  corrected_half = float(np.mean([
      richardson(ne_halves[h], ne_quarters[2 * h:2 * h + 2])
      for h in range(len(ne_halves))]))
  # With bias b1/D + b2/D^2, R_D = NE - 2 b2/D^2 and R_{D/2} = NE - 8 b2/D^2.
  residual = (corrected_half - corrected) / 3.0
  std_error = float(np.std(ne_groups, ddof=1) / math.sqrt(len(ne_groups)))
  return {
      "ne": corrected,
      "ne_all_draws": float(ne_all),
      "ne_halves": [float(v) for v in ne_halves],
      "bias_estimate": float(ne_all - corrected),
      "std_error": std_error,
      "residual_bias": float(residual),
      "mc_error": 2.0 * std_error + abs(residual),
  }


def _as_int64(values, name: str) -> np.ndarray:
  """Ids given as numbers, str or bytes (as TFDS stores them), as int64."""
  values = np.asarray(values)
  if values.dtype.kind in "iu":
    return values.astype(np.int64)
  if values.dtype.kind == "S":
    values = values.astype(str)
  try:
    return values.astype(np.int64)
  except ValueError:
    raise ValueError(f"{name} must hold integer ids (the simulator's), got "
                     f"values such as {values[:3].tolist()}.") from None


def split_rows(oracle: OracleDraws, session_id, item_a) -> np.ndarray:
  """Index of each row's click example in `oracle`.

  Raises:
    ValueError: if a (session_id, item_a) is not a click of the log.
  """
  session = _as_int64(session_id, "session_id")
  item = _as_int64(item_a, "item_a")
  index = pd.MultiIndex.from_arrays([oracle.session_id, oracle.item_a])
  found = index.get_indexer(pd.MultiIndex.from_arrays([session, item]))
  missing = found < 0
  if missing.any():
    raise ValueError(
        f"{int(missing.sum())} of {len(found)} rows are not click examples "
        f"of the simulated log, e.g. session {session[missing][0]}, item "
        f"{item[missing][0]}: the split was made from another world (other "
        "simulator arguments, gin bindings or seed).")
  return found


def score(oracle: OracleDraws, session_id, item_a, y_caba, w_caba, y_cabb,
          y_last_click, smoothing: float = 1.0) -> Dict[str, Any]:
  """The oracle's NEs on the realized labels of a split.

  Args:
    oracle: from `estimate`.
    session_id, item_a: (R,) ids of each row's click example (numbers or
      their strings, as in the TFDS records).
    y_caba, w_caba, y_cabb, y_last_click: (R,) the realized labels and the
      CABA weight of each row (`labels.label_clicks`).
    smoothing: pseudo-draws at the pooled mean added to each estimate.

  Returns:
    A JSON-ready dict: `caba_ne`, `cabb_ne`, `last_click_ne`, `overall_ne`
    (bias-corrected; CABA and last click over clicks with weight w_caba,
    CABB over all rows uniformly, overall pooled as
    `metrics.overall_normalized_entropy`), `mc` ({task: `mc_summary`}),
    `mc_error` (the largest), `draws`, `rows`, `clicks`,
    `mean_probability` (unsmoothed) and `label_rate` per task,
    `smoothing`.

  Raises:
    ValueError: if the rows are not click examples of the oracle's log.
  """
  found = split_rows(oracle, session_id, item_a)
  y_caba, w_caba, y_cabb, y_last_click = (
      np.asarray(a, np.float64) for a in (y_caba, w_caba, y_cabb,
                                          y_last_click))

  def nes(groups):
    p = oracle.probabilities(groups, smoothing)
    p_caba, p_cabb, p_last = (p[t][found] for t in ("caba", "cabb",
                                                     "last_click"))
    return {
        "caba": metrics.normalized_entropy(y_caba, p_caba, w_caba),
        "cabb": metrics.normalized_entropy(y_cabb, p_cabb),
        "last_click": metrics.normalized_entropy(y_last_click, p_last,
                                                 w_caba),
        "overall": metrics.overall_normalized_entropy(
            [(y_caba, p_caba, w_caba), (y_cabb, p_cabb, None)]),
    }

  ne_all = nes(None)
  half = GROUPS // 2
  ne_halves = [nes(range(0, half)), nes(range(half, GROUPS))]
  quarter = GROUPS // 4
  ne_quarters = [nes(range(q, q + quarter)) for q in range(0, GROUPS,
                                                            quarter)]
  ne_groups = [nes([g]) for g in range(GROUPS)]
  mc = {t: mc_summary(ne_all[t], [h[t] for h in ne_halves],
                      [q[t] for q in ne_quarters], [g[t] for g in ne_groups])
        for t in _TASKS}
  p = oracle.probabilities(smoothing=0.0)
  clicks = w_caba > 0
  return {
      **{f"{t}_ne": mc[t]["ne"] for t in _TASKS},
      "mc": mc,
      "mc_error": max(mc[t]["mc_error"] for t in _TASKS),
      "draws": int(oracle.draws.sum()),
      "groups": GROUPS,
      "smoothing": smoothing,
      "rows": int(len(found)),
      "clicks": int(clicks.sum()),
      "mean_probability": {
          "caba": float(np.average(p["caba"][found], weights=w_caba)),
          "cabb": float(np.mean(p["cabb"][found])),
          "last_click": float(np.average(p["last_click"][found],
                                         weights=w_caba))},
      "label_rate": {
          "caba": float(np.average(y_caba, weights=w_caba)),
          "cabb": float(np.mean(y_cabb)),
          "last_click": float(np.average(y_last_click, weights=w_caba))},
      "attribution_window_s": oracle.attribution_window_s,
      "seconds": oracle.seconds,
  }


def restrict_to_split(state: simulator.PrePurchaseState, session_id,
                      attribution_window_s: Optional[float] = None
                      ) -> simulator.PrePurchaseState:
  """The part of `state` the labels of a split's clicks depend on.

  With the session rule a click's labels depend on its session only; with
  a window, on its user's later sessions too (all of the user's sessions
  are kept).

  Args:
    state: from `simulator.simulate_with_state`.
    session_id: the sessions of the split's rows.
    attribution_window_s: the label rule (None: the session).

  Returns:
    A smaller state (`simulator.subset_state`).
  """
  wanted = np.isin(state.session_ids,
                   np.unique(_as_int64(session_id, "session_id")))
  if attribution_window_s is not None:
    users = state.sessions.user
    wanted = np.isin(users, np.unique(users[wanted]))
  return simulator.subset_state(state, wanted)


def split_labels(events: pd.DataFrame, split: str = "test",
                 validation_fraction: float = 0.1,
                 test_fraction: float = 0.2,
                 attribution_window_s: Optional[float] = None
                 ) -> pd.DataFrame:
  """The labelled rows of one split of a log, as the TFDS builders split it.

  Labels are `labels.label_clicks`; the split is `features.split_by_time`
  over the log's (first, last) event time (as `pipeline.prepare_examples`).

  Args:
    events: the canonical events (with the simulator's `session_id`).
    split: 'train', 'validation', 'test' or 'all'.
    validation_fraction, test_fraction: as the builder config.
    attribution_window_s: the label rule (None: the session).

  Returns:
    The rows of `label_clicks` in the split.

  Raises:
    ValueError: for an unknown split.
  """
  if split not in ("train", "validation", "test", "all"):
    raise ValueError(f"split must be train, validation, test or all, got "
                     f"{split!r}.")
  rows = labels_lib.label_clicks(events,
                                 attribution_window_s=attribution_window_s)
  if split == "all":
    return rows
  ts = events["timestamp"].to_numpy()
  which = features_lib.split_by_time(
      rows, (int(ts.min()), int(ts.max())), validation_fraction,
      test_fraction).to_numpy()
  return rows[which == split].reset_index(drop=True)


def oracle_for_log(state: simulator.PrePurchaseState, rows: pd.DataFrame,
                   draws: int = DEFAULT_DRAWS, seed: int = 0,
                   attribution_window_s: Optional[float] = None
                   ) -> Dict[str, Any]:
  """The oracle's NEs on labelled rows of the simulated log of `state`.

  Args:
    state: from `simulator.simulate_with_state`.
    rows: labelled rows (`label_clicks` columns `session_id`, `item_a`,
      `y_caba`, `w_caba`, `y_cabb`, `y_last_click`), e.g. `split_labels`.
    draws: D, a multiple of `GROUPS`.
    seed: the seed of the draws.
    attribution_window_s: the rule the rows were labelled with.

  Returns:
    `score`'s dict, plus `draws_per_second`.
  """
  sub = restrict_to_split(state, rows["session_id"], attribution_window_s)
  oracle = estimate(sub, draws=draws, seed=seed,
                    attribution_window_s=attribution_window_s)
  result = score(oracle, rows["session_id"], rows["item_a"], rows["y_caba"],
                 rows["w_caba"], rows["y_cabb"], rows["y_last_click"])
  result["draws_per_second"] = draws / oracle.seconds
  return result


# Gin bindings a cabb_synthetic dataset records that the oracle applies.
_SIMULATE = "cabb_tf.data.simulator.simulate."
_WINDOW = "cabb_tf.data.labels.label_clicks.attribution_window_s"
_SOURCE_SESSIONS = "cabb_tf.data.sessions.assign_sessions.use_source_sessions"
_RESERVED = ("num_users", "seed", "first_user_id")


def _recorded_world(bindings: Mapping[str, str]):
  """(simulate kwargs, window) from a dataset's recorded gin bindings.

  Every argument of `simulate` not recorded is passed at its default, so
  the caller's own gin bindings cannot change the world.
  """
  def value(key):
    try:
      return ast.literal_eval(bindings[key])
    except (ValueError, SyntaxError):
      raise ValueError(f"the dataset's gin binding {key} = {bindings[key]} "
                       "is not a literal the oracle can re-apply.") from None

  if _SOURCE_SESSIONS in bindings and not value(_SOURCE_SESSIONS):
    raise ValueError("the dataset was built with use_source_sessions = False; "
                     "the oracle needs the simulator's own sessions.")
  kwargs = {}
  parameters = inspect.signature(simulator.simulate).parameters
  for name, parameter in parameters.items():
    if name in _RESERVED:
      continue
    key = _SIMULATE + name
    kwargs[name] = value(key) if key in bindings else parameter.default
  window = value(_WINDOW) if _WINDOW in bindings else None
  return kwargs, window


def _read_split(builder, split: str) -> pd.DataFrame:
  """The label columns of a prepared TFDS split."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  names = ("session_id", "item_a", "item_b", "y_caba", "w_caba", "y_cabb",
           "y_last_click")
  dataset = builder.as_dataset(
      split=split, batch_size=65536, shuffle_files=False,
      decoders=tfds.decode.PartialDecoding({n: True for n in names}))
  columns = {n: [] for n in names}
  for batch in tfds.as_numpy(dataset):
    for n in names:
      columns[n].append(batch[n])
  return pd.DataFrame({n: np.concatenate(v) for n, v in columns.items()})


def _click_summary(session_id, item_a, y_caba, w_caba, y_cabb,
                   y_last_click) -> pd.DataFrame:
  """Per click (session, item A): rows, y_caba, y_last_click, K."""
  frame = pd.DataFrame({
      "session_id": _as_int64(session_id, "session_id"),
      "item_a": _as_int64(item_a, "item_a"),
      "w": np.asarray(w_caba, np.float64),
      "y_caba": np.asarray(y_caba, np.int64),
      "y_last_click": np.asarray(y_last_click, np.int64),
      "k": np.asarray(y_cabb, np.int64)})
  frame["y_caba"] *= frame["w"] > 0
  frame["y_last_click"] *= frame["w"] > 0
  return frame.groupby(["session_id", "item_a"]).agg(
      rows=("k", "size"), clicks=("w", "sum"), y_caba=("y_caba", "sum"),
      y_last_click=("y_last_click", "sum"), k=("k", "sum"))


def check_same_world(stored: pd.DataFrame, recomputed: pd.DataFrame,
                     where: str = "the split") -> None:
  """Raises ValueError unless two labellings of a split agree click by click.

  Args:
    stored: rows with `session_id`, `item_a`, `y_caba`, `w_caba`, `y_cabb`,
      `y_last_click` (e.g. read from TFDS).
    recomputed: the same columns, labelled from the re-simulated log.
    where: names the split in the message.
  """
  a = _click_summary(*(stored[c] for c in ("session_id", "item_a", "y_caba",
                                           "w_caba", "y_cabb",
                                           "y_last_click")))
  b = _click_summary(*(recomputed[c] for c in (
      "session_id", "item_a", "y_caba", "w_caba", "y_cabb", "y_last_click")))
  joined = a.join(b, how="outer", lsuffix="_stored", rsuffix="_sim")
  differ = joined.isna().any(axis=1)
  for column in ("rows", "clicks", "y_caba", "y_last_click", "k"):
    differ |= joined[f"{column}_stored"] != joined[f"{column}_sim"]
  if differ.any():
    example = joined[differ].head(1).reset_index().to_dict("records")[0]
    raise ValueError(
        f"the re-simulated world does not match {where}: {int(differ.sum())} "
        f"of {len(joined)} click examples differ (labels, rows or presence), "
        f"e.g. {example}. Was the dataset built under other simulator or "
        "label gin bindings, another seed, or another version of the "
        "simulator?")


def oracle_for_builder(builder, split: str = "test",
                       draws: int = DEFAULT_DRAWS, seed: int = 0,
                       cache_dir: Optional[str] = None) -> Dict[str, Any]:
  """The oracle NE floor of a prepared `cabb_synthetic` TFDS dataset.

  Re-creates the dataset's log (`simulate_events(num_events, seed)` under
  the simulator and label gin bindings recorded in
  `builder.info.metadata['gin_bindings']`, the caller's own bindings
  ignored), checks that its labels equal the split's stored labels click by
  click, and scores the oracle on the stored labels (`score`).

  Args:
    builder: `tfds.builder('cabb_synthetic/<config>', data_dir=...)` after
      `download_and_prepare()`.
    split: 'train', 'validation' or 'test'.
    draws: D, a multiple of `GROUPS` (`DEFAULT_DRAWS` keeps the Monte-Carlo
      error of cabb_synthetic/default below 0.002).
    seed: the seed of the draws.
    cache_dir: if given, the result is read from / written to a JSON file
      there named by the dataset, its configuration and recorded bindings,
      the split, draws and seed.

  Returns:
    `score`'s JSON-ready dict (`caba_ne`, `cabb_ne`, `last_click_ne`,
    `overall_ne`, `mc`, `mc_error`, `draws`, ...), plus `dataset`, `split`,
    `seed` and `draws_per_second`.

  Raises:
    ValueError: if the dataset is not a prepared simulated one, or the
      re-simulated world does not reproduce its labels.
  """
  metadata = dict(builder.info.metadata or {})
  config = metadata.get("config") or {}
  if "num_events" not in config or "seed" not in config:
    raise ValueError(
        f"{builder.info.full_name} has no simulator config in its metadata "
        "(num_events, seed): pass a prepared cabb_synthetic builder.")
  bindings = metadata.get("gin_bindings") or {}
  fingerprint = hashlib.sha256(json.dumps(
      [builder.info.full_name, config, bindings, split, draws, seed],
      sort_keys=True, default=str).encode()).hexdigest()[:12]
  path = None
  if cache_dir is not None:
    name = builder.info.full_name.replace("/", "_")
    path = os.path.join(cache_dir, f"oracle_{name}_{split}_{draws}draws_"
                        f"seed{seed}_{fingerprint}.json")
    if os.path.exists(path):
      with open(path) as f:
        return json.load(f)
  kwargs, window = _recorded_world(bindings)
  num_events, log_seed = int(config["num_events"]), int(config["seed"])
  num_users = simulator.users_for_events(num_events, log_seed, **kwargs)
  log, state = simulator.simulate_with_state(num_users=num_users,
                                             seed=log_seed, **kwargs)
  stored = _read_split(builder, split)
  recomputed = split_labels(
      log.events, split, float(config.get("validation_fraction", 0.1)),
      float(config.get("test_fraction", 0.2)), window)
  check_same_world(stored, recomputed, f"{builder.info.full_name} {split}")
  result = oracle_for_log(state, stored, draws=draws, seed=seed,
                          attribution_window_s=window)
  result.update(dataset=builder.info.full_name, split=split, seed=seed,
                fingerprint=fingerprint)
  if path is not None:
    report_lib.write_json(result, path)
  return result


def _table(results: Sequence[Mapping[str, Any]], key: str) -> str:
  lines = [f"| {key} | CABA NE | CABB NE | last-click NE | overall NE | "
           "MC error | draws | seconds |", "|---|---|---|---|---|---|---|---|"]
  for r in results:
    lines.append(
        f"| {r[key]} | {r['caba_ne']:.3f} | {r['cabb_ne']:.3f} | "
        f"{r['last_click_ne']:.3f} | {r['overall_ne']:.3f} | "
        f"{r['mc_error']:.4f} | {r['draws']} | {r['seconds']:.0f} |")
  return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> None:
  """Simulates a log and prints the oracle NE floor of one of its splits."""
  parser = argparse.ArgumentParser(prog="python -m cabb_tf.data.oracle",
                                   description=main.__doc__)
  parser.add_argument("--num_events", type=int, default=500_000,
                      help="simulate about this many events "
                      "(simulate_events; cabb_synthetic/default: 500000).")
  parser.add_argument("--seed", type=int, default=0,
                      help="the simulator's seed.")
  parser.add_argument("--split", default="test",
                      help="train, validation, test (the last 20 %% of the "
                      "time range, as the TFDS builders split) or all.")
  parser.add_argument("--draws", type=int, default=DEFAULT_DRAWS,
                      help=f"redraws of the purchases (a multiple of "
                      f"{GROUPS}).")
  parser.add_argument("--oracle_seed", type=int, default=0,
                      help="the seed of the redraws.")
  parser.add_argument("--signal_scale", type=float, action="append",
                      default=[], help="one run per value (repeatable); "
                      "overrides simulate.signal_scale.")
  parser.add_argument("--gin_file", action="append", default=[],
                      help="gin files (simulate, label_clicks).")
  parser.add_argument("--gin_bindings", action="append", default=[],
                      help="gin bindings, e.g. 'simulate.signal_scale = 2.0'.")
  parser.add_argument("--json", action="store_true",
                      help="print JSON instead of a markdown table.")
  args = parser.parse_args(argv)
  gin.parse_config_files_and_bindings(args.gin_file, args.gin_bindings,
                                      skip_unknown=False)
  window = labels_lib.configured_attribution_window()
  scales = args.signal_scale or [None]
  results = []
  for scale in scales:
    extra = {} if scale is None else {"signal_scale": scale}
    begin = time.perf_counter()
    num_users = simulator.users_for_events(args.num_events, args.seed,
                                           **extra)
    log, state = simulator.simulate_with_state(num_users=num_users,
                                               seed=args.seed, **extra)
    rows = split_labels(log.events, args.split, attribution_window_s=window)
    result = oracle_for_log(state, rows, draws=args.draws,
                            seed=args.oracle_seed,
                            attribution_window_s=window)
    result.update(signal_scale=state.signal_scale, events=len(log.events),
                  split=args.split, seconds=time.perf_counter() - begin)
    results.append(result)
  if args.json:
    print(json.dumps(results if len(results) > 1 else results[0], indent=1))
  else:
    print(_table(results, "signal_scale"))


if __name__ == "__main__":
  main(sys.argv[1:])
