"""A simulated log of any size as sharded Parquet, in bounded memory.

`write_sharded_log` streams `simulator.simulate_chunks` (disjoint user
blocks sharing one catalog, docs/simulator.md) and writes each block as one
Parquet shard before the next block is drawn, so peak memory follows the
block size (`chunk_events`), not the number of events. The output directory
holds

* `events/events-00000-of-000NN.parquet`, ...: the canonical event columns
  (`schema.EVENT_COLUMNS`, the columns and dtypes of `simulate(...).events`:
  int64 ids and milliseconds, `event_type` as a dictionary column that reads
  back as `schema.EVENT_TYPE_DTYPE`), in row groups of at most
  `row_group_rows` rows. Each shard is one user block sorted by time (ties by
  session, then order in the session, as `simulate` sorts); shards overlap in
  time. The shards sit in a directory of their own so that
  `pd.read_parquet(output_dir + '/events')` and `pyarrow.dataset` read them
  without meeting the catalog or the JSON record.
* `catalog.parquet`: the canonical catalog, `category_path` as a list column
  (as the TFDS builders write it, `cabb_tf.datasets.click_examples`).
* `simulate_log.json`: the `simulate` arguments, the seed, the shards with
  their row, user and session counts, the totals, the wall time and the
  process's peak resident set size (after each shard too).

`read_sharded_log` reads it back as `(events, catalog)`: the concatenated
chunks, by default sorted stably by time — the order the loaders give a
canonical log (`loaders.load_csv`) and so the one `pipeline.prepare_examples`
sees for every other source. Because the session ids of block k are below
those of block k + 1, that order is (timestamp, session_id, order in the
session), the order `simulate` itself gives one log.

    python experiments/simulate_log.py --base_dir=/tmp/sim \\
        --gin_bindings='write_sharded_log.num_events = 10000000'
"""

import json
import os
import resource
import shutil
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

from absl import logging
import gin
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cabb_tf.data import report as report_lib
from cabb_tf.data import schema
from cabb_tf.data import simulator

EVENTS_DIR = "events"
CATALOG_FILE = "catalog.parquet"
RECORD_FILE = "simulate_log.json"
SHARD_NAME = "events-{index:05d}-of-{count:05d}.parquet"
# The columns and types of `simulate(...).events`; `event_type` is stored as
# a dictionary of the four canonical names (int8 codes, as in pandas).
EVENT_SCHEMA = pa.schema([
    ("user_id", pa.int64()),
    ("session_id", pa.int64()),
    ("timestamp", pa.int64()),
    ("item_id", pa.int64()),
    ("event_type", pa.dictionary(pa.int8(), pa.string())),
])
# What `simulate_chunks` sets itself; left out of the recorded arguments.
_SET_PER_BLOCK = ("num_users", "first_user_id", "seed")


def _peak_rss_bytes() -> int:
  """The process's peak resident set size so far (Linux reports KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _current_rss_bytes() -> int:
  try:
    with open("/proc/self/statm") as f:
      return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
  except OSError:  # Not Linux: the peak is the best estimate.
    return _peak_rss_bytes()


def _events_table(events: pd.DataFrame) -> pa.Table:
  """The canonical event columns as an Arrow table of `EVENT_SCHEMA`."""
  arrays = [pa.array(events[name].to_numpy(), type=pa.int64())
            for name in schema.EVENT_COLUMNS[:-1]]
  event_type = events["event_type"]
  if event_type.dtype != schema.EVENT_TYPE_DTYPE:
    raise ValueError(f"event_type must have dtype EVENT_TYPE_DTYPE, not "
                     f"{event_type.dtype}.")
  arrays.append(pa.DictionaryArray.from_arrays(
      pa.array(event_type.cat.codes.to_numpy(), type=pa.int8()),
      pa.array(list(schema.EVENT_TYPES), type=pa.string())))
  return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


def _catalog_table(catalog: pd.DataFrame) -> pa.Table:
  """A canonical catalog as Arrow (`category_path` as a list)."""
  catalog = catalog.copy()
  catalog["category_path"] = [list(p) for p in catalog["category_path"]]
  return pa.Table.from_pandas(catalog, preserve_index=False)


def write_catalog(catalog: pd.DataFrame, path: str) -> None:
  """Writes a canonical catalog to Parquet (`category_path` as a list)."""
  table = _catalog_table(catalog)
  tmp = path + ".tmp"
  pq.write_table(table, tmp)
  os.replace(tmp, path)


def write_log_shards(events: pd.DataFrame, catalog: pd.DataFrame,
                     directory: str, shard_events: int) -> Dict[str, str]:
  """Writes a log held in memory as the Beam preparation reads it.

  Consecutive rows go to the same shard, so the shards' name order and the
  rows' places in them give back the log's order (docs/beam.md, "Input").

  Args:
    events: canonical events (`event_type` of dtype `EVENT_TYPE_DTYPE`).
    catalog: the canonical catalog.
    directory: where `events-NNNNN.parquet` and `catalog.parquet` go (any
      path `etils.epath` opens, e.g. gs://).
    shard_events: events per shard.

  Returns:
    {"events": a glob of the shards, "catalog": the catalog's path}.
  """
  from etils import epath  # pylint: disable=g-import-not-at-top
  if shard_events < 1:
    raise ValueError(f"shard_events must be >= 1, got {shard_events}.")
  root = epath.Path(directory)
  root.mkdir(parents=True, exist_ok=True)
  for index, start in enumerate(range(0, max(len(events), 1), shard_events)):
    table = _events_table(events.iloc[start:start + shard_events])
    with (root / f"events-{index:05d}.parquet").open("wb") as f:
      pq.write_table(table, f)
  with (root / CATALOG_FILE).open("wb") as f:
    pq.write_table(_catalog_table(catalog), f)
  return {"events": os.fspath(root / "events-*.parquet"),
          "catalog": os.fspath(root / CATALOG_FILE)}


def read_catalog(path: str) -> pd.DataFrame:
  """Reads a catalog written by `write_catalog` as a canonical catalog.

  `category_path` comes back as tuples, `leaf`, `top_category` and `brand`
  as object columns (missing brands None), `price` as float64.
  """
  return schema.catalog_from_parquet_frame(pq.read_table(path).to_pandas())


def _json_value(value: Any) -> Any:
  if isinstance(value, tuple):
    return [_json_value(v) for v in value]
  return value


@gin.configurable(denylist=["output_dir", "simulate_kwargs"])
def write_sharded_log(output_dir: str,
                      num_events: int = 1_000_000,
                      chunk_events: int = 2_000_000,
                      seed: int = 0,
                      row_group_rows: int = 1_000_000,
                      simulate_kwargs: Optional[Mapping[str, Any]] = None
                      ) -> Dict[str, Any]:
  """Simulates about `num_events` events and writes them as Parquet shards.

  Block k of `simulator.simulate_chunks(num_events, chunk_events, seed)`
  becomes shard k; it is written and freed before block k + 1 is drawn.
  Further `simulate` arguments are its gin bindings (`simulate.<argument>`)
  or `simulate_kwargs`. The shards are written to a temporary directory
  that replaces `output_dir/events` at the end, so a reader never sees
  shards of two runs.

  Args:
    output_dir: where to write (created if needed).
    num_events: the wanted number of events over all shards, >= 1.
    chunk_events: the wanted events per user block (one shard each), >= 1;
      peak memory grows with it (about 0.23 GB per 10^6 events for the
      simulation, docs/simulator.md).
    seed: the simulator's seed.
    row_group_rows: the most rows of one Parquet row group, >= 1.
    simulate_kwargs: further arguments of `simulate` (not `num_users`,
      `first_user_id` or `seed`).

  Returns:
    The record written to `simulate_log.json`.

  Raises:
    ValueError: if a size is < 1 or a `simulate` argument is reserved or
      invalid.
  """
  begin = time.perf_counter()
  baseline_rss = _current_rss_bytes()
  simulate_kwargs = dict(simulate_kwargs or {})
  if row_group_rows < 1:
    raise ValueError(f"row_group_rows must be >= 1, got {row_group_rows}.")
  chunks = simulator.simulate_chunks(int(num_events), int(chunk_events),
                                     seed=int(seed), **simulate_kwargs)
  arguments = simulator.simulate_arguments(**simulate_kwargs)
  os.makedirs(output_dir, exist_ok=True)
  events_dir = os.path.join(output_dir, EVENTS_DIR)
  staging = os.path.join(output_dir, f".{EVENTS_DIR}.tmp-{os.getpid()}")
  shutil.rmtree(staging, ignore_errors=True)
  os.makedirs(staging)
  shards: List[Dict[str, Any]] = []
  catalog_ids = None
  catalog_rows = 0
  tick = time.perf_counter()
  try:
    for index, log in enumerate(chunks):
      if catalog_ids is None:
        write_catalog(log.catalog, os.path.join(output_dir, CATALOG_FILE))
        catalog_ids = log.catalog["item_id"].to_numpy()
        catalog_rows = len(log.catalog)
      elif not np.array_equal(log.catalog["item_id"].to_numpy(), catalog_ids):
        raise AssertionError(f"block {index} has another catalog than block 0; "
                             "simulate_chunks blocks share one world.")
      table = _events_table(log.events)
      del log  # Only the Arrow table is left of this block.
      path = os.path.join(staging, f"events-{index:05d}.parquet")
      pq.write_table(table, path, row_group_size=int(row_group_rows))
      users = table["user_id"]
      shards.append({
          "rows": table.num_rows,
          "users": pc.count_distinct(users).as_py(),
          "sessions": pc.count_distinct(table["session_id"]).as_py(),
          "first_user_id": pc.min(users).as_py(),
          "last_user_id": pc.max(users).as_py(),
          "bytes": os.path.getsize(path),
          # Drawing the block and writing it.
          "seconds": time.perf_counter() - tick,
      })
      tick = time.perf_counter()
      del table, users
      pa.default_memory_pool().release_unused()
      shards[-1]["peak_rss_bytes_after"] = _peak_rss_bytes()
      logging.info("Shard %d: %d events, %d users, %.1f s, peak RSS %.2f GB.",
                   index, shards[-1]["rows"], shards[-1]["users"],
                   shards[-1]["seconds"], shards[-1]["peak_rss_bytes_after"]
                   / 1e9)
    count = len(shards)
    for index, shard in enumerate(shards):
      name = SHARD_NAME.format(index=index, count=count)
      os.replace(os.path.join(staging, f"events-{index:05d}.parquet"),
                 os.path.join(staging, name))
      shard["file"] = f"{EVENTS_DIR}/{name}"
    shutil.rmtree(events_dir, ignore_errors=True)
    os.replace(staging, events_dir)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  record = {
      "simulate_arguments": {k: _json_value(v) for k, v in arguments.items()
                             if k not in _SET_PER_BLOCK},
      "seed": int(seed),
      "num_events_requested": int(num_events),
      "chunk_events": int(chunk_events),
      "row_group_rows": int(row_group_rows),
      "events": sum(s["rows"] for s in shards),
      "users": sum(s["users"] for s in shards),
      "sessions": sum(s["sessions"] for s in shards),
      "shards": [dict(file=s.pop("file"), **s) for s in shards],
      "catalog": {"file": CATALOG_FILE, "rows": int(catalog_rows)},
      "event_columns": {f.name: str(f.type) for f in EVENT_SCHEMA},
      "order": ("each shard is one user block sorted by (timestamp, "
                "session_id, order in the session); shards overlap in time "
                "(read_sharded_log sorts stably by time)"),
      "wall_seconds": time.perf_counter() - begin,
      "baseline_rss_bytes": baseline_rss,
      "peak_rss_bytes": _peak_rss_bytes(),
  }
  path = os.path.join(output_dir, RECORD_FILE)
  report_lib.write_json(record, path)
  os.chmod(path, 0o644)  # A data set's record, for every reader.
  logging.info("Wrote %d events of %d users in %d shards to %s in %.1f s "
               "(peak RSS %.2f GB).", record["events"], record["users"],
               len(shards), output_dir, record["wall_seconds"],
               record["peak_rss_bytes"] / 1e9)
  return record


def _event_types(column: pa.ChunkedArray) -> pd.Categorical:
  """A dictionary column of canonical type names as `EVENT_TYPE_DTYPE`."""
  codes = []
  for chunk in column.chunks:
    known = pd.Index(schema.EVENT_TYPES).get_indexer(
        chunk.dictionary.to_pylist())
    if (known < 0).any() or chunk.null_count:
      raise ValueError(f"event_type holds values outside "
                       f"{list(schema.EVENT_TYPES)}.")
    codes.append(known.astype(np.int8)[chunk.indices.to_numpy()])
  codes = np.concatenate(codes) if codes else np.zeros(0, np.int8)
  return pd.Categorical.from_codes(codes, dtype=schema.EVENT_TYPE_DTYPE)


def read_record(output_dir: str) -> Dict[str, Any]:
  """Reads `simulate_log.json` of a directory `write_sharded_log` wrote."""
  path = os.path.join(output_dir, RECORD_FILE)
  if not os.path.exists(path):
    raise ValueError(f"{output_dir} has no {RECORD_FILE}: write it with "
                     "experiments/simulate_log.py (write_sharded_log).")
  with open(path) as f:
    return json.load(f)


def read_sharded_log(output_dir: str, sort_by_time: bool = True
                     ) -> Tuple[pd.DataFrame, pd.DataFrame]:
  """Reads a log written by `write_sharded_log` into memory.

  Args:
    output_dir: the directory `write_sharded_log` wrote.
    sort_by_time: sort the events stably by timestamp (the canonical order
      of a loaded log; ties by session, then order in the session). False
      gives the shards concatenated in shard order, i.e. the
      `simulate_chunks` logs concatenated.

  Returns:
    `(events, catalog)`: the canonical events (`schema.EVENT_COLUMNS`, the
    dtypes of `simulate(...).events`, a RangeIndex) and catalog.

  Raises:
    ValueError: if the record is missing, or a shard is missing or does not
      hold the rows the record gives it.
  """
  record = read_record(output_dir)
  tables = []
  for shard in record["shards"]:
    path = os.path.join(output_dir, shard["file"])
    if not os.path.exists(path):
      raise ValueError(f"{path}: listed in {RECORD_FILE} but missing.")
    table = pq.read_table(path, columns=list(schema.EVENT_COLUMNS))
    if table.num_rows != shard["rows"]:
      raise ValueError(f"{path}: {table.num_rows} rows, {RECORD_FILE} says "
                       f"{shard['rows']}.")
    tables.append(table)
  table = (pa.concat_tables(tables) if tables
           else EVENT_SCHEMA.empty_table())
  del tables
  columns = {name: table[name].to_numpy()
             for name in schema.EVENT_COLUMNS[:-1]}
  event_type = _event_types(table["event_type"])
  del table
  events = pd.DataFrame(dict(columns, event_type=event_type))
  del columns
  if sort_by_time:
    order = np.argsort(events["timestamp"].to_numpy(), kind="stable")
    events = events.iloc[order].reset_index(drop=True)
  catalog = read_catalog(os.path.join(output_dir, CATALOG_FILE))
  return events, catalog
