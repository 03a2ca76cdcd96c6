"""Integer codes of a sessionized event log, computed once and shared.

Labels and features work on dense integer codes of users, items, sessions and
leaves. Factorizing a 10^7-row column costs about a third of a second and
sorting it about half a second, so the preparation pipeline encodes the log
once, with its session order (for labels and the session features) and its
user order (for the user features and windowed labels), and hands the same
`EncodedLog` to every stage. When the sessions were derived by
`sessions.assign_sessions(..., with_codes=True)`, its user codes and orders
are reused instead of being computed again.
"""

from typing import NamedTuple, Optional, Tuple

import numpy as np
import pandas as pd

from cabb_tf.data import schema
from cabb_tf.data import sessions as sessions_lib


class EncodedLog(NamedTuple):
  """Dense codes of an event log, row for row with the log.

  Attributes:
    timestamps: int64 ms per event.
    types: int8 event type codes (`schema.CLICK`, ...).
    user: dense user code per event.
    item: dense item code per event.
    session: dense session code per event (order of first appearance).
      The three are int32 unless there are 2^31 codes or more
      (`sessions.code_dtype`): anything that packs them into keys casts to
      int64 first or multiplies by an int64 scalar.
    item_ids: the item id of each item code.
    session_ids: the session id of each session code.
    time_sorted: whether the rows are already in time order.
    session_order: the events session by session (`sessions.SessionOrder`).
    user_order: positions sorted by (user code, timestamp, input position).
    session_starts_in_user_order: when every session is a run of its user's
      events in `user_order` (derived sessions), a bool mask along
      `user_order` of where each session starts; else None.
  """
  timestamps: np.ndarray
  types: np.ndarray
  user: np.ndarray
  item: np.ndarray
  session: np.ndarray
  item_ids: np.ndarray
  session_ids: np.ndarray
  time_sorted: bool
  session_order: sessions_lib.SessionOrder
  user_order: np.ndarray
  session_starts_in_user_order: Optional[np.ndarray] = None

  @property
  def num_events(self) -> int:
    return len(self.timestamps)


def encode_events(events: pd.DataFrame,
                  codes: Optional[sessions_lib.SessionCodes] = None
                  ) -> EncodedLog:
  """Encodes a sessionized canonical event log.

  Args:
    events: canonical events with a `session_id` column.
    codes: what `sessions.assign_sessions(events, with_codes=True)` returned
      with `events`, if anything; its codes and orders are reused.

  Returns:
    The `EncodedLog`.

  Raises:
    ValueError: if the log breaks the schema or has no sessions.
  """
  schema.validate_events(events)
  if "session_id" not in events.columns:
    raise ValueError("events have no 'session_id' column: call "
                     "sessions.assign_sessions first.")
  timestamps = events["timestamp"].to_numpy()
  item, item_ids = factorize(events["item_id"])
  if codes is None:
    user, user_ids = factorize(events["user_id"])
    user = user.astype(sessions_lib.code_dtype(len(user_ids)), copy=False)
    session, session_ids = factorize(events["session_id"])
    session = session.astype(sessions_lib.code_dtype(len(session_ids)),
                             copy=False)
    session_order = sessions_lib.session_order_from_codes(
        session, timestamps, np.asarray(session_ids))
    user_order = sessions_lib.grouped_time_order(user, timestamps)
    session_starts = None
  else:
    user, session = codes.user, codes.session
    session_order, user_order = codes.session_order, codes.user_order
    session_starts = codes.session_starts_in_user_order
  return EncodedLog(
      timestamps=timestamps,
      types=schema.event_type_codes(events),
      user=user,
      item=item.astype(sessions_lib.code_dtype(len(item_ids)), copy=False),
      session=session,
      item_ids=np.asarray(item_ids),
      session_ids=session_order.session_ids,
      time_sorted=bool(np.all(timestamps[1:] >= timestamps[:-1])),
      session_order=session_order,
      user_order=user_order,
      session_starts_in_user_order=session_starts,
  )


def factorize(column: pd.Series) -> Tuple[np.ndarray, np.ndarray]:
  """`pd.factorize(column, sort=False)`, without hashing for dense codes.

  An integer column that already holds dense codes in order of first
  appearance (it starts at 0 and each new value is one more than the
  largest before it) factorizes to itself and 0, 1, ...: that column is
  returned as is (callers that made the codes themselves save the hashing).

  Args:
    column: the values.

  Returns:
    (codes, uniques) as `pd.factorize` gives them.
  """
  if isinstance(column.dtype, np.dtype) and column.dtype.kind in "iu":
    values = column.to_numpy()
    if _first_appearance_codes(values):
      return values, np.arange(int(values.max()) + 1, dtype=values.dtype)
  return pd.factorize(column, sort=False)


def _first_appearance_codes(values: np.ndarray) -> bool:
  """Whether integer `values` are 0..k-1 in order of first appearance."""
  if not len(values) or values[0] != 0:
    return False
  running = np.maximum.accumulate(values)
  # A value above the running maximum is new and must be exactly one more;
  # an overflow of running + 1 only makes the test fail.
  return bool(np.all(values[1:] <= running[:-1] + 1)
              and values.min() >= 0)


def item_table(item_ids: np.ndarray, catalog: pd.DataFrame) -> pd.DataFrame:
  """Catalog rows aligned with `item_ids`; unknown items filled in.

  Items missing from the catalog get the unknown leaf, an empty brand and a
  NaN price.
  """
  table = catalog.set_index("item_id")[["leaf", "top_category", "brand",
                                        "price"]]
  table = table[~table.index.duplicated(keep="first")]
  aligned = table.reindex(pd.Index(item_ids))
  aligned["leaf"] = aligned["leaf"].fillna(schema.UNKNOWN_LEAF).astype(object)
  aligned["top_category"] = aligned["top_category"].fillna(
      schema.UNKNOWN_LEAF).astype(object)
  aligned["brand"] = aligned["brand"].fillna("").astype(object)
  aligned["price"] = aligned["price"].astype(np.float64)
  return aligned.reset_index(drop=True)


def packed_key_sort(key: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """Groups equal keys with one sort of key·n + row (no hashing, stable).

  Args:
    key: n non-negative int64 keys with max(key)·n < 2^62 (callers check).

  Returns:
    (positions, new_key): the rows in (key, row) order, and a bool mask, in
    that order, of where a new key starts.
  """
  n = len(key)
  packed = key * np.int64(n)
  packed += np.arange(n, dtype=np.int64)
  packed.sort()
  positions = packed % np.int64(n)
  packed -= positions  # key * n: equal exactly for equal keys.
  new_key = np.ones(n, dtype=bool)
  np.not_equal(packed[1:], packed[:-1], out=new_key[1:])
  return positions, new_key


def maybe_encode(events: pd.DataFrame,
                 encoded: Optional[EncodedLog]) -> EncodedLog:
  """Returns `encoded`, or encodes `events` when it is None."""
  return encoded if encoded is not None else encode_events(events)
