"""CABA / CABB / last-click labels for click examples (paper §3.2, docs/method.md "Labels").

One click example per (session, distinct clicked item A), at the time of the
first click on A in the session. Only purchases in the same session *after*
that click count: later in (timestamp, input position) order, so a purchase at
the same timestamp but later in the input counts and an earlier one does not.

* `y_caba` = 1 iff A is purchased after the click.
* For each distinct item B != A purchased after the click there is one row
  with `y_cabb = 1` and `item_b = B` (in order of B's last purchase); with no
  such B, one row with `y_cabb = 0` and a null `item_b`.
* `w_caba` is 1 on the first row of a click and 0 on the others, so each click
  counts once for CABA; `y_last_click` (every purchase credited to the last
  click before it, on any item) is weighted the same way.
* `w_cabb` is attached later, when a weighting scheme gives α(A, B).

**Attribution window** (gin `label_clicks.attribution_window_s`,
default None = the session rule above). With a window of W seconds, the
purchases that count for a click are those by the *same user* after the
click, in the user's (timestamp, input position) order, at most W seconds
after it, in the click's session or in later ones (a purchase in the same
session more than W seconds later does not count). Examples stay one per
(session, distinct clicked item A) at the first click on A in the session;
`y_caba`, the CABB rows (distinct B != A bought in the window, in order of B's
last purchase in the window) and `w_caba` follow the window, and
`y_last_click` credits each purchase to the user's last click before it (on
any item, in any session) when that click is at most W seconds before it.
`purchase_stats` classifies purchases by the user's clicks in the W seconds
before them (see there) and records the window it used.

Everything is vectorized NumPy on integer codes: no Python loop per event,
click or session.
"""

import concurrent.futures
import math
from typing import Any, Dict, NamedTuple, Optional, Sequence, Tuple

import gin
import numpy as np
import pandas as pd

from cabb_tf.data import encoding
from cabb_tf.data import schema
from cabb_tf.data import sessions as sessions_lib

# Largest packed (code, time) key; above it the code takes a slower path.
_PACKED_KEY_LIMIT = 2**62

LABEL_COLUMNS = ("click_id", "session_id", "user_id", "timestamp", "item_a",
                 "item_b", "y_caba", "y_cabb", "y_last_click", "w_caba",
                 "event_index")


class _Clicks(NamedTuple):
  """First clicks per (session, item), in session order."""
  pos: np.ndarray  # ordered position of the first click on A in its session.
  session: np.ndarray  # session code.
  item: np.ndarray  # item code of A.
  event_index: np.ndarray  # row of the click event in the input log.


class _Purchases(NamedTuple):
  """Distinct (session, item) purchases, sorted by ordered position."""
  last_pos: np.ndarray  # ordered position of the item's last purchase.
  first_pos: np.ndarray  # ordered position of its first purchase.
  session: np.ndarray
  item: np.ndarray


class _Prepared(NamedTuple):
  enc: encoding.EncodedLog
  so: sessions_lib.SessionOrder
  item_uniques: np.ndarray
  clicks: _Clicks
  purchases: _Purchases
  # Every click event, in session order: its ordered position, session and
  # the click example (index into `clicks`) of its (session, item).
  all_click_pos: np.ndarray
  all_click_session: np.ndarray
  example_of_click: np.ndarray
  # Every purchase event, in session order: ordered position and session.
  purchase_pos: np.ndarray
  purchase_session: np.ndarray


def _first_occurrences(key: np.ndarray, bound: int) -> np.ndarray:
  """For each element, the index of the first element with the same key.

  Args:
    key: non-negative int64 keys, all below `bound`.
    bound: an upper bound of the keys.

  Returns:
    int64 indices into `key`.
  """
  size = len(key)
  if not size:
    return np.zeros(0, dtype=np.int64)
  index = np.arange(size, dtype=np.int64)
  if int(bound) * size < 2**62:
    # One vectorized sort of key * size + index groups equal keys, in index
    # order within a group; no hashing.
    sorted_index, new_key = encoding.packed_key_sort(key)
    group_start = np.maximum.accumulate(np.where(new_key, index, 0))
    first = np.empty(size, dtype=np.int64)
    first[sorted_index] = sorted_index[group_start]
    return first
  # Keys too large to pack: dense codes in order of first appearance.
  codes, _ = pd.factorize(key, sort=False)
  is_first = np.ones(size, dtype=bool)
  is_first[1:] = codes[1:] > np.maximum.accumulate(codes)[:-1]
  return np.flatnonzero(is_first)[codes]


def _prepare(events: pd.DataFrame,
             encoded: Optional[encoding.EncodedLog]) -> _Prepared:
  """Extracts first clicks and purchases from the session order of the log."""
  enc = encoding.maybe_encode(events, encoded)
  so = enc.session_order
  item_uniques = enc.item_ids
  num_items = max(len(item_uniques), 1)
  bound = max(so.num_sessions, 1) * num_items
  types = enc.types[so.order]

  click_pos = np.flatnonzero(types == schema.CLICK)
  click_session = so.session[click_pos]
  click_event = so.order[click_pos]
  click_item = enc.item[click_event]
  first = _first_occurrences(click_session * num_items + click_item, bound)
  is_first = first == np.arange(len(first), dtype=np.int64)
  example_rank = np.cumsum(is_first, dtype=np.int64)
  example_rank -= 1
  example_of_click = example_rank[first]
  del first, example_rank
  clicks = _Clicks(pos=click_pos[is_first], session=click_session[is_first],
                   item=click_item[is_first],
                   event_index=click_event[is_first].astype(np.int64))
  del click_event, click_item

  purchase_pos = np.flatnonzero(types == schema.PURCHASE)
  del types
  purchase_session = so.session[purchase_pos]
  purchase_item = enc.item[so.order[purchase_pos]]
  purchase_key = purchase_session * num_items + purchase_item
  first_p = _first_occurrences(purchase_key, bound)
  # Last occurrences: first occurrences of the reversed sequence.
  n_p = len(purchase_key)
  last_p = n_p - 1 - _first_occurrences(purchase_key[::-1], bound)[::-1]
  is_last = last_p == np.arange(n_p, dtype=np.int64)
  # Distinct purchased (session, item): its first and last purchase positions.
  purchases = _Purchases(last_pos=purchase_pos[is_last],
                         first_pos=purchase_pos[first_p[is_last]],
                         session=purchase_session[is_last],
                         item=purchase_item[is_last])
  return _Prepared(enc=enc, so=so, item_uniques=item_uniques, clicks=clicks,
                   purchases=purchases, all_click_pos=click_pos,
                   all_click_session=click_session,
                   example_of_click=example_of_click,
                   purchase_pos=purchase_pos,
                   purchase_session=purchase_session)


@gin.configurable(denylist=["events", "encoded", "columns"])
def label_clicks(events: pd.DataFrame,
                 encoded: Optional[encoding.EncodedLog] = None,
                 attribution_window_s: Optional[float] = None,
                 columns: Optional[Sequence[str]] = None
                 ) -> pd.DataFrame:
  """Builds the labeled click examples of docs/method.md, "Labels".

  Args:
    events: a canonical event log. Without a `session_id` column, sessions are
      derived with `sessions.assign_sessions` (gin-configured gap).
    encoded: `encoding.encode_events(events)`, when the caller has it.
    attribution_window_s: None for the paper's rule (purchases later in the
      click's session), else the window in seconds within which the same
      user's later purchases count, across sessions (module docstring).
    columns: only these of `LABEL_COLUMNS`, in this order (None: all): the
      same as selecting them from the whole frame, without making the
      others.

  Returns:
    A DataFrame with one row per (click example, purchased other item), or
    one row for a click with no other purchase, ordered by session and click
    time, with columns `click_id` (dense id of the click example),
    `session_id`, `user_id`, `timestamp` (of the first click on A),
    `item_a`, `item_b` (null when there is no B), `y_caba`, `y_cabb`,
    `y_last_click` (int8), `w_caba` (float32) and `event_index` (row of
    the click event in `events`).

  Raises:
    ValueError: for a negative or NaN window, or a column not in
      `LABEL_COLUMNS`.
  """
  window_ms = window_milliseconds(attribution_window_s)
  columns = LABEL_COLUMNS if columns is None else tuple(columns)
  unknown = [c for c in columns if c not in LABEL_COLUMNS]
  if unknown:
    raise ValueError(f"columns must be among {LABEL_COLUMNS}, got "
                     f"{unknown}.")
  if "session_id" not in events.columns:
    events = sessions_lib.assign_sessions(events)
  return _label(events, _prepare(events, encoded), window_ms, columns)


def label_clicks_and_stats(
    events: pd.DataFrame,
    catalog: Optional[pd.DataFrame] = None,
    encoded: Optional[encoding.EncodedLog] = None,
    attribution_window_s: Optional[float] = None,
) -> Tuple[pd.DataFrame, Dict[str, Any]]:
  """`label_clicks` and `purchase_stats` of a sessionized log in one pass."""
  window_ms = window_milliseconds(attribution_window_s)
  prep = _prepare(events, encoded)
  return (_label(events, prep, window_ms),
          _purchase_stats(prep, catalog, attribution_window_s, window_ms))


def configured_attribution_window() -> Optional[float]:
  """The `label_clicks.attribution_window_s` bound in gin (None if unbound).

  `pipeline.prepare_examples` labels through `label_clicks_and_stats`, which
  is not configurable itself, so it reads the window `label_clicks` would
  use from here.
  """
  try:
    return gin.query_parameter(
        "cabb_tf.data.labels.label_clicks.attribution_window_s")
  except ValueError:
    return None


def window_milliseconds(attribution_window_s: Optional[float]
                        ) -> Optional[int]:
  """The window in whole milliseconds (event times are integer ms).

  A purchase t_p counts for a click at t_c iff t_p - t_c <= W seconds, which
  for integer milliseconds is t_p - t_c <= floor(1000 W).

  Args:
    attribution_window_s: the window in seconds, or None.

  Returns:
    None for None, else floor(1000 W) (an infinite window becomes 2**62).

  Raises:
    ValueError: for a negative, NaN or non-numeric window.
  """
  if attribution_window_s is None:
    return None
  try:
    seconds = float(attribution_window_s)
  except (TypeError, ValueError):
    raise ValueError("attribution_window_s must be None or a number of "
                     f"seconds, not {attribution_window_s!r}.") from None
  if math.isnan(seconds) or seconds < 0:
    raise ValueError("attribution_window_s must be >= 0 seconds (or None for "
                     f"the session rule), got {attribution_window_s!r}.")
  if math.isinf(seconds):
    return 2**62
  return int(math.floor(seconds * 1000.0))


def _label(events: pd.DataFrame, prep: _Prepared,
           window_ms: Optional[int],
           columns: Sequence[str] = LABEL_COLUMNS) -> pd.DataFrame:
  """The examples of `label_clicks` from a prepared log (`columns` only)."""
  so, clicks = prep.so, prep.clicks
  num_clicks = len(clicks.pos)
  if window_ms is None:
    click_of, bought = _session_pairs(prep)
    y_last = _last_click_labels(prep)
  else:
    view = _user_view(prep)
    click_of, bought = _window_pairs(prep, view, window_ms)
    y_last = _window_last_click_labels(prep, view, window_ms)
  # (click, distinct purchased item) pairs, by click and then by the item's
  # last counted purchase.
  is_same = bought == clicks.item[click_of]
  y_caba = np.zeros(num_clicks, dtype=np.int8)
  y_caba[click_of[is_same]] = 1

  pos_click = click_of[~is_same]
  pos_item = bought[~is_same]
  del click_of, bought, is_same
  n_other = np.bincount(pos_click, minlength=num_clicks)
  rows = np.maximum(n_other, 1)
  starts = np.zeros(num_clicks + 1, dtype=np.int64)
  np.cumsum(rows, out=starts[1:])
  num_rows = int(starts[-1])
  other_offsets = np.zeros(num_clicks + 1, dtype=np.int64)
  np.cumsum(n_other, out=other_offsets[1:])
  rank = np.arange(len(pos_click), dtype=np.int64) - other_offsets[pos_click]

  row_click = np.repeat(np.arange(num_clicks, dtype=np.int64), rows)
  row_item_b = np.full(num_rows, -1, dtype=np.int64)
  row_item_b[starts[pos_click] + rank] = pos_item
  w_caba = np.zeros(num_rows, dtype=np.float32)
  w_caba[starts[:-1]] = 1.0

  # A session has one user: gather per session, then per row.
  if "session_id" in columns or "user_id" in columns:
    row_session = clicks.session[row_click]
  if "user_id" in columns:
    session_user = _take(events["user_id"], so.order[so.starts[:-1]])
  makers = {
      "click_id": lambda: row_click,
      "session_id": lambda: so.session_ids[row_session],
      "user_id": lambda: session_user[row_session],
      "timestamp": lambda: events["timestamp"].to_numpy()[
          clicks.event_index][row_click],
      "item_a": lambda: _take_codes(prep.item_uniques,
                                    clicks.item[row_click]),
      "item_b": lambda: _take_codes(prep.item_uniques, row_item_b,
                                    nullable=True),
      "y_caba": lambda: y_caba[row_click],
      "y_cabb": lambda: (row_item_b >= 0).astype(np.int8),
      "y_last_click": lambda: y_last[row_click],
      "w_caba": lambda: w_caba,
      "event_index": lambda: clicks.event_index[row_click],
  }
  # The columns are independent gathers; NumPy releases the GIL in them.
  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    made = dict(zip(columns, pool.map(lambda name: makers[name](),
                                      columns)))
  # copy=False keeps each column as its own block: no consolidation copy.
  return pd.DataFrame(made, copy=False)


def _expand_ranges(lo: np.ndarray, count: np.ndarray
                   ) -> Tuple[np.ndarray, np.ndarray]:
  """(owner, index) of every index in the ranges [lo[i], lo[i] + count[i])."""
  total = int(count.sum())
  owner = np.repeat(np.arange(len(lo), dtype=np.int64), count)
  offsets = np.zeros(len(lo) + 1, dtype=np.int64)
  np.cumsum(count, out=offsets[1:])
  index = lo[owner] + (np.arange(total, dtype=np.int64) - offsets[owner])
  return owner, index


def _session_pairs(prep: _Prepared) -> Tuple[np.ndarray, np.ndarray]:
  """(click, item) of the distinct purchases after each click in its session."""
  so, clicks, purchases = prep.so, prep.clicks, prep.purchases
  num_clicks = len(clicks.pos)
  # Purchases after each click in its session form a contiguous run of the
  # position-sorted purchase list: [lo, hi).
  # lo: purchases (distinct, by last position) before each click, counted
  # by placing each purchase among the clicks (few purchases, many clicks).
  after_clicks = np.searchsorted(clicks.pos, purchases.last_pos, side="left")
  lo = np.cumsum(np.bincount(after_clicks, minlength=num_clicks + 1)
                 [:num_clicks])
  del after_clicks
  session_end = np.searchsorted(purchases.last_pos, so.starts[1:],
                                side="left")
  hi = session_end[clicks.session]
  del session_end
  click_of, purchase_of = _expand_ranges(lo, hi - lo)
  return click_of, purchases.item[purchase_of]


class _UserView(NamedTuple):
  """Clicks and purchases in the per-user (timestamp, input) order."""
  click_upos: np.ndarray  # user-order position of every click event.
  purchase_upos: np.ndarray  # user-order position of every purchase event.
  purchase_user: np.ndarray
  purchase_ts: np.ndarray
  purchase_item: np.ndarray
  user_position: np.ndarray  # user-order position of each event row.
  # Purchase events at or before each user-order position.
  purchases_through: np.ndarray


def _user_view(prep: _Prepared) -> _UserView:
  enc = prep.enc
  order = enc.user_order
  types = enc.types[order]
  is_purchase = types == schema.PURCHASE
  purchase_upos = np.flatnonzero(is_purchase)
  click_upos = np.flatnonzero(types == schema.CLICK)
  del types
  rows = order[purchase_upos]
  user_position = np.empty(len(order), dtype=np.int64)
  user_position[order] = np.arange(len(order), dtype=np.int64)
  return _UserView(click_upos=click_upos, purchase_upos=purchase_upos,
                   purchase_user=enc.user[rows], purchase_ts=enc.timestamps[rows],
                   purchase_item=enc.item[rows], user_position=user_position,
                   purchases_through=np.cumsum(is_purchase, dtype=np.int64))


def _purchases_by_window_end(view: _UserView, c_user: np.ndarray,
                             c_ts: np.ndarray, window_ms: int) -> np.ndarray:
  """For each click (user, time), the purchases in user order that come
  before its user's purchases later than `window_ms` after it: those of
  earlier users and the user's own at most `window_ms` after the click."""
  p_user, p_ts = view.purchase_user, view.purchase_ts
  if not len(p_ts):
    return np.zeros(len(c_ts), dtype=np.int64)
  first, last = int(p_ts.min()), int(p_ts.max())
  span = last - first + 2
  if (int(p_user.max(initial=0)) + 1) * span < _PACKED_KEY_LIMIT:
    # (user, time) in one int64, times relative to the first in
    # [0, span - 2]; a window's end is clipped into [-1, span - 2], inside
    # its user's range of keys.
    p_key = p_user * np.int64(span) + (p_ts - first)
    end = np.minimum(c_ts, last - window_ms) + window_ms  # No overflow.
    np.clip(end, first - 1, last, out=end)
    end -= first
    return np.searchsorted(p_key, c_user * np.int64(span) + end,
                           side="right")
  # Keys too large to pack: times by rank among the purchase times.
  times = np.unique(p_ts)
  base = np.int64(len(times) + 1)
  p_key = p_user * base + np.searchsorted(times, p_ts, side="right")
  end_rank = np.searchsorted(times, np.minimum(c_ts + window_ms, 2**62),
                             side="right")
  return np.searchsorted(p_key, c_user * base + end_rank, side="right")


def _window_pairs(prep: _Prepared, view: _UserView, window_ms: int
                  ) -> Tuple[np.ndarray, np.ndarray]:
  """(click, item) of the distinct purchases in each click's window.

  The user's purchases after a click and at most `window_ms` later are a
  contiguous run [lo, hi) of the purchases in user order: lo by the click's
  user-order position, hi by the key (user, time of the window's end).
  Repeated items in a run keep their last purchase.
  """
  enc, clicks = prep.enc, prep.clicks
  c_rows = clicks.event_index
  c_ts = enc.timestamps[c_rows]
  c_user = enc.user[c_rows]
  lo = view.purchases_through[view.user_position[c_rows]]
  hi = _purchases_by_window_end(view, c_user, c_ts, window_ms)
  click_of, purchase_of = _expand_ranges(lo, np.maximum(hi - lo, 0))
  bought = view.purchase_item[purchase_of]
  # Distinct items per click: keep each (click, item)'s last purchase. A
  # (click, item) repeats only where the click's user bought the item more
  # than once: only those pairs are looked at.
  num_items = max(len(prep.item_uniques), 1)
  maybe = np.flatnonzero(_repeated(
      view.purchase_user * np.int64(num_items) + view.purchase_item,
      (int(view.purchase_user.max(initial=0)) + 1) * num_items)[purchase_of])
  del purchase_of
  key = click_of[maybe] * np.int64(num_items) + bought[maybe]
  size = len(key)
  last = size - 1 - _first_occurrences(key[::-1],
                                       max(len(clicks.pos), 1) * num_items)[::-1]
  keep = np.ones(len(click_of), dtype=bool)
  keep[maybe] = last == np.arange(size, dtype=np.int64)
  return click_of[keep], bought[keep]


def _repeated(key: np.ndarray, bound: int) -> np.ndarray:
  """Whether each key occurs more than once (non-negative keys < bound)."""
  first = _first_occurrences(key, bound)
  later = first != np.arange(len(key), dtype=np.int64)
  repeated = later.copy()
  repeated[first[later]] = True
  return repeated


def _window_last_click_labels(prep: _Prepared, view: _UserView,
                              window_ms: int) -> np.ndarray:
  """Last-click labels under a window: each purchase credited to the user's
  last click before it when that click is at most `window_ms` before it."""
  enc, so = prep.enc, prep.so
  labels = np.zeros(len(prep.clicks.pos), dtype=np.int8)
  last = np.searchsorted(view.click_upos, view.purchase_upos, side="left") - 1
  has = last >= 0
  click_rows = enc.user_order[view.click_upos[last[has]]]
  ok = ((enc.user[click_rows] == view.purchase_user[has]) &
        (view.purchase_ts[has] - enc.timestamps[click_rows] <= window_ms))
  # The click example of each credited click event (by its event row).
  example_of_row = np.full(len(so.order), -1, dtype=np.int64)
  example_of_row[so.order[prep.all_click_pos]] = prep.example_of_click
  labels[example_of_row[click_rows[ok]]] = 1
  return labels


def _last_click_labels(prep: _Prepared) -> np.ndarray:
  """Last-click attribution: int8 label per click example (docs/method.md, "Labels").

  Each purchase event is credited to the last click event before it in its
  session (on any item); a click example is positive iff some purchase is
  credited to a click on its item in its session.
  """
  labels = np.zeros(len(prep.clicks.pos), dtype=np.int8)
  # The last click before each purchase, in session order.
  last = np.searchsorted(prep.all_click_pos, prep.purchase_pos, side="left") - 1
  has = last >= 0
  last, session = last[has], prep.purchase_session[has]
  last = last[prep.all_click_session[last] == session]
  labels[prep.example_of_click[last]] = 1
  return labels


def purchase_stats(events: pd.DataFrame,
                   catalog: Optional[pd.DataFrame] = None,
                   attribution_window_s: Optional[float] = None
                   ) -> Dict[str, Any]:
  """Purchase-level Click A, Buy B statistics (docs/method.md, "Labels").

  A purchase is counted once per (session, item) at its first purchase event.
  Among purchases in sessions with at least one click: `same_item` if the item
  was clicked earlier in the session, `click_a_buy_b` if it was not but another
  item was, `no_prior_click` otherwise; `cabb_share` is click_a_buy_b over all
  three. With a catalog, `cabb_leaf_match` counts CABB purchases whose leaf
  equals the leaf of an item clicked earlier in the session; a purchase of an
  item with the unknown leaf (no category) never matches, since unknown =
  unknown says nothing: such purchases are counted in
  `cabb_leaf_match_unknown_excluded` and left out of the denominator of
  `cabb_leaf_match_share` (nan when no CABB purchase has a known leaf);
  `other_item_clicked_before` counts purchases (of any kind) with a click on
  some other item earlier in the session. `purchases_without_prior_click` is
  `no_prior_click` plus the purchases in sessions without a click.

  With an attribution window of W seconds the same counts use the user's
  clicks at most W seconds before the purchase (earlier in the user's
  (timestamp, input) order, in any session) instead of the session's earlier
  clicks, over *all* purchases: `same_item`, `click_a_buy_b` and
  `no_prior_click` partition them, `cabb_share` is click_a_buy_b over all
  purchases and `purchases_without_prior_click` equals `no_prior_click`.
  `purchases_in_sessions_with_click` / `_without_click` still describe the
  sessions. `attribution_window_s` records the window (None: the session).

  Args:
    events: a canonical event log (sessions derived when absent).
    catalog: optional canonical catalog.
    attribution_window_s: None for the session rule, else the window in
      seconds.

  Returns:
    A dict of counts and shares.
  """
  window_ms = window_milliseconds(attribution_window_s)
  if "session_id" not in events.columns:
    events = sessions_lib.assign_sessions(events)
  return _purchase_stats(_prepare(events, None), catalog,
                         attribution_window_s, window_ms)


def _purchase_stats(prep: _Prepared,
                    catalog: Optional[pd.DataFrame],
                    attribution_window_s: Optional[float] = None,
                    window_ms: Optional[int] = None) -> Dict[str, Any]:
  """`purchase_stats` of a prepared log."""
  so, clicks, purchases = prep.so, prep.clicks, prep.purchases
  num_items = max(len(prep.item_uniques), 1)
  first_click_in_session = np.full(so.num_sessions, np.iinfo(np.int64).max)
  np.minimum.at(first_click_in_session, clicks.session, clicks.pos)
  has_click = first_click_in_session[purchases.session] < np.iinfo(np.int64).max
  p_pos = purchases.first_pos[has_click]
  p_session = purchases.session[has_click]
  p_item = purchases.item[has_click]
  click_pos_of = pd.Series(clicks.pos, index=clicks.session * num_items +
                           clicks.item)
  own_click = click_pos_of.reindex(p_session * num_items + p_item).to_numpy(
      dtype=np.float64, na_value=np.inf)
  same = own_click < p_pos
  any_before = first_click_in_session[p_session] < p_pos
  cabb = any_before & ~same
  # Another item clicked before: the session's first clicked item if it is
  # not B, else its second distinct clicked item (clicks are in position
  # order, so a session's first clicks are contiguous).
  first = np.searchsorted(clicks.session, p_session, side="left")
  second = first + 1
  has_second = second < len(clicks.pos)
  second = np.minimum(second, max(len(clicks.pos) - 1, 0))
  has_second &= clicks.session[second] == p_session
  other_before = ((any_before & (clicks.item[first] != p_item)) |
                  (has_second & (clicks.pos[second] < p_pos)))
  result = {
      "purchases_in_sessions_with_click": int(len(p_pos)),
      "same_item": int(same.sum()),
      "click_a_buy_b": int(cabb.sum()),
      "no_prior_click": int((~any_before).sum()),
      "other_item_clicked_before": int(other_before.sum()),
      "purchases_in_sessions_without_click": int((~has_click).sum()),
  }
  result["cabb_share"] = (result["click_a_buy_b"] / len(p_pos)
                          if len(p_pos) else float("nan"))
  if catalog is not None:
    leaf_codes = _item_leaf_codes(prep.item_uniques, catalog)
    # First click position per (session, leaf).
    leaf_key = clicks.session * (leaf_codes.max() + 1) + leaf_codes[clicks.item]
    first_leaf_click = pd.Series(clicks.pos, index=leaf_key).groupby(
        level=0).min()
    c_session, c_item, c_pos = p_session[cabb], p_item[cabb], p_pos[cabb]
    q = c_session * (leaf_codes.max() + 1) + leaf_codes[c_item]
    earlier = first_leaf_click.reindex(q).to_numpy(dtype=np.float64,
                                                   na_value=np.inf)
    known = _known_leaf(prep.item_uniques, catalog)[c_item]
    result.update(_leaf_match_counts((earlier < c_pos) & known, known))
  result["purchases_without_prior_click"] = (
      result["no_prior_click"] + result["purchases_in_sessions_without_click"])
  result["attribution_window_s"] = attribution_window_s
  if window_ms is not None:
    result.update(_window_purchase_stats(prep, catalog, window_ms))
  return result


def merge_purchase_stats(parts) -> Dict[str, Any]:
  """`purchase_stats` of a log from those of its parts (disjoint users).

  Counts add up; the shares are recomputed from the sums as
  `_purchase_stats` computes them, so the result is that of the whole log
  (the Beam preparation's user buckets, docs/beam.md).

  Args:
    parts: a non-empty sequence of `purchase_stats` results of one window.

  Returns:
    The merged dict.
  """
  parts = list(parts)
  merged: Dict[str, Any] = {}
  for key, value in parts[0].items():
    if (key != "attribution_window_s" and isinstance(value, (int, np.integer))
        and not isinstance(value, bool)):
      merged[key] = int(sum(part[key] for part in parts))
    else:
      merged[key] = value
  windowed = merged.get("attribution_window_s") is not None
  total = (merged["purchases_in_sessions_with_click"] +
           merged["purchases_in_sessions_without_click"] if windowed else
           merged["purchases_in_sessions_with_click"])
  merged["cabb_share"] = (merged["click_a_buy_b"] / total if total else
                          float("nan"))
  if "cabb_leaf_match" in merged:
    considered = (merged["click_a_buy_b"] -
                  merged["cabb_leaf_match_unknown_excluded"])
    merged["cabb_leaf_match_share"] = (
        merged["cabb_leaf_match"] / considered if considered else
        float("nan"))
  return merged


def _last_in_group_before(group: np.ndarray, position: np.ndarray,
                          q_group: np.ndarray, q_position: np.ndarray,
                          num_positions: int) -> np.ndarray:
  """Index of the last element of the query's group before its position.

  Args:
    group: non-negative int64 group of each element.
    position: distinct positions (< num_positions) of the elements.
    q_group: group of each query.
    q_position: position of each query.
    num_positions: a bound of the positions.

  Returns:
    For each query, the index into `group` of the element with the same group
    and the largest position below the query's, or -1.
  """
  if not len(group):
    return np.full(len(q_group), -1, dtype=np.int64)
  largest = int(max(group.max(), q_group.max() if len(q_group) else 0)) + 1
  if largest * num_positions >= 2**62:
    codes, _ = pd.factorize(np.concatenate([group, q_group]), sort=False)
    group, q_group = codes[:len(group)], codes[len(group):]
  size = np.int64(num_positions)
  packed = group * size + position
  order = np.argsort(packed)
  packed = packed[order]
  found = np.searchsorted(packed, q_group * size + q_position, side="left") - 1
  found_ok = found >= 0
  found = np.maximum(found, 0)
  found_ok &= (packed[found] - packed[found] % size) == q_group * size
  return np.where(found_ok, order[found], -1)


def _window_purchase_stats(prep: _Prepared, catalog: Optional[pd.DataFrame],
                           window_ms: int) -> Dict[str, Any]:
  """The purchase classification of `purchase_stats` under a window."""
  enc, so, purchases = prep.enc, prep.so, prep.purchases
  view = _user_view(prep)
  n = len(so.order)
  num_items = max(len(prep.item_uniques), 1)
  # Every click, in user order.
  c_rows = enc.user_order[view.click_upos]
  c_user, c_item, c_ts = (enc.user[c_rows], enc.item[c_rows],
                          enc.timestamps[c_rows])
  # Each distinct (session, item) purchase at its first purchase event.
  q_rows = so.order[purchases.first_pos]
  q_upos = view.user_position[q_rows]
  q_user, q_item, q_ts = (enc.user[q_rows], enc.item[q_rows],
                          enc.timestamps[q_rows])

  # A last entry (user -1) stands for "no click", so gathers need no guard.
  pad_user, pad_ts = np.append(c_user, -1), np.append(c_ts, 0)

  def within(index: np.ndarray) -> np.ndarray:
    """Whether click `index` (-1: none) is the user's and in the window."""
    return (pad_user[index] == q_user) & (q_ts - pad_ts[index] <= window_ms)

  # The user's last click (any item) before the purchase; a click on the
  # item itself within the window exists iff its last one is in the window.
  last_any = np.searchsorted(view.click_upos, q_upos, side="left") - 1
  any_before = within(last_any)
  same = within(_last_in_group_before(
      c_user * np.int64(num_items) + c_item, view.click_upos,
      q_user * np.int64(num_items) + q_item, q_upos, n))
  # The last click on another item: the last click, or the one before the
  # run of clicks on the purchased item that the last click ends.
  new_run = np.ones(len(c_rows), dtype=bool)
  new_run[1:] = (c_user[1:] != c_user[:-1]) | (c_item[1:] != c_item[:-1])
  run_start = np.maximum.accumulate(
      np.where(new_run, np.arange(len(c_rows), dtype=np.int64), 0))
  pad_item, pad_run_start = np.append(c_item, -1), np.append(run_start, 0)
  other = np.where(pad_item[last_any] == q_item, pad_run_start[last_any] - 1,
                   last_any)
  other_before = within(other)
  cabb = any_before & ~same
  total = len(q_rows)
  result = {
      "same_item": int(same.sum()),
      "click_a_buy_b": int(cabb.sum()),
      "no_prior_click": int((~any_before).sum()),
      "other_item_clicked_before": int(other_before.sum()),
      "purchases_without_prior_click": int((~any_before).sum()),
      "cabb_share": (int(cabb.sum()) / total) if total else float("nan"),
  }
  if catalog is not None:
    leaf_codes = _item_leaf_codes(prep.item_uniques, catalog)
    num_leaves = np.int64(leaf_codes.max() + 1 if len(leaf_codes) else 1)
    leaf_match = within(_last_in_group_before(
        c_user * num_leaves + leaf_codes[c_item], view.click_upos,
        q_user * num_leaves + leaf_codes[q_item], q_upos, n)) & cabb
    known = _known_leaf(prep.item_uniques, catalog)[q_item]
    result.update(_leaf_match_counts(leaf_match[cabb] & known[cabb],
                                     known[cabb]))
  return result


def _leaf_match_counts(match: np.ndarray, known: np.ndarray
                       ) -> Dict[str, Any]:
  """Leaf-match statistics of CABB purchases (one flag per purchase).

  Args:
    match: whether the purchase's leaf was clicked before (and is known).
    known: whether the purchased item's leaf is known.
  """
  considered = int(known.sum())
  return {
      "cabb_leaf_match": int(match.sum()),
      "cabb_leaf_match_unknown_excluded": int((~known).sum()),
      "cabb_leaf_match_share": (int(match.sum()) / considered if considered
                                else float("nan")),
  }


def _known_leaf(item_uniques: np.ndarray,
                catalog: pd.DataFrame) -> np.ndarray:
  """Per item code: whether its leaf is a real category (not unknown)."""
  leaves = encoding.item_table(item_uniques, catalog)["leaf"].to_numpy()
  return leaves != schema.UNKNOWN_LEAF


def _item_leaf_codes(item_uniques: np.ndarray,
                     catalog: pd.DataFrame) -> np.ndarray:
  """Dense leaf code per item code; items missing from the catalog are unknown."""
  leaves = encoding.item_table(item_uniques, catalog)["leaf"].to_numpy()
  codes, _ = pd.factorize(leaves)
  return codes.astype(np.int64)


def _take(column: pd.Series, index: np.ndarray) -> np.ndarray:
  return column.to_numpy()[index]


def _take_codes(uniques, codes: np.ndarray, nullable: bool = False):
  """Maps item codes back to item ids; code -1 becomes null."""
  uniques = np.asarray(uniques)
  if not nullable:
    return uniques[codes]
  valid = codes >= 0
  if np.issubdtype(uniques.dtype, np.integer):
    values = np.zeros(len(codes), dtype=uniques.dtype)
    values[valid] = uniques[codes[valid]]
    return pd.arrays.IntegerArray(values, ~valid)
  values = np.full(len(codes), None, dtype=object)
  values[valid] = uniques[codes[valid]]
  return values
