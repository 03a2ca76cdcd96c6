"""Sessions: the source's session ids, else a per-user inactivity split (SPEC §1)."""

from typing import NamedTuple

import gin
import numpy as np
import pandas as pd

from cabb_tf.data import schema

_MS_PER_MINUTE = 60_000


@gin.configurable
def assign_sessions(events: pd.DataFrame,
                    session_gap_minutes: float = 30.0,
                    use_source_sessions: bool = True) -> pd.DataFrame:
  """Returns `events` with a `session_id` column.

  When `events` already has `session_id` (a source session id) and
  `use_source_sessions` is true it is kept as is. Otherwise each user's
  events, in time order (ties keep input order), are split wherever the gap
  between consecutive events is longer than `session_gap_minutes`; sessions
  are numbered 0, 1, ... in order of (user's first appearance, time).

  Args:
    events: a canonical event log (see `schema`).
    session_gap_minutes: inactivity gap that starts a new session.
    use_source_sessions: keep a `session_id` the source provides.

  Returns:
    A new DataFrame, rows in the input order, with an int64 (derived) or the
    source's `session_id` column.

  Raises:
    ValueError: for a non-positive gap or a log that breaks the schema.
  """
  schema.validate_events(events)
  if use_source_sessions and "session_id" in events.columns:
    return events
  if not session_gap_minutes > 0:
    raise ValueError(
        f"session_gap_minutes must be positive, got {session_gap_minutes}.")
  user_codes, _ = pd.factorize(events["user_id"], sort=False)
  timestamps = events["timestamp"].to_numpy()
  order = grouped_time_order(user_codes, timestamps)
  users_sorted = user_codes[order]
  times_sorted = timestamps[order]
  new_session = np.ones(len(order), dtype=bool)
  gap_ms = session_gap_minutes * _MS_PER_MINUTE
  new_session[1:] = ((users_sorted[1:] != users_sorted[:-1]) |
                     (np.diff(times_sorted) > gap_ms))
  session_sorted = np.cumsum(new_session, dtype=np.int64) - 1
  session_id = np.empty(len(order), dtype=np.int64)
  session_id[order] = session_sorted
  out = events.copy(deep=False)
  out["session_id"] = session_id
  return out


def grouped_time_order(codes: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
  """Positions sorted by (code, timestamp, input position).

  Packs `code * n + time rank` into one int64 and sorts the values (NumPy's
  vectorized sort is several times faster than an argsort); the time rank is
  the input position when the log is already in time order, as loaders and the
  simulator return it.

  Args:
    codes: non-negative integer group codes, one per event.
    timestamps: event times.

  Returns:
    An int64 permutation of range(n).
  """
  n = len(codes)
  if n == 0:
    return np.zeros(0, dtype=np.int64)
  time_order = None
  if not np.all(timestamps[1:] >= timestamps[:-1]):
    time_order = np.argsort(timestamps, kind="stable")
    codes = codes[time_order]
  packed = codes.astype(np.int64) * np.int64(n) + np.arange(n, dtype=np.int64)
  packed.sort()
  order = packed % np.int64(n)
  if time_order is not None:
    order = time_order[order]
  return order


class SessionOrder(NamedTuple):
  """Events arranged session by session, in time order within a session.

  Attributes:
    order: positions into the event log; `order[k]` is the k-th event in
      (session, timestamp, input position) order.
    session: dense session code (0..num_sessions-1) of each ordered event.
    starts: `starts[s]` is the ordered position of session s's first event;
      `starts[num_sessions] == len(order)`.
    session_ids: the session id of each session code.
  """
  order: np.ndarray
  session: np.ndarray
  starts: np.ndarray
  session_ids: np.ndarray

  @property
  def num_sessions(self) -> int:
    return len(self.starts) - 1


def session_order(events: pd.DataFrame) -> SessionOrder:
  """Arranges the events of a sessionized log session by session.

  Sessions are coded in order of their first event (in input order). Within a
  session, events are ordered by timestamp with ties in input order, which is
  the order every label rule of SPEC §2 refers to.

  Args:
    events: a canonical log with a `session_id` column.

  Returns:
    A `SessionOrder`.

  Raises:
    ValueError: if there is no `session_id` column.
  """
  if "session_id" not in events.columns:
    raise ValueError("events have no 'session_id' column: call "
                     "sessions.assign_sessions first.")
  codes, uniques = pd.factorize(events["session_id"], sort=False)
  return session_order_from_codes(codes, events["timestamp"].to_numpy(),
                                  np.asarray(uniques))


def session_order_from_codes(codes: np.ndarray, timestamps: np.ndarray,
                             session_ids: np.ndarray) -> SessionOrder:
  """`session_order` for dense session codes (0..len(session_ids)-1)."""
  order = grouped_time_order(codes, timestamps)
  session = codes[order].astype(np.int64, copy=False)
  counts = np.bincount(session, minlength=len(session_ids))
  starts = np.zeros(len(session_ids) + 1, dtype=np.int64)
  np.cumsum(counts, out=starts[1:])
  return SessionOrder(order=order, session=session, starts=starts,
                      session_ids=session_ids)
