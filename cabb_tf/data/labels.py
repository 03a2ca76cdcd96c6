"""CABA / CABB / last-click labels for click examples (paper §3.2, SPEC §2).

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

Everything is vectorized NumPy on integer codes: no Python loop per event,
click or session.
"""

from typing import Any, Dict, NamedTuple, Optional, Tuple

import numpy as np
import pandas as pd

from cabb_tf.data import encoding
from cabb_tf.data import schema
from cabb_tf.data import sessions as sessions_lib

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
    packed = key * np.int64(size)
    packed += index
    packed.sort()
    sorted_index = packed % np.int64(size)
    packed -= sorted_index  # key * size: equal exactly for equal keys.
    new_key = np.ones(size, dtype=bool)
    np.not_equal(packed[1:], packed[:-1], out=new_key[1:])
    del packed
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
  return _Prepared(so=so, item_uniques=item_uniques, clicks=clicks,
                   purchases=purchases, all_click_pos=click_pos,
                   all_click_session=click_session,
                   example_of_click=example_of_click,
                   purchase_pos=purchase_pos,
                   purchase_session=purchase_session)


def label_clicks(events: pd.DataFrame,
                 encoded: Optional[encoding.EncodedLog] = None) -> pd.DataFrame:
  """Builds the labeled click examples of SPEC §2.

  Args:
    events: a canonical event log. Without a `session_id` column, sessions are
      derived with `sessions.assign_sessions` (gin-configured gap).
    encoded: `encoding.encode_events(events)`, when the caller has it.

  Returns:
    A DataFrame with one row per (click example, purchased other item), or
    one row for a click with no other purchase, ordered by session and click
    time, with columns `click_id` (dense id of the click example),
    `session_id`, `user_id`, `timestamp` (of the first click on A),
    `item_a`, `item_b` (null when there is no B), `y_caba`, `y_cabb`,
    `y_last_click` (int8), `w_caba` (float32) and `event_index` (row of
    the click event in `events`).
  """
  if "session_id" not in events.columns:
    events = sessions_lib.assign_sessions(events)
  return _label(events, _prepare(events, encoded))


def label_clicks_and_stats(
    events: pd.DataFrame,
    catalog: Optional[pd.DataFrame] = None,
    encoded: Optional[encoding.EncodedLog] = None,
) -> Tuple[pd.DataFrame, Dict[str, Any]]:
  """`label_clicks` and `purchase_stats` of a sessionized log in one pass."""
  prep = _prepare(events, encoded)
  return _label(events, prep), _purchase_stats(prep, catalog)


def _label(events: pd.DataFrame, prep: _Prepared) -> pd.DataFrame:
  """The examples of `label_clicks` from a prepared log."""
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
  count = hi - lo
  total = int(count.sum())
  click_of = np.repeat(np.arange(num_clicks, dtype=np.int64), count)
  offsets = np.zeros(num_clicks + 1, dtype=np.int64)
  np.cumsum(count, out=offsets[1:])
  purchase_of = lo[click_of] + (np.arange(total, dtype=np.int64) -
                                offsets[click_of])
  bought = purchases.item[purchase_of]
  is_same = bought == clicks.item[click_of]
  y_caba = np.zeros(num_clicks, dtype=np.int8)
  y_caba[click_of[is_same]] = 1

  pos_click = click_of[~is_same]
  pos_item = bought[~is_same]
  n_other = count - y_caba
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

  y_last = _last_click_labels(prep)

  # A session has one user: gather per session, then per row.
  row_session = clicks.session[row_click]
  session_user = _take(events["user_id"], so.order[so.starts[:-1]])
  click_time = events["timestamp"].to_numpy()[clicks.event_index]
  columns = {
      "click_id": row_click,
      "session_id": so.session_ids[row_session],
      "user_id": session_user[row_session],
      "timestamp": click_time[row_click],
      "item_a": _take_codes(prep.item_uniques, clicks.item[row_click]),
      "item_b": _take_codes(prep.item_uniques, row_item_b, nullable=True),
      "y_caba": y_caba[row_click],
      "y_cabb": (row_item_b >= 0).astype(np.int8),
      "y_last_click": y_last[row_click],
      "w_caba": w_caba,
      "event_index": clicks.event_index[row_click],
  }
  # copy=False keeps each column as its own block: no consolidation copy.
  return pd.DataFrame(columns, copy=False)


def _last_click_labels(prep: _Prepared) -> np.ndarray:
  """Last-click attribution: int8 label per click example (SPEC §2).

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
                   catalog: Optional[pd.DataFrame] = None) -> Dict[str, Any]:
  """Purchase-level Click A, Buy B statistics, as in ../shared's stats script.

  A purchase is counted once per (session, item) at its first purchase event.
  Among purchases in sessions with at least one click: `same_item` if the item
  was clicked earlier in the session, `click_a_buy_b` if it was not but another
  item was, `no_prior_click` otherwise; `cabb_share` is click_a_buy_b over all
  three. With a catalog, `cabb_leaf_match` counts CABB purchases whose leaf
  equals the leaf of an item clicked earlier in the session;
  `other_item_clicked_before` counts purchases (of any kind) with a click on
  some other item earlier in the session.

  Args:
    events: a canonical event log (sessions derived when absent).
    catalog: optional canonical catalog.

  Returns:
    A dict of counts and shares.
  """
  if "session_id" not in events.columns:
    events = sessions_lib.assign_sessions(events)
  return _purchase_stats(_prepare(events, None), catalog)


def _purchase_stats(prep: _Prepared,
                    catalog: Optional[pd.DataFrame]) -> Dict[str, Any]:
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
    result["cabb_leaf_match"] = int((earlier < c_pos).sum())
    result["cabb_leaf_match_share"] = (result["cabb_leaf_match"] / len(c_pos)
                                       if len(c_pos) else float("nan"))
  return result


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
