"""Sessions: the source's session ids, else a per-user inactivity split.

A log of day stamps (every timestamp a whole day: all share one time of
day) has no time within a day to split on, so its sessions are user-days;
see `assign_sessions` and docs/loading.md.
"""

from typing import NamedTuple, Optional, Tuple

from absl import logging
import gin
import numpy as np
import pandas as pd

from cabb_tf.data import schema

_MS_PER_MINUTE = 60_000
MS_PER_DAY = 86_400_000
USER_DAY_RULE = (
    "user-day: every timestamp is a whole day, so each user's events of one "
    "day form one session (not the session_gap_minutes split), in the file's "
    "order within the day: a purchase counts as after a click when it comes "
    "later in the file (assign_sessions.day_sessions)")


def is_day_resolution(timestamps: np.ndarray) -> bool:
  """Whether every timestamp is a whole day (day stamps such as `'%m%d'`).

  True when all timestamps share one time of day and either two of them
  differ or that time is 00:00 UTC (a date in a fixed time zone is a whole
  day at its offset).

  Args:
    timestamps: int64 ms since the epoch.

  Returns:
    The verdict (False for an empty log).
  """
  timestamps = np.asarray(timestamps, dtype=np.int64)
  if not len(timestamps):
    return False
  first = int(timestamps[0])
  if not np.all((timestamps - first) % MS_PER_DAY == 0):
    return False
  return bool(first % MS_PER_DAY == 0 or (timestamps != first).any())


@gin.configurable(denylist=["events", "with_codes", "day_resolution"])
def assign_sessions(events: pd.DataFrame,
                    session_gap_minutes: float = 30.0,
                    use_source_sessions: bool = True,
                    with_codes: bool = False,
                    day_sessions: bool = True,
                    day_resolution: Optional[bool] = None):
  """Returns `events` with a `session_id` column.

  When `events` already has `session_id` (a source session id) and
  `use_source_sessions` is true it is kept as is. Otherwise each user's
  events, in time order (ties keep input order), are split wherever the gap
  between consecutive events is longer than `session_gap_minutes`; sessions
  are numbered 0, 1, ... in order of (user's first appearance, time).

  A log of day stamps (`is_day_resolution`) has no gaps within a day: with
  `day_sessions` its sessions are user-days (`USER_DAY_RULE`, whatever
  `session_gap_minutes` says), with a logged warning, since every click of a
  day then precedes every later-listed purchase of that day.

  Args:
    events: a canonical event log (see `schema`).
    session_gap_minutes: inactivity gap that starts a new session.
    use_source_sessions: keep a `session_id` the source provides.
    day_sessions: split a log of day stamps into user-days; False applies
      `session_gap_minutes` to it as to any log.
    with_codes: also return the `SessionCodes` the split computed (None when
      the source's sessions are kept), so that `encoding.encode_events` does
      not factorize and sort the log again.
    day_resolution: whether the whole log is one of day stamps, when
      `events` is only part of it (the Beam preparation's user buckets,
      docs/beam.md: the verdict is the whole log's); None decides from
      `events` (`is_day_resolution`).

  Returns:
    A new DataFrame, rows in the input order, with an int64 (derived) or the
    source's `session_id` column; with `with_codes`, the pair
    `(events, SessionCodes or None)`.

  Raises:
    ValueError: for a non-positive gap or a log that breaks the schema.
  """
  schema.validate_events(events)
  if use_source_sessions and "session_id" in events.columns:
    return (events, None) if with_codes else events
  timestamps = events["timestamp"].to_numpy()
  if day_resolution is None:
    day_resolution = is_day_resolution(timestamps)
  gap_ms = split_gap_ms(session_gap_minutes, day_sessions, day_resolution)
  if day_sessions and day_resolution:
    logging.warning(
        "Every timestamp of this log is a whole day and it has no session "
        "column: sessions are %s.", USER_DAY_RULE)
  user_codes, user_ids = pd.factorize(events["user_id"], sort=False)
  user_codes = user_codes.astype(code_dtype(len(user_ids)), copy=False)
  order, users_sorted = _grouped_time_order(user_codes, timestamps)
  n = len(order)
  new_session = np.ones(n, dtype=bool)
  if n > 1:
    np.not_equal(users_sorted[1:], users_sorted[:-1], out=new_session[1:])
  del users_sorted
  if n > 1:
    times_sorted = timestamps[order]
    new_session[1:] |= np.diff(times_sorted) > gap_ms
    del times_sorted
  session_sorted = np.cumsum(new_session, dtype=np.int64)
  session_sorted -= 1
  session_id = np.empty(n, dtype=np.int64)
  session_id[order] = session_sorted
  out = events.copy(deep=False)
  out["session_id"] = session_id
  if not with_codes:
    return out
  codes = SessionCodes(
      user=user_codes, user_ids=np.asarray(user_ids), user_order=order,
      session_starts_in_user_order=new_session,
      **_recode_sessions(order, new_session, session_sorted, session_id))
  return out, codes


def split_gap_ms(session_gap_minutes: float, day_sessions: bool,
                 day_resolution: bool) -> float:
  """The gap between a user's consecutive events (any type, impressions too)
  that `assign_sessions` starts a new session after: a gap longer than it
  splits.

  Args:
    session_gap_minutes: as in `assign_sessions`.
    day_sessions: as in `assign_sessions`.
    day_resolution: whether the whole log is one of day stamps.

  Returns:
    The gap in ms; 0 for user-days (distinct day stamps are distinct days).

  Raises:
    ValueError: for a non-positive gap.
  """
  if not session_gap_minutes > 0:
    raise ValueError(
        f"session_gap_minutes must be positive, got {session_gap_minutes}.")
  if day_sessions and day_resolution:
    return 0
  return session_gap_minutes * _MS_PER_MINUTE


def code_dtype(num_codes: int) -> np.dtype:
  """The dtype of dense codes 0..num_codes-1: int32 when they fit, else
  int64 (half the memory of the usual int64 codes for any real log)."""
  return np.dtype(np.int32 if num_codes < 2**31 else np.int64)


class SessionCodes(NamedTuple):
  """What splitting the log into sessions computed, for `encoding`.

  Attributes:
    user: dense user code per event (order of first appearance;
      `code_dtype`).
    user_ids: the user id of each user code.
    user_order: positions sorted by (user code, timestamp, input position).
    session_starts_in_user_order: a bool mask along `user_order` of each
      session's first event (a derived session is a run of its user's
      events in that order).
    session: dense session code per event (order of first appearance;
      `code_dtype`).
    session_order: the `SessionOrder` of `session`.
  """
  user: np.ndarray
  user_ids: np.ndarray
  user_order: np.ndarray
  session_starts_in_user_order: np.ndarray
  session: np.ndarray
  session_order: "SessionOrder"


def _recode_sessions(order: np.ndarray, new_session: np.ndarray,
                     session_sorted: np.ndarray, session_id: np.ndarray):
  """Session codes by first appearance, and their order, from a user order.

  `order` lists the events by (user, time); derived session d is the run of
  `order` where `session_sorted == d` (`new_session` marks run starts). The
  run of each session is moved to its code's place (an O(n) scatter, no
  second sort), which gives the (code, time, input) order of
  `session_order_from_codes`. `session_id` is the derived session per event.
  """
  n = len(order)
  old_starts = np.flatnonzero(new_session)
  num_sessions = len(old_starts)
  counts = np.diff(np.append(old_starts, n))
  first_position = (np.minimum.reduceat(order, old_starts) if n else
                    np.zeros(0, dtype=np.int64))
  # First positions are distinct: any sort is stable.
  by_appearance = np.argsort(first_position)
  code_of = np.empty(num_sessions, dtype=code_dtype(num_sessions))
  code_of[by_appearance] = np.arange(num_sessions, dtype=np.int64)
  new_counts = counts[by_appearance]
  starts = np.zeros(num_sessions + 1, dtype=np.int64)
  np.cumsum(new_counts, out=starts[1:])
  # New place of ordered event k in derived session d:
  # starts[code_of[d]] + (k - old_starts[d]).
  shift = starts[:-1][code_of] - old_starts
  target = np.arange(n, dtype=np.int64)
  target += shift[session_sorted]
  session_order = np.empty(n, dtype=np.int64)
  session_order[target] = order
  del target
  ordered_session = np.repeat(np.arange(num_sessions, dtype=np.int64),
                              new_counts)
  return {"session": code_of[session_id],
          "session_order": SessionOrder(order=session_order,
                                        session=ordered_session, starts=starts,
                                        session_ids=by_appearance)}


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
  return _grouped_time_order(codes, timestamps)[0]


def _grouped_time_order(codes: np.ndarray, timestamps: np.ndarray
                        ) -> Tuple[np.ndarray, np.ndarray]:
  """`grouped_time_order` and the code of each sorted position."""
  n = len(codes)
  if n == 0:
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
  if _in_grouped_time_order(codes, timestamps):
    # Already sorted (e.g. a log written group by group): no sort.
    return np.arange(n, dtype=np.int64), codes.astype(np.int64)
  return _sort_grouped_time_order(codes, timestamps)


def _in_grouped_time_order(codes: np.ndarray, timestamps: np.ndarray
                           ) -> bool:
  """Whether codes never decrease and times never decrease within a code."""

  def ordered(c, t):
    step = np.diff(c)
    if (step < 0).any():
      return False
    return not ((step == 0) & (t[1:] < t[:-1])).any()

  # Most logs fail on their first rows: skip the full pass for them.
  head = min(len(codes), 1024)
  return (ordered(codes[:head], timestamps[:head])
          and ordered(codes, timestamps))


def _sort_grouped_time_order(codes: np.ndarray, timestamps: np.ndarray
                             ) -> Tuple[np.ndarray, np.ndarray]:
  """`_grouped_time_order` by sorting (any input)."""
  n = len(codes)
  time_order = None
  if not np.all(timestamps[1:] >= timestamps[:-1]):
    time_order = np.argsort(timestamps, kind="stable")
    codes = codes[time_order]
  packed = codes.astype(np.int64) * np.int64(n) + np.arange(n, dtype=np.int64)
  packed.sort()
  order = packed % np.int64(n)
  packed -= order
  packed //= np.int64(n)  # The sorted codes.
  if time_order is not None:
    order = time_order[order]
  return order, packed


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
  the order every label rule of docs/method.md, "Labels" refers to.

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
