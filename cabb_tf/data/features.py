"""Point-in-time features of click examples (docs/method.md, "Features").

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
encoded log already has (one arrangement for both when the sessions were
derived, as runs of the user order), and one packed sort for each of the
other four keys (user × item, user × leaf, item, leaf). Counts are read at
the clicks in the arrangement's order, where both ends of every run only
move forward, and each feature is then put in row order with one gather. So
the cost is four sorts of the events plus one random gather per feature and
example, whatever the session or user sizes.
"""

import concurrent.futures
import functools
from typing import (Callable, Dict, List, Mapping, Optional, Sequence, Tuple,
                    TypeVar)

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
# The keys whose histories span users: their features (the popularity
# family) are the only ones that need the whole log before the click.
POPULARITY_KEYS = ("item", "leaf")
POPULARITY_FEATURES = FEATURE_FAMILIES["popularity"]
# The time splits, in time order (`split_by_time`).
SPLITS = ("train", "validation", "test")

_MS = 1000.0
# `*_since_s` of a key the user never touched before the click.
NEVER_S = -1.0
_T = TypeVar("_T")


def _cast(values, dtype):
  """`values` as `dtype`: an array for an array, a NumPy scalar for a
  scalar (a click served online)."""
  if isinstance(values, np.ndarray):
    return values.astype(dtype)
  return dtype(values)


def seconds_between(later_ms, earlier_ms):
  """(later - earlier) in seconds, float32: the `*_since_s` and
  `session_elapsed_s` features (of int ms arrays or scalars)."""
  return _cast((later_ms - earlier_ms) / _MS, np.float32)


def utc_hour(timestamps):
  """The `hour` feature: the UTC hour of day of ms timestamps, int32."""
  return _cast(timestamps // 3_600_000 % 24, np.int32)


def utc_weekday(timestamps):
  """The `weekday` feature: the UTC day of week of ms timestamps (Monday 0),
  int32. 1970-01-01 was a Thursday, weekday 3."""
  return _cast((timestamps // 86_400_000 + 3) % 7, np.int32)


class _Arrangement:
  """The history events arranged by (key, time), before queries are known.

  Made from the log alone, so it can be built while the labels are being
  computed (`arrange_histories`); `mark_queries` then says where the click
  examples are in it. Values are computed at the queries in the order of the
  arrangement; `query` says which query each one belongs to (`_row_index`
  puts them in row order).
  """

  def __init__(self, positions: np.ndarray, sorted_ts: np.ndarray,
               sorted_types: np.ndarray, key_starts: List[np.ndarray]):
    """Builds the arrangement.

    Args:
      positions: history positions in (key, time) order.
      sorted_ts: their times.
      sorted_types: their event types.
      key_starts: one bool mask per key family of where each key starts.
    """
    # Held until the queries are marked: int32 halves what a made-ahead
    # arrangement holds.
    self.positions = positions.astype(
        np.int32 if len(positions) < 2**31 else np.int64, copy=False)
    self.sorted_ts = sorted_ts
    self.sorted_types = sorted_types
    self.key_starts = key_starts
    self.new_time = np.ones(len(sorted_ts), dtype=bool)
    np.not_equal(sorted_ts[1:], sorted_ts[:-1], out=self.new_time[1:])
    self.at = self.query = None

  def mark_queries(self, query_of_hist: np.ndarray) -> None:
    """Finds the queries (`query_of_hist`: query index per history event,
    -1 for none) in the arrangement; the positions are then freed."""
    sorted_query = query_of_hist[self.positions]
    self.positions = None
    self.at = np.flatnonzero(sorted_query >= 0)
    self.query = sorted_query[self.at]

  @property
  def times(self) -> np.ndarray:
    """The time of each query, in arrangement order."""
    return self.sorted_ts[self.at]

  @classmethod
  def from_keys(cls, keys: np.ndarray, timestamps: np.ndarray,
                types: np.ndarray) -> "_Arrangement":
    """Sorts the (time-ordered) history events by key with one packed sort."""
    positions, new_key = encoding.packed_key_sort(keys)
    return cls(positions, timestamps[positions], types[positions], [new_key])

  @classmethod
  def from_order(cls, order: np.ndarray, starts: np.ndarray,
                 hist_position: Optional[np.ndarray],
                 timestamps: np.ndarray, types: np.ndarray,
                 more_starts: Sequence[np.ndarray] = ()) -> "_Arrangement":
    """Uses an order of all events by (key code, time, input position).

    Args:
      order: event rows sorted by (key code, timestamp, input position).
      starts: `starts[k]` is the first position in `order` of key code k.
      hist_position: the position of each event row in the history (-1 for
        left-out events), or None when the history is every event row.
      timestamps: history event times (in time order).
      types: history event types.
      more_starts: bool masks along `order` of where the keys of finer
        groupings start (sessions within users).

    Returns:
      The arrangement; its key starts are those of `starts`, then those of
      `more_starts`.
    """
    n = len(order)
    new_key = np.zeros(n, dtype=bool)
    new_key[starts[starts < n]] = True
    masks = [new_key, *more_starts]
    if hist_position is None:
      positions = order
    else:
      positions = hist_position[order]
      keep = positions >= 0
      positions = positions[keep]
      masks = [_kept_starts(mask, keep) for mask in masks]
      del keep
    return cls(positions, timestamps[positions], types[positions], masks)


def _kept_starts(new_key: np.ndarray, keep: np.ndarray) -> np.ndarray:
  """Where keys start among the kept positions (the first kept of each)."""
  run = np.cumsum(new_key, dtype=np.int32 if len(keep) < 2**31 else
                  np.int64)[keep]
  kept = np.ones(len(run), dtype=bool)
  np.not_equal(run[1:], run[:-1], out=kept[1:])
  return kept


class _History:
  """Past events of one key, evaluated at the queries of an arrangement.

  For a query at sorted position q, the events of its key strictly earlier
  in time are the run from the key's first position to the first position of
  q's (key, timestamp) tie group, so every count is a difference of two
  cumulative sums and no binary search is needed. Both ends of the run are
  non-decreasing along the arrangement, so the counts read the cumulative
  sums in order.
  """

  def __init__(self, arrangement: _Arrangement, new_key: np.ndarray):
    """Builds the history.

    Args:
      arrangement: the events arranged by (key, time).
      new_key: marks the first sorted position of each key.
    """
    self._arrangement = arrangement
    m = len(new_key)
    index = np.arange(m, dtype=np.int32 if m < 2**31 else np.int64)
    at = arrangement.at
    self.start = np.maximum.accumulate(np.where(new_key, index, 0))[at]
    new_tie = new_key | arrangement.new_time
    self.stop = np.maximum.accumulate(np.where(new_tie, index, 0))[at]

  @property
  def times(self) -> np.ndarray:
    return self._arrangement.times

  def count(self, event_type: Optional[int] = None) -> np.ndarray:
    """Events (of `event_type`, or all) of the key before each query."""
    if event_type is None:
      return (self.stop - self.start).astype(np.int32)
    types = self._arrangement.sorted_types
    cum = np.zeros(len(types) + 1, dtype=np.int32)
    np.cumsum(types == event_type, out=cum[1:])
    return cum[self.stop] - cum[self.start]

  def first_time(self) -> np.ndarray:
    """The time of the key's first event."""
    return self._arrangement.sorted_ts[self.start]

  def seconds_since_last(self) -> np.ndarray:
    """Seconds since the key's last event before each query; -1 if none."""
    has = self.stop > self.start
    last = self._arrangement.sorted_ts[np.maximum(self.stop - 1, 0)]
    return np.where(has, seconds_between(self.times, last),
                    np.float32(NEVER_S))


def _row_index(query: np.ndarray,
               row_query: Optional[np.ndarray]) -> np.ndarray:
  """Where each example row's value is among values in `query` order.

  Args:
    query: the query index of each value (a permutation of the queries).
    row_query: the query of each example row, or None when rows are queries.

  Returns:
    int64 indices: `np.take(values, index)` puts the values in row order.
  """
  index = np.empty(len(query), dtype=np.int64)
  index[query] = np.arange(len(query), dtype=np.int64)
  return index if row_query is None else index[row_query]


def _pair_codes(first: np.ndarray, second: np.ndarray,
                num_events: int) -> np.ndarray:
  """Integer codes of (first, second) pairs for `packed_key_sort`.

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


class Histories:
  """The log's side of the history features, made before the examples.

  Everything the history features need that does not depend on which clicks
  are examples: the history (interactions in time order), the catalog codes
  and the arrangements of the history by each key. `arrange_histories`
  makes them all at once, so that they can be built on one core while
  `labels.label_clicks` runs on the other; `compute_features` makes them one
  at a time itself when it is not given them.
  """

  def __init__(self, enc: encoding.EncodedLog, catalog: pd.DataFrame,
               popularity: bool = True):
    """Prepares the history of `enc` (arrangements are made on demand).

    Args:
      enc: the encoded log.
      catalog: the canonical catalog.
      popularity: also arrange by item and by leaf (the as-of popularity
        families); False leaves them to `as_of_popularity` (the Beam
        preparation computes them per time block, docs/beam.md).
    """
    self.enc = enc
    timestamps, types = enc.timestamps, enc.types
    # History is kept in time order (ties in input order); impressions are
    # not interactions and are left out.
    time_order = (None if enc.time_sorted else
                  np.argsort(timestamps, kind="stable"))
    interaction = types != schema.IMPRESSION
    if time_order is not None:
      self.hist_events = time_order[interaction[time_order]]
    elif interaction.all():
      self.hist_events = None  # every event, already in time order
    else:
      self.hist_events = np.flatnonzero(interaction)
    del time_order, interaction
    self.hist_position = None
    self.num_history = (len(timestamps) if self.hist_events is None else
                        len(self.hist_events))
    if self.hist_events is None:
      self.ev_ts, self.ev_types = timestamps, types
    else:
      self.ev_ts = timestamps[self.hist_events]
      self.ev_types = types[self.hist_events]
      position_dtype = np.int32 if len(timestamps) < 2**31 else np.int64
      self.hist_position = np.full(len(timestamps), -1, dtype=position_dtype)
      self.hist_position[self.hist_events] = np.arange(
          len(self.hist_events), dtype=position_dtype)

    self.item_info = encoding.item_table(enc.item_ids, catalog)
    self.leaf_codes_of_item, self.leaf_names = pd.factorize(
        self.item_info["leaf"].to_numpy())
    self.top_codes_of_item, self.top_names = pd.factorize(
        self.item_info["top_category"].to_numpy())
    self.brand_codes_of_item, self.brand_names = pd.factorize(
        self.item_info["brand"].to_numpy())
    num_users = int(enc.user.max()) + 1 if len(enc.user) else 0
    self.user_starts = np.zeros(num_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(enc.user, minlength=num_users),
              out=self.user_starts[1:])
    # Each task arranges the events once for one or more key families: the
    # user and session orders the encoded log already has (derived sessions
    # are runs of the user order, so one arrangement serves both), and one
    # packed sort for each of the other keys.
    if enc.session_starts_in_user_order is not None:
      tasks = (("user", "session"), ("u_item",), ("u_leaf",), ("item",),
               ("leaf",))
    else:
      tasks = (("u_item",), ("u_leaf",), ("user",), ("item",), ("leaf",),
               ("session",))
    if not popularity:
      tasks = tuple(t for t in tasks if t[0] not in POPULARITY_KEYS)
    self.tasks = tasks
    self._arranged: Dict[Tuple[str, ...], _Arrangement] = {}

  def arrange_all(self) -> None:
    """Makes every task's arrangement now, then frees what only arranging
    needs."""
    for names in self.tasks:
      if names not in self._arranged:
        self._arranged[names] = self._arrange(names)
    self.hist_events = self.ev_ts = self.ev_types = None

  def take(self, names: Tuple[str, ...]) -> _Arrangement:
    """The arrangement of a task (made now unless made already); the
    histories no longer hold it."""
    made = self._arranged.pop(names, None)
    return made if made is not None else self._arrange(names)

  def _arrange(self, names: Tuple[str, ...]) -> _Arrangement:
    enc, n = self.enc, self.enc.num_events
    if names[0] in ("user", "session"):
      if names == ("user", "session"):
        order, starts = enc.user_order, self.user_starts
        more = (enc.session_starts_in_user_order,)
      elif names == ("user",):
        order, starts, more = enc.user_order, self.user_starts, ()
      else:
        so = enc.session_order
        order, starts, more = so.order, so.starts, ()
      return _Arrangement.from_order(order, starts, self.hist_position,
                                     self.ev_ts, self.ev_types, more)
    if names == ("u_item",):
      keys = _pair_codes(enc.user, enc.item, n)
    elif names == ("u_leaf",):
      keys = _pair_codes(enc.user, self._leaf_codes(), n)
    elif names == ("item",):
      keys = enc.item
    else:
      keys = self._leaf_codes()
    if self.hist_events is not None:
      keys = keys[self.hist_events]
    return _Arrangement.from_keys(keys, self.ev_ts, self.ev_types)

  def _leaf_codes(self) -> np.ndarray:
    return self.leaf_codes_of_item.astype(np.int32)[self.enc.item]


def beside_histories(work: Callable[[], _T], events: pd.DataFrame,
                     catalog: pd.DataFrame,
                     encoded: Optional[encoding.EncodedLog] = None,
                     popularity: bool = True) -> Tuple[_T, Histories]:
  """Runs `work()` (the labels) while a second thread arranges the histories.

  Labelling is single-threaded and the arrangements need only the log, so
  the two overlap on two cores.

  Args:
    work: what to run meanwhile, e.g. `lambda: labels.label_clicks(...)`.
    events: the sessionized canonical event log.
    catalog: the canonical catalog.
    encoded: `encoding.encode_events(events)`.
    popularity: see `arrange_histories`.

  Returns:
    (`work()`, `arrange_histories(events, catalog, encoded, popularity)`).
  """
  # If `work` raises, leaving the block waits for the arrangements, then
  # the error propagates.
  with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
    arranged = pool.submit(arrange_histories, events, catalog, encoded,
                           popularity)
    result = work()
    return result, arranged.result()


def arrange_histories(events: pd.DataFrame, catalog: pd.DataFrame,
                      encoded: Optional[encoding.EncodedLog] = None,
                      popularity: bool = True) -> Histories:
  """Makes the log's side of the history features, for `compute_features`.

  It reads nothing of the examples, so it may run while the labels are
  computed (as `pipeline.prepare_examples` and the data benchmark do, on a
  second thread); it holds about 50 bytes per event until `compute_features`
  uses it.

  Args:
    events: the sessionized canonical event log.
    catalog: the canonical catalog.
    encoded: `encoding.encode_events(events)`, when the caller has it.
    popularity: also arrange the item and leaf popularity families (see
      `Histories`).

  Returns:
    The `Histories` with every arrangement made.
  """
  histories = Histories(encoding.maybe_encode(events, encoded), catalog,
                        popularity)
  histories.arrange_all()
  return histories


def smoothed_cvr(clicks, purchases, cvr_prior_mean: float,
                 cvr_prior_strength: float):
  """The smoothed conversion rate `(purchases + k·m) / (clicks + k)` of the
  `item_cvr` and `leaf_cvr` features (docs/method.md, "Features"), float32.

  Args:
    clicks: a key's clicks before the click (array or scalar).
    purchases: its purchases before the click.
    cvr_prior_mean: m, the prior conversion rate.
    cvr_prior_strength: k, the prior's weight in pseudo-clicks.
  """
  prior = cvr_prior_strength * cvr_prior_mean  # k·m pseudo-purchases
  return _cast((purchases + prior) / (clicks + cvr_prior_strength),
               np.float32)


def _popularity_columns(name: str, clicks: np.ndarray, purchases: np.ndarray,
                        cvr_prior_mean: float, cvr_prior_strength: float,
                        put: Callable[[str, np.ndarray], None]) -> None:
  """Puts a key's clicks, purchases and smoothed CVR (`smoothed_cvr`)."""
  put(f"{name}_cvr", smoothed_cvr(clicks, purchases, cvr_prior_mean,
                                  cvr_prior_strength))
  put(f"{name}_clicks", clicks)
  put(f"{name}_purchases", purchases)


def as_of_popularity(keys: Mapping[str, np.ndarray],
                     timestamps: np.ndarray,
                     types: np.ndarray,
                     query_keys: Mapping[str, np.ndarray],
                     query_times: np.ndarray,
                     prefix: Optional[Mapping[str, Tuple[np.ndarray,
                                                         np.ndarray]]] = None,
                     cvr_prior_mean: float = 0.02,
                     cvr_prior_strength: float = 20.0
                     ) -> Dict[str, np.ndarray]:
  """The popularity family at (key, time) queries from a slice of the log.

  What `compute_features` computes for the item and leaf keys, by the same
  arrangement and cumulative sums, when the log is cut into time blocks
  (docs/beam.md): the history is one block's interactions, each query's
  count is that of the events of its key strictly before its time in the
  block plus `prefix`, the key's count before the block. The queries join
  the arrangement as impressions (never counted), so each is read at its
  own tie group as a click example is in `compute_features`.

  Args:
    keys: {"item": codes, "leaf": codes} of the history events, non-negative
      integers (any order; impressions may be left out or included).
    timestamps: the history events' times (ms).
    types: their int8 type codes.
    query_keys: the same keys for each query.
    query_times: each query's time; the history must hold every event of
      the queries' keys from the slice's start up to the latest query.
    prefix: {key: (clicks, purchases) per query} before the slice; None for
      a slice that starts with the log.
    cvr_prior_mean: m, as in `compute_features`.
    cvr_prior_strength: k, as in `compute_features`.

  Returns:
    {feature name: values per query} for `POPULARITY_FEATURES`.
  """
  num_history, num_queries = len(timestamps), len(query_times)
  all_ts = np.concatenate([np.asarray(timestamps, dtype=np.int64),
                           np.asarray(query_times, dtype=np.int64)])
  order = np.argsort(all_ts, kind="stable")
  sorted_ts = all_ts[order]
  del all_ts
  sorted_types = np.concatenate([
      np.asarray(types, dtype=np.int8),
      np.full(num_queries, schema.IMPRESSION, dtype=np.int8)])[order]
  position = np.empty(len(order), dtype=np.int64)
  position[order] = np.arange(len(order), dtype=np.int64)
  query_of_hist = np.full(len(order), -1, dtype=np.int64)
  query_of_hist[position[num_history:]] = np.arange(num_queries,
                                                    dtype=np.int64)
  del position
  out: Dict[str, np.ndarray] = {}
  for name in POPULARITY_KEYS:
    key = np.concatenate([np.asarray(keys[name], dtype=np.int64),
                          np.asarray(query_keys[name], dtype=np.int64)])
    arrangement = _Arrangement.from_keys(key[order], sorted_ts, sorted_types)
    del key
    arrangement.mark_queries(query_of_hist)
    rows = _row_index(arrangement.query, None)
    history = _History(arrangement, arrangement.key_starts[0])
    clicks = np.take(history.count(schema.CLICK), rows)
    purchases = np.take(history.count(schema.PURCHASE), rows)
    if prefix is not None:
      before_clicks, before_purchases = prefix[name]
      clicks = (clicks + before_clicks).astype(np.int32)
      purchases = (purchases + before_purchases).astype(np.int32)
    _popularity_columns(name, clicks, purchases, cvr_prior_mean,
                        cvr_prior_strength, out.__setitem__)
  return out


@gin.configurable(denylist=["histories", "popularity"])
def compute_features(events: pd.DataFrame,
                     catalog: pd.DataFrame,
                     examples: pd.DataFrame,
                     encoded: Optional[encoding.EncodedLog] = None,
                     cvr_prior_mean: float = 0.02,
                     cvr_prior_strength: float = 20.0,
                     num_threads: int = 2,
                     histories: Optional[Histories] = None,
                     popularity: bool = True) -> pd.DataFrame:
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
    histories: `arrange_histories(events, catalog, encoded)`, when made
      beforehand (it is used up); None makes each arrangement here.
    popularity: compute the popularity family (`POPULARITY_FEATURES`: the
      item's and the leaf's counts over the whole log). False leaves it out:
      the per-user families then need only the events of the example's user,
      and `as_of_popularity` computes the rest from a time block of the log
      plus the counts before the block (docs/beam.md). `histories` must have
      been made with the same setting.

  Returns:
    `examples` with the columns of `FEATURE_NAMES` (the id columns it already
    has are kept; without `popularity`, less `POPULARITY_FEATURES`) plus
    `leaf_b` (empty where there is no B), row for row.
    Leaf, category and brand columns are pandas Categoricals.

  Raises:
    ValueError: if two click examples point at the same event.
  """
  if histories is None:
    histories = Histories(encoding.maybe_encode(events, encoded), catalog,
                          popularity)
  h = histories
  enc = h.enc
  item_codes = enc.item

  # One query per click example (examples repeat a click on several rows).
  first_row = examples["w_caba"].to_numpy() > 0
  click_event = examples["event_index"].to_numpy()[first_row]
  q_ts = enc.timestamps[click_event]
  num_queries = len(click_event)
  query_dtype = np.int32 if num_queries < 2**31 else np.int64
  query_of_hist = np.full(h.num_history, -1, dtype=query_dtype)
  query_of_hist[click_event if h.hist_position is None else
                h.hist_position[click_event]] = np.arange(num_queries,
                                                          dtype=query_dtype)
  if np.count_nonzero(query_of_hist >= 0) != num_queries:
    raise ValueError("examples has two click examples (w_caba > 0) with the "
                     "same event_index: pass label_clicks' output as is.")
  # Features are computed per click, then broadcast to rows.
  click_of_row = None
  if not first_row.all():
    click_of_row = np.cumsum(first_row, dtype=np.int64)
    click_of_row -= 1
  del first_row

  def lookup(names) -> Dict[str, np.ndarray]:
    """The features of one task's key families, per row."""
    arrangement = h.take(names)
    arrangement.mark_queries(query_of_hist)
    rows = _row_index(arrangement.query, click_of_row)
    out = {}

    def put(name, values):  # each value goes to row order as it is made
      out[name] = np.take(values, rows)

    for name, new_key in zip(names, arrangement.key_starts):
      history = _History(arrangement, new_key)
      if name in ("u_item", "u_leaf"):
        put(f"{name}_clicks", history.count(schema.CLICK))
        put(f"{name}_carts", history.count(schema.ADD_TO_CART))
        put(f"{name}_purchases", history.count(schema.PURCHASE))
        put(f"{name}_since_s", history.seconds_since_last())
      elif name == "user":
        put("u_events", history.count())
        put("u_purchases", history.count(schema.PURCHASE))
      elif name in POPULARITY_KEYS:
        _popularity_columns(name, history.count(schema.CLICK),
                            history.count(schema.PURCHASE), cvr_prior_mean,
                            cvr_prior_strength, put)
      else:  # session
        put("session_position", history.count(schema.CLICK))
        put("session_events_before", history.count())
        put("session_elapsed_s",
            seconds_between(history.times, history.first_time()))
      del history
    return out

  leaf_categories = pd.Index(np.append(h.leaf_names.astype(object), ""))
  categories = {"leaf_a": leaf_categories, "top_category_a": h.top_names,
                "brand_a": h.brand_names}

  def context_and_ids() -> Dict[str, np.ndarray]:
    """The id, context and price columns of the click, per row."""
    out = {}

    def put(name, values):  # broadcast from clicks to rows, one at a time
      if click_of_row is not None:
        values = values[click_of_row]
      if name in categories:
        values = pd.Categorical.from_codes(values,
                                           categories=categories[name])
      out[name] = values

    put("hour", utc_hour(q_ts))
    put("weekday", utc_weekday(q_ts))
    a_codes = item_codes[click_event]
    for name, codes_of_item in (("leaf_a", h.leaf_codes_of_item),
                                ("top_category_a", h.top_codes_of_item),
                                ("brand_a", h.brand_codes_of_item)):
      put(name, codes_of_item.astype(np.int32)[a_codes])
    put("price_a",
        h.item_info["price"].to_numpy().astype(np.float32)[a_codes])
    del a_codes
    # Leaf of B: the extra category "" (last code) where there is no B.
    item_b = examples["item_b"]
    has_b = item_b.notna().to_numpy()
    leaf_b = np.full(len(examples), len(h.leaf_names), dtype=np.int32)
    if has_b.any():
      b_codes = pd.Index(enc.item_ids).get_indexer(item_b[has_b].to_numpy())
      leaf_b[has_b] = h.leaf_codes_of_item[b_codes]
    out["leaf_b"] = pd.Categorical.from_codes(leaf_b,
                                              categories=leaf_categories)
    return out

  # NumPy releases the GIL in sorts, gathers and cumulative sums, so two
  # tasks run at once. The short one with the largest temporaries goes
  # first, while few outputs are held; then the longest.
  jobs = [context_and_ids]
  jobs += [lambda names=names: lookup(names) for names in h.tasks]
  row_feats: Dict[str, np.ndarray] = {}
  if num_threads > 1:
    with concurrent.futures.ThreadPoolExecutor(
        max_workers=num_threads) as pool:
      for result in pool.map(lambda job: job(), jobs):
        row_feats.update(result)
  else:
    for job in jobs:
      row_feats.update(job())
  del query_of_hist, histories, h

  columns = {name: row_feats.pop(name) for name in FEATURE_NAMES
             if name in row_feats}
  columns["leaf_b"] = row_feats.pop("leaf_b")
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
  before it validation, the rest train (docs/method.md, "Features").

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
      split, categories=list(SPLITS)), index=examples.index,
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
    z = _log1p_nonnegative(x[~missing])
    numeric[name] = {
        "mean": float(z.mean()) if len(z) else 0.0,
        "std": float(z.std()) if len(z) else 1.0,
        "missing": float(missing.mean()) if len(x) else 0.0,
    }
  vocabulary: Dict[str, List] = {}
  for name in ID_FEATURES:
    if name not in clicks.columns:
      continue
    vocabulary[name] = _vocabulary(clicks[name].value_counts(sort=False),
                                   max_vocabulary, min_count)
  return {"numeric": numeric, "vocabulary": vocabulary,
          "num_examples": int(len(clicks))}


def _log1p_nonnegative(x: np.ndarray) -> np.ndarray:
  """log1p(max(x, 0)), what the numeric statistics describe."""
  return np.log1p(np.maximum(x, 0.0))


def _vocabulary(counts: pd.Series, max_vocabulary: int,
                min_count: int) -> List[str]:
  """The most frequent values (ties by value as text), at most
  `max_vocabulary`, seen at least `min_count` times."""
  counts = counts[counts >= min_count]
  frame = pd.DataFrame({"value": counts.index.astype(str).to_numpy(),
                        "n": counts.to_numpy()})
  frame = frame.sort_values(["n", "value"], ascending=[False, True],
                            kind="stable")
  return frame["value"].head(max_vocabulary).tolist()


def feature_statistics_part(examples: pd.DataFrame,
                            max_vocabulary: Optional[int] = None,
                            partitioned: Sequence[str] = ("user_id",)
                            ) -> Dict[str, object]:
  """What `fit_feature_statistics` needs of a part of the training examples.

  The parts of disjoint example sets merge (`merge_feature_statistics`)
  into `fit_feature_statistics` of their union: numeric moments by Chan's
  parallel formulas (equal up to float rounding), value counts exactly.

  Args:
    examples: training examples of a part (e.g. a user bucket).
    max_vocabulary: with it, the counts of the id features in `partitioned`
      keep only the part's `max_vocabulary` most frequent values (ties by
      value): exact when no value of those features is in two parts, as
      users are not in the Beam preparation's buckets.
    partitioned: see `max_vocabulary`.

  Returns:
    A picklable dict.
  """
  clicks = examples[examples["w_caba"].to_numpy() > 0]
  numeric = {}
  for name in NUMERIC_FEATURES:
    if name not in clicks.columns:
      continue
    x = clicks[name].to_numpy(dtype=np.float64)
    missing = np.isnan(x)
    z = _log1p_nonnegative(x[~missing])
    mean = float(z.mean()) if len(z) else 0.0
    numeric[name] = (len(x), int(missing.sum()), len(z), mean,
                     float(((z - mean) ** 2).sum()) if len(z) else 0.0)
  counts = {}
  for name in ID_FEATURES:
    if name not in clicks.columns:
      continue
    c = clicks[name].value_counts(sort=False)
    c = c[c > 0]
    c.index = c.index.astype(str)
    if max_vocabulary is not None and name in partitioned:
      c = c[c.index.isin(_vocabulary(c, max_vocabulary, 1))]
    counts[name] = c.groupby(level=0).sum()
  return {"numeric": numeric, "counts": counts,
          "num_examples": int(len(clicks))}


def _merge_moments(a, b):
  """Chan's parallel merge of two (count, missing, n, mean, m2) tuples."""
  count, miss, n_a, mean_a, m2_a = a
  count_b, miss_b, n_b, mean_b, m2_b = b
  n = n_a + n_b
  if not n:
    return (count + count_b, miss + miss_b, 0, 0.0, 0.0)
  delta = mean_b - mean_a
  return (count + count_b, miss + miss_b, n, mean_a + delta * n_b / n,
          m2_a + m2_b + delta * delta * n_a * n_b / n)


def combine_statistics_parts(a: Dict[str, object], b: Dict[str, object],
                             max_vocabulary: Optional[int] = None,
                             partitioned: Sequence[str] = ("user_id",)
                             ) -> Dict[str, object]:
  """Two `feature_statistics_part`s of disjoint example sets as one part.

  Merging parts pairwise, as a Beam `CombineFn` does, holds one part's worth
  of counts at a time (∝ distinct values), not every part's. With
  `max_vocabulary`, the counts of the `partitioned` features keep their
  `max_vocabulary` most frequent values, as `feature_statistics_part` does:
  exact when no value of those features is in two parts.
  """
  numeric = dict(a["numeric"])
  for name, moments in b["numeric"].items():
    numeric[name] = (_merge_moments(numeric[name], moments)
                     if name in numeric else moments)
  counts = dict(a["counts"])
  for name, c in b["counts"].items():
    if name in counts:
      c = pd.concat([counts[name], c]).groupby(level=0).sum()
      if max_vocabulary is not None and name in partitioned:
        c = c[c.index.isin(_vocabulary(c, max_vocabulary, 1))]
    counts[name] = c
  return {"numeric": numeric, "counts": counts,
          "num_examples": int(a["num_examples"]) + int(b["num_examples"])}


def merge_feature_statistics(parts: Sequence[Dict[str, object]],
                             max_vocabulary: int = 100_000,
                             min_count: int = 1) -> Dict[str, dict]:
  """`fit_feature_statistics` of the union of `feature_statistics_part`s.

  Args:
    parts: the parts (none gives empty statistics).
    max_vocabulary: as in `fit_feature_statistics`.
    min_count: as in `fit_feature_statistics` (at least 1).

  Returns:
    The statistics, in `fit_feature_statistics`' format.
  """
  whole = functools.reduce(combine_statistics_parts, parts,
                           {"numeric": {}, "counts": {}, "num_examples": 0})
  numeric = {}
  for name in NUMERIC_FEATURES:
    if name not in whole["numeric"]:
      continue
    total, missing, n, mean, m2 = whole["numeric"][name]
    numeric[name] = {
        "mean": float(mean) if n else 0.0,
        "std": float(np.sqrt(m2 / n)) if n else 1.0,
        "missing": float(missing / total) if total else 0.0,
    }
  vocabulary = {name: _vocabulary(whole["counts"][name], max_vocabulary,
                                  min_count)
                for name in ID_FEATURES if name in whole["counts"]}
  return {"numeric": numeric, "vocabulary": vocabulary,
          "num_examples": int(whole["num_examples"])}
