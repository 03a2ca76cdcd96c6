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
  item_codes: np.ndarray  # item code of each ordered event.
  item_uniques: np.ndarray
  types: np.ndarray  # event type code of each ordered event.
  clicks: _Clicks
  purchases: _Purchases


def _prepare(events: pd.DataFrame,
             encoded: Optional[encoding.EncodedLog]) -> _Prepared:
  """Orders the log by session and extracts first clicks and purchases."""
  enc = encoding.maybe_encode(events, encoded)
  so = sessions_lib.session_order_from_codes(enc.session, enc.timestamps,
                                             enc.session_ids)
  item_uniques = enc.item_ids
  item_codes = enc.item[so.order]
  types = enc.types[so.order]
  num_items = max(len(item_uniques), 1)
  positions = np.arange(len(so.order), dtype=np.int64)

  is_click = types == schema.CLICK
  click_pos = positions[is_click]
  click_key = so.session[is_click] * num_items + item_codes[is_click]
  first = ~pd.Series(click_key).duplicated(keep="first").to_numpy()
  click_pos = click_pos[first]
  clicks = _Clicks(pos=click_pos, session=so.session[click_pos],
                   item=item_codes[click_pos],
                   event_index=so.order[click_pos].astype(np.int64))

  is_purchase = types == schema.PURCHASE
  purchase_pos = positions[is_purchase]
  purchase_key = pd.Series(so.session[is_purchase] * num_items +
                           item_codes[is_purchase])
  last = ~purchase_key.duplicated(keep="last").to_numpy()
  first_p = ~purchase_key.duplicated(keep="first").to_numpy()
  # Distinct purchased (session, item): its first and last purchase positions.
  last_pos = purchase_pos[last]
  first_pos_of_key = pd.Series(purchase_pos[first_p],
                               index=purchase_key[first_p].to_numpy())
  first_pos = first_pos_of_key.reindex(purchase_key[last].to_numpy()).to_numpy()
  purchases = _Purchases(last_pos=last_pos, first_pos=first_pos,
                         session=so.session[last_pos],
                         item=item_codes[last_pos])
  return _Prepared(so=so, item_codes=item_codes, item_uniques=item_uniques,
                   types=types, clicks=clicks, purchases=purchases)


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
  lo = np.searchsorted(purchases.last_pos, clicks.pos, side="right")
  hi = np.searchsorted(purchases.last_pos, so.starts[clicks.session + 1],
                       side="left")
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

  event_index = clicks.event_index
  out = pd.DataFrame({
      "click_id": row_click,
      "session_id": so.session_ids[clicks.session[row_click]],
      "user_id": _take(events["user_id"], event_index[row_click]),
      "timestamp": events["timestamp"].to_numpy()[event_index[row_click]],
      "item_a": _take_codes(prep.item_uniques, clicks.item[row_click]),
      "item_b": _take_codes(prep.item_uniques, row_item_b, nullable=True),
      "y_caba": y_caba[row_click],
      "y_cabb": (row_item_b >= 0).astype(np.int8),
      "y_last_click": y_last[row_click],
      "w_caba": w_caba,
      "event_index": event_index[row_click],
  })
  return out


def _last_click_labels(prep: _Prepared) -> np.ndarray:
  """Last-click attribution: int8 label per click example (SPEC §2).

  Each purchase event is credited to the last click event before it in its
  session (on any item); a click example is positive iff some purchase is
  credited to a click on its item in its session.
  """
  so, clicks = prep.so, prep.clicks
  n = len(so.order)
  positions = np.arange(n, dtype=np.int64)
  click_mark = np.where(prep.types == schema.CLICK, positions, -1)
  last_click = np.maximum.accumulate(click_mark) if n else click_mark
  purchase_pos = positions[prep.types == schema.PURCHASE]
  credited = last_click[purchase_pos]
  valid = credited >= so.starts[so.session[purchase_pos]]
  credited = credited[valid]
  num_items = max(len(prep.item_uniques), 1)
  credited_key = so.session[credited] * num_items + prep.item_codes[credited]
  click_key = clicks.session * num_items + clicks.item
  return np.isin(click_key, credited_key).astype(np.int8)


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
