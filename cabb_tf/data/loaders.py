"""Loaders that turn public e-commerce logs into the canonical event log.

Every loader returns `(events, catalog, report)`:

* `events`: a DataFrame with the canonical columns of `schema` (`user_id`,
  `session_id` when the source has one, `timestamp` as int64 ms since the
  epoch, `item_id`, `event_type` of dtype `schema.EVENT_TYPE_DTYPE`), plus
  `price` (float64) when a price column is configured. Rows are sorted stably
  by timestamp (ties keep file order) and the index is 0..n-1.
* `catalog`: `schema.make_catalog` output, one row per item of `events`, in
  order of first appearance in `events`.
* `report`: `report.new_report` plus `path`, `event_counts` ({canonical type:
  n}, all four types), `items` and `items_unknown_category`;
  `rows_in = rows_kept + sum(dropped)` always holds.

Ids (`user_id`, `item_id`, `session_id`) become int64 when every kept value
parses as an integer (so `"007"` and `"7"` are the same id); otherwise they
stay strings.

Rows are dropped and counted by reason (`truncated_last_line`,
`unclosed_quote`, `malformed`, `missing_value`, `dropped_event_type`,
`out_of_range`, `duplicate`); values that cannot be right (an unmapped event
type, an unparsable or impossible timestamp, a price that is not a finite
number), binary or undecodable input and systematic faults (more than
`max_malformed_fraction` of the rows malformed) are ValueErrors naming the
file, line, column and value. gzip and zstd input is detected by its magic
bytes. The rules are written out in docs/loading.md.

Speed: pyarrow's multi-threaded CSV reader parses and types the columns (the
types are guessed from the first data row: integer ids and timestamps, the
event type dictionary-encoded, text timestamps by Arrow's strptime); event
types are mapped on the dictionary, not per row; duplicates are found by
sorting a 64-bit row hash. If any value does not fit the guessed types, the
file is re-read with every field as a string and checked value by value. A
file with a quote whose rows do not match its non-blank lines is read line by
line; errors re-scan the file to name their line.
"""

import codecs
import collections
import csv
import datetime
import glob
import inspect
import json
import os
import re
from typing import (Any, Callable, Dict, List, Mapping, NamedTuple, Optional,
                    Sequence, Set, Tuple, Union)

from absl import logging
import gin
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json

from cabb_tf.data import category_tree as category_tree_lib
from cabb_tf.data import report as report_lib
from cabb_tf.data import schema
from cabb_tf.data import sessions as sessions_lib

PathLike = Union[str, os.PathLike]
ColumnRef = Union[str, int]
Loaded = Tuple[pd.DataFrame, pd.DataFrame, report_lib.Report]

# Valid event times: [1970-01-01, 2100-01-01) UTC, in ms since the epoch.
MIN_TIMESTAMP_MS = 0
MAX_TIMESTAMP_MS = 4_102_444_800_000
_TIME_RANGE_TEXT = "outside [1970-01-01, 2100-01-01)"
# Milliseconds per unit, as (multiplier, divisor).
_UNITS = {"s": (1000, 1), "ms": (1, 1), "us": (1, 1000), "ns": (1, 1_000_000)}
_MAX_EXAMPLES = 5
_NUMBER_REGEX = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_BLOCK_SIZE = 8 << 20
# Codes besides the canonical ones (0..3) in the per-row int8 type codes.
_UNKNOWN, _DROPPED = -1, -2

# Keys of `columns` besides the required canonical ones, and the keyword
# argument of `load_csv` each one is an alternative to.
_OPTIONAL_COLUMNS = {
    "session_id": "session_column",
    "category": "category_column",
    "category_fallback": "category_fallback_column",
    "brand": "brand_column",
    "price": "price_column",
}

REES46_EVENT_TYPE_MAP = {
    "view": "click", "cart": "add_to_cart", "purchase": "purchase"}
TAOBAO_EVENT_TYPE_MAP = {
    "pv": "click", "cart": "add_to_cart", "buy": "purchase"}
OTTO_EVENT_TYPE_MAP = {
    "clicks": "click", "carts": "add_to_cart", "orders": "purchase"}


@gin.configurable
def load_csv(path: PathLike,
             *,
             columns: Mapping[str, ColumnRef],
             delimiter: str = ",",
             header: bool = True,
             event_type_map: Mapping[str, str],
             timestamp_unit: Optional[str] = None,
             timestamp_format: Optional[str] = None,
             session_column: Optional[ColumnRef] = None,
             category_column: Optional[ColumnRef] = None,
             category_separator: Optional[str] = None,
             catalog_path: Optional[PathLike] = None,
             category_tree_path: Optional[PathLike] = None,
             brand_column: Optional[ColumnRef] = None,
             price_column: Optional[ColumnRef] = None,
             encoding: str = "utf-8",
             drop_event_types: Sequence[str] = (),
             name: Optional[str] = None,
             category_fallback_column: Optional[ColumnRef] = None,
             time_range: Optional[Tuple[int, int]] = None,
             na_values: Sequence[str] = ("",),
             max_malformed_fraction: float = 0.1,
             default_year: Optional[int] = None,
             drop_duplicates: bool = True) -> Loaded:
  """Reads a delimited event log into the canonical schema.

  Args:
    path: the CSV file, or a glob pattern (`'/data/log-*.csv'`) matching
      several files of the same layout, read in sorted name order and joined
      (see `source_files` and docs/loading.md).
    columns: maps canonical names to source columns: required `user_id`,
      `item_id`, `event_type`, `timestamp`; optional `session_id`, `category`,
      `category_fallback`, `brand`, `price` (alternatives to the keyword
      arguments below). A source column is a header name or a 0-based index
      (the only choice when `header` is False).
    delimiter: the field delimiter (one character).
    header: whether the first line holds column names.
    event_type_map: maps source event types (strings) to canonical ones
      (`schema.EVENT_TYPES`).
    timestamp_unit: for numeric timestamps, their unit: 's', 'ms', 'us' or
      'ns'. Fractions are floored to whole milliseconds.
    timestamp_format: for text timestamps, a strptime format, e.g.
      `'%Y-%m-%d %H:%M:%S UTC'`. Times without a `%z` offset are taken as UTC.
      Exactly one of `timestamp_unit` and `timestamp_format` must be given.
    session_column: the source session id column, if any.
    category_column: a column holding each event's item category; an item
      takes the first non-empty value of its events (in time order).
    category_separator: splits category values into a root→leaf path (e.g. '.'
      for REES46 `category_code`); None keeps each value whole (a path of
      length 1).
    catalog_path: instead of `category_column`, a CSV with a header whose first
      column is the item id and second the category (first row per item wins).
    category_tree_path: a `categoryid,parentid` CSV (see `category_tree`); the
      flat category ids from `category_column` or `catalog_path` become their
      root→leaf paths. Ids absent from the tree keep the path `(id,)` and are
      counted in `report["categories_not_in_tree"]`.
    brand_column: a column with the item brand (catalog; first value per item).
    price_column: a column with the price, kept as `events["price"]`; the
      catalog gets each item's first price.
    encoding: the file's text encoding.
    drop_event_types: source event types to drop (counted as
      `dropped_event_type`).
    name: the source name in the report (default: the path).
    category_fallback_column: a column whose value gives the path `(value,)`
      to an item with no `category_column` value in any of its events (REES46:
      `category_id` where `category_code` is empty).
    time_range: optional `(start, end)` in ms; events outside `[start, end)`
      are dropped as `out_of_range`.
    na_values: field values that mean "missing".
    max_malformed_fraction: the largest share of data rows that may be
      dropped as `malformed` or `unclosed_quote` before the load fails as a
      systematic fault (a wrong delimiter or header); see docs/loading.md.
    default_year: the year of text timestamps whose `timestamp_format` has
      none (e.g. `'%m%d'` day stamps): values are read as that year's dates.
    drop_duplicates: drop rows whose every source field equals that of an
      earlier kept row (counted as `duplicate`); False keeps them and counts
      them in `report["duplicate_rows_kept"]`. `report["duplicate_key"]` names
      the fields compared. A log of day stamps repeats rows legitimately (two
      views of one item on one day), so check that count before dropping.

  Returns:
    `(events, catalog, report)` as described in the module docstring.

  Raises:
    ValueError: on a bad argument, an unreadable file, an unmapped event type,
      an unparsable or impossible timestamp or a non-numeric price; data errors
      name the file, the 1-based line, the column and the value.
  """
  options = dict(
      columns=columns, delimiter=delimiter, header=header,
      event_type_map=event_type_map, timestamp_unit=timestamp_unit,
      timestamp_format=timestamp_format, session_column=session_column,
      category_column=category_column, category_separator=category_separator,
      catalog_path=catalog_path, category_tree_path=category_tree_path,
      brand_column=brand_column, price_column=price_column, encoding=encoding,
      drop_event_types=drop_event_types,
      category_fallback_column=category_fallback_column,
      time_range=time_range, na_values=na_values,
      max_malformed_fraction=max_malformed_fraction,
      default_year=default_year, drop_duplicates=drop_duplicates)
  files = source_files(path)
  if len(files) == 1:
    loaded = _load_csv_file(files[0], name=name, **options)
  else:
    loaded = _join_loaded(
        os.fspath(path), name,
        {f: _load_csv_file(f, name=None, **options) for f in files})
  _note_day_resolution(loaded[0], loaded[2])
  return loaded


def source_files(path: PathLike) -> List[str]:
  """The files `load_csv` reads for `path`: the file, or a glob's matches.

  Args:
    path: a file, or a pattern with `*`, `?` or `[...]`.

  Returns:
    The file names, sorted.

  Raises:
    ValueError: if nothing matches.
  """
  path = os.fspath(path)
  if os.path.isfile(path):
    return [path]
  if glob.has_magic(path):
    files = sorted(f for f in glob.glob(path) if os.path.isfile(f))
    if files:
      return files
    raise ValueError(f"{path}: no file matches this pattern.")
  raise ValueError(f"{path}: no such file.")


def _note_day_resolution(events: pd.DataFrame,
                         report: report_lib.Report) -> None:
  """Records the timestamp resolution and, for day stamps, the session rule."""
  day = sessions_lib.is_day_resolution(events["timestamp"].to_numpy())
  report["timestamp_resolution"] = "day" if day else "sub-day"
  if day and "session_id" not in events.columns:
    report["session_rule"] = sessions_lib.USER_DAY_RULE


def _join_loaded(pattern: str, name: Optional[str],
                 loaded: Mapping[str, Loaded]) -> Loaded:
  """Joins the loads of several files of one layout into one.

  Events are concatenated in file order and sorted stably by time (ties keep
  file, then line order). An id column that is integer in one file and text
  in another becomes text in all. An item's catalog row is its first one with
  a known leaf, else its first. Rows repeated across files are not detected
  as duplicates (each file is deduplicated on its own).
  """
  frames = [events for events, _, _ in loaded.values()]
  for key in ("user_id", "session_id", "item_id"):
    kinds = {frame[key].dtype.kind for frame in frames if key in frame}
    if len(kinds) > 1:
      frames = [frame.assign(**{key: frame[key].astype(str).astype(object)})
                for frame in frames]
  columns = [set(frame.columns) for frame in frames]
  if any(c != columns[0] for c in columns):
    raise ValueError(f"{pattern}: the matching files give different columns "
                     f"({[sorted(c) for c in columns]}); load them separately.")
  events = pd.concat(frames, ignore_index=True)
  events = events.iloc[np.argsort(events["timestamp"].to_numpy(),
                                  kind="stable")].reset_index(drop=True)
  catalogs = []
  for _, catalog, _ in loaded.values():
    catalog = catalog.copy()
    if catalog["item_id"].dtype != events["item_id"].dtype:
      catalog["item_id"] = catalog["item_id"].astype(str).astype(object)
    catalogs.append(catalog)
  catalog = pd.concat(catalogs, ignore_index=True)
  unknown = (catalog["leaf"] == schema.UNKNOWN_LEAF).to_numpy()
  catalog = catalog.iloc[np.argsort(unknown, kind="stable")]
  catalog = catalog.drop_duplicates("item_id", keep="first")
  order = pd.Index(pd.unique(events["item_id"]))
  catalog = catalog.set_index("item_id").reindex(order).rename_axis(
      "item_id").reset_index()
  report = report_lib.merge_reports(
      name or pattern, {f: rep for f, (_, _, rep) in loaded.items()})
  report["path"] = pattern
  first = next(iter(loaded.values()))[2]
  for key in ("duplicate_key",):
    if key in first:
      report[key] = first[key]
  kept = sum(rep.get("duplicate_rows_kept", 0) for _, _, rep in
             loaded.values())
  if kept:
    report["duplicate_rows_kept"] = kept
  _finish_report(report, events, catalog)
  return events, catalog, report


def _load_csv_file(path: PathLike, *, name, category_separator, catalog_path,
                   category_tree_path, encoding, na_values,
                   **options) -> Loaded:
  """`load_csv` of one file."""
  shard = read_csv_shard(
      path, name=name, category_separator=category_separator,
      catalog_path=catalog_path, category_tree_path=category_tree_path,
      encoding=encoding, na_values=na_values, **options)
  events, report = shard.events, shard.report
  catalog = _build_catalog(
      events, shard.aux, report=report, category_separator=category_separator,
      catalog_path=catalog_path, category_tree_path=category_tree_path,
      encoding=encoding, na_values=na_values)
  _finish_report(report, events, catalog)
  del shard
  _release_arrow_memory()
  return events, catalog, report


class CsvShard(NamedTuple):
  """One CSV file parsed by `load_csv`'s rules, before its catalog is built.

  `load_csv` builds the catalog and the report's totals from it; the Beam
  preparation (docs/beam.md) reads each shard of a log with it and merges
  the shards' first values per item and deduplicates across shards itself.

  Attributes:
    events: the canonical events of the file, in time order (ties in file
      order), without the file's duplicates when they are dropped.
    rows: for each event, its row in `table` (rows in file order).
    table: the source rows kept after the drops, every source field as
      parsed (what the duplicate check compares).
    aux: the catalog columns per event (`category`, `category_fallback`,
      `brand`, where configured), row for row with `events`.
    report: the file's report: rows in, dropped by reason, path,
      `duplicate_key` (not yet `rows_kept` or the catalog counts).
  """
  events: pd.DataFrame
  rows: np.ndarray
  table: pa.Table
  aux: Dict[str, Any]
  report: report_lib.Report


def read_csv_shard(path: PathLike, *, columns, delimiter=",", header=True,
                   event_type_map, timestamp_unit=None, timestamp_format=None,
                   session_column=None, category_column=None,
                   category_separator=None, catalog_path=None,
                   category_tree_path=None, brand_column=None,
                   price_column=None, encoding="utf-8", drop_event_types=(),
                   name=None, category_fallback_column=None, time_range=None,
                   na_values=("",), max_malformed_fraction=0.1,
                   default_year=None, drop_duplicates=True) -> CsvShard:
  """Parses one CSV file by `load_csv`'s rules (same arguments), no catalog.

  Returns:
    The `CsvShard`.

  Raises:
    ValueError: as `load_csv`.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise ValueError(f"{path}: no such file.")
  type_codes = _check_type_map(path, event_type_map, drop_event_types)
  if (timestamp_unit is None) == (timestamp_format is None):
    raise ValueError(
        f"{path}: give exactly one of timestamp_unit (one of {list(_UNITS)}) "
        f"and timestamp_format (a strptime format), got timestamp_unit="
        f"{timestamp_unit!r}, timestamp_format={timestamp_format!r}.")
  if timestamp_unit is not None and timestamp_unit not in _UNITS:
    raise ValueError(f"{path}: timestamp_unit must be one of {list(_UNITS)}, "
                     f"not {timestamp_unit!r}.")
  if category_tree_path is not None and category_separator is not None:
    raise ValueError(f"{path}: category_separator splits category paths, "
                     "category_tree_path resolves flat ids; give one of them.")
  if default_year is not None:
    if timestamp_format is None or re.search(r"%[Yy]", timestamp_format):
      raise ValueError(
          f"{path}: default_year={default_year!r} is for a timestamp_format "
          f"without a year (such as '%m%d'), not timestamp_format="
          f"{timestamp_format!r}.")
    if not (isinstance(default_year, int) and 1970 <= default_year < 2100):
      raise ValueError(f"{path}: default_year must be a year in [1970, 2100), "
                       f"not {default_year!r}.")
  if time_range is not None and len(time_range) != 2:
    raise ValueError(f"{path}: time_range must be (start_ms, end_ms), not "
                     f"{time_range!r}.")
  if len(delimiter) != 1:
    raise ValueError(f"{path}: delimiter must be one character, not "
                     f"{delimiter!r}.")

  if not 0 <= max_malformed_fraction <= 1:
    raise ValueError(f"{path}: max_malformed_fraction must be in [0, 1], not "
                     f"{max_malformed_fraction!r}.")
  data, compression = _read_source(path)
  has_quote = _check_text(path, data, encoding, compression)
  layout = _read_layout(path, data, delimiter, header, encoding)
  names = layout.names
  optional = dict(session_id=session_column, category=category_column,
                  category_fallback=category_fallback_column,
                  brand=brand_column, price=price_column)
  where = (f"{path}: line {layout.first_line - 1} (the header)" if header
           else path)
  cols = _resolve_columns(where, names, header, columns, optional)
  if "category" in cols and catalog_path is not None:
    raise ValueError(f"{path}: give a category column or catalog_path, not "
                     "both.")
  ctx = _CsvContext(path, layout, delimiter, encoding, set(na_values), data,
                    has_quote, max_malformed_fraction)

  try:  # Fast path: columns typed by the reader.
    types = _guess_column_types(cols, names, layout.first_row, timestamp_unit,
                                timestamp_format)
    table, invalid = _read_table(ctx, types)
    parsed = _parse_columns(ctx, table, cols, type_codes, timestamp_unit,
                            timestamp_format, default_year)
  except (pa.ArrowInvalid, _RetryAsStrings) as e:
    logging.info("%s: re-reading every field as text (%s).", path, e)
    table, invalid = _read_table(ctx, {n: pa.string() for n in names})
    parsed = _parse_columns(ctx, table, cols, type_codes, timestamp_unit,
                            timestamp_format, default_year)
  missing, codes, ms, price = parsed

  report = report_lib.new_report(name or path)
  report["path"] = path
  if compression:
    report["compression"] = compression
  report["rows_in"] = table.num_rows + len(invalid)
  _count_invalid_rows(ctx, invalid, table.num_rows, report)
  keep = _apply_drops(report, missing, codes, ms, time_range)
  if not keep.all():
    table = table.filter(pa.array(keep))
    codes, ms = codes[keep], ms[keep]
    price = price[keep] if price is not None else None
  ids = {key: _convert_ids(table.column(cols[key]))
         for key in ("user_id", "session_id", "item_id") if key in cols}

  duplicate = _find_duplicates(
      ms, codes, [ids["user_id"], ids["item_id"]],
      lambda rows: table.take(pa.array(rows)).to_pandas())
  report["duplicate_key"] = list(names)  # Every source field.
  if drop_duplicates:
    report_lib.add_dropped(report, "duplicate", int(duplicate.sum()))
  else:
    report["duplicate_rows_kept"] = int(duplicate.sum())
    duplicate[:] = False

  extra = {"price": price} if price is not None else {}
  events, rows = _assemble_events(ids, ms, codes, extra, ~duplicate)
  aux = {key: _take(table.column(cols[key]), rows)
         for key in ("category", "category_fallback", "brand") if key in cols}
  del ids, parsed, codes, ms, price, extra
  return CsvShard(events=events, rows=rows, table=table, aux=aux,
                  report=report)


@gin.configurable
def load_rees46(path: PathLike, *, name: Optional[str] = None) -> Loaded:
  """Reads a REES46 multi-category store CSV (e.g. `2019-Oct.csv`).

  Columns `event_time,event_type,product_id,category_id,category_code,brand,
  price,user_id,user_session`. `view` → click, `cart` → add_to_cart,
  `purchase` → purchase; `remove_from_cart` is dropped (`dropped_event_type`).
  Sessions are `user_session`. An item's category path is its `category_code`
  split on '.', or `(category_id,)` when none of its events has a code. Brand
  and price (first value per item) go to the catalog; `events["price"]` keeps
  each event's price.

  Args:
    path: the CSV file.
    name: the source name in the report (default: the path).

  Returns:
    `(events, catalog, report)`; see `load_csv`.
  """
  return load_csv(path, name=name, **rees46_options())


def csv_options_as_called(**explicit) -> Dict[str, Any]:
  """`load_csv`'s keyword arguments as a call passing `explicit` gets them.

  The explicit arguments, then gin's bindings of the others (`path` aside):
  what the Beam preparation's workers, which see no gin config, must be
  given to parse a log as `load_csv` would here (docs/beam.md).

  Args:
    **explicit: the arguments the call passes (e.g. `rees46_options()`).

  Returns:
    A dict of `load_csv` keyword arguments.
  """
  options = dict(explicit)
  selector = f"{load_csv.__module__}.{load_csv.__name__}"
  for name in inspect.signature(load_csv).parameters:
    if name == "path" or name in options:
      continue
    try:
      options[name] = gin.query_parameter(f"{selector}.{name}")
    except ValueError:
      continue
  return options


def rees46_options() -> Dict[str, Any]:
  """The `load_csv` arguments of `load_rees46` (also the Beam preparation's
  `csv_preset='rees46'`, docs/beam.md)."""
  return dict(
      columns={"user_id": "user_id", "item_id": "product_id",
               "event_type": "event_type", "timestamp": "event_time"},
      event_type_map=REES46_EVENT_TYPE_MAP,
      drop_event_types=("remove_from_cart",),
      timestamp_format="%Y-%m-%d %H:%M:%S UTC",
      session_column="user_session",
      category_column="category_code",
      category_separator=".",
      category_fallback_column="category_id",
      brand_column="brand",
      price_column="price")


@gin.configurable
def load_taobao(path: PathLike, fav_as: str = "add_to_cart", *,
                name: Optional[str] = None) -> Loaded:
  """Reads the Taobao UserBehavior CSV (Tianchi).

  No header; columns `user_id,item_id,category_id,behavior_type,timestamp`
  (unix seconds). `pv` → click, `cart` → add_to_cart, `buy` → purchase, `fav`
  → `fav_as`. Category paths are `(category_id,)`. There is no session column
  (sessions are derived from time gaps downstream).

  Args:
    path: the CSV file.
    fav_as: the canonical type for `fav` events, or 'drop' to drop them.
    name: the source name in the report (default: the path).

  Returns:
    `(events, catalog, report)`; see `load_csv`.

  Raises:
    ValueError: if `fav_as` is neither a canonical type nor 'drop'.
  """
  return load_csv(path, name=name, **taobao_options(fav_as))


def taobao_options(fav_as: str = "add_to_cart") -> Dict[str, Any]:
  """The `load_csv` arguments of `load_taobao` (also the Beam preparation's
  `csv_preset='taobao'`, docs/beam.md).

  Raises:
    ValueError: if `fav_as` is neither a canonical type nor 'drop'.
  """
  type_map = dict(TAOBAO_EVENT_TYPE_MAP)
  drop = ()
  if fav_as == "drop":
    drop = ("fav",)
  elif fav_as in schema.EVENT_TYPES:
    type_map["fav"] = fav_as
  else:
    raise ValueError(f"fav_as must be one of {list(schema.EVENT_TYPES)} or "
                     f"'drop', not {fav_as!r}.")
  return dict(
      columns={"user_id": 0, "item_id": 1, "event_type": 3, "timestamp": 4},
      header=False,
      event_type_map=type_map,
      drop_event_types=drop,
      timestamp_unit="s",
      category_column=2)


@gin.configurable
def load_otto(path: PathLike, *, name: Optional[str] = None,
              max_malformed_fraction: float = 0.1) -> Loaded:
  """Reads the OTTO JSONL event log (one session per line).

  Lines look like `{"session": 0, "events": [{"aid": 1, "ts": <ms>, "type":
  "clicks"}, ...]}`. `clicks` → click, `carts` → add_to_cart, `orders` →
  purchase; `user_id` and `session_id` are both the session; there are no
  categories, so every item has the unknown leaf.

  Report rows are events, except that a line which is not valid JSON counts as
  one row: `truncated_last_line` for the last line (a cut-off download),
  `malformed` elsewhere (line numbers in `report["malformed_examples"]`). A
  line without a session id drops its events as `missing_value`; exact
  duplicate events (same session, aid, ts and type) as `duplicate`.

  Args:
    path: the JSONL file (plain, gzip or zstd).
    name: the source name in the report (default: the path).
    max_malformed_fraction: the largest share of non-blank lines that may be
      dropped as not valid JSON before the load fails (see docs/loading.md).

  Returns:
    `(events, catalog, report)`; see `load_csv`.

  Raises:
    ValueError: on a JSON array, a line that is JSON but not a session
      object, too many lines that are not JSON, an unknown event type or an impossible timestamp (naming
      the file, line and value), or JSON that does not follow the schema.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise ValueError(f"{path}: no such file.")
  report = report_lib.new_report(name or path)
  report["path"] = path
  if not 0 <= max_malformed_fraction <= 1:
    raise ValueError(f"{path}: max_malformed_fraction must be in [0, 1], not "
                     f"{max_malformed_fraction!r}.")
  table, n_truncated, malformed_lines, line_of_row, compression = (
      _read_jsonl(path, max_malformed_fraction))
  if compression:
    report["compression"] = compression
  report_lib.add_dropped(report, "truncated_last_line", n_truncated)
  report_lib.add_dropped(report, "malformed", len(malformed_lines))
  if malformed_lines:
    report["malformed_examples"] = [f"line {n}" for n in
                                    malformed_lines[:_MAX_EXAMPLES]]
    logging.warning("%s: dropped %d malformed lines, e.g. line %d.", path,
                    len(malformed_lines), malformed_lines[0])

  lists = table.column("events")
  parent_row = pc.list_parent_indices(lists).to_numpy()  # Table row per event.
  flat = pc.list_flatten(lists)
  session = pc.take(table.column("session"), pa.array(parent_row))
  aid, ts, kind = (pc.struct_field(flat, f) for f in ("aid", "ts", "type"))
  report["rows_in"] = len(flat) + n_truncated + len(malformed_lines)

  def fail(mask: np.ndarray, what: str) -> ValueError:
    line = line_of_row(int(parent_row[np.argmax(mask)]))
    return ValueError(f"{path}: line {line}: {what}.")

  type_codes = _check_type_map(path, OTTO_EVENT_TYPE_MAP, ())
  codes = _type_codes(kind, type_codes)
  unknown = (codes == _UNKNOWN) & ~_is_null(kind)
  if unknown.any():
    value = kind[int(np.argmax(unknown))].as_py()
    raise fail(unknown, f"event type {value!r} is not one of "
               f"{sorted(OTTO_EVENT_TYPE_MAP)}")
  missing = _is_null(session) | _is_null(aid) | _is_null(ts) | _is_null(kind)
  ms = pc.fill_null(ts, 0).to_numpy()
  bad = ~missing & ((ms < MIN_TIMESTAMP_MS) | (ms >= MAX_TIMESTAMP_MS))
  if bad.any():
    raise fail(bad, f"timestamp {ms[np.argmax(bad)]} (ms) is "
               f"{_TIME_RANGE_TEXT}")
  keep = _apply_drops(report, missing, codes, ms, None)
  session = _to_numpy(pc.filter(session, pa.array(keep)))
  item = _to_numpy(pc.filter(aid, pa.array(keep)))
  ms, codes = ms[keep], codes[keep]
  duplicate = _find_duplicates(
      ms, codes, [session, item],
      lambda rows: pd.DataFrame({"s": session[rows], "a": item[rows],
                                 "t": ms[rows], "k": codes[rows]}))
  report["duplicate_key"] = ["session", "aid", "ts", "type"]
  report_lib.add_dropped(report, "duplicate", int(duplicate.sum()))
  ids = {"user_id": session, "session_id": session, "item_id": item}
  events, _ = _assemble_events(ids, ms, codes, {}, ~duplicate)
  catalog = _build_catalog(events, {}, report=report)
  _finish_report(report, events, catalog)
  _release_arrow_memory()
  return events, catalog, report


# ----------------------------------------------------------------------------
# CSV reading.


class _RetryAsStrings(Exception):
  """A typed column holds a bad value: re-read as text to locate it."""


# ----------------------------------------------------------------------------
# Raw input: compression, encoding, lines (see docs/loading.md).

_COMPRESSION_MAGIC = ((b"\x1f\x8b", "gzip"), (b"\x28\xb5\x2f\xfd", "zstd"))
_UNSUPPORTED_MAGIC = ((b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"),
                      (b"PK\x03\x04", "zip"), (b"PAR1", "Parquet"))
_UTF8_BOM = b"\xef\xbb\xbf"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_SCAN_CHUNK = 16 << 20
# Lines sampled at the top of a headerless file to find its number of fields.
_WIDTH_SAMPLE_LINES = 100


def _read_source(path: str) -> Tuple[pa.Buffer, Optional[str]]:
  """Returns the file's bytes (decompressed) and its compression, if any.

  Compression is detected from the first bytes, not from the file name.
  """
  with open(path, "rb") as f:
    magic = f.read(8)
  for prefix, codec in _COMPRESSION_MAGIC:
    if magic.startswith(prefix):
      try:
        with pa.input_stream(path, compression=codec) as stream:
          return stream.read_buffer(), codec
      except (OSError, pa.ArrowException) as e:
        raise ValueError(f"{path}: the file starts like {codec}-compressed "
                         f"data but cannot be decompressed ({e}); is it cut "
                         "off or damaged?") from None
  for prefix, kind in _UNSUPPORTED_MAGIC:
    if magic.startswith(prefix):
      raise ValueError(f"{path}: the file is {kind} data, not a text log; "
                       f"decompress or convert it first (gzip and zstd are "
                       "read directly).")
  if not os.path.getsize(path):
    return pa.py_buffer(b""), None
  return pa.memory_map(path).read_buffer(), None


def _is_utf8(encoding: str) -> bool:
  return encoding.lower().replace("_", "-") in ("utf-8", "utf8", "utf-8-sig")


def _line_at(data: pa.Buffer, offset: int) -> int:
  """The 1-based line holding byte `offset` (line breaks: LF, CRLF or CR)."""
  prefix = data[:offset].to_pybytes()
  return (prefix.count(b"\n") + prefix.count(b"\r") - prefix.count(b"\r\n")
          + 1)


def _check_text(path: str, data: pa.Buffer, encoding: str,
                compression: Optional[str]) -> bool:
  """Raises on binary data or bytes not valid in `encoding`.

  Returns:
    Whether the text holds a double quote (then a record could span lines).
  """
  try:
    decoder = codecs.getincrementaldecoder(encoding)()
  except LookupError:
    raise ValueError(f"{path}: unknown encoding {encoding!r}.") from None
  ascii_based = not re.search(r"utf.?(16|32)", encoding.lower())
  where = " (of the decompressed text)" if compression else ""
  has_quote = False
  view = memoryview(data)
  for start in range(0, len(view), _SCAN_CHUNK):
    chunk = view[start:start + _SCAN_CHUNK].tobytes()
    if ascii_based:
      nul = chunk.find(b"\x00")
      if nul >= 0:
        offset = start + nul
        raise ValueError(
            f"{path}: line {_line_at(data, offset)}, byte offset {offset}"
            f"{where}: a NUL byte; the file looks like binary data, not a "
            "text log.")
      has_quote = has_quote or b'"' in chunk
    try:
      decoder.decode(chunk, final=start + _SCAN_CHUNK >= len(view))
    except UnicodeDecodeError as e:
      offset = start + e.start
      raise ValueError(
          f"{path}: line {_line_at(data, offset)}, byte offset {offset}"
          f"{where}: byte 0x{data[offset]:02x} is not valid {encoding} "
          f"({e.reason}). If the file is in another encoding, pass it as "
          "encoding (e.g. encoding='latin-1').") from None
  return has_quote


def _count_nonblank_lines(data: pa.Buffer) -> int:
  """Counts lines with at least one byte besides line breaks (vectorized)."""
  values = np.frombuffer(data, dtype=np.uint8)
  total, after_break = 0, True
  for start in range(0, len(values), _SCAN_CHUNK):
    chunk = values[start:start + _SCAN_CHUNK]
    is_break = (chunk == 10) | (chunk == 13)
    starts = ~is_break
    starts[1:] &= is_break[:-1]
    starts[0] &= after_break
    total += int(np.count_nonzero(starts))
    after_break = bool(is_break[-1])
  return total


def _split_fields(line: str, delimiter: str) -> Optional[List[str]]:
  """A line's fields, or None when a quote opened on it is never closed."""
  if '"' not in line:
    return line.split(delimiter)
  try:
    return next(csv.reader([line], delimiter=delimiter, strict=True))
  except csv.Error as e:
    if "unexpected end of data" in str(e):
      return None
  return next(csv.reader([line], delimiter=delimiter))


class _Layout:
  """Where the header and the data are in a delimited file."""

  def __init__(self, names: List[str], first_row: List[str], body_start: int,
               first_line: int, header_text: Optional[str]):
    self.names = names
    self.first_row = first_row
    self.body_start = body_start  # byte offset of the line after the header
    self.first_line = first_line  # 1-based line number at body_start
    self.header_text = header_text


def _read_layout(path: str, data: pa.Buffer, delimiter: str, header: bool,
                 encoding: str) -> _Layout:
  """Finds the header (the first non-blank line) and the column names.

  Without a header the number of columns is the most common number of fields
  among the first non-blank lines (ties: the first line's).
  """
  start = len(_UTF8_BOM) if (_is_utf8(encoding) and
                             data[:3].to_pybytes() == _UTF8_BOM) else 0
  head = data[start:start + (1 << 20)].to_pybytes().decode(
      encoding, errors="replace")
  pieces = _LINE_BREAK.split(head)
  if len(data) - start > (1 << 20):
    pieces = pieces[:-1]  # The last piece may be cut by the 1 MiB window.
  lines = []  # (number, text, byte offset after its line break)
  offset = start
  breaks = _LINE_BREAK.findall(head)
  for number, (text, brk) in enumerate(zip(pieces, breaks + [""]), start=1):
    offset += len(text.encode(encoding, errors="replace")) + len(brk)
    if text:
      lines.append((number, text, offset))
    if len(lines) > _WIDTH_SAMPLE_LINES:
      break
  if not lines:
    raise ValueError(f"{path}: the file is empty (no non-blank line).")
  parsed = [(n, _split_fields(t, delimiter), t, o) for n, t, o in lines]
  if header:
    number, names, text, end = parsed[0]
    if names is None:
      raise ValueError(f"{path}: line {number}: the header opens a quote "
                       f"that is never closed: {text[:200]!r}.")
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
      raise ValueError(f"{path}: line {number}: the header repeats column "
                       f"name(s) {duplicated}.")
    first_row = next((f for _, f, _, _ in parsed[1:]
                      if f is not None and len(f) == len(names)), [])
    return _Layout(names, first_row, end, number + 1, text)
  widths = [len(f) for _, f, _, _ in parsed if f is not None]
  if not widths:
    raise ValueError(f"{path}: line {lines[0][0]}: a quote opened on the "
                     "first lines is never closed.")
  counts = collections.Counter(widths)
  width = max(counts, key=lambda w: (counts[w], w == widths[0]))
  first_row = next(f for _, f, _, _ in parsed
                   if f is not None and len(f) == width)
  return _Layout([str(i) for i in range(width)], first_row, start, 1, None)


class _CsvContext:
  """The file, its dialect and its data lines, for reading and for errors."""

  def __init__(self, path: str, layout: _Layout, delimiter: str,
               encoding: str, na_values: Set[str], data: pa.Buffer,
               has_quote: bool, max_malformed_fraction: float):
    self.path = path
    self.names = layout.names
    self.layout = layout
    self.delimiter = delimiter
    self.encoding = encoding
    self.na_values = na_values
    self.max_malformed_fraction = max_malformed_fraction
    self.has_quote = has_quote
    self.body = data[layout.body_start:]
    self.body_encoding = encoding
    # Set by `scan()`: the line of each well-formed row, and the others.
    self.row_lines: Optional[np.ndarray] = None
    self.invalid: Optional[List[Tuple[Optional[int], str, int]]] = None
    self.careful = False

  def scan(self) -> bytes:
    """Reads the data line by line; returns the well-formed lines as UTF-8.

    Sets `row_lines` (the 1-based line of each well-formed row) and `invalid`
    ((fields or None for an unclosed quote, text, line) per other line).
    """
    text = self.body.to_pybytes().decode(self.encoding, errors="replace")
    if text.startswith("\ufeff"):
      text = text[1:]
    width, delimiter = len(self.names), self.delimiter
    good, row_lines, invalid = [], [], []
    for k, line in enumerate(_LINE_BREAK.split(text)):
      if not line:
        continue
      fields = _split_fields(line, delimiter)
      number = self.layout.first_line + k
      if fields is not None and len(fields) == width:
        good.append(line)
        row_lines.append(number)
      else:
        invalid.append((None if fields is None else len(fields), line,
                        number))
    self.row_lines = np.array(row_lines, dtype=np.int64)
    self.invalid = invalid
    return "\n".join(good).encode("utf-8")

  def read_carefully(self) -> None:
    """Switches to the well-formed lines of a line-by-line scan."""
    logging.info("%s: a quote spans lines; reading the file line by line.",
                 self.path)
    self.body = pa.py_buffer(self.scan())
    self.body_encoding = "utf-8"
    self.careful = True

  def line_of_row(self, row: int) -> int:
    """The 1-based line of well-formed row `row` of the table."""
    if self.row_lines is None:
      self.scan()
    return int(self.row_lines[row])

  def error(self, column: pa.ChunkedArray, name: str, bad: np.ndarray,
            problem: str, hint: str) -> ValueError:
    """Builds the error for the first row of text `column` flagged in `bad`."""
    row = int(np.argmax(bad))
    value = column[row].as_py()
    line = self.line_of_row(row)
    if self.layout.header_text is not None and value in self.names:
      hint += (f" Line {line} looks like a repeat of the header (files "
               "joined with their headers?).")
    return ValueError(
        f"{self.path}: line {line}, column {name!r}: {problem} {value!r} "
        f"({int(bad.sum())} such row(s)). {hint}")


def _resolve_columns(path: str, names: List[str], header: bool,
                     columns: Mapping[str, ColumnRef],
                     optional: Mapping[str, Optional[ColumnRef]]
                     ) -> Dict[str, str]:
  """Maps canonical keys to the file's column names, checking every one."""
  allowed = set(schema.REQUIRED_EVENT_COLUMNS) | set(_OPTIONAL_COLUMNS)
  unknown = sorted(set(columns) - allowed)
  if unknown:
    raise ValueError(f"{path}: unknown key(s) {unknown} in columns; allowed "
                     f"are {sorted(allowed)}.")
  missing = [k for k in schema.REQUIRED_EVENT_COLUMNS if k not in columns]
  if missing:
    raise ValueError(f"{path}: columns must map {missing} to source columns.")
  refs = dict(columns)
  for key, ref in optional.items():
    if ref is None:
      continue
    if key in refs and refs[key] != ref:
      raise ValueError(
          f"{path}: {_OPTIONAL_COLUMNS[key]}={ref!r} contradicts "
          f"columns[{key!r}]={refs[key]!r}; give it once.")
    refs[key] = ref
  resolved = {}
  for key, ref in refs.items():
    if isinstance(ref, (int, np.integer)) and not isinstance(ref, bool):
      if not 0 <= ref < len(names):
        raise ValueError(
            f"{path}: column index {ref} for {key!r} is out of range; the file "
            f"has {len(names)} columns (0-based indices).")
      resolved[key] = names[int(ref)]
    elif not header:
      raise ValueError(f"{path}: the file has no header, so {key!r} must be a "
                       f"0-based column index, not {ref!r}.")
    elif ref not in names:
      raise ValueError(f"{path}: column {ref!r} (for {key!r}) is not in the "
                       f"header {names}.")
    else:
      resolved[key] = ref
  return resolved


def _guess_column_types(cols: Mapping[str, str], names: List[str],
                        first_row: List[str], unit: Optional[str],
                        fmt: Optional[str]) -> Dict[str, pa.DataType]:
  """Column types for the fast read, guessed from the first data row.

  Text timestamps stay text: `_parse_timestamps` parses and checks them.
  """
  types = {n: pa.string() for n in names}
  sample = dict(zip(names, first_row)) if len(first_row) == len(names) else {}

  def integer(name: str) -> bool:
    return re.fullmatch(r"-?\d{1,18}", sample.get(name, "")) is not None

  for key in ("user_id", "item_id", "session_id"):
    if key in cols and integer(cols[key]):
      types[cols[key]] = pa.int64()
  types[cols["event_type"]] = pa.dictionary(pa.int32(), pa.string())
  if "price" in cols:
    types[cols["price"]] = pa.float64()
  del fmt  # Text timestamps are read as text.
  ts = cols["timestamp"]
  if unit is not None and integer(ts):
    # Else text: float64 would round ns timestamps (> 2**53).
    types[ts] = pa.int64()
  return types


def _read_table(ctx: _CsvContext, types: Mapping[str, pa.DataType]
                ) -> Tuple[pa.Table, List[Tuple[Optional[int], str,
                                                Optional[int]]]]:
  """Parses the data lines; collects the rows that are not well-formed.

  A file with a double quote is checked to have one row per non-blank line (a
  quote left open swallows the lines after it); if not, it is read line by
  line (`_CsvContext.read_carefully`).

  Returns:
    (table, invalid): invalid rows as (number of fields, or None for an
    unclosed quote; text; 1-based line, or None when not known).

  Raises:
    pa.ArrowInvalid: if a value does not convert to a non-string type.
  """
  invalid = []

  def on_invalid(row) -> str:
    invalid.append((row.actual_columns, row.text, None))
    return "skip"

  if ctx.careful:
    types = {n: pa.string() for n in ctx.names}
  if not _count_nonblank_lines(ctx.body[:1 << 16]) and len(ctx.body) <= (
      1 << 16):  # No data rows (Arrow rejects an empty input).
    return pa.table({n: pa.array([], type=types.get(n, pa.string()))
                     for n in ctx.names}), list(ctx.invalid or [])
  table = pa_csv.read_csv(
      pa.BufferReader(ctx.body),
      read_options=pa_csv.ReadOptions(
          column_names=ctx.names, encoding=ctx.body_encoding,
          block_size=_BLOCK_SIZE),
      parse_options=pa_csv.ParseOptions(
          delimiter=ctx.delimiter, invalid_row_handler=on_invalid),
      convert_options=pa_csv.ConvertOptions(
          column_types=dict(types), null_values=sorted(ctx.na_values),
          strings_can_be_null=True, quoted_strings_can_be_null=True))
  if ctx.careful:
    return table, list(ctx.invalid)
  if ctx.has_quote and (table.num_rows + len(invalid) !=
                        _count_nonblank_lines(ctx.body)):
    ctx.read_carefully()
    return _read_table(ctx, types)
  return table, invalid


def _last_line(data: pa.Buffer, encoding: str) -> str:
  """Returns the last non-blank line of the data, without its line break."""
  position = len(data)
  block = b""
  while position > 0:
    step = min(1 << 16, position)
    position -= step
    block = data[position:position + step].to_pybytes() + block
    if len(_LINE_BREAK.findall(block.rstrip(b"\r\n").decode(
        "latin-1"))) >= 1:
      break
  text = block.decode(encoding, errors="replace")
  lines = [l for l in _LINE_BREAK.split(text) if l.strip()]
  return lines[-1] if lines else ""


def _count_invalid_rows(ctx: _CsvContext, invalid: Sequence[Tuple[Optional[
    int], str, Optional[int]]], n_rows: int, report: report_lib.Report
                        ) -> None:
  """Counts rows that are not well-formed, by reason; raises if too many.

  A last line with fewer fields than the header (or an unclosed quote) is
  `truncated_last_line`; other lines with an unclosed quote are
  `unclosed_quote`, lines with another number of fields `malformed`.
  """
  if not invalid:
    return
  last = _last_line(ctx.body, ctx.body_encoding)
  width = len(ctx.names)
  truncated = None
  for i in range(len(invalid) - 1, -1, -1):
    fields, text, _ = invalid[i]
    if (fields is None or fields < width) and text.rstrip("\r") == last:
      truncated = i
      break
  others = [row for i, row in enumerate(invalid) if i != truncated]
  report_lib.add_dropped(report, "truncated_last_line",
                         int(truncated is not None))
  if not others:
    return
  unclosed = sum(fields is None for fields, _, _ in others)
  report_lib.add_dropped(report, "unclosed_quote", unclosed)
  report_lib.add_dropped(report, "malformed", len(others) - unclosed)
  data_rows = n_rows + len(others)
  if len(others) > ctx.max_malformed_fraction * data_rows:
    raise _systematic_error(ctx, others, data_rows)
  report["malformed_examples"] = [
      (f"line {line}: " if line else "") + text[:200]
      for _, text, line in others[:_MAX_EXAMPLES]]
  logging.warning(
      "%s: dropped %d row(s) that are not well-formed (a number of fields "
      "other than %d, or an unclosed quote), e.g. %r.", ctx.path, len(others),
      width, report["malformed_examples"][0])


def _systematic_error(ctx: _CsvContext, others, data_rows: int) -> ValueError:
  """The error for a file where too many rows are not well-formed."""
  if others[0][2] is None:  # Line numbers come from a line-by-line scan.
    ctx.scan()
    truncated = len(others) < len(ctx.invalid)
    others = ctx.invalid[:len(ctx.invalid) - truncated] if truncated else (
        ctx.invalid)
  fields, text, line = others[0]
  width = len(ctx.names)
  what = (f"the header (line {ctx.layout.first_line - 1}) has {width} "
          "columns" if ctx.layout.header_text is not None else
          f"most of the first lines have {width} fields")
  if fields is None:
    fault = f"line {line} opens a quote that is never closed"
    hint = "Close or remove the quote."
  else:
    fault = f"line {line} has {fields}"
    widths = collections.Counter(f for f, _, _ in others)
    common, _ = widths.most_common(1)[0]
    ends = all(t.rstrip("\r").endswith(ctx.delimiter) for _, t, _ in others)
    if common == width + 1 and ends:
      hint = (f"Every such row ends with the delimiter {ctx.delimiter!r}: "
              "remove the trailing delimiter, or name the extra column in "
              "the header.")
    elif common == width + 1:
      hint = ("The rows have one field more than the header: is a column "
              "name missing from the header?")
    elif common == width - 1:
      hint = ("The rows have one field fewer than the header: does the "
              "header name a column the rows do not have?")
    elif common == 1:
      hint = f"Is the delimiter {ctx.delimiter!r} right?"
    else:
      hint = f"Check the delimiter ({ctx.delimiter!r}) and the header."
  share = len(others) / max(data_rows, 1)
  return ValueError(
      f"{ctx.path}: {len(others)} of {data_rows} data rows ({share:.0%}) are "
      f"not well-formed, more than max_malformed_fraction="
      f"{ctx.max_malformed_fraction} allows; {what}, {fault}: "
      f"{text[:200]!r}. {hint} (Pass a larger max_malformed_fraction to "
      "drop such rows and load the rest.)")


# ----------------------------------------------------------------------------
# Column conversion.


def _is_text(column) -> bool:
  return pa.types.is_string(column.type) or pa.types.is_large_string(
      column.type)


def _is_null(column) -> np.ndarray:
  if column.null_count == 0:
    return np.zeros(len(column), dtype=bool)
  return pc.is_null(column).to_numpy(zero_copy_only=False)


def _to_numpy(column) -> np.ndarray:
  if isinstance(column, pa.ChunkedArray):
    column = column.combine_chunks()
  return column.to_numpy(zero_copy_only=False)


def _take(column, rows: np.ndarray):
  return column.take(pa.array(rows, type=pa.int64()))


def _check_type_map(path: str, event_type_map: Mapping[str, str],
                    drop_event_types: Sequence[str]) -> Dict[str, int]:
  """Validates the type mapping; returns {source type: code}, -2 = dropped."""
  if isinstance(drop_event_types, str):
    drop_event_types = (drop_event_types,)
  codes = {}
  for source, target in event_type_map.items():
    if target not in schema.EVENT_TYPES:
      raise ValueError(
          f"{path}: event_type_map maps {source!r} to {target!r}, which is "
          f"not a canonical type {list(schema.EVENT_TYPES)}; list source types "
          "to drop in drop_event_types instead.")
    codes[str(source)] = schema.EVENT_TYPES.index(target)
  dropped = {str(t) for t in drop_event_types}
  both = sorted(dropped & set(codes))
  if both:
    raise ValueError(f"{path}: event type(s) {both} are both mapped and "
                     "dropped; remove them from event_type_map or from "
                     "drop_event_types.")
  for source in dropped:
    codes[source] = _DROPPED
  return codes


def _type_codes(column, type_codes: Mapping[str, int]) -> np.ndarray:
  """Maps source types to int8 codes (-1 unknown or null, -2 dropped).

  Dictionary-encoded columns are mapped on their dictionaries.
  """
  keys = pa.array(list(type_codes), type=pa.string())
  lookup = np.array(list(type_codes.values()) + [_UNKNOWN], dtype=np.int8)

  def codes_of(values) -> np.ndarray:
    position = pc.index_in(values, value_set=keys)
    return lookup[pc.fill_null(position, len(keys)).to_numpy()]

  if not pa.types.is_dictionary(column.type):
    return codes_of(column)
  chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
  parts = [np.empty(0, dtype=np.int8)]
  for chunk in chunks:
    per_entry = np.append(codes_of(chunk.dictionary), np.int8(_UNKNOWN))
    indices = pc.fill_null(chunk.indices, len(chunk.dictionary))
    parts.append(per_entry[indices.to_numpy()])
  return np.concatenate(parts)


def _parse_columns(ctx: _CsvContext, table: pa.Table, cols: Mapping[str, str],
                   type_codes: Mapping[str, int], unit: Optional[str],
                   fmt: Optional[str], default_year: Optional[int] = None):
  """Returns (missing mask, type codes, ms, price or None) for every row."""
  required = ["user_id", "item_id", "event_type", "timestamp"]
  required += ["session_id"] if "session_id" in cols else []
  missing = np.zeros(table.num_rows, dtype=bool)
  for key in required:
    missing |= _is_null(table.column(cols[key]))

  name = cols["event_type"]
  column = table.column(name)
  codes = _type_codes(column, type_codes)
  unknown = (codes == _UNKNOWN) & ~_is_null(column)
  if unknown.any():
    mapped = sorted(k for k, v in type_codes.items() if v != _DROPPED)
    dropped = sorted(k for k, v in type_codes.items() if v == _DROPPED)
    raise ctx.error(
        column, name, unknown, "unknown event type",
        f"Map it in event_type_map (now {mapped}) or list it in "
        f"drop_event_types (now {dropped}).")

  column = table.column(cols["timestamp"])
  if default_year is not None:
    # A format without a year: read each value as "<year>-<value>".
    if not pa.types.is_string(column.type):
      column = column.cast(pa.string())
    column = pc.binary_join_element_wise(f"{default_year:04d}-", column, "")
    fmt = "%Y-" + fmt
  ms = _parse_timestamps(ctx, column, cols["timestamp"], unit, fmt)
  price = None
  if "price" in cols:
    price = _parse_numbers(ctx, table.column(cols["price"]), cols["price"],
                           "price")
  return missing, codes, ms, price


def _parse_timestamps(ctx: _CsvContext, column: pa.ChunkedArray, name: str,
                      unit: Optional[str], fmt: Optional[str]) -> np.ndarray:
  """Returns int64 ms per row (0 where null); raises on a bad value."""
  null = _is_null(column)
  if unit is not None:
    multiplier, divisor = _UNITS[unit]
    values = _parse_numbers(ctx, column, name, f"timestamp (unit {unit!r})",
                            integer=True)
    # Valid values lie in [low, high) in the source unit (ceil of the bounds).
    low = -(-MIN_TIMESTAMP_MS * divisor // multiplier)
    high = -(-MAX_TIMESTAMP_MS * divisor // multiplier)
    bad = (values < low) | (values >= high) | np.isnan(values) if (
        values.dtype.kind == "f") else (values < low) | (values >= high)
    bad &= ~null
    if bad.any():
      raise _value_error(ctx, column, name, bad,
                         f"timestamp (unit {unit!r}) {_TIME_RANGE_TEXT}:",
                         "Check timestamp_unit.")
    if null.any():
      values = np.where(null, 0, values)
    if values.dtype.kind == "f":
      return np.floor(values * multiplier / divisor).astype(np.int64)
    if multiplier == divisor:  # Already ms: no 10^7-element division.
      return values
    return values * multiplier // divisor

  if pa.types.is_timestamp(column.type):
    ms = pc.fill_null(pc.cast(column, pa.int64()), 0).to_numpy()
  else:
    parsed = pc.strptime(column, format=fmt, unit="ms", error_is_null=True)
    ms = np.array(pc.fill_null(pc.cast(parsed, pa.int64()), 0).to_numpy())
    failed = _is_null(parsed) & ~null
    impossible = _impossible_times(column, parsed, ~failed & ~null, fmt)
    if impossible is not None:
      row, reason = impossible
      bad = np.zeros(len(column), dtype=bool)
      bad[row] = True
      raise ctx.error(column, name, bad, f"not a valid date and time "
                      f"({reason}):", "Fix the value or clean the file first.")
    if failed.any():  # Arrow's strptime lacks e.g. %f: retry with pandas.
      rows = np.flatnonzero(failed)
      retry = pd.to_datetime(pd.Series(_to_numpy(_take(column, rows))),
                             format=fmt, errors="coerce", utc=True)
      ok = retry.notna().to_numpy()
      ms[rows[ok]] = ((retry[ok] - pd.Timestamp(0, tz="UTC")) //
                      pd.Timedelta(1, "ms")).to_numpy(dtype=np.int64)
      failed[rows[ok]] = False
      if failed.any():
        raise ctx.error(column, name, failed,
                        f"timestamp does not match the format {fmt!r}:",
                        "Check timestamp_format.")
  bad = ~null & ((ms < MIN_TIMESTAMP_MS) | (ms >= MAX_TIMESTAMP_MS))
  if bad.any():
    hint = "Check timestamp_format."
    if fmt is not None and not any(d in fmt for d in ("%Y", "%y", "%G",
                                                      "%s")):
      hint = (f"The format {fmt!r} has no year (strptime reads 1900): bind "
              "load_csv.default_year, or check timestamp_format.")
    raise _value_error(ctx, column, name, bad,
                       f"timestamp {_TIME_RANGE_TEXT}:", hint)
  return ms


# strptime fields that Arrow's parser rolls over instead of rejecting (Feb 30
# becomes Mar 2, second 60 the next minute), their width as text, and how
# small the rolled-over value is.
_CALENDAR_FIELDS = {"d": (pc.day, 3), "H": (pc.hour, 0), "M": (pc.minute, 0),
                    "S": (pc.second, 0)}
_FIXED_WIDTH = {"Y": 4, "m": 2, "d": 2, "H": 2, "M": 2, "S": 2, "y": 2}


def _field_offsets(fmt: str) -> Dict[str, int]:
  """Character offsets of the fields of `fmt` preceded only by fixed widths."""
  offsets, position, i = {}, 0, 0
  while i < len(fmt):
    if fmt[i] != "%":
      position, i = position + 1, i + 1
      continue
    code = fmt[i + 1:i + 2]
    if code == "%":
      position += 1
    elif code in _FIXED_WIDTH:
      offsets.setdefault(code, position)
      position += _FIXED_WIDTH[code]
    else:
      break
    i += 2
  return offsets


def _two_digits(column: pa.ChunkedArray, start: int) -> np.ndarray:
  """The number in characters [start, start + 2) of each value, -1 if none."""
  parts = []
  for chunk in column.chunks:
    piece = pc.binary_slice(chunk.cast(pa.binary()), start, start + 2)
    offsets = np.frombuffer(piece.buffers()[1], dtype=np.int32)[
        piece.offset:piece.offset + len(piece) + 1]
    values = np.full(len(piece), -1, dtype=np.int64)
    ok = np.diff(offsets) == 2
    if ok.any() and piece.buffers()[2] is not None:
      data = np.frombuffer(piece.buffers()[2], dtype=np.uint8)
      first = offsets[:-1][ok]
      tens, ones = data[first].astype(np.int64) - 48, data[first + 1] - 48
      digits = (tens >= 0) & (tens <= 9) & (ones >= 0) & (ones <= 9)
      values[np.flatnonzero(ok)[digits]] = (tens * 10 + ones)[digits]
    parts.append(values)
  return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def _impossible_times(column: pa.ChunkedArray, parsed: pa.ChunkedArray,
                      rows: np.ndarray, fmt: str
                      ) -> Optional[Tuple[int, str]]:
  """Finds a value that Arrow parsed by rolling over an impossible field.

  Fields at fixed offsets are compared, vectorized, with the parsed time; the
  rows that differ (and, for fields after a variable-width one, the rows whose
  parsed field is small enough to be a roll-over) are checked by Python's
  `datetime.strptime`, which rejects Feb 30 and second 60.

  Returns:
    (row, reason) of the first impossible value, or None.
  """
  if not rows.any():
    return None
  offsets = {} if "%z" in fmt or "%Z" in fmt else _field_offsets(fmt)
  suspect = np.zeros(len(rows), dtype=bool)
  for code, (component, small) in _CALENDAR_FIELDS.items():
    if "%" + code not in fmt:
      continue
    value = pc.fill_null(component(parsed), -1).to_numpy()
    if code in offsets:
      suspect |= _two_digits(column, offsets[code]) != value
    else:
      suspect |= value <= small
  suspect &= rows
  for row in np.flatnonzero(suspect):
    text = column[int(row)].as_py()
    try:
      datetime.datetime.strptime(text, fmt)
    except ValueError as e:
      return int(row), str(e)
  return None


def _value_error(ctx: _CsvContext, column: pa.ChunkedArray, name: str,
                 bad: np.ndarray, problem: str, hint: str) -> Exception:
  """The error for bad rows; typed columns are re-read as text to name them."""
  if not _is_text(column):
    return _RetryAsStrings(f"column {name!r}: {problem}")
  return ctx.error(column, name, bad, problem, hint)


def _parse_numbers(ctx: _CsvContext, column: pa.ChunkedArray, name: str,
                   what: str, integer: bool = False) -> np.ndarray:
  """Parses decimal numbers: int64 when `integer` and possible, else float64.

  Nulls become 0 (int64) or NaN (float64). NaN and infinities are not
  numbers here, on every path. Raises naming the first bad row.
  """
  if pa.types.is_integer(column.type) and integer:
    return pc.fill_null(column, 0).to_numpy()
  if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
    values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    if not np.isfinite(values[~_is_null(column)]).all():
      raise _RetryAsStrings(f"column {name!r}: {what} is not finite")
    return values
  if integer:
    try:
      return pc.fill_null(pc.cast(column, pa.int64()), 0).to_numpy()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
      pass
  number = pc.fill_null(pc.match_substring_regex(column, _NUMBER_REGEX), True)
  bad = ~number.to_numpy(zero_copy_only=False)
  values = None
  if not bad.any():
    values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    bad = ~np.isfinite(values) & ~_is_null(column)  # e.g. 1e999
  if bad.any():
    raise ctx.error(column, name, bad, f"{what} is not a finite number:",
                    "Fix the value or clean the file first.")
  return values


def _convert_ids(column: pa.ChunkedArray):
  """Returns int64 NumPy ids if every value is an integer, else the column."""
  if pa.types.is_integer(column.type):
    return _to_numpy(pc.cast(column, pa.int64()))
  try:
    return _to_numpy(pc.cast(column, pa.int64()))
  except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
    return column


# ----------------------------------------------------------------------------
# Drops, duplicates and assembly (shared by the CSV and JSONL loaders).


def _apply_drops(report: report_lib.Report, missing: np.ndarray,
                 codes: np.ndarray, ms: np.ndarray,
                 time_range: Optional[Tuple[int, int]]) -> np.ndarray:
  """Counts missing, dropped-type and out-of-range rows; returns kept rows."""
  keep = ~missing
  report_lib.add_dropped(report, "missing_value", int(missing.sum()))
  dropped = keep & (codes == _DROPPED)
  report_lib.add_dropped(report, "dropped_event_type", int(dropped.sum()))
  keep &= ~dropped
  if time_range is not None:
    outside = keep & ((ms < time_range[0]) | (ms >= time_range[1]))
    report_lib.add_dropped(report, "out_of_range", int(outside.sum()))
    keep &= ~outside
  return keep


def _hash_key(column) -> np.ndarray:
  """A uint64 per row, equal for equal values (strings via dictionary ids)."""
  if isinstance(column, (pa.Array, pa.ChunkedArray)):
    if isinstance(column, pa.ChunkedArray):
      column = column.combine_chunks()
    column = pc.fill_null(pc.dictionary_encode(column).indices, -1).to_numpy()
  elif column.dtype.kind not in "iub":
    column = pd.factorize(column)[0]
  return _as_uint64(column)


def _as_uint64(values: np.ndarray) -> np.ndarray:
  """The bits of 64-bit integers as uint64 (a view, no copy), else a cast."""
  if values.dtype in (np.int64, np.uint64):
    return np.ascontiguousarray(values).view(np.uint64)
  return values.astype(np.uint64)


def _find_duplicates(ms: np.ndarray, codes: np.ndarray, ids: Sequence[Any],
                     fetch: Callable[[np.ndarray], pd.DataFrame]) -> np.ndarray:
  """Marks rows equal in every source field to an earlier row.

  Equal rows have equal timestamps. When the rows are in time order (as most
  logs are written), only rows that share their timestamp with a neighbour
  can repeat one, and only those are hashed. A 64-bit hash of (timestamp,
  type, ids) is sorted; only rows whose hash repeats are compared exactly,
  on all source fields as returned by `fetch(rows)`.
  """
  duplicate = np.zeros(len(ms), dtype=bool)
  if len(ms) < 2:
    return duplicate
  rows = None  # all rows
  if not (ms[1:] < ms[:-1]).any():
    tie = ms[1:] == ms[:-1]
    in_tie = np.zeros(len(ms), dtype=bool)
    in_tie[1:] = tie
    in_tie[:-1] |= tie
    del tie
    rows = np.flatnonzero(in_tie)
    del in_tie
    if len(rows) < 2:
      return duplicate

  def subset(column):
    if rows is None:
      return column
    if isinstance(column, (pa.Array, pa.ChunkedArray)):
      return _take(column, rows)
    return column[rows]

  with np.errstate(over="ignore"):
    key = _as_uint64(subset(ms)) * np.uint64(0x9E3779B97F4A7C15)
    key ^= subset(codes).astype(np.uint64)
    for column in ids:
      key = key * np.uint64(0xBF58476D1CE4E5B9) ^ _hash_key(subset(column))
  ordered = np.sort(key)
  repeated = ordered[1:][ordered[1:] == ordered[:-1]]
  if not len(repeated):
    return duplicate
  candidates = np.flatnonzero(pd.Series(key).isin(np.unique(repeated)))
  if rows is not None:
    candidates = rows[candidates]
  exact = fetch(candidates).duplicated(keep="first").to_numpy()
  duplicate[candidates[exact]] = True
  return duplicate


def _assemble_events(ids: Mapping[str, Any], ms: np.ndarray,
                     codes: np.ndarray, extra: Mapping[str, np.ndarray],
                     keep: np.ndarray) -> Tuple[pd.DataFrame, np.ndarray]:
  """Builds the time-sorted events; returns them and their source rows."""
  rows = np.flatnonzero(keep)
  kept_ms = ms if len(rows) == len(ms) else ms[rows]
  identity = len(rows) == len(ms)
  if len(rows) > 1 and (kept_ms[1:] < kept_ms[:-1]).any():
    rows = rows[np.argsort(kept_ms, kind="stable")]
    identity = False

  def column(values):  # no copy when every row stays where it is
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
      return (values if identity else _take(values, rows)).to_pandas()
    return values if identity else values[rows]

  data = {}
  for key in ("user_id", "session_id"):
    if key in ids:
      data[key] = column(ids[key])
  data["timestamp"] = column(ms).astype(np.int64, copy=False)
  data["item_id"] = column(ids["item_id"])
  data["event_type"] = pd.Categorical.from_codes(
      codes[rows], dtype=schema.EVENT_TYPE_DTYPE)
  for key, values in extra.items():
    data[key] = column(values)
  # copy=False keeps each column as its own block: no consolidation copy.
  return pd.DataFrame(data, copy=False), rows


def _release_arrow_memory() -> None:
  """Returns the memory of freed Arrow buffers (the parsed file) to the OS.

  Arrow's allocator keeps freed pages for reuse; after a load, the table it
  parsed is gone and nothing else in the preparation allocates through
  Arrow, so without this the resident size stays ~50 bytes per event higher.
  """
  pa.default_memory_pool().release_unused()


# ----------------------------------------------------------------------------
# Catalog.


def _first_per_item(item_codes: np.ndarray, n_items: int, values
                    ) -> Tuple[np.ndarray, np.ndarray]:
  """Each item's first non-null value (rows in events order).

  Args:
    item_codes: the item of each row, as codes 0..n_items-1.
    n_items: the number of items.
    values: a value per row (Arrow column or NumPy array).

  Returns:
    (codes, distinct): the code of each item's value in `distinct` (an object
    array), -1 for an item without a value.
  """
  n = len(item_codes)
  if isinstance(values, (pa.Array, pa.ChunkedArray)):
    present = np.flatnonzero(~_is_null(values))
  else:
    present = np.flatnonzero(pd.notna(values))
  first = np.full(n_items, n, dtype=np.int64)
  np.minimum.at(first, item_codes[present], present)
  has = first < n
  codes = np.full(n_items, -1, dtype=np.int64)
  if isinstance(values, (pa.Array, pa.ChunkedArray)):
    chosen = _take(values, first[has])
    if isinstance(chosen, pa.ChunkedArray):
      chosen = chosen.combine_chunks()
    if pa.types.is_dictionary(chosen.type):
      chosen = chosen.dictionary_decode()
    encoded = pc.dictionary_encode(chosen)
    codes[has] = encoded.indices.to_numpy()
    distinct = _object_array(encoded.dictionary.to_pylist())
  else:
    codes[has], uniques = pd.factorize(np.asarray(values)[first[has]])
    distinct = _object_array(list(uniques))
  return codes, distinct


def _object_array(values: Sequence[Any]) -> np.ndarray:
  """A 1-D object array (np.array would turn tuples into a 2-D array)."""
  out = np.empty(len(values), dtype=object)
  for i, value in enumerate(values):
    out[i] = value
  return out


def _decode(codes: np.ndarray, distinct: np.ndarray, missing=None):
  """`distinct[codes]` with `missing` where the code is -1."""
  out = np.full(len(codes), missing, dtype=object)
  has = codes >= 0
  out[has] = distinct[codes[has]]
  return out


def _build_catalog(events: pd.DataFrame,
                   aux: Mapping[str, pa.ChunkedArray], *,
                   report: report_lib.Report,
                   **catalog_options) -> pd.DataFrame:
  """Builds the catalog of the items of `events` (`aux` rows match events).

  Paths are computed once per distinct category value, not per item;
  `catalog_options` are `catalog_from_first_values`' keyword arguments.
  """
  item_codes, items = pd.factorize(events["item_id"])
  items = pd.Series(items)
  n_items = len(items)
  first = {key: _first_per_item(item_codes, n_items, aux[key])
           for key in ("category", "category_fallback", "brand")
           if key in aux}
  if "price" in events.columns:
    first["price"] = _first_per_item(item_codes, n_items,
                                     events["price"].to_numpy())
  return catalog_from_first_values(items, first, report=report,
                                   **catalog_options)


def catalog_from_first_values(
    items: pd.Series,
    first: Mapping[str, Tuple[np.ndarray, np.ndarray]], *,
    report: report_lib.Report,
    category_separator: Optional[str] = None,
    catalog_path: Optional[PathLike] = None,
    category_tree_path: Optional[PathLike] = None,
    encoding: str = "utf-8",
    na_values: Sequence[str] = ("",)) -> pd.DataFrame:
  """The catalog from each item's first value of the catalog columns.

  The category rules of `load_csv` (docs/loading.md): the path of the first
  `category` value (split on `category_separator` or resolved in the
  category tree), else of `catalog_path`'s row, else `(fallback,)`, else
  unknown; brand and price are the first values.

  Args:
    items: the item ids, in catalog order.
    first: {column: (codes, distinct)} for `category`, `category_fallback`,
      `brand` and `price` where the source has them: per item the code of
      its first non-null value in `distinct` (an object array), -1 if none.
    report: gets `categories_not_in_tree` with a category tree.
    category_separator: see `load_csv`.
    catalog_path: see `load_csv`.
    category_tree_path: see `load_csv`.
    encoding: see `load_csv`.
    na_values: see `load_csv`.

  Returns:
    The canonical catalog (`schema.make_catalog`).
  """
  n_items = len(items)
  none = (np.full(n_items, -1), _object_array([]))
  primary = fallback = none
  if "category" in first:
    primary = first["category"]
  elif catalog_path is not None:
    mapping = _read_catalog_file(catalog_path, encoding, na_values)
    codes, uniques = pd.factorize(items.astype(str).map(mapping))
    primary = codes, _object_array(list(uniques))
  if "category_fallback" in first:
    fallback = first["category_fallback"]

  tree = None
  if category_tree_path is not None:
    tree = category_tree_lib.read_category_tree(category_tree_path)
  not_in_tree = set()

  def path_of(value) -> Tuple[str, ...]:
    value = str(value)
    if category_separator is not None:
      return tuple(p for p in value.split(category_separator) if p)
    if tree is not None:
      if value in tree:
        return tree[value]
      not_in_tree.add(value)
    return (value,)

  paths = _decode(fallback[0], _object_array(
      [(str(v),) for v in fallback[1]]))
  has_primary = primary[0] >= 0
  paths[has_primary] = _decode(primary[0], _object_array(
      [path_of(v) for v in primary[1]]))[has_primary]
  if tree is not None:
    report["categories_not_in_tree"] = len(not_in_tree)

  brand = price = None
  if "brand" in first:
    brand = _decode(*first["brand"])
  if "price" in first:
    codes, distinct = first["price"]
    price = _decode(codes, distinct, missing=np.nan).astype(np.float64)
  return schema.make_catalog(items, paths, brand=brand, price=price)


def _read_catalog_file(path: PathLike, encoding: str,
                       na_values: Sequence[str]) -> pd.Series:
  """Reads an `item_id,category` CSV into item (text) → category."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise ValueError(f"catalog_path {path}: no such file.")
  data, compression = _read_source(path)
  has_quote = _check_text(path, data, encoding, compression)
  layout = _read_layout(path, data, ",", True, encoding)
  names = layout.names
  if len(names) < 2:
    raise ValueError(f"catalog_path {path}: expected a header with at least "
                     "two columns (item id, category).")
  ctx = _CsvContext(path, layout, ",", encoding, set(na_values), data,
                    has_quote, 0.0)
  table, invalid = _read_table(ctx, {n: pa.string() for n in names})
  if invalid:
    raise ValueError(f"catalog_path {path}: {len(invalid)} row(s) do not have "
                     f"{len(names)} fields, e.g. {invalid[0][1]!r}.")
  frame = pd.DataFrame({"item": _to_numpy(table.column(names[0])),
                        "category": _to_numpy(table.column(names[1]))})
  frame = frame.dropna().drop_duplicates("item", keep="first")
  return pd.Series(frame["category"].to_numpy(), index=frame["item"].to_numpy())


def _finish_report(report: report_lib.Report, events: pd.DataFrame,
                   catalog: pd.DataFrame) -> None:
  """Adds kept rows, event counts and unknown categories; checks the sums."""
  report["rows_kept"] = len(events)
  counts = np.bincount(schema.event_type_codes(events),
                       minlength=len(schema.EVENT_TYPES))
  report["event_counts"] = {t: int(n) for t, n in
                            zip(schema.EVENT_TYPES, counts)}
  report["items"] = len(catalog)
  report["items_unknown_category"] = int(
      (catalog["leaf"] == schema.UNKNOWN_LEAF).sum())
  report_lib.check_report(report)


# ----------------------------------------------------------------------------
# JSONL (OTTO).

_OTTO_SCHEMA = pa.schema([
    ("session", pa.int64()),
    ("events", pa.list_(pa.struct([("aid", pa.int64()), ("ts", pa.int64()),
                                   ("type", pa.string())]))),
])


def _read_jsonl(path: str, max_malformed_fraction: float
                ) -> Tuple[pa.Table, int, List[int], Callable[[int], int],
                           Optional[str]]:
  """Parses OTTO JSONL.

  A last line that is not valid JSON is cut off (counted as truncated); other
  invalid lines are listed by 1-based line number and left out, unless they
  are more than `max_malformed_fraction` of the non-blank lines. A line that
  is JSON but not a session object is an error naming it.

  Returns:
    (table, 1 if the last line was truncated else 0, malformed line numbers,
    a function from a table row to its 1-based line (slow; for errors), the
    compression).
  """
  data, compression = _read_source(path)
  _check_text(path, data, "utf-8", compression)
  head = data[:1 << 16].to_pybytes()
  if head.startswith(_UTF8_BOM):
    data, head = data[len(_UTF8_BOM):], head[len(_UTF8_BOM):]
  if not head.strip():
    raise ValueError(f"{path}: the file is empty (no non-blank line).")
  if head.lstrip()[:1] == b"[":
    raise ValueError(
        f"{path}: line {_line_at(data, len(head) - len(head.lstrip()))}: the "
        "file is a JSON array, not JSON lines (one session object per line); "
        "convert it first, e.g. with `jq -c '.[]'`.")
  if b"\n" not in head and b"\r" in head:  # CR-only line breaks.
    data = pa.py_buffer(data.to_pybytes().replace(b"\r", b"\n"))
  numbered_lines = []

  def numbered() -> List[Tuple[int, bytes]]:
    """The non-blank lines with their 1-based numbers (built on demand)."""
    if not numbered_lines:
      numbered_lines.extend(
          (i + 1, l) for i, l in enumerate(data.to_pybytes().split(b"\n"))
          if l.strip())
    return numbered_lines

  n_truncated, malformed = 0, []
  table, rows = None, None
  if not _last_line_cut(data):
    try:
      table = _parse_jsonl(data)
    except pa.ArrowInvalid:
      table = None
  if table is None:
    # Careful path: each line on its own.
    good = []
    lines = numbered()
    for k, (number, line) in enumerate(lines):
      try:
        value = json.loads(line)
      except ValueError:
        if k == len(lines) - 1:
          n_truncated = 1
        else:
          malformed.append(number)
        continue
      problem = _otto_schema_problem(value)
      if problem:
        raise ValueError(
            f"{path}: line {number}: {problem}; each line must be "
            '{"session": int, "events": [{"aid": int, "ts": int, "type": '
            f"str}}, ...]}}: {line[:200].decode('utf-8', 'replace')!r}.")
      good.append((number, line))
    if len(malformed) > max_malformed_fraction * max(len(lines) -
                                                     n_truncated, 1):
      first = dict(lines)[malformed[0]]
      raise ValueError(
          f"{path}: {len(malformed)} of {len(lines) - n_truncated} lines "
          f"are not valid JSON, more than max_malformed_fraction="
          f"{max_malformed_fraction} allows; line {malformed[0]}: "
          f"{first[:200].decode('utf-8', 'replace')!r}. Is the "
          "file JSON lines (one session object per line)? (Pass a larger "
          "max_malformed_fraction to drop such lines and load the rest.)")
    rows = [n for n, _ in good]
    table = _parse_jsonl(pa.py_buffer(b"\n".join(l for _, l in good)))
  if rows is None:
    rows = [n for n, _ in numbered()] if table.num_rows < 1 << 16 else None

  def line_of_row(row: int) -> int:
    return rows[row] if rows is not None else numbered()[row][0]

  missing_events = _is_null(table.column("events"))
  if missing_events.any():
    number = line_of_row(int(np.argmax(missing_events)))
    raise ValueError(f"{path}: line {number}: the session has no \"events\" "
                     "list; each line must be {\"session\": int, \"events\": "
                     "[...]}.")
  return table, n_truncated, malformed, line_of_row, compression


def _last_line_cut(data: pa.Buffer) -> bool:
  """Whether the last line is not JSON (then the careful path counts it)."""
  tail = data[max(0, len(data) - (1 << 20)):].to_pybytes().rstrip(
      b"\r\n \t")
  last = tail[tail.rfind(b"\n") + 1:]
  if len(last) == len(tail) and len(data) > (1 << 20):
    last = data.to_pybytes().rstrip(b"\r\n \t")
    last = last[last.rfind(b"\n") + 1:]
  return bool(last) and not _is_json(last)


def _otto_schema_problem(value: Any) -> Optional[str]:
  """What keeps a parsed line from being an OTTO session, or None."""

  def integer(x) -> bool:
    return x is None or (isinstance(x, int) and not isinstance(x, bool))

  if not isinstance(value, dict):
    return f"a JSON {type(value).__name__}, not a session object"
  if not integer(value.get("session")):
    return f"\"session\" is {value.get('session')!r}, not an integer"
  events = value.get("events")
  if not isinstance(events, list):
    return f"\"events\" is {events!r}, not a list"
  for event in events:
    if not isinstance(event, dict):
      return f"an event is {event!r}, not an object"
    for key in ("aid", "ts"):
      if not integer(event.get(key)):
        return f"an event's {key!r} is {event.get(key)!r}, not an integer"
    if event.get("type") is not None and not isinstance(event["type"], str):
      return f"an event's 'type' is {event['type']!r}, not a string"
  return None


def _parse_jsonl(body: pa.Buffer) -> pa.Table:
  if not body.size:
    return _OTTO_SCHEMA.empty_table()
  return pa_json.read_json(
      pa.BufferReader(body),
      read_options=pa_json.ReadOptions(block_size=max(1 << 20,
                                                      body.size + 1)),
      parse_options=pa_json.ParseOptions(
          explicit_schema=_OTTO_SCHEMA, unexpected_field_behavior="ignore"))


def _is_json(line: bytes) -> bool:
  try:
    json.loads(line)
    return True
  except ValueError:
    return False
