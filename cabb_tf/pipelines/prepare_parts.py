"""The work units of the Beam preparation, on batches (no Beam here).

`cabb_tf.pipelines.prepare_beam` wires these functions into one pipeline
(docs/beam.md). Each works on one shard, one user bucket or one time block,
reads and writes Parquet fragments in a temporary directory and returns
small summaries, so that a shuffle carries file names and counts, never
one object per event. Every rule of docs/method.md is the in-memory code's:
the shards are parsed by `loaders.read_csv_shard` (CSV) and the catalog is
built by `loaders.catalog_from_first_values`; a bucket is labelled and
featurized by `pipeline.label_and_featurize`; the popularity family is
`features.as_of_popularity` over a time block plus the counts of the blocks
before it; the statistics merge `features.feature_statistics_part`s.

Input order. The in-memory loaders sort the log by time, ties in file order
(file after file, as `load_csv` reads a glob). Here every event carries its
shard number and its row in the shard, and each bucket is sorted by
(timestamp, shard, row): the relative order of any two events of one user
is the in-memory one, which is all the rules use (docs/method.md, "Labels":
equal timestamps keep input order).
"""

import dataclasses
import os
import pickle
import uuid
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from apache_beam.io.filesystems import FileSystems
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cabb_tf.data import encoding
from cabb_tf.data import features as features_lib
from cabb_tf.data import labels as labels_lib
from cabb_tf.data import loaders
from cabb_tf.data import pipeline
from cabb_tf.data import report as report_lib
from cabb_tf.data import schema
from cabb_tf.data import sessions as sessions_lib

INPUT_FORMATS = ("parquet", "csv")
ID_COLUMNS = ("user_id", "session_id", "item_id")
# Bookkeeping columns of the fragments: the input position, and the 128-bit
# hash of every source field of a CSV row (the duplicate check's key).
SHARD, ROW, HASH1, HASH2 = "_shard", "_row", "_hash1", "_hash2"
_SECOND_HASH_KEY = "cabb-dup-key-002"  # 16 bytes, pandas' hash_array key.
_CATALOG_VALUES = ("category", "category_fallback", "brand", "price")


@dataclasses.dataclass(frozen=True)
class Options:
  """What every work unit needs to know (picklable, no gin on workers).

  Attributes:
    input_format: 'parquet' (canonical columns of `schema`) or 'csv'.
    csv_options: `loaders.load_csv` keyword arguments (CSV input).
    catalog_path: the canonical catalog Parquet (Parquet input).
    num_buckets: user buckets (per-user work, memory ∝ a bucket).
    num_blocks: time blocks (global as-of counts, memory ∝ a block).
    temp_dir: where the fragments go.
    output_dir: where the TFRecords and side files go.
    time_range: `prepare_examples`' [start, end) ms, or None.
    validation_fraction: as in `prepare_examples`.
    test_fraction: as in `prepare_examples`.
    attribution_window_s: as in `labels.label_clicks`.
    session_options: `sessions.assign_sessions` keyword arguments.
    feature_options: `features.compute_features` keyword arguments.
    statistics_options: `features.fit_feature_statistics` keyword arguments.
    event_weights: the similarity's w_e (None: `category_cf`'s defaults).
    batch_rows: rows per batch when reading a Parquet shard.
    dataset_name: the TFRecords' name prefix (a TFDS builder's name when a
      builder prepares with Beam).
    extra_columns: a builder's own fields
      (`records.ExtraColumns`), or None.
  """
  input_format: str
  csv_options: Optional[Dict[str, Any]]
  catalog_path: Optional[str]
  num_buckets: int
  num_blocks: int
  temp_dir: str
  output_dir: str
  time_range: Optional[Tuple[int, int]] = None
  validation_fraction: float = 0.1
  test_fraction: float = 0.2
  attribution_window_s: Optional[float] = None
  session_options: Optional[Dict[str, Any]] = None
  feature_options: Optional[Dict[str, Any]] = None
  statistics_options: Optional[Dict[str, Any]] = None
  event_weights: Optional[Dict[str, float]] = None
  batch_rows: int = 2_000_000
  dataset_name: str = "click_examples"
  extra_columns: Optional[Any] = None

  @property
  def drop_duplicates(self) -> bool:
    return bool((self.csv_options or {}).get("drop_duplicates", True))


# ----------------------------------------------------------------------------
# Files.


def write_frame(frame: pd.DataFrame, path: str) -> str:
  """Writes `frame` as Parquet to `path` (any Beam filesystem)."""
  table = pa.Table.from_pandas(frame, preserve_index=False)
  with FileSystems.create(path) as f:
    pq.write_table(table, f)
  return path


def read_frame(path: str, columns: Optional[Sequence[str]] = None
               ) -> pd.DataFrame:
  """Reads a Parquet fragment written by `write_frame`."""
  with FileSystems.open(path) as f:
    return pq.read_table(f, columns=columns).to_pandas()


def read_frames(paths: Sequence[str]) -> pd.DataFrame:
  """Reads and concatenates fragments (None when there are none)."""
  frames = [read_frame(p) for p in sorted(paths)]
  if not frames:
    return None
  return pd.concat(frames, ignore_index=True)


def _unique_name(directory: str, stem: str) -> str:
  """A fragment name no retried or parallel attempt shares."""
  return os.path.join(directory, f"{stem}-{uuid.uuid4().hex[:12]}.parquet")


# ----------------------------------------------------------------------------
# Hashes and buckets.


def bucket_of(ids: pd.Series, num_buckets: int) -> np.ndarray:
  """The user bucket of each id: a hash of the id modulo `num_buckets`.

  Integer ids, and text ids that read as integers, hash by integer value,
  so a user lands in the same bucket whether a shard typed its ids as
  integers or as text (`loaders.load_csv` turns ids into text when any
  shard has a non-integer one).
  """
  values = ids.to_numpy()
  if values.dtype.kind in "iu":
    h = pd.util.hash_array(values.astype(np.int64), categorize=False)
  else:
    text = pd.Series(values, dtype=object).astype(str)
    h = pd.util.hash_array(text.to_numpy(dtype=object))
    is_int = text.str.fullmatch(r"[+-]?[0-9]{1,18}").to_numpy(dtype=bool)
    if is_int.any():
      h[is_int] = pd.util.hash_array(
          text[is_int].astype(np.int64).to_numpy(), categorize=False)
  return (h % np.uint64(num_buckets)).astype(np.int64)


def _row_hashes(table: pa.Table) -> Tuple[np.ndarray, np.ndarray]:
  """Two independent 64-bit hashes of every field of each row."""
  h1 = np.zeros(table.num_rows, dtype=np.uint64)
  h2 = np.zeros(table.num_rows, dtype=np.uint64)
  with np.errstate(over="ignore"):
    for column in table.columns:
      values = column.to_numpy(zero_copy_only=False)
      if values.dtype.kind not in "iufb":
        values = values.astype(object)
      h1 = h1 * np.uint64(0x9E3779B97F4A7C15) ^ pd.util.hash_array(values)
      h2 = h2 * np.uint64(0xBF58476D1CE4E5B9) ^ pd.util.hash_array(
          values, hash_key=_SECOND_HASH_KEY)
  return h1, h2


# ----------------------------------------------------------------------------
# Stage 1: one input shard → per-bucket fragments and a summary.


def _day_part(timestamps: np.ndarray) -> Dict[str, Any]:
  """What `sessions.is_day_resolution` needs of a part of the log."""
  ts = np.asarray(timestamps, dtype=np.int64)
  if not len(ts):
    return {"times_of_day": set(), "min": None, "max": None}
  tod = np.unique(ts % sessions_lib.MS_PER_DAY)
  return {"times_of_day": set(tod[:2].tolist()), "min": int(ts.min()),
          "max": int(ts.max())}


def merge_day_parts(parts: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
  """Merges `_day_part`s (at most two distinct times of day are kept)."""
  tod, lo, hi = set(), None, None
  for part in parts:
    tod |= part["times_of_day"]
    if part["min"] is not None:
      lo = part["min"] if lo is None else min(lo, part["min"])
      hi = part["max"] if hi is None else max(hi, part["max"])
  return {"times_of_day": set(sorted(tod)[:2]), "min": lo, "max": hi}


def day_verdict(part: Dict[str, Any]) -> bool:
  """`sessions.is_day_resolution` of the whole log from its merged part."""
  if part["min"] is None or len(part["times_of_day"]) != 1:
    return False
  return next(iter(part["times_of_day"])) == 0 or part["min"] != part["max"]


def _in_range(ts: np.ndarray, time_range) -> np.ndarray:
  if time_range is None:
    return np.ones(len(ts), dtype=bool)
  return (ts >= int(time_range[0])) & (ts < int(time_range[1]))


def _canonical_parquet(frame: pd.DataFrame, path: str) -> pd.DataFrame:
  """The canonical columns of a Parquet batch, event types as int8 codes."""
  missing = [c for c in schema.REQUIRED_EVENT_COLUMNS if c not in frame]
  if missing:
    raise ValueError(f"{path}: missing column(s) {missing}; the canonical "
                     f"columns are {list(schema.EVENT_COLUMNS)}.")
  out = pd.DataFrame({c: frame[c] for c in schema.EVENT_COLUMNS
                      if c in frame})
  types = frame["event_type"]
  if types.dtype.kind in "iu":
    codes = types.to_numpy().astype(np.int64)
    bad = (codes < 0) | (codes >= len(schema.EVENT_TYPES))
  else:
    codes = pd.Categorical(types.astype(object),
                           categories=list(schema.EVENT_TYPES)).codes
    bad = codes < 0
  if bad.any():
    raise ValueError(f"{path}: event type {types.iloc[int(np.argmax(bad))]!r} "
                     f"is not one of {list(schema.EVENT_TYPES)}.")
  out["event_type"] = codes.astype(np.int8)
  ts = frame["timestamp"]
  if ts.dtype.kind == "M":
    ts = ts.astype("datetime64[ms]").astype(np.int64)
  if ts.dtype != np.int64:
    raise ValueError(f"{path}: column 'timestamp' must be int64 ms since the "
                     f"epoch, not {ts.dtype}.")
  out["timestamp"] = ts.to_numpy()
  for column in ("user_id", "item_id", "session_id"):
    if column in out and out[column].isna().any():
      raise ValueError(f"{path}: column {column!r} has missing values.")
  return out


def _catalog_part(events: pd.DataFrame, rows: np.ndarray, shard: int,
                  aux: Mapping[str, Any]) -> Dict[str, pd.DataFrame]:
  """Each item's first value of each catalog column in a shard, with its
  position (timestamp, shard, row), and the item's first appearance."""
  key = pd.DataFrame({"item": events["item_id"].to_numpy(),
                      "ts": events["timestamp"].to_numpy(),
                      SHARD: np.int64(shard), ROW: rows})
  out = {"items": key.drop_duplicates("item", keep="first")}
  values = dict(aux)
  if "price" in events:
    values["price"] = events["price"].to_numpy()
  for name, column in values.items():
    if isinstance(column, (pa.Array, pa.ChunkedArray)):
      present = ~loaders._is_null(column)  # pylint: disable=protected-access
    else:
      present = pd.notna(column)
    first = key[present].drop_duplicates("item", keep="first")
    picked = first.index.to_numpy()
    if isinstance(column, (pa.Array, pa.ChunkedArray)):
      chosen = column.take(pa.array(picked, type=pa.int64())).to_pylist()
    else:
      chosen = list(np.asarray(column)[picked])
    first = first.assign(value=pd.Series(chosen, dtype=object,
                                         index=first.index))
    out[name] = first
  return out


def read_shard(shard: int, path: str, options: Options
               ) -> Tuple[List[Tuple[int, str]], Dict[str, Any]]:
  """Reads one input shard into per-bucket fragments.

  Args:
    shard: the shard's number (its place in the sorted file list).
    path: the file.
    options: the run's `Options`.

  Returns:
    ([(bucket, fragment path)], summary): the summary holds the shard's
    report (rows in, dropped by reason), its id kinds, the day-resolution
    parts (all loaded events; those in `time_range`), the time range of the
    events in `time_range` and, for CSV, the catalog part.
  """
  summary: Dict[str, Any] = {"shard": shard, "path": path}
  if options.input_format == "csv":
    batches = [_read_csv(shard, path, options, summary)]
  elif options.input_format == "parquet":
    summary["report"] = report_lib.new_report(path)
    batches = _read_parquet(shard, path, options, summary)
  else:
    raise ValueError(f"input_format must be one of {INPUT_FORMATS}, not "
                     f"{options.input_format!r}.")
  fragments = []
  session_fragments = []
  kinds: Dict[str, str] = {}
  loaded_days, kept_days = [], []
  lo = hi = None
  directory = os.path.join(options.temp_dir, "events")
  for part, events in enumerate(batches):
    for column in ID_COLUMNS:
      if column in events:
        kind = "int" if events[column].dtype.kind in "iu" else "str"
        if kinds.get(column, kind) != kind:
          kind = "str"
        kinds[column] = kind
    ts = events["timestamp"].to_numpy()
    loaded_days.append(_day_part(ts))
    inside = ts[_in_range(ts, options.time_range)]
    kept_days.append(_day_part(inside))
    if len(inside):
      lo = int(inside.min()) if lo is None else min(lo, int(inside.min()))
      hi = int(inside.max()) if hi is None else max(hi, int(inside.max()))
    if "session_id" in events:
      session_fragments += _session_pairs(events, shard, part, options)
    buckets = bucket_of(events["user_id"], options.num_buckets)
    for bucket in np.unique(buckets):
      name = _unique_name(directory,
                          f"shard{shard:05d}-part{part:04d}-bucket"
                          f"{int(bucket):05d}")
      fragments.append((int(bucket), write_frame(
          events[buckets == bucket], name)))
  summary.update(session_fragments=session_fragments,
                 kinds=kinds, loaded_days=merge_day_parts(loaded_days),
                 kept_days=merge_day_parts(kept_days), range=(lo, hi))
  return fragments, summary


def _session_pairs(events: pd.DataFrame, shard: int, part: int,
                   options: Options) -> List[Tuple[int, str]]:
  """Writes the distinct (session, user) pairs of a batch, partitioned by
  session, for `multi_user_sessions`."""
  pairs = events[["session_id", "user_id"]].drop_duplicates(
      ignore_index=True)
  partition = bucket_of(pairs["session_id"], options.num_buckets)
  directory = os.path.join(options.temp_dir, "sessions")
  out = []
  for p in np.unique(partition):
    name = _unique_name(directory, f"shard{shard:05d}-part{part:04d}-"
                        f"sessions{int(p):05d}")
    out.append((int(p), write_frame(pairs[partition == p], name)))
  return out


def multi_user_sessions(paths: Sequence[str], log: Dict[str, Any]
                        ) -> List[List[Any]]:
  """The users of each source session that has several (one partition).

  The in-memory path treats such a session as one session whatever its
  users, so their users must share a bucket (`user_moves`).
  """
  pairs = read_frames(paths)
  if pairs is None:
    return []
  for column in ("session_id", "user_id"):
    pairs[column] = _as_kind(pairs[column], log["kinds"].get(column))
  pairs = pairs.drop_duplicates(ignore_index=True)
  several = pairs["session_id"].duplicated(keep=False).to_numpy()
  shared = pairs[several]
  return [sorted(users.tolist(), key=str)
          for _, users in shared.groupby("session_id")["user_id"]]


def user_moves(groups: Sequence[Sequence[Any]], options: Options
               ) -> Dict[str, Any]:
  """Puts the users linked by shared sessions into one bucket.

  Users linked through any chain of shared sessions form a group (union
  find); the group goes to the bucket of its first user (by text). Users
  not in a shared session stay in their hash bucket.

  Returns:
    {"target": {user: bucket} for users that move, "sources": {bucket:
    sorted buckets that receive users from it}}.
  """
  parent: Dict[Any, Any] = {}

  def find(user):
    parent.setdefault(user, user)
    while parent[user] != user:
      parent[user] = parent[parent[user]]
      user = parent[user]
    return user

  for users in groups:
    root = find(users[0])
    for user in users[1:]:
      other = find(user)
      if other != root:
        if str(other) < str(root):
          root, other = other, root
        parent[other] = root
  users = list(parent)
  if not users:
    return {"target": {}, "sources": {}}
  roots = [find(u) for u in users]
  own = bucket_of(pd.Series(users, dtype=object), options.num_buckets)
  target = bucket_of(pd.Series(roots, dtype=object), options.num_buckets)
  moves, sources = {}, {}
  for user, b_own, b_target in zip(users, own, target):
    if b_own != b_target:
      moves[user] = int(b_target)
      sources.setdefault(int(b_own), set()).add(int(b_target))
  return {"target": moves,
          "sources": {b: sorted(d) for b, d in sources.items()}}


def route_fragment(bucket_and_path: Tuple[int, str], moves: Dict[str, Any]
                   ) -> Iterator[Tuple[int, Tuple[str, str]]]:
  """A fragment goes to its bucket ("own") and to every bucket some of its
  users move to ("in")."""
  bucket, path = bucket_and_path
  yield bucket, (path, "own")
  for target in moves["sources"].get(bucket, ()):
    yield target, (path, "in")


def _read_parquet(shard: int, path: str, options: Options,
                  summary: Dict[str, Any]) -> Iterator[pd.DataFrame]:
  report = summary["report"]
  with FileSystems.open(path) as f:
    parquet = pq.ParquetFile(f)
    names = set(parquet.schema_arrow.names)
    columns = [c for c in schema.EVENT_COLUMNS if c in names]
    offset = 0
    for batch in parquet.iter_batches(batch_size=options.batch_rows,
                                      columns=columns):
      events = _canonical_parquet(batch.to_pandas(), path)
      n = len(events)
      events[SHARD] = np.int32(shard)
      events[ROW] = np.arange(offset, offset + n, dtype=np.int64)
      offset += n
      report["rows_in"] += n
      report["rows_kept"] += n
      yield events


def _read_csv(shard: int, path: str, options: Options,
              summary: Dict[str, Any]) -> pd.DataFrame:
  parsed = loaders.read_csv_shard(path, **(options.csv_options or {}))
  events = parsed.events
  rows = parsed.rows.astype(np.int64)
  report = parsed.report
  report["rows_kept"] = len(events)
  summary["report"] = report
  summary["catalog"] = _catalog_part(events, rows, shard, parsed.aux)
  h1, h2 = _row_hashes(parsed.table.take(pa.array(rows, type=pa.int64())))
  events = events.assign(event_type=schema.event_type_codes(events))
  events[SHARD] = np.int32(shard)
  events[ROW] = rows
  events[HASH1], events[HASH2] = h1, h2
  return events


def merge_summaries(summaries: Sequence[Dict[str, Any]], options: Options
                    ) -> Dict[str, Any]:
  """The whole log's view of the shard summaries (a side input).

  Returns:
    {"kinds", "day_resolution" (of the events in `time_range`: the
    sessions' verdict), "loaded_day_resolution" (the loader's), "range"
    (first, last) ms, "edges" (the time blocks' bounds), "reports"}.
  """
  summaries = sorted(summaries, key=lambda s: s["shard"])
  kinds: Dict[str, str] = {}
  for summary in summaries:
    for column, kind in summary["kinds"].items():
      kinds[column] = "str" if "str" in (kind, kinds.get(column)) else "int"
  ranges = [s["range"] for s in summaries if s["range"][0] is not None]
  if not ranges:
    raise ValueError("no events left to prepare (every row was dropped or "
                     "outside time_range).")
  lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
  return {
      "kinds": kinds,
      "day_resolution": day_verdict(merge_day_parts(
          [s["kept_days"] for s in summaries])),
      "loaded_day_resolution": day_verdict(merge_day_parts(
          [s["loaded_days"] for s in summaries])),
      "range": (lo, hi),
      "edges": block_edges((lo, hi), options.num_blocks),
      "reports": [(s["path"], s["report"]) for s in summaries],
  }


def block_edges(time_range: Tuple[int, int], num_blocks: int) -> np.ndarray:
  """Bounds of `num_blocks` equal time blocks covering [first, last]."""
  lo, hi = time_range
  steps = np.arange(num_blocks + 1, dtype=object)
  return np.array([lo + (hi - lo + 1) * int(k) // num_blocks for k in steps],
                  dtype=np.int64)


def block_of(timestamps: np.ndarray, edges: np.ndarray) -> np.ndarray:
  """The time block of each timestamp."""
  block = np.searchsorted(edges, timestamps, side="right") - 1
  return np.clip(block, 0, len(edges) - 2)


def _as_kind(values: pd.Series, kind: Optional[str]) -> pd.Series:
  """Ids as text when the whole log's ids of that column are text."""
  if kind == "str" and values.dtype.kind in "iu":
    return values.astype(str)
  return values


def build_catalog(summaries: Sequence[Dict[str, Any]], log: Dict[str, Any],
                  options: Options) -> Tuple[pd.DataFrame, Dict[str, Any]]:
  """The CSV log's catalog from the shards' catalog parts.

  The rule of `load_csv` over the whole log: an item takes the first value
  (in time order, ties in file order) of each catalog column over all its
  events, whatever shard they are in; then `loaders.catalog_from_first_values`.
  Items are in order of first appearance.

  Returns:
    (catalog, report additions such as `categories_not_in_tree`).
  """
  kind = log["kinds"].get("item_id")
  order = ["ts", SHARD, ROW]

  def merged(name):
    parts = [s["catalog"][name] for s in summaries
             if name in s.get("catalog", {})]
    if not parts:
      return None
    frame = pd.concat(parts, ignore_index=True)
    frame["item"] = _as_kind(frame["item"], kind)
    frame = frame.sort_values(order, kind="stable")
    return frame.drop_duplicates("item", keep="first")

  items = merged("items")
  item_ids = pd.Series(items["item"].to_numpy()) if items is not None else (
      pd.Series([], dtype=np.int64))
  first = {}
  for name in _CATALOG_VALUES:
    frame = merged(name)
    if frame is None:
      continue
    values = frame.set_index("item")["value"].reindex(pd.Index(item_ids))
    codes, distinct = pd.factorize(values.to_numpy(dtype=object))
    first[name] = (codes.astype(np.int64),
                   loaders._object_array(list(distinct)))  # pylint: disable=protected-access
  extra: Dict[str, Any] = {}
  csv_options = options.csv_options or {}
  catalog = loaders.catalog_from_first_values(
      item_ids, first, report=extra,
      category_separator=csv_options.get("category_separator"),
      catalog_path=csv_options.get("catalog_path"),
      category_tree_path=csv_options.get("category_tree_path"),
      encoding=csv_options.get("encoding", "utf-8"),
      na_values=csv_options.get("na_values", ("",)))
  return catalog, extra


def read_catalog(path: str) -> pd.DataFrame:
  """Reads a canonical catalog Parquet (`category_path` as lists)."""
  catalog = read_frame(path)
  missing = [c for c in ("item_id", "category_path") if c not in catalog]
  if missing:
    raise ValueError(f"{path}: catalog lacks column(s) {missing}.")
  brand = (catalog["brand"].astype(object) if "brand" in catalog else None)
  if brand is not None:
    brand = brand.where(pd.notna(brand), None)
  paths = [tuple(str(p) for p in path) if path is not None and len(path)
           else None for path in catalog["category_path"]]
  return schema.make_catalog(
      catalog["item_id"], paths, brand=brand,
      price=catalog["price"].astype(np.float64) if "price" in catalog
      else None)


# ----------------------------------------------------------------------------
# Stage 2: one user bucket → its examples (without popularity), the block
# fragments and its summary.


def _bucket_events(bucket: int, paths: Sequence[Tuple[str, str]],
                   log: Dict[str, Any], moves: Dict[str, Any],
                   options: Options, drops: Dict[str, int]
                   ) -> Optional[pd.DataFrame]:
  """A bucket's canonical events in input order, with the whole log's
  duplicate and time-range drops counted into `drops`.

  `paths` are (fragment, role): an "own" fragment's users stay unless they
  move to another bucket, an "in" fragment gives the users that move here
  (`user_moves`).
  """
  frames = []
  targets = moves["target"]
  for path, role in sorted(paths):
    frame = read_frame(path)
    for column in ID_COLUMNS:
      if column in frame:
        frame[column] = _as_kind(frame[column], log["kinds"].get(column))
    if targets:
      target = frame["user_id"].map(targets).to_numpy(dtype=np.float64)
      keep = (np.isnan(target) if role == "own" else target == bucket)
      frame = frame[keep]
    elif role != "own":
      continue
    frames.append(frame)
  if not frames:
    return None
  frame = pd.concat(frames, ignore_index=True)
  order = np.lexsort((frame[ROW].to_numpy(), frame[SHARD].to_numpy(),
                      frame["timestamp"].to_numpy()))
  frame = frame.iloc[order].reset_index(drop=True)
  if HASH1 in frame:
    # Rows equal in every source field are in one bucket (the user is a
    # field); the first in input order stays, as in `load_csv`.
    repeat = frame.duplicated([HASH1, HASH2], keep="first").to_numpy()
    if options.drop_duplicates:
      drops["duplicate"] = drops.get("duplicate", 0) + int(repeat.sum())
      frame = frame[~repeat].reset_index(drop=True)
    else:
      drops["duplicate_rows_kept"] = (drops.get("duplicate_rows_kept", 0) +
                                      int(repeat.sum()))
  inside = _in_range(frame["timestamp"].to_numpy(), options.time_range)
  if not inside.all():
    drops["out_of_time_range"] = (drops.get("out_of_time_range", 0) +
                                  int((~inside).sum()))
    frame = frame[inside].reset_index(drop=True)
  columns = {c: frame[c] for c in schema.EVENT_COLUMNS if c in frame}
  columns["event_type"] = pd.Categorical.from_codes(
      frame["event_type"].to_numpy(), dtype=schema.EVENT_TYPE_DTYPE)
  if "price" in frame:
    columns["price"] = frame["price"]
  events = pd.DataFrame(columns)
  events["timestamp"] = events["timestamp"].astype(np.int64)
  return events


def _global_session_ids(events: pd.DataFrame) -> pd.Series:
  """Derived session ids that do not depend on the bucket: `user/k`, the
  user's k-th session (k from 0); `assign_sessions` numbers a bucket's
  sessions by (user, time), so a user's are consecutive."""
  local = events["session_id"].to_numpy()
  first_of_user = pd.Series(local).groupby(
      pd.factorize(events["user_id"])[0]).transform("min").to_numpy()
  rank = (local - first_of_user).astype(str)
  return pd.Series(events["user_id"].astype(str).to_numpy(dtype=object) +
                   "/" + rank.astype(object), index=events.index)


def prepare_bucket(bucket: int, paths: Sequence[Tuple[str, str]],
                   log: Dict[str, Any], catalog: pd.DataFrame,
                   moves: Dict[str, Any], options: Options
                   ) -> Optional[Dict[str, Any]]:
  """Sessions, labels, the per-user features and the split of one bucket.

  Returns:
    None for a bucket without events, else {"examples": fragment path,
    "blocks": [(block, history path, query path)], "train": train-events
    fragment path or None, "products": similarity pair products,
    "counts": the report's additive counts, "stats": purchase stats,
    "drops": {reason: rows}, "clicks": click examples}.
  """
  drops: Dict[str, int] = {}
  events = _bucket_events(bucket, paths, log, moves, options, drops)
  if events is None or not len(events):
    return {"bucket": bucket, "drops": drops, "empty": True}
  source = events
  derived = ("session_id" not in events or not (options.session_options or {})
             .get("use_source_sessions", True))
  events, encoded, examples, stats = pipeline.label_and_featurize(
      events, catalog, options.attribution_window_s, popularity=False,
      day_resolution=log["day_resolution"],
      session_options=options.session_options,
      feature_options=options.feature_options)
  if derived:
    local = events["session_id"].to_numpy()
    ids = _global_session_ids(events)
    lookup = pd.Series(ids.to_numpy(), index=local).groupby(level=0).first()
    examples["session_id"] = lookup.reindex(
        examples["session_id"].to_numpy()).to_numpy()
    events = events.assign(session_id=ids.to_numpy())
  examples["split"] = features_lib.split_by_time(
      examples, log["range"], validation_fraction=options.validation_fraction,
      test_fraction=options.test_fraction).to_numpy()
  if options.extra_columns is not None:
    for name, values in options.extra_columns(examples, source).items():
      examples[name] = values
  counts = {"log": pipeline.log_counts(encoded),
            "examples": pipeline.example_counts(examples)}
  first = examples["w_caba"].to_numpy() > 0
  directory = os.path.join(options.temp_dir, "buckets")
  stem = f"bucket{bucket:05d}"
  examples_path = write_frame(examples.drop(columns=["event_index"]),
                              _unique_name(directory, stem + "-examples"))

  # The log's side of the popularity family, cut into time blocks.
  leaf_of_item = encoding.item_table(encoded.item_ids, catalog)["leaf"]
  leaves = leaf_of_item.to_numpy()[encoded.item]
  history = pd.DataFrame({"item_id": events["item_id"].to_numpy(),
                          "leaf": leaves,
                          "timestamp": encoded.timestamps,
                          "event_type": encoded.types})
  queries = pd.DataFrame({
      "item_id": examples["item_a"].to_numpy()[first],
      "timestamp": examples["timestamp"].to_numpy()[first]}
                         ).drop_duplicates(ignore_index=True)
  queries["leaf"] = leaf_of_item.to_numpy()[pd.Index(
      encoded.item_ids).get_indexer(queries["item_id"].to_numpy())]
  queries["bucket"] = np.int64(bucket)
  edges = log["edges"]
  history_block = block_of(history["timestamp"].to_numpy(), edges)
  query_block = block_of(queries["timestamp"].to_numpy(), edges)
  blocks = []
  for block in np.unique(history_block):
    name = f"{stem}-block{int(block):05d}"
    blocks.append((int(block), write_frame(
        history[history_block == block],
        _unique_name(directory, name + "-history")), write_frame(
            queries[query_block == block],
            _unique_name(directory, name + "-queries"))))

  # Training-period events: the similarity's input and a side file.
  from cabb_tf.data import records  # pylint: disable=g-import-not-at-top
  _, validation_start = features_lib.split_boundaries(
      log["range"], options.validation_fraction, options.test_fraction)
  train = records.training_events(events, catalog, validation_start)
  train_path = None
  products = []
  if len(train):
    train_path = write_frame(train, _unique_name(directory, stem + "-train"))
    from cabb_tf.pipelines import similarity_beam  # pylint: disable=g-import-not-at-top
    codes = pd.Categorical(train["event_type"],
                           dtype=schema.EVENT_TYPE_DTYPE).codes
    products = similarity_beam.pair_products(
        train["user_id"].to_numpy(), train["leaf"].to_numpy(), codes,
        similarity_beam.normalized_weights(options.event_weights))
  return {"bucket": bucket, "empty": False, "examples": examples_path,
          "blocks": blocks, "train": train_path, "products": products,
          "counts": counts, "stats": stats, "drops": drops,
          "clicks": int(first.sum())}


# ----------------------------------------------------------------------------
# Stage 3: time blocks → the popularity family of every click example.


def block_counts(block: int, history_paths: Sequence[str],
                 options: Options) -> str:
  """Per item and per leaf: clicks and purchases in one block.

  Returns:
    The path of the pickled {"item": frame, "leaf": frame}.
  """
  history = read_frames(history_paths)
  types = history["event_type"].to_numpy()
  frame = pd.DataFrame({"clicks": (types == schema.CLICK).astype(np.int64),
                        "purchases": (types == schema.PURCHASE).astype(
                            np.int64)})
  table = {"item": frame.groupby(history["item_id"].to_numpy()).sum(),
           "leaf": frame.groupby(history["leaf"].to_numpy()).sum()}
  directory = os.path.join(options.temp_dir, "blocks")
  return write_pickle(table, _unique_name(
      directory, f"block{block:05d}-counts").replace(".parquet", ".pkl"))


def write_pickle(obj: Any, path: str) -> str:
  """Pickles `obj` (small per-key tables) to `path`."""
  with FileSystems.create(path) as f:
    pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
  return path


def read_pickle(path: str) -> Any:
  """Reads what `write_pickle` wrote."""
  with FileSystems.open(path) as f:
    return pickle.load(f)


def prefix_counts(counts: Sequence[Tuple[int, str]], catalog: pd.DataFrame,
                  options: Options) -> Dict[str, Any]:
  """The counts of every key before each block, block after block.

  One pass in time order with running totals per key: memory ∝ the keys
  (items and leaves), whatever their number of events, so hot keys are
  harmless. Also counts the log's distinct items and those of unknown leaf
  (the report's `items`, `items_unknown_category`).

  Returns:
    {"prefix": {block: path of the counts before it}, "items": int,
    "items_unknown_category": int}.
  """
  totals: Dict[str, pd.DataFrame] = {}
  prefix = {}
  directory = os.path.join(options.temp_dir, "blocks")
  for block, path in sorted(counts):
    # Written at once; the totals are replaced below, never changed in place.
    prefix[block] = write_pickle(
        totals, _unique_name(directory, f"block{block:05d}-prefix").replace(
            ".parquet", ".pkl"))
    table = read_pickle(path)
    for key in ("item", "leaf"):
      part = table[key]
      if key in totals:
        part = totals[key].add(part, fill_value=0).astype(np.int64)
      totals[key] = part
  item_ids = (totals["item"].index.to_numpy() if "item" in totals else
              np.zeros(0, dtype=np.int64))
  return {"prefix": prefix, "items": int(len(item_ids)),
          "items_unknown_category": pipeline.unknown_items(item_ids, catalog)}


def block_answers(block: int, history_paths: Sequence[str],
                  query_paths: Sequence[str], prefix_path: str,
                  options: Options) -> List[Tuple[int, str]]:
  """The popularity family of the click examples in one block.

  Returns:
    [(bucket, fragment path)] of the answers, keyed by (item_id, timestamp).
  """
  history = read_frames(history_paths)
  queries = read_frames(query_paths)
  if queries is None or not len(queries):
    return []
  before = read_pickle(prefix_path)
  n = len(history)
  keys, query_keys, prefix = {}, {}, {}
  for name, column in (("item", "item_id"), ("leaf", "leaf")):
    codes, _ = pd.factorize(pd.concat([history[column], queries[column]],
                                      ignore_index=True))
    keys[name], query_keys[name] = codes[:n], codes[n:]
    if name in before:
      found = before[name].reindex(pd.Index(queries[column].to_numpy()))
      prefix[name] = tuple(found[c].fillna(0).to_numpy(dtype=np.int64)
                           for c in ("clicks", "purchases"))
    else:
      zeros = np.zeros(len(queries), dtype=np.int64)
      prefix[name] = (zeros, zeros)
  popularity = {k: v for k, v in (options.feature_options or {}).items()
                if k in ("cvr_prior_mean", "cvr_prior_strength")}
  values = features_lib.as_of_popularity(
      keys, history["timestamp"].to_numpy(), history["event_type"].to_numpy(),
      query_keys, queries["timestamp"].to_numpy(), prefix, **popularity)
  answers = queries[["item_id", "timestamp", "bucket"]].copy()
  for name, column in values.items():
    answers[name] = column
  directory = os.path.join(options.temp_dir, "answers")
  out = []
  for bucket, part in answers.groupby("bucket", sort=True):
    out.append((int(bucket), write_frame(
        part.drop(columns=["bucket"]),
        _unique_name(directory, f"block{block:05d}-bucket{int(bucket):05d}"))))
  return out


# ----------------------------------------------------------------------------
# Stage 4: one bucket's examples with their popularity → TFRecords.


def example_column_order(extra: Sequence[str] = ()) -> List[str]:
  """The columns of `PreparedData.examples`, less the log-local
  `event_index`, then a builder's `extra` fields."""
  labels = [c for c in labels_lib.LABEL_COLUMNS if c != "event_index"]
  return labels + [f for f in features_lib.FEATURE_NAMES
                   if f not in labels] + ["leaf_b", "split"] + list(extra)


def extra_names(options: Options) -> List[str]:
  """The names of the builder's own fields (none without `extra_columns`)."""
  if options.extra_columns is None:
    return []
  return list(options.extra_columns.features())


def complete_examples(examples_path: str, answer_paths: Sequence[str],
                      click_offset: int, extra: Sequence[str] = ()
                      ) -> pd.DataFrame:
  """A bucket's examples with the popularity family and global click ids
  (and the builder's `extra` fields, computed in `prepare_bucket`)."""
  examples = read_frame(examples_path)
  answers = read_frames(answer_paths)
  names = list(features_lib.POPULARITY_FEATURES)
  if answers is None:
    answers = pd.DataFrame({"item_id": examples["item_a"].iloc[:0],
                            "timestamp": examples["timestamp"].iloc[:0],
                            **{n: [] for n in names}})
  answers = answers.set_index(["item_id", "timestamp"])
  found = answers.reindex(pd.MultiIndex.from_arrays(
      [examples["item_a"].to_numpy(), examples["timestamp"].to_numpy()]))
  if len(examples) and found[names[0]].isna().any():
    raise ValueError(f"{examples_path}: click examples without their "
                     "popularity features.")
  for name in names:
    dtype = np.float32 if name.endswith("_cvr") else np.int32
    examples[name] = found[name].to_numpy().astype(dtype)
  examples["click_id"] = examples["click_id"].to_numpy() + np.int64(
      click_offset)
  return examples[example_column_order(extra)]


def tfrecord_path(output_dir: str, split: str, bucket: int,
                  num_buckets: int, dataset_name: str = "click_examples"
                  ) -> str:
  """The TFRecord shard of one split and bucket, named as TFDS names the
  shards of a dataset (`{name}-{split}.tfrecord-{shard}-of-{shards}`)."""
  return os.path.join(output_dir, f"{dataset_name}-{split}.tfrecord-"
                      f"{bucket:05d}-of-{num_buckets:05d}")


class ExampleEncoder:
  """Serializes example rows exactly as the TFDS builders do, faster.

  The fields and their kinds come from the builders' features dict
  (`records.example_features().get_serialized_info()`), the values
  from their column readers (`records.example_columns`); the proto
  is built as TFDS's `ExampleSerializer` builds it, without its per-value
  checks, which take two thirds of its time. The bytes equal
  `example_features().serialize_example(row)` (tests/pipelines/
  prepare_beam_test.py checks every record of its logs).
  """

  def __init__(self, extra: Optional[Mapping[str, Any]] = None):
    """`extra`: a builder's own fields
    (`records.ExtraColumns.features()`)."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from tensorflow.core.example import example_pb2  # pylint: disable=g-import-not-at-top
    from tensorflow.core.example import feature_pb2  # pylint: disable=g-import-not-at-top
    from cabb_tf.data import records  # pylint: disable=g-import-not-at-top
    self.spec = records.example_features(extra)
    self._fields = []
    for name, info in self.spec.get_serialized_info().items():
      if info.shape:
        raise ValueError(f"field {name!r} is not a scalar: {info}.")
      dtype = tf.as_dtype(info.dtype)
      kind = ("int" if dtype.is_integer or dtype.is_bool else
              "float" if dtype.is_floating else "bytes")
      self._fields.append((name, kind))
    self._pb = (example_pb2.Example, feature_pb2.Features,
                feature_pb2.Feature, feature_pb2.Int64List,
                feature_pb2.FloatList, feature_pb2.BytesList)

  def serialize(self, values: Mapping[str, Sequence[Any]]) -> Iterator[bytes]:
    """Yields the serialized `tf.train.Example` of each row of `values`
    (field → Python values, as `records.example_columns` reads)."""
    example, features, feature, int64s, floats, strings = self._pb
    columns = []
    for name, kind in self._fields:
      column = values[name]
      if kind == "bytes":
        column = [v.encode("utf-8") if isinstance(v, str) else v
                  for v in column]
      columns.append((name, kind, column))
    size = len(columns[0][2]) if columns else 0
    for i in range(size):
      made = {}
      for name, kind, column in columns:
        if kind == "int":
          made[name] = feature(int64_list=int64s(value=[column[i]]))
        elif kind == "float":
          made[name] = feature(float_list=floats(value=[column[i]]))
        else:
          made[name] = feature(bytes_list=strings(value=[column[i]]))
      yield example(features=features(feature=made)).SerializeToString()


def write_tfrecords(examples: pd.DataFrame, bucket: int,
                    options: Options) -> Dict[str, Tuple[int, int]]:
  """Writes a bucket's examples as `tf.train.Example`s, one file per split,
  with the TFDS builders' encoding (`ExampleEncoder`).

  A split without rows in this bucket gets an empty file, so that every
  split has its `num_buckets` shards, as TFDS expects.

  Returns:
    {split: (rows written, bytes of the serialized records)}.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from cabb_tf.data import records  # pylint: disable=g-import-not-at-top
  extra = (options.extra_columns.features() if options.extra_columns
           else None)
  encoder = ExampleEncoder(extra)
  readers = records.example_columns(
      examples, {name: examples[name].to_numpy() for name in (extra or {})})
  split = examples["split"].astype(str).to_numpy()
  written = {}
  for name in records.SPLITS:
    rows = np.flatnonzero(split == name)
    size = 0
    with tf.io.TFRecordWriter(tfrecord_path(
        options.output_dir, name, bucket, options.num_buckets,
        options.dataset_name)) as writer:
      for start in range(0, len(rows), 20_000):
        chunk = rows[start:start + 20_000]
        values = {field: read(chunk) for field, read in readers.items()}
        for record in encoder.serialize(values):
          writer.write(record)
          size += len(record)
    written[name] = (int(len(rows)), size)
  return written


# ----------------------------------------------------------------------------
# The report.


def assemble_report(source: str, log: Dict[str, Any],
                    buckets: Sequence[Dict[str, Any]],
                    items: Dict[str, Any], catalog_extra: Dict[str, Any],
                    options: Options,
                    has_session_column: bool) -> Dict[str, Any]:
  """The data report of the whole log, as `prepare_examples` writes it."""
  report = report_lib.new_report(source)
  reports = log["reports"]
  for _, rep in reports:
    report["rows_in"] += rep["rows_in"]
    for reason, count in rep["dropped"].items():
      report_lib.add_dropped(report, reason, count)
  report["path"] = source
  if len(reports) > 1:
    report["files"] = {path: rep for path, rep in reports}
  first = reports[0][1]
  for key in ("duplicate_key",):
    if key in first:
      report[key] = first[key]
  compression = sorted({rep["compression"] for _, rep in reports
                        if "compression" in rep})
  if compression:
    report["compression"] = compression[0] if len(compression) == 1 else (
        compression)
  kept = sum(rep.get("duplicate_rows_kept", 0) for _, rep in reports)
  live = [b for b in buckets if not b.get("empty")]
  for bucket in buckets:
    for reason, count in bucket["drops"].items():
      if reason == "duplicate_rows_kept":
        kept += count
      else:
        report_lib.add_dropped(report, reason, count)
  if kept:
    report["duplicate_rows_kept"] = kept
  report.update(catalog_extra)
  report["rows_kept"] = report["rows_in"] - sum(report["dropped"].values())
  if options.input_format == "csv":
    day = log["loaded_day_resolution"]
    report["timestamp_resolution"] = "day" if day else "sub-day"
    if day and not has_session_column:
      report["session_rule"] = sessions_lib.USER_DAY_RULE
  log_counts = _sum_counts([b["counts"]["log"] for b in live])
  example_counts = _sum_counts([b["counts"]["examples"] for b in live])
  stats = labels_lib.merge_purchase_stats([b["stats"] for b in live])
  report.update(pipeline.assemble_report(
      log_counts, example_counts, stats, items["items"],
      items["items_unknown_category"]))
  report_lib.check_report(report)
  return report


def _sum_counts(parts: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
  """Adds dicts of counts (nested dicts too)."""
  total: Dict[str, Any] = {}
  for part in parts:
    for key, value in part.items():
      if isinstance(value, dict):
        total[key] = _sum_counts([total.get(key, {}), value])
      else:
        total[key] = total.get(key, 0) + value
  return total
