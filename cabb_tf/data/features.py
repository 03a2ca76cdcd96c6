"""Point-in-time features of click examples (SPEC §3).

Every feature of a click example at time t is computed from events with
timestamp strictly before t, so nothing from the future (including the rest of
the example's own session) leaks in. Impressions are not interactions: they
are left out of every history count.

Families (`FEATURE_FAMILIES`), used for permutation importance by family:

* ids: `user_id`, `item_a`, `leaf_a`, `top_category_a`, `brand_a`.
* context: `hour`, `weekday` (UTC), `session_position` (clicks earlier in the
  session), `session_events_before`, `session_elapsed_s`.
* personalization: the user's past clicks / carts / purchases of A and of A's
  leaf, seconds since the user last touched A and A's leaf (-1 if never),
  the user's past events and purchases.
* popularity: A's and its leaf's past clicks, purchases and smoothed
  conversion rate `(purchases + k·m) / (clicks + k)` (gin: m, k).
* price: `price_a` (NaN when the source has none).

Each history count is a difference of two cumulative sums over one
arrangement of the log by (key, time): the user and session orders the
encoded log already has, and one packed sort for each of the other four keys
(user × item, user × leaf, item, leaf). So the cost is four sorts of the
events plus a few gathers per example, whatever the session or user sizes.
"""

import concurrent.futures
from typing import Dict, List, Optional, Sequence, Tuple

import gin
import numpy as np
import pandas as pd

from cabb_tf.data import encoding
from cabb_tf.data import schema

FEATURE_FAMILIES: Dict[str, Tuple[str, ...]] = {
    "ids": ("user_id", "item_a", "leaf_a", "top_category_a", "brand_a"),
    "context": ("hour", "weekday", "session_position", "session_events_before",
                "session_elapsed_s"),
    "personalization": ("u_item_clicks", "u_item_carts", "u_item_purchases",
                        "u_item_since_s", "u_leaf_clicks", "u_leaf_carts",
                        "u_leaf_purchases", "u_leaf_since_s", "u_events",
                        "u_purchases"),
    "popularity": ("item_clicks", "item_purchases", "item_cvr", "leaf_clicks",
                   "leaf_purchases", "leaf_cvr"),
    "price": ("price_a",),
}
ID_FEATURES = ("user_id", "item_a", "leaf_a", "top_category_a", "brand_a")
NUMERIC_FEATURES = tuple(
    f for family, names in FEATURE_FAMILIES.items() if family != "ids"
    for f in names)
FEATURE_NAMES = tuple(f for names in FEATURE_FAMILIES.values() for f in names)

_MS = 1000.0


class _History:
  """Past events grouped by an integer key, for queries at event times.

  The events (in time order) are arranged by (key, time): by one vectorized
  sort of `key * m + position` (`from_keys`), or from an order the encoded log
  already has (`from_order`: the session and user orders). For an event at
  sorted position q, the events of its key strictly earlier in time are the
  run from the key's first position to the first position of q's (key,
  timestamp) tie group, so every count is a difference of two cumulative sums
  and no binary search is needed.
  """

  def __init__(self, positions: np.ndarray, new_key: np.ndarray,
               timestamps: np.ndarray, types: np.ndarray,
               count_types: Sequence[int]):
    """Builds the history from an arrangement of the events.

    Args:
      positions: event positions (into `timestamps`) sorted by (key, time).
      new_key: marks the first sorted position of each key.
      timestamps: event times, in time order.
      types: event type codes, row for row with `timestamps`.
      count_types: event types to count.
    """
    m = len(positions)
    index = np.arange(m, dtype=np.int32)
    self._timestamps = timestamps[positions]
    new_tie = np.ones(m, dtype=bool)
    np.not_equal(self._timestamps[1:], self._timestamps[:-1], out=new_tie[1:])
    new_tie |= new_key
    self._key_start = np.maximum.accumulate(np.where(new_key, index, 0))
    self._tie_start = np.maximum.accumulate(np.where(new_tie, index, 0))
    del new_key, new_tie
    self._rank = np.empty(m, dtype=np.int32)
    self._rank[positions] = index
    del index
    sorted_types = types[positions]
    self._cum = {}
    for t in count_types:
      cum = np.zeros(m + 1, dtype=np.int32)
      np.cumsum(sorted_types == t, out=cum[1:])
      self._cum[t] = cum

  @classmethod
  def from_keys(cls, keys: np.ndarray, timestamps: np.ndarray,
                types: np.ndarray, count_types: Sequence[int]) -> "_History":
    """Sorts the (time-ordered) events by key with one packed sort."""
    positions, new_key = encoding.packed_key_sort(keys)
    return cls(positions, new_key, timestamps, types, count_types)

  @classmethod
  def from_order(cls, order: np.ndarray, starts: np.ndarray,
                 hist_position: Optional[np.ndarray], timestamps: np.ndarray,
                 types: np.ndarray, count_types: Sequence[int]) -> "_History":
    """Uses an order of all events by (key code, time, input position).

    Args:
      order: event rows sorted by (key code, timestamp, input position).
      starts: `starts[k]` is the first position in `order` of key code k.
      hist_position: the position of each event row in the history (-1 for
        left-out events), or None when the history is every event row.
      timestamps: history event times (in time order).
      types: history event types.
      count_types: event types to count.
    """
    n = len(order)
    new_key = np.zeros(n, dtype=bool)
    new_key[starts[starts < n]] = True
    if hist_position is None:
      return cls(order, new_key, timestamps, types, count_types)
    positions = hist_position[order]
    keep = positions >= 0
    positions = positions[keep]
    # The first kept position of each key run starts the key in the history.
    run = np.cumsum(new_key, dtype=np.int32)[keep]
    del new_key, keep
    new_key = np.ones(len(run), dtype=bool)
    np.not_equal(run[1:], run[:-1], out=new_key[1:])
    del run
    return cls(positions, new_key, timestamps, types, count_types)

  def query(self, positions: np.ndarray):
    """Returns (start, stop): the run of each queried event's key before it."""
    rank = self._rank[positions]
    return self._key_start[rank], self._tie_start[rank]

  def count(self, start, stop, event_type: Optional[int] = None) -> np.ndarray:
    if event_type is None:
      return (stop - start).astype(np.int32)
    cum = self._cum[event_type]
    return cum[stop] - cum[start]

  def first_time(self, start) -> np.ndarray:
    return self._timestamps[start]

  def seconds_since_last(self, start, stop, times) -> np.ndarray:
    """Seconds since the key's last event before `times`; -1 if none."""
    has = stop > start
    last = self._timestamps[np.maximum(stop - 1, 0)]
    return np.where(has, (times - last) / _MS, -1.0).astype(np.float32)


def _pair_codes(first: np.ndarray, second: np.ndarray,
                num_events: int) -> np.ndarray:
  """Integer codes of (first, second) pairs that `_History` can pack.

  `first * (max(second) + 1) + second` is used as is when it times the
  number of events fits in 62 bits (no hashing needed); otherwise the pairs
  are factorized to dense codes.
  """
  base = np.int64(second.max()) + 1 if len(second) else np.int64(1)
  largest = (int(first.max()) + 1 if len(first) else 1) * int(base)
  key = first.astype(np.int64) * base + second
  if largest * max(num_events, 1) < 2**62:
    return key
  codes, _ = pd.factorize(key, sort=False)
  return codes.astype(np.int64)


@gin.configurable
def compute_features(events: pd.DataFrame,
                     catalog: pd.DataFrame,
                     examples: pd.DataFrame,
                     encoded: Optional[encoding.EncodedLog] = None,
                     cvr_prior_mean: float = 0.02,
                     cvr_prior_strength: float = 20.0,
                     num_threads: int = 2) -> pd.DataFrame:
  """Computes the point-in-time features of labeled click examples.

  Args:
    events: the sessionized canonical event log the examples came from.
    catalog: the canonical catalog (items missing from it get the unknown
      leaf, an empty brand and a NaN price).
    examples: output of `labels.label_clicks(events)`; its `event_index`
      column points at each example's click event in `events`.
    encoded: `encoding.encode_events(events)`, when the caller has it.
    cvr_prior_mean: m, the prior conversion rate of the smoothed CVRs.
    cvr_prior_strength: k, the prior's weight in pseudo-clicks.
    num_threads: key families processed in parallel.

  Returns:
    `examples` with the columns of `FEATURE_NAMES` (the id columns it already
    has are kept) plus `leaf_b` (empty where there is no B), row for row.
    Leaf, category and brand columns are pandas Categoricals.
  """
  enc = encoding.maybe_encode(events, encoded)
  timestamps = enc.timestamps
  types = enc.types
  # History is kept in time order (ties in input order); impressions are not
  # interactions and are left out.
  time_order = (None if enc.time_sorted else
                np.argsort(timestamps, kind="stable"))
  interaction = types != schema.IMPRESSION
  if time_order is not None:
    hist_events = time_order[interaction[time_order]]
  elif interaction.all():
    hist_events = None  # every event, already in time order
  else:
    hist_events = np.flatnonzero(interaction)
  if hist_events is None:
    ev_ts, ev_types = timestamps, types
  else:
    ev_ts, ev_types = timestamps[hist_events], types[hist_events]

  user_codes, item_codes, session_codes = enc.user, enc.item, enc.session
  item_info = encoding.item_table(enc.item_ids, catalog)
  leaf_codes_of_item, leaf_names = pd.factorize(item_info["leaf"].to_numpy())
  top_codes_of_item, top_names = pd.factorize(
      item_info["top_category"].to_numpy())
  brand_codes_of_item, brand_names = pd.factorize(item_info["brand"].to_numpy())
  leaf_codes = leaf_codes_of_item[item_codes]

  # One query per click example (examples repeat a click on several rows).
  first_row = examples["w_caba"].to_numpy() > 0
  click_event = examples["event_index"].to_numpy()[first_row]
  q_ts = timestamps[click_event]
  hist_position = None
  if hist_events is None:
    q_pos = click_event
  else:
    position_dtype = np.int32 if len(timestamps) < 2**31 else np.int64
    hist_position = np.full(len(timestamps), -1, dtype=position_dtype)
    hist_position[hist_events] = np.arange(len(hist_events),
                                           dtype=position_dtype)
    q_pos = hist_position[click_event]
  # Features are computed per click, then broadcast to rows.
  click_of_row = np.cumsum(first_row, dtype=np.int64)
  click_of_row -= 1
  rows_are_clicks = bool(first_row.all())
  del first_row

  so = enc.session_order
  num_users = int(user_codes.max()) + 1 if len(user_codes) else 0
  user_starts = np.zeros(num_users + 1, dtype=np.int64)
  np.cumsum(np.bincount(user_codes, minlength=num_users), out=user_starts[1:])
  # Orders the encoded log already has; the other keys are sorted here.
  ordered = {"user": (enc.user_order, user_starts),
             "session": (so.order, so.starts)}
  keyed = {
      "u_item": lambda: _pair_codes(user_codes, item_codes, len(timestamps)),
      "u_leaf": lambda: _pair_codes(user_codes, leaf_codes, len(timestamps)),
      "item": lambda: item_codes,
      "leaf": lambda: leaf_codes,
  }
  names = ("u_item", "u_leaf", "user", "item", "leaf", "session")
  count_types = {
      "u_item": (schema.CLICK, schema.ADD_TO_CART, schema.PURCHASE),
      "u_leaf": (schema.CLICK, schema.ADD_TO_CART, schema.PURCHASE),
      "user": (schema.PURCHASE,),
      "item": (schema.CLICK, schema.PURCHASE),
      "leaf": (schema.CLICK, schema.PURCHASE),
      "session": (schema.CLICK,),
  }
  row_feats: Dict[str, np.ndarray] = {}  # per row
  feats: Dict[str, np.ndarray] = {}  # per click
  prior = cvr_prior_strength * cvr_prior_mean

  def lookup(name) -> Dict[str, np.ndarray]:
    """The features of one key family, per row (the history is freed)."""
    if name in ordered:
      order, starts = ordered[name]
      history = _History.from_order(order, starts, hist_position, ev_ts,
                                    ev_types, count_types[name])
    else:
      keys = keyed[name]()
      if hist_events is not None:
        keys = keys[hist_events]
      history = _History.from_keys(keys, ev_ts, ev_types, count_types[name])
      del keys
    start, stop = history.query(q_pos)
    out = {}
    if name in ("u_item", "u_leaf"):
      out[f"{name}_clicks"] = history.count(start, stop, schema.CLICK)
      out[f"{name}_carts"] = history.count(start, stop, schema.ADD_TO_CART)
      out[f"{name}_purchases"] = history.count(start, stop, schema.PURCHASE)
      out[f"{name}_since_s"] = history.seconds_since_last(start, stop, q_ts)
    elif name == "user":
      out["u_events"] = history.count(start, stop)
      out["u_purchases"] = history.count(start, stop, schema.PURCHASE)
    elif name in ("item", "leaf"):
      clicks = history.count(start, stop, schema.CLICK)
      purchases = history.count(start, stop, schema.PURCHASE)
      out[f"{name}_clicks"] = clicks
      out[f"{name}_purchases"] = purchases
      out[f"{name}_cvr"] = ((purchases + prior) /
                            (clicks + cvr_prior_strength)).astype(np.float32)
    else:  # session
      out["session_position"] = history.count(start, stop, schema.CLICK)
      out["session_events_before"] = history.count(start, stop)
      out["session_elapsed_s"] = (
          (q_ts - history.first_time(start)) / _MS).astype(np.float32)
    del history, start, stop
    if not rows_are_clicks:
      out = {key: value[click_of_row] for key, value in out.items()}
    return out

  # NumPy releases the GIL in sorts, gathers and cumulative sums, so two
  # key families are processed at once.
  if num_threads > 1:
    with concurrent.futures.ThreadPoolExecutor(
        max_workers=num_threads) as pool:
      for result in pool.map(lookup, names):
        row_feats.update(result)
  else:
    for name in names:
      row_feats.update(lookup(name))
  del hist_position, q_pos

  # UTC hour and weekday (1970-01-01 was a Thursday, weekday 3).
  days = np.floor_divide(q_ts, 86_400_000)
  feats["hour"] = (np.floor_divide(q_ts, 3_600_000) % 24).astype(np.int32)
  feats["weekday"] = ((days + 3) % 7).astype(np.int32)
  a_codes = item_codes[click_event]
  leaf_categories = pd.Index(np.append(leaf_names.astype(object), ""))
  feats["leaf_a"] = leaf_codes_of_item[a_codes]
  feats["top_category_a"] = top_codes_of_item[a_codes]
  feats["brand_a"] = brand_codes_of_item[a_codes]
  feats["price_a"] = item_info["price"].to_numpy()[a_codes].astype(np.float32)
  categories = {"leaf_a": leaf_categories, "top_category_a": top_names,
                "brand_a": brand_names}

  # Broadcast from clicks to rows.
  columns = {}
  for name in FEATURE_NAMES:
    if name in row_feats:
      columns[name] = row_feats.pop(name)
      continue
    if name not in feats:
      continue
    values = feats.pop(name)
    if not rows_are_clicks:
      values = values[click_of_row]
    if name in categories:
      values = pd.Categorical.from_codes(values, categories=categories[name])
    columns[name] = values
  # Leaf of B: the extra category "" (last code) where there is no B.
  item_b = examples["item_b"]
  has_b = item_b.notna().to_numpy()
  leaf_b = np.full(len(examples), len(leaf_names), dtype=np.int64)
  if has_b.any():
    b_codes = pd.Index(enc.item_ids).get_indexer(item_b[has_b].to_numpy())
    leaf_b[has_b] = leaf_codes_of_item[b_codes]
  columns["leaf_b"] = pd.Categorical.from_codes(leaf_b,
                                                categories=leaf_categories)
  merged = {c: examples[c].array for c in examples.columns
            if c not in columns}
  merged.update(columns)
  # copy=False keeps each column as its own block: no consolidation copy.
  return pd.DataFrame(merged, index=examples.index, copy=False)


@gin.configurable
def split_by_time(examples: pd.DataFrame,
                  time_range: Tuple[int, int],
                  validation_fraction: float = 0.1,
                  test_fraction: float = 0.2) -> pd.Series:
  """Assigns each example to train / validation / test by its time.

  The last `test_fraction` of `time_range` is test, the `validation_fraction`
  before it validation, the rest train (SPEC §3).

  Args:
    examples: examples with a `timestamp` column (ms).
    time_range: (first, last) event timestamp of the log, ms.
    validation_fraction: share of the time range for validation.
    test_fraction: share of the time range for test.

  Returns:
    A categorical Series of 'train', 'validation', 'test'.
  """
  if not (0 <= validation_fraction and 0 <= test_fraction and
          validation_fraction + test_fraction < 1):
    raise ValueError("validation_fraction and test_fraction must be >= 0 and "
                     f"sum to < 1, got {validation_fraction}, {test_fraction}.")
  test_start, validation_start = split_boundaries(
      time_range, validation_fraction, test_fraction)
  ts = examples["timestamp"].to_numpy()
  split = np.where(ts >= test_start, 2, np.where(ts >= validation_start, 1, 0))
  return pd.Series(pd.Categorical.from_codes(
      split, categories=["train", "validation", "test"]), index=examples.index,
                   name="split")


def split_boundaries(time_range: Tuple[int, int], validation_fraction: float,
                     test_fraction: float) -> Tuple[int, int]:
  """Returns (test_start, validation_start) in ms for a time range."""
  start, end = (int(t) for t in time_range)
  span = end - start
  test_start = end - int(round(test_fraction * span))
  validation_start = test_start - int(round(validation_fraction * span))
  return test_start, validation_start


@gin.configurable
def fit_feature_statistics(examples: pd.DataFrame,
                           max_vocabulary: int = 100_000,
                           min_count: int = 1) -> Dict[str, dict]:
  """Fits normalization statistics and id vocabularies on training examples.

  Call it on the training split only. Numeric features get the mean and
  standard deviation of `log1p(max(x, 0))` over click examples (`w_caba` > 0)
  and the share of missing (NaN) values; id features get a vocabulary of the
  most frequent values (ties broken by value), at most `max_vocabulary` long,
  keeping values seen at least `min_count` times.

  Args:
    examples: training click examples with features.
    max_vocabulary: vocabulary size cap per id feature.
    min_count: minimum occurrences to enter a vocabulary.

  Returns:
    {"numeric": {name: {"mean", "std", "missing"}},
     "vocabulary": {name: [values...]}, "num_examples": int}.
  """
  clicks = examples[examples["w_caba"].to_numpy() > 0]
  numeric = {}
  for name in NUMERIC_FEATURES:
    if name not in clicks.columns:
      continue
    x = clicks[name].to_numpy(dtype=np.float64)
    missing = np.isnan(x)
    z = np.log1p(np.maximum(x[~missing], 0.0))
    numeric[name] = {
        "mean": float(z.mean()) if len(z) else 0.0,
        "std": float(z.std()) if len(z) else 1.0,
        "missing": float(missing.mean()) if len(x) else 0.0,
    }
  vocabulary: Dict[str, List] = {}
  for name in ID_FEATURES:
    if name not in clicks.columns:
      continue
    counts = clicks[name].value_counts(sort=False)
    counts = counts[counts >= min_count]
    frame = pd.DataFrame({"value": counts.index.astype(str).to_numpy(),
                          "n": counts.to_numpy()})
    frame = frame.sort_values(["n", "value"], ascending=[False, True],
                              kind="stable")
    vocabulary[name] = frame["value"].head(max_vocabulary).tolist()
  return {"numeric": numeric, "vocabulary": vocabulary,
          "num_examples": int(len(clicks))}
