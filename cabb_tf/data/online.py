"""Point-in-time features of clicks as their events arrive (docs/serving.md,
"Online features").

`features.compute_features` computes the features of every click of a whole
log at once (docs/method.md, "Features"). A serving system sees the log one
event at a time, and a click it scores must get the values the model was
trained on. `OnlineFeatures` keeps the counters those values are read from,
per user, (user, item), (user, leaf), item, leaf and session, and updates
them as each event arrives: O(1) dictionary work per event.

It follows the offline rules:

* Strictly before: a click's features count the events with a timestamp
  strictly before the click's. An event is counted once the clock has moved
  past its timestamp, so the events at the click's own timestamp (the click
  itself, and those the stream gives before or after it) are not counted,
  whatever their order in the stream.
* Impressions are not interactions: no count or time-since includes them.
  They do count as a user's events for the inactivity gap that derived
  sessions are split on (`sessions.assign_sessions`).
* Sessions are the events' `session_id` when the log has one (and
  `assign_sessions.use_source_sessions` is true). Otherwise they are derived
  as `assign_sessions` derives them: a user's event more than
  `session_gap_minutes` after the user's previous event (of any type) starts
  a new session; a log of day stamps has user-days (`day_resolution`).
* `session_elapsed_s` runs from the session's first interaction (an
  impression before it does not start the clock).
* `user_id` is the session's user (its first event's), as in the examples
  of `labels.label_clicks`; the user's counts are the clicking user's. The
  two differ only in a source session shared by two users.
* The smoothed CVRs use m and k as `compute_features` is configured
  (`offline_settings`).
* Values have the dtypes of the records (`records.feature_dtype`): ids are
  strings (the catalog's leaf, top category and brand, '' for no brand),
  counts, `hour` and `weekday` int32, times, rates and prices float32
  (`NEVER_S` for a key never touched, NaN for an unknown price).

Events must arrive in time order (ties in any order): an event earlier than
the latest one is refused. `serving_inputs` and `serialized_examples` turn
the features of clicks into the inputs of an export's two signatures.
"""

import ast
import inspect
import math
from typing import (Any, Dict, Iterator, List, Mapping, Optional, Sequence,
                    Tuple)

import numpy as np
import pandas as pd
import tensorflow as tf

from cabb_tf import gin_utils
from cabb_tf.data import encoding
from cabb_tf.data import features as features_lib
from cabb_tf.data import records
from cabb_tf.data import schema
from cabb_tf.data import sessions as sessions_lib

# The offline settings the online features need, by the function they
# configure: the smoothed CVRs' m and k, and the session rule.
_SETTINGS = (
    (features_lib.compute_features, ("cvr_prior_mean", "cvr_prior_strength")),
    (sessions_lib.assign_sessions, ("session_gap_minutes",
                                    "use_source_sessions", "day_sessions")),
)
SETTINGS = tuple(name for _, names in _SETTINGS for name in names)
EVENT_FIELDS = ("user_id", "timestamp", "item_id", "event_type")
_TYPE_CODES = {name: code for code, name in enumerate(schema.EVENT_TYPES)}


def offline_settings(recorded: Optional[Mapping[str, str]] = None
                     ) -> Dict[str, Any]:
  """The values of `SETTINGS` the offline preparation uses.

  Each is its entry in `recorded`, else its gin binding now, else the
  default of the function it configures (`compute_features`,
  `assign_sessions`).

  Args:
    recorded: bindings as a dataset records them (its
      `metadata['gin_bindings']`: "module.function.parameter" to the
      value's repr), so that a model is served with its dataset's settings.

  Returns:
    {setting: value}.
  """
  values = {}
  for fn, names in _SETTINGS:
    for name in names:
      key = f"{fn.__module__}.{fn.__name__}.{name}"
      if recorded is not None and key in recorded:
        values[name] = ast.literal_eval(recorded[key])
      else:
        values[name] = gin_utils.bound(
            key, inspect.signature(fn).parameters[name].default)
  return values


class _Touches:
  """A user's interactions with an item or a leaf."""
  __slots__ = ("clicks", "carts", "purchases", "last_ms")

  def __init__(self):
    self.clicks = self.carts = self.purchases = 0
    self.last_ms = None


class _Popularity:
  """An item's or a leaf's clicks and purchases, over every user."""
  __slots__ = ("clicks", "purchases")

  def __init__(self):
    self.clicks = self.purchases = 0


class _Session:
  """A session's clicks and interactions, its first interaction's time and
  the user of its first event."""
  __slots__ = ("clicks", "events", "first_ms", "user_id")

  def __init__(self, user_id: Any):
    self.clicks = self.events = 0
    self.first_ms = None
    self.user_id = user_id


class _User:
  """A user's counters, the time of the user's latest event (any type) and
  the current derived session."""
  __slots__ = ("events", "purchases", "last_seen_ms", "session", "items",
               "leaves")

  def __init__(self):
    self.events = self.purchases = 0
    self.last_seen_ms = None
    self.session = None
    self.items: Dict[Any, _Touches] = {}
    self.leaves: Dict[str, _Touches] = {}


_UNTOUCHED = _Touches()
_NEVER_S = np.float32(features_lib.NEVER_S)
_UNSEEN = _Popularity()


def _id(value: Any, field: str) -> Any:
  """`value`, or ValueError naming the event field when it is missing."""
  if value is None or (isinstance(value, float) and math.isnan(value)):
    raise ValueError(f"event field {field!r} is missing.")
  return value


class OnlineFeatures:
  """The point-in-time features of clicks, kept up to date event by event.

  `observe(event)` takes the next event of the stream and returns, for a
  click, the features `features.compute_features` gives it (a dict of
  `features.FEATURE_NAMES` in that order); `features_at` gives the features
  a click would have now without recording one; `replay` feeds a whole log
  (`replay_clicks` too, with the features of its clicks).
  See the module docstring for the rules.

  The state grows with the users, (user, item) and (user, leaf) pairs,
  items, leaves and, for source sessions, sessions seen.
  """

  def __init__(self, catalog: pd.DataFrame, *,
               cvr_prior_mean: Optional[float] = None,
               cvr_prior_strength: Optional[float] = None,
               session_gap_minutes: Optional[float] = None,
               use_source_sessions: Optional[bool] = None,
               day_sessions: Optional[bool] = None,
               day_resolution: bool = False):
    """Makes an empty state.

    Args:
      catalog: the canonical catalog the offline features used (items
        missing from it get the unknown leaf, an empty brand and a NaN
        price, as offline).
      cvr_prior_mean: m of the smoothed CVRs; None: `offline_settings()`.
      cvr_prior_strength: k; None: `offline_settings()`.
      session_gap_minutes: as in `sessions.assign_sessions`; None:
        `offline_settings()`.
      use_source_sessions: as in `assign_sessions`; None:
        `offline_settings()`.
      day_sessions: as in `assign_sessions`; None: `offline_settings()`.
      day_resolution: whether the log is one of day stamps
        (`sessions.is_day_resolution` of the whole log, which a stream cannot
        tell): with `day_sessions`, derived sessions are then user-days.

    Raises:
      ValueError: for a non-positive session gap.
    """
    given = {"cvr_prior_mean": cvr_prior_mean,
             "cvr_prior_strength": cvr_prior_strength,
             "session_gap_minutes": session_gap_minutes,
             "use_source_sessions": use_source_sessions,
             "day_sessions": day_sessions}
    settings = offline_settings()
    settings.update({k: v for k, v in given.items() if v is not None})
    settings["day_resolution"] = bool(day_resolution)
    self.settings = settings
    self._m = float(settings["cvr_prior_mean"])
    self._k = float(settings["cvr_prior_strength"])
    self._gap_ms = sessions_lib.split_gap_ms(
        settings["session_gap_minutes"], settings["day_sessions"],
        settings["day_resolution"])
    self._use_source_sessions = bool(settings["use_source_sessions"])

    ids = pd.unique(catalog["item_id"])
    table = encoding.item_table(ids, catalog)
    self._catalog = {
        item: (str(leaf), str(top), str(brand), np.float32(price))
        for item, leaf, top, brand, price in zip(
            ids.tolist(), table["leaf"], table["top_category"],
            table["brand"], table["price"])}
    # What `item_table` gives an item the catalog lacks.
    unknown = encoding.item_table(ids[:1] if len(ids) else np.zeros(1),
                                  catalog.iloc[:0]).iloc[0]
    self._unknown_item = (str(unknown["leaf"]), str(unknown["top_category"]),
                          str(unknown["brand"]), np.float32(unknown["price"]))

    self._users: Dict[Any, _User] = {}
    self._items: Dict[Any, _Popularity] = {}
    self._leaves: Dict[str, _Popularity] = {}
    self._sessions: Dict[Any, _Session] = {}  # source sessions
    # Whether the stream has session ids (decided by its first event).
    self._source_sessions: Optional[bool] = None
    self._time: Optional[int] = None
    # The interactions at `_time`, counted once the clock moves past it.
    self._pending: List[tuple] = []

  @property
  def time(self) -> Optional[int]:
    """The clock: the latest timestamp observed or queried (ms), or None."""
    return self._time

  def observe(self, event: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """Takes the next event of the stream.

    Args:
      event: a mapping with `user_id`, `timestamp` (int ms since the epoch,
        not earlier than the previous event's), `item_id`, `event_type` (a
        name of `schema.EVENT_TYPES`) and, when the log has sessions,
        `session_id`; other keys are ignored (a row of a canonical log, e.g.
        from `events.to_dict("records")`, will do).

    Returns:
      For a click, its features (counting only the events before its
      timestamp); None for any other event.

    Raises:
      ValueError: naming the field of a missing or bad value, or a
        timestamp earlier than the clock.
    """
    if not isinstance(event, Mapping):
      raise ValueError(f"an event is a mapping of {EVENT_FIELDS}, not "
                       f"{type(event).__name__}.")
    missing = [f for f in EVENT_FIELDS if f not in event]
    if missing:
      raise ValueError(f"event lacks the field(s) {missing}; an event has "
                       f"{EVENT_FIELDS} (and session_id when the log has "
                       "sessions).")
    name = event["event_type"]
    code = _TYPE_CODES.get(name) if isinstance(name, str) else None
    if code is None:
      raise ValueError(f"event field 'event_type' must be one of "
                       f"{schema.EVENT_TYPES}, got {name!r}.")
    return self._observe(_id(event["user_id"], "user_id"),
                         _id(event["item_id"], "item_id"),
                         self._checked_time(event["timestamp"]), code,
                         self._session_id(event.get("session_id")))

  def features_at(self, user_id: Any, item_id: Any, timestamp: int,
                  session_id: Any = None) -> Dict[str, Any]:
    """The features a click would have, without recording it.

    The clock moves to `timestamp`: later events may not be earlier.

    Args:
      user_id: the user.
      item_id: the clicked item.
      timestamp: the click's time, ms since the epoch.
      session_id: its session, when the log has sessions.

    Returns:
      The features, as `observe` returns them for a click.

    Raises:
      ValueError: as `observe`.
    """
    user_id, item_id = _id(user_id, "user_id"), _id(item_id, "item_id")
    t = self._checked_time(timestamp)
    session_id = self._session_id(session_id)
    self._advance(t)
    user = self._users.get(user_id) or _User()
    session = self._session(user_id, user, t, session_id, record=False)
    return self._click_features(user_id, item_id, t, user, session)

  def replay(self, events: pd.DataFrame) -> int:
    """Observes a canonical log in time order (ties in input order), e.g.
    the history before live traffic; no click's features are computed.

    Args:
      events: a canonical event log (`schema`), in any order; its events
        must not be earlier than the clock.

    Returns:
      The number of events observed.

    Raises:
      ValueError: if `events` breaks the schema, or as `observe`.
    """
    schema.validate_events(events)
    for _ in self._replay(events, with_features=False):
      pass
    return len(events)

  def replay_clicks(self, events: pd.DataFrame
                    ) -> Iterator[Tuple[int, Dict[str, Any]]]:
    """`replay`, yielding the features of each click as it is observed.

    Args:
      events: as in `replay`.

    Yields:
      (row position in `events`, features) of each click, in time order.

    Raises:
      ValueError: as `replay`.
    """
    schema.validate_events(events)
    return self._replay(events, with_features=True)

  def _replay(self, events: pd.DataFrame, with_features: bool
              ) -> Iterator[Tuple[int, Dict[str, Any]]]:
    """Observes a valid log; yields (row position, features) of clicks."""
    order = np.argsort(events["timestamp"].to_numpy(), kind="stable")
    columns = [events[name].to_numpy()[order].tolist()
               for name in ("user_id", "item_id", "timestamp")]
    columns.append(schema.event_type_codes(events)[order].tolist())
    columns.append(events["session_id"].to_numpy()[order].tolist()
                   if "session_id" in events.columns else [None] * len(order))
    for position, user, item, t, code, session_id in zip(order.tolist(),
                                                         *columns):
      out = self._observe(user, item, self._checked_time(t), code,
                          self._session_id(session_id), with_features)
      if out is not None:
        yield position, out

  def _checked_time(self, timestamp: Any) -> int:
    """`timestamp` as an int, or ValueError naming the field."""
    if isinstance(timestamp, bool) or not isinstance(timestamp,
                                                     (int, np.integer)):
      raise ValueError("event field 'timestamp' must be an integer number of "
                       f"ms since the epoch, got {timestamp!r}.")
    t = int(timestamp)
    if self._time is not None and t < self._time:
      raise ValueError(
          f"event field 'timestamp' is {t}, before the clock ({self._time}): "
          "events must arrive in time order.")
    return t

  def _session_id(self, session_id: Any) -> Any:
    """The session key of an event's `session_id` (None: derived)."""
    if not self._use_source_sessions:
      return None
    has = not (session_id is None or (isinstance(session_id, float) and
                                      math.isnan(session_id)))
    if self._source_sessions is None:
      self._source_sessions = has
    elif has != self._source_sessions:
      raise ValueError(
          "event field 'session_id' is "
          + ("missing, but earlier events had one" if self._source_sessions
             else "given, but earlier events had none (sessions are derived)")
          + ": a log has session ids on every event or on none.")
    return session_id if has else None

  def _advance(self, t: int) -> None:
    """Moves the clock to `t`, counting the interactions before it."""
    if self._time is not None and t == self._time:
      return
    for entry in self._pending:
      (code, t_event, user, item_touches, leaf_touches, item, leaf,
       session) = entry
      user.events += 1
      session.events += 1
      item_touches.last_ms = leaf_touches.last_ms = t_event
      if code == schema.CLICK:
        item_touches.clicks += 1
        leaf_touches.clicks += 1
        item.clicks += 1
        leaf.clicks += 1
        session.clicks += 1
      elif code == schema.ADD_TO_CART:
        item_touches.carts += 1
        leaf_touches.carts += 1
      elif code == schema.PURCHASE:
        user.purchases += 1
        item_touches.purchases += 1
        leaf_touches.purchases += 1
        item.purchases += 1
        leaf.purchases += 1
    self._pending.clear()
    self._time = t

  def _session(self, user_id: Any, user: _User, t: int, session_id: Any,
               record: bool) -> _Session:
    """The session of a user's event at `t` (recorded, or as it would be)."""
    if session_id is not None:
      session = self._sessions.get(session_id)
      if session is None:
        session = _Session(user_id)
        if record:
          self._sessions[session_id] = session
      return session
    new = user.session is None or t - user.last_seen_ms > self._gap_ms
    if not record:
      return _Session(user_id) if new else user.session
    user.last_seen_ms = t
    if new:
      user.session = _Session(user_id)
    return user.session

  def _observe(self, user_id: Any, item_id: Any, t: int, code: int,
               session_id: Any, with_features: bool = True
               ) -> Optional[Dict[str, Any]]:
    """Records one checked event; a click's features (`with_features`),
    else None."""
    self._advance(t)
    user = self._users.get(user_id)
    if user is None:
      user = self._users[user_id] = _User()
    session = self._session(user_id, user, t, session_id, record=True)
    if code == schema.IMPRESSION:
      return None
    if session.first_ms is None:
      session.first_ms = t
    out = (self._click_features(user_id, item_id, t, user, session)
           if code == schema.CLICK and with_features else None)
    leaf = self._catalog.get(item_id, self._unknown_item)[0]
    self._pending.append((
        code, t, user, _get(user.items, item_id, _Touches),
        _get(user.leaves, leaf, _Touches),
        _get(self._items, item_id, _Popularity),
        _get(self._leaves, leaf, _Popularity), session))
    return out

  def _click_features(self, user_id: Any, item_id: Any, t: int, user: _User,
                      session: _Session) -> Dict[str, Any]:
    """The features of a click from the counters (events before `t`)."""
    leaf, top, brand, price = self._catalog.get(item_id, self._unknown_item)
    item_touches = user.items.get(item_id, _UNTOUCHED)
    leaf_touches = user.leaves.get(leaf, _UNTOUCHED)
    item = self._items.get(item_id, _UNSEEN)
    leaf_popularity = self._leaves.get(leaf, _UNSEEN)
    first_ms = t if session.first_ms is None else session.first_ms
    values = {
        # The session's user, as `labels.label_clicks` gives each example
        # (it differs from the clicking user only in a source session
        # shared by two users; the user's own counts below are the clicking
        # user's, as offline).
        "user_id": str(session.user_id), "item_a": str(item_id),
        "leaf_a": leaf,
        "top_category_a": top, "brand_a": brand,
        "hour": features_lib.utc_hour(t),
        "weekday": features_lib.utc_weekday(t),
        "session_position": np.int32(session.clicks),
        "session_events_before": np.int32(session.events),
        "session_elapsed_s": features_lib.seconds_between(t, first_ms),
        "u_events": np.int32(user.events),
        "u_purchases": np.int32(user.purchases),
        "price_a": price,
    }
    for prefix, touches in (("u_item", item_touches),
                            ("u_leaf", leaf_touches)):
      values[f"{prefix}_clicks"] = np.int32(touches.clicks)
      values[f"{prefix}_carts"] = np.int32(touches.carts)
      values[f"{prefix}_purchases"] = np.int32(touches.purchases)
      values[f"{prefix}_since_s"] = (
          _NEVER_S if touches.last_ms is None else
          features_lib.seconds_between(t, touches.last_ms))
    for prefix, counts in (("item", item), ("leaf", leaf_popularity)):
      values[f"{prefix}_clicks"] = np.int32(counts.clicks)
      values[f"{prefix}_purchases"] = np.int32(counts.purchases)
      values[f"{prefix}_cvr"] = features_lib.smoothed_cvr(
          counts.clicks, counts.purchases, self._m, self._k)
    return {name: values[name] for name in features_lib.FEATURE_NAMES}


def _get(table: dict, key: Any, make) -> Any:
  """`table[key]`, made first when absent."""
  value = table.get(key)
  if value is None:
    value = table[key] = make()
  return value


def serving_inputs(rows: Sequence[Mapping[str, Any]],
                   signature: Any) -> Dict[str, tf.Tensor]:
  """Clicks' features as the inputs of an export's `serving_default`.

  Args:
    rows: features of clicks (`OnlineFeatures.observe`'s dicts).
    signature: the signature (`loaded.signatures["serving_default"]`), or
      the dtype of each feature it takes by name (e.g. the `dtype`s of the
      export's `assets/feature_spec.json`).

  Returns:
    {feature: tensor of shape [len(rows)]}, for the features the signature
    takes: `signature(**serving_inputs(rows, signature))`.

  Raises:
    ValueError: naming a feature a row lacks.
  """
  if hasattr(signature, "structured_input_signature"):
    dtypes = {name: spec.dtype for name, spec in
              signature.structured_input_signature[1].items()}
  else:
    dtypes = {name: tf.as_dtype(dtype) for name, dtype in signature.items()}
  out = {}
  for name, dtype in dtypes.items():
    try:
      values = [row[name] for row in rows]
    except KeyError:
      raise ValueError(f"a row lacks the feature {name!r} the model "
                       "takes.") from None
    out[name] = tf.constant(values, dtype=dtype, shape=[len(values)])
  return out


def serialized_examples(rows: Sequence[Mapping[str, Any]]) -> List[bytes]:
  """Clicks' features as serialized `tf.train.Example`s, the records' way
  (`from_examples` takes them; docs/serving.md).

  Args:
    rows: features of clicks (`OnlineFeatures.observe`'s dicts).

  Returns:
    One serialized example per row with every feature of
    `features.FEATURE_NAMES`: strings as `bytes_list`, floats as
    `float_list`, integers as `int64_list`.

  Raises:
    ValueError: naming a feature a row lacks.
  """
  kinds = {name: records.feature_dtype(name)
           for name in features_lib.FEATURE_NAMES}
  out = []
  for row in rows:
    feature = {}
    for name, dtype in kinds.items():
      if name not in row:
        raise ValueError(f"a row lacks the feature {name!r}.")
      value = row[name]
      if dtype == tf.string:
        feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[str(value).encode()]))
      elif dtype.is_floating:
        feature[name] = tf.train.Feature(float_list=tf.train.FloatList(
            value=[value]))
      else:
        feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(
            value=[int(value)]))
    out.append(tf.train.Example(features=tf.train.Features(
        feature=feature)).SerializeToString())
  return out
