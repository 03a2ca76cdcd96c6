"""The category similarity of Eq. (1)–(2) as an Apache Beam pipeline.

Computes the same S as `cabb_tf.similarity.category_cf.category_similarity`
(to float rounding), for event logs too large for one machine:

1. read events (CSV with canonical columns, TFRecord of `tf.train.Example`,
   or Parquet) and a catalog CSV with columns `item_id,leaf`;
2. map each event to ((user, leaf), w_e) — the catalog is a side input;
   zero-weight types, unknown items and `UNKNOWN_LEAF` are dropped and
   counted — and sum per (user, leaf): (v_c)_u of Eq. (1);
3. group by user and emit, for every pair of the user's leaves a ≤ b, the
   partial dot product (v_a)_u (v_b)_u; a = b gives the squared norms;
4. sum per pair, divide by the norms (a side input), and write the upper
   triangle as JSON lines `["leaf_a", "leaf_b", s]` (diagonal s = 1);
5. `run` then collects the triples into a `CategorySimilarity` and writes
   `category_similarity.npz` plus the counters in
   `similarity_beam_stats.json` (`read_triples`, `write_outputs`).

Step 3 costs Σ_u k_u (k_u + 1) / 2 pairs, k_u = the distinct leaves of user u
(the same work as the sparse product in `category_cf`). A few users with
thousands of leaves (crawlers, test accounts) can dominate it; with
`max_leaves_per_user=m` such a user keeps only their m leaves of largest
(v_c)_u (ties by name), counted in `users_capped`. The cap changes S, so it
is off by default.

As in `category_cf`, restrict events to the training period: here with
`min_timestamp` / `max_timestamp` (milliseconds, half-open), or upstream.

Running on a cluster (see also docs/beam.md): `run(...)` and
`python -m cabb_tf.pipelines.similarity_beam` take standard Beam pipeline
options in `pipeline_args`, e.g. for Dataflow

    --runner=DataflowRunner --project=P --region=R \
    --temp_location=gs://B/tmp --staging_location=gs://B/staging \
    --setup_file=./setup.py   # ships cabb_tf to the workers

for Flink `--runner=FlinkRunner --flink_master=host:8081
--environment_type=LOOPBACK` (or DOCKER / PROCESS for a real cluster), and
for Spark `--runner=SparkRunner --spark_master_url=spark://host:7077`
(portable, through Beam's Spark job server). Input, catalog and output paths
may be any Beam filesystem (`gs://`, `s3://`, `hdfs://`). The final `.npz`
step runs on the launching machine and reads the triples back, which is
fine for thousands of leaves (at most |C|² / 2 lines).
"""

import csv
import io
import json
import math
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cabb_tf.data import report as report_lib
from cabb_tf.data import schema
from cabb_tf.similarity import category_cf

TRIPLES_PREFIX = "similarity_triples"
NPZ_NAME = "category_similarity.npz"
STATS_NAME = "similarity_beam_stats.json"
FORMATS = ("csv", "tfrecord", "parquet")
_NAMESPACE = "cabb_similarity"
_EVENT_FIELDS = ("user_id", "item_id", "event_type")


def format_of(input_pattern: str) -> str:
  """Guesses the input format from the pattern's extension.

  Raises:
    ValueError: if the extension is not one of .csv, .tfrecord(s), .parquet
      (optionally followed by .gz).
  """
  name = input_pattern.lower()
  for suffix in (".gz", ".bz2", ".zst", ".deflate"):
    if name.endswith(suffix):
      name = name[:-len(suffix)]
  if name.endswith(".csv"):
    return "csv"
  if name.endswith((".tfrecord", ".tfrecords", ".tfr")):
    return "tfrecord"
  if name.endswith(".parquet"):
    return "parquet"
  raise ValueError(f"cannot tell the format of {input_pattern!r} from its "
                   f"extension; pass input_format, one of {FORMATS}.")


def _match(pattern: str) -> List[str]:
  paths = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
  if not paths:
    raise ValueError(f"no file matches {pattern!r}.")
  return paths


def _first_line(path: str) -> str:
  with FileSystems.open(path) as f:
    line = f.readline().decode("utf-8-sig")
  return line.rstrip("\r\n")


def _csv_header(pattern: str, required: Sequence[str]) -> List[str]:
  """Returns the header shared by every CSV file matching `pattern`.

  Raises:
    ValueError: naming the file whose header differs from the first file's
      or lacks a required column.
  """
  paths = _match(pattern)
  header = next(csv.reader([_first_line(paths[0])]), [])
  missing = [c for c in required if c not in header]
  if missing:
    raise ValueError(f"{paths[0]}: header {header} lacks column(s) {missing}.")
  for path in paths[1:]:
    other = next(csv.reader([_first_line(path)]), [])
    if other != header:
      raise ValueError(f"{path}: header {other} differs from {header} in "
                       f"{paths[0]}; all files of a pattern must share one.")
  return header


def _id_str(value: Any, field: str) -> str:
  """Normalizes an id to str (ints, floats holding ints, bytes, str)."""
  if value is None or (isinstance(value, float) and math.isnan(value)):
    raise ValueError(f"missing {field}")
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if isinstance(value, float) and value.is_integer():
    return str(int(value))
  if isinstance(value, (np.integer, np.floating)):
    return _id_str(value.item(), field)
  return str(value)


def _event_type_name(value: Any) -> str:
  """Returns a canonical type name from a name (str/bytes) or an int code."""
  if isinstance(value, bytes):
    value = value.decode("utf-8")
  if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
    if 0 <= int(value) < len(schema.EVENT_TYPES):
      return schema.EVENT_TYPES[int(value)]
  elif isinstance(value, str) and value in schema.EVENT_TYPES:
    return value
  raise ValueError(f"unknown event type {value!r}; expected one of "
                   f"{list(schema.EVENT_TYPES)} or their codes 0-3.")


def _parse_csv_line(file_and_line: Tuple[str, str],
                    header: Sequence[str]) -> Dict[str, Any]:
  path, line = file_and_line
  fields = next(csv.reader([line]), [])
  if len(fields) != len(header):
    raise ValueError(f"{path}: line {line!r} has {len(fields)} fields, the "
                     f"header {len(header)}.")
  return dict(zip(header, fields))


def _parse_example(record: bytes) -> Dict[str, Any]:
  # pylint: disable-next=g-import-not-at-top
  from tensorflow.core.example import example_pb2
  example = example_pb2.Example.FromString(record)
  row = {}
  for name, feature in example.features.feature.items():
    kind = feature.WhichOneof("kind")
    values = list(getattr(feature, kind).value) if kind else []
    if values:
      row[name] = values[0]
  return row


def _have_crc32c() -> bool:
  """Whether Beam's own (splittable) TFRecord reader can check CRCs.

  It needs `google-crc32c` or `crcmod` (the `apache-beam[gcp]` /
  `[tfrecord]` extras). Without them each file is read whole by
  `tf.data.TFRecordDataset`, which checks CRCs itself.
  """
  for module in ("google_crc32c", "crcmod"):
    try:
      __import__(module)
      return True
    except ImportError:
      pass
  return False


def _read_tfrecord_file(metadata) -> Iterable[bytes]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  for record in tf.data.TFRecordDataset(metadata.path):
    yield record.numpy()


def _read_events(pipeline: beam.Pipeline, input_pattern: str,
                 input_format: str, need_timestamp: bool) -> beam.PCollection:
  """Reads events as dicts with at least user_id, item_id, event_type."""
  required = _EVENT_FIELDS + (("timestamp",) if need_timestamp else ())
  if input_format == "csv":
    header = _csv_header(input_pattern, required)
    return (pipeline
            | "ReadCsv" >> beam.io.ReadFromTextWithFilename(
                input_pattern, skip_header_lines=1)
            | "ParseCsv" >> beam.Map(_parse_csv_line, header=header))
  if input_format == "tfrecord":
    _match(input_pattern)
    if _have_crc32c():
      records = pipeline | "ReadTFRecord" >> beam.io.ReadFromTFRecord(
          input_pattern)
    else:
      records = (pipeline
                 | "MatchTFRecord" >> fileio.MatchFiles(input_pattern)
                 | "ReadTFRecordFiles" >> beam.FlatMap(_read_tfrecord_file))
    return records | "ParseExample" >> beam.Map(_parse_example)
  if input_format == "parquet":
    _match(input_pattern)
    return pipeline | "ReadParquet" >> beam.io.ReadFromParquet(
        input_pattern, columns=list(required))
  raise ValueError(f"input_format must be one of {FORMATS}, not "
                   f"{input_format!r}.")


def _read_catalog(pipeline: beam.Pipeline,
                  catalog_path: str) -> beam.PCollection:
  """Reads the catalog CSV as (item_id str, leaf str) pairs."""
  header = _csv_header(catalog_path, ("item_id", "leaf"))
  item, leaf = header.index("item_id"), header.index("leaf")

  def parse(file_and_line):
    path, line = file_and_line
    fields = next(csv.reader([line]), [])
    if len(fields) != len(header):
      raise ValueError(f"{path}: catalog line {line!r} has {len(fields)} "
                       f"fields, the header {len(header)}.")
    return fields[item], fields[leaf]

  return (pipeline
          | "ReadCatalog" >> beam.io.ReadFromTextWithFilename(
              catalog_path, skip_header_lines=1)
          | "ParseCatalog" >> beam.Map(parse))


def _fail_on_repeats(item_and_count: Tuple[str, int], catalog_path: str):
  item, count = item_and_count
  if count > 1:
    raise ValueError(f"{catalog_path}: item_id {item!r} appears {count} "
                     "times; the catalog must have one row per item.")
  return []


class _WeighEvents(beam.DoFn):
  """Event → ((user, leaf), w_e), Eq. (1), dropping and counting the rest."""

  def __init__(self, weights: Sequence[float],
               min_timestamp: Optional[int], max_timestamp: Optional[int]):
    self._weights = list(weights)
    self._min, self._max = min_timestamp, max_timestamp
    counter = lambda name: beam.metrics.Metrics.counter(_NAMESPACE, name)
    self._read = counter("events_read")
    self._used = counter("events_used")
    self._zero = counter("dropped_zero_weight")
    self._unknown = counter("dropped_unknown_leaf")
    self._range = counter("dropped_out_of_range")

  def process(self, event: Dict[str, Any], leaves: Mapping[str, str]):
    self._read.inc()
    try:
      event_type = _event_type_name(event.get("event_type"))
      if self._min is not None or self._max is not None:
        ts = int(event["timestamp"])
        if ((self._min is not None and ts < self._min) or
            (self._max is not None and ts >= self._max)):
          self._range.inc()
          return
      weight = self._weights[schema.EVENT_TYPES.index(event_type)]
      user = _id_str(event.get("user_id"), "user_id")
      item = _id_str(event.get("item_id"), "item_id")
    except (KeyError, ValueError, TypeError) as e:
      raise ValueError(f"bad event {event!r}: {e}") from e
    if weight == 0:
      self._zero.inc()
      return
    leaf = leaves.get(item)
    if not leaf or leaf == schema.UNKNOWN_LEAF:
      self._unknown.inc()
      return
    self._used.inc()
    yield (user, leaf), weight


class _PairProducts(beam.DoFn):
  """One user's leaves → ((a, b), (v_a)_u (v_b)_u) for a ≤ b (Eq. 2 terms)."""

  def __init__(self, max_leaves_per_user: Optional[int]):
    self._cap = max_leaves_per_user
    self._users = beam.metrics.Metrics.counter(_NAMESPACE, "users")
    self._capped = beam.metrics.Metrics.counter(_NAMESPACE, "users_capped")

  def process(self, user_and_values: Tuple[str, Iterable[Tuple[str, float]]]):
    _, values = user_and_values
    values = list(values)
    self._users.inc()
    if self._cap is not None and len(values) > self._cap:
      self._capped.inc()
      values = sorted(values, key=lambda lv: (-lv[1], lv[0]))[:self._cap]
    values.sort()
    for i, (leaf_a, value_a) in enumerate(values):
      for leaf_b, value_b in values[i:]:
        yield (leaf_a, leaf_b), value_a * value_b


def _normalize(pair_and_dot: Tuple[Tuple[str, str], float],
               norms: Mapping[str, float]) -> Tuple[str, str, float]:
  (leaf_a, leaf_b), dot = pair_and_dot
  if leaf_a == leaf_b:
    return leaf_a, leaf_b, 1.0
  return leaf_a, leaf_b, min(1.0, max(0.0, dot / (norms[leaf_a] *
                                                  norms[leaf_b])))


def build_pipeline(pipeline: beam.Pipeline,
                   input_pattern: str,
                   catalog_path: str,
                   output_dir: str,
                   event_weights: Optional[Mapping[str, float]] = None,
                   *,
                   input_format: Optional[str] = None,
                   max_leaves_per_user: Optional[int] = None,
                   min_timestamp: Optional[int] = None,
                   max_timestamp: Optional[int] = None) -> beam.PCollection:
  """Adds the Eq. (1)–(2) transforms to `pipeline`.

  Args:
    pipeline: the pipeline to extend.
    input_pattern: event files (glob). CSV files need a header with at least
      `user_id,item_id,event_type` (canonical names, all files alike);
      TFRecord files hold `tf.train.Example`s with features `user_id`,
      `item_id` (int64 or bytes) and `event_type` (bytes name or int64 code);
      Parquet files have those columns. Ids are compared as strings.
    catalog_path: catalog CSV (or glob) with header columns `item_id` and
      `leaf` (others ignored); empty or `UNKNOWN_LEAF` leaves are unknown.
    output_dir: where `similarity_triples-*.jsonl` go.
    event_weights: w_e by canonical type name (absent types weigh 0); None
      for `category_cf.default_event_weights()` (gin).
    input_format: one of `FORMATS`; None guesses from the extension.
    max_leaves_per_user: optional cap on the leaves per user (see the module
      docstring); None is exact.
    min_timestamp: keep events with timestamp >= this (ms), if given.
    max_timestamp: keep events with timestamp < this (ms), if given.

  Returns:
    The PCollection of (leaf_a, leaf_b, s) with leaf_a ≤ leaf_b.

  Raises:
    ValueError: on bad weights or options, no matching file, or a CSV header
      without the needed columns.
  """
  weights = normalized_weights(event_weights)
  if max_leaves_per_user is not None and (
      int(max_leaves_per_user) != max_leaves_per_user or
      max_leaves_per_user < 1):
    raise ValueError(f"max_leaves_per_user must be a positive integer or "
                     f"None, not {max_leaves_per_user!r}.")
  input_format = input_format or format_of(input_pattern)
  need_ts = min_timestamp is not None or max_timestamp is not None
  events = _read_events(pipeline, input_pattern, input_format, need_ts)
  catalog = _read_catalog(pipeline, catalog_path)
  _ = (catalog
       | "CatalogItems" >> beam.Map(lambda item_leaf: item_leaf[0])
       | "CountCatalogItems" >> beam.combiners.Count.PerElement()
       | "CheckCatalogUnique" >> beam.FlatMap(_fail_on_repeats,
                                              catalog_path=catalog_path))
  vectors = (events
             | "WeighEvents" >> beam.ParDo(
                 _WeighEvents(weights.tolist(), min_timestamp, max_timestamp),
                 leaves=beam.pvalue.AsDict(catalog))
             | "SumPerUserLeaf" >> beam.CombinePerKey(sum))
  products = (vectors
              | "KeyByUser" >> beam.Map(
                  lambda kv: (kv[0][0], (kv[0][1], kv[1])))
              | "GroupByUser" >> beam.GroupByKey()
              | "PairProducts" >> beam.ParDo(
                  _PairProducts(max_leaves_per_user)))
  return products | TriplesFromProducts(output_dir)


class TriplesFromProducts(beam.PTransform):
  """Partial dot products ((a, b), x) → the triples (a, b, s) of Eq. (2).

  Sums the partial products per leaf pair a ≤ b, divides by the norms (the
  diagonal sums, a side input) and writes `similarity_triples-*.jsonl` to
  `output_dir` (read back by `read_triples`). Shared by this pipeline and
  `cabb_tf.pipelines.prepare_beam`, whose user buckets emit partial sums
  over many users at once (`pair_products`).
  """

  def __init__(self, output_dir: str):
    super().__init__()
    self._output_dir = output_dir

  def expand(self, products):
    dots = products | "SumPerPair" >> beam.CombinePerKey(sum)
    norms = (dots
             | "Diagonal" >> beam.Filter(lambda kv: kv[0][0] == kv[0][1])
             | "Norms" >> beam.Map(lambda kv: (kv[0][0], math.sqrt(kv[1]))))
    triples = dots | "Normalize" >> beam.Map(
        _normalize, norms=beam.pvalue.AsDict(norms))
    _ = (triples
         | "ToJson" >> beam.Map(lambda t: json.dumps([t[0], t[1], t[2]]))
         | "WriteTriples" >> beam.io.WriteToText(
             os.path.join(self._output_dir, TRIPLES_PREFIX),
             file_name_suffix=".jsonl"))
    return triples


def normalized_weights(event_weights: Optional[Mapping[str, float]]
                       ) -> np.ndarray:
  """w_e per type code, scaled to a largest weight of 1 (cosines ignore a
  common scale; it keeps the squared norms clear of overflow)."""
  weights = category_cf.event_weight_table(event_weights)
  return weights / weights.max()


def pair_products(users: np.ndarray, leaves: np.ndarray,
                  type_codes: np.ndarray, weights: np.ndarray
                  ) -> List[Tuple[Tuple[str, str], float]]:
  """`_WeighEvents`, the per-(user, leaf) sums and `_PairProducts` over a
  batch of whole users' events, summed per leaf pair.

  Args:
    users: user per event (every event of each user is in the batch).
    leaves: leaf name per event (`UNKNOWN_LEAF`, '' or None: unknown).
    type_codes: event type codes.
    weights: `normalized_weights(...)`.

  Returns:
    [((leaf_a, leaf_b), Σ_u (v_a)_u (v_b)_u)] for leaf_a ≤ leaf_b.
  """
  w = np.asarray(weights, dtype=np.float64)[np.asarray(type_codes)]
  leaves = pd.Series(leaves, dtype=object)
  keep = (w != 0) & leaves.notna().to_numpy() & ~leaves.isin(
      ["", schema.UNKNOWN_LEAF]).to_numpy()
  if not keep.any():
    return []
  frame = pd.DataFrame({"user": pd.factorize(np.asarray(users)[keep])[0],
                        "leaf": leaves.to_numpy()[keep], "w": w[keep]})
  vectors = frame.groupby(["user", "leaf"], sort=False)["w"].sum(
      ).reset_index()
  pairs = vectors.merge(vectors, on="user", suffixes=("_a", "_b"))
  pairs = pairs[pairs["leaf_a"].to_numpy() <= pairs["leaf_b"].to_numpy()]
  dots = (pairs["w_a"] * pairs["w_b"]).groupby(
      [pairs["leaf_a"], pairs["leaf_b"]]).sum()
  return [((str(a), str(b)), float(x)) for (a, b), x in dots.items()]


def read_triples(output_dir: str,
                 fallback: float = 0.0) -> category_cf.CategorySimilarity:
  """Collects the pipeline's triples into a `CategorySimilarity`.

  Args:
    output_dir: the pipeline's output directory (any Beam filesystem).
    fallback: α for unseen leaves.

  Returns:
    The symmetric similarity over the leaves in the triples, sorted by name.

  Raises:
    ValueError: if no triple file is found.
  """
  paths = _match(os.path.join(output_dir, TRIPLES_PREFIX + "*.jsonl"))
  a, b, s = [], [], []
  for path in paths:
    with FileSystems.open(path) as f:
      for line in io.TextIOWrapper(f, encoding="utf-8"):
        if line.strip():
          leaf_a, leaf_b, value = json.loads(line)
          a.append(leaf_a)
          b.append(leaf_b)
          s.append(value)
  leaves = np.array(sorted(set(a) | set(b)), dtype=object)
  index = {leaf: i for i, leaf in enumerate(leaves)}
  ia = np.array([index[x] for x in a], dtype=np.int64)
  ib = np.array([index[x] for x in b], dtype=np.int64)
  s = np.array(s, dtype=np.float64)
  off = ia != ib
  rows = np.concatenate([ia, ib[off]])
  cols = np.concatenate([ib, ia[off]])
  matrix = sp.csr_matrix((np.concatenate([s, s[off]]), (rows, cols)),
                         shape=(len(leaves), len(leaves)))
  return category_cf.CategorySimilarity(leaves, matrix, fallback=fallback,
                                        stats={"leaves": len(leaves),
                                               "nonzeros": int(matrix.nnz)})


def write_outputs(similarity: category_cf.CategorySimilarity,
                  output_dir: str) -> str:
  """Writes `category_similarity.npz` and `similarity_beam_stats.json`.

  Returns:
    The path of the `.npz` file.
  """
  path = os.path.join(output_dir, NPZ_NAME)
  stats_path = os.path.join(output_dir, STATS_NAME)
  if "://" in path:
    with FileSystems.create(path) as f:
      similarity.save(f)
    with FileSystems.create(stats_path) as f:
      f.write(json.dumps(similarity.stats, indent=2).encode("utf-8"))
  else:
    similarity.save(path)
    report_lib.write_json(similarity.stats, stats_path)
  return path


def run(input_pattern: str,
        catalog_path: str,
        output_dir: str,
        event_weights: Optional[Mapping[str, float]] = None,
        runner: str = "DirectRunner",
        pipeline_args: Optional[Sequence[str]] = None,
        *,
        input_format: Optional[str] = None,
        max_leaves_per_user: Optional[int] = None,
        min_timestamp: Optional[int] = None,
        max_timestamp: Optional[int] = None,
        fallback: float = 0.0) -> category_cf.CategorySimilarity:
  """Runs the pipeline to completion and returns the similarity.

  Writes to `output_dir`: the triples, `category_similarity.npz` (load with
  `CategorySimilarity.load`) and `similarity_beam_stats.json` (the
  counters: events read / used / dropped by reason, users, users capped).

  Args:
    input_pattern: event files, see `build_pipeline`.
    catalog_path: catalog CSV, see `build_pipeline`.
    output_dir: output directory (any Beam filesystem).
    event_weights: w_e by canonical type name; None for the gin defaults.
    runner: a Beam runner name (`DirectRunner`, `DataflowRunner`,
      `FlinkRunner`, `SparkRunner`, ...).
    pipeline_args: further Beam pipeline options, e.g. `--project=...`.
    input_format: see `build_pipeline`.
    max_leaves_per_user: see `build_pipeline`.
    min_timestamp: see `build_pipeline`.
    max_timestamp: see `build_pipeline`.
    fallback: α for unseen leaves in the returned object.

  Returns:
    The `CategorySimilarity`, with the counters in `stats`.
  """
  category_cf.check_fallback(fallback)
  options = PipelineOptions(list(pipeline_args or []) + [f"--runner={runner}"])
  pipeline = beam.Pipeline(options=options)
  build_pipeline(pipeline, input_pattern, catalog_path, output_dir,
                 event_weights, input_format=input_format,
                 max_leaves_per_user=max_leaves_per_user,
                 min_timestamp=min_timestamp, max_timestamp=max_timestamp)
  result = pipeline.run()
  result.wait_until_finish()
  counters = _counters(result)
  similarity = read_triples(output_dir, fallback)
  similarity.stats.update(counters, event_weights=category_cf.weights_dict(
      category_cf.event_weight_table(event_weights)))
  write_outputs(similarity, output_dir)
  return similarity


def _counters(result) -> Dict[str, int]:
  """The pipeline's counters (committed values where the runner has them)."""
  query = result.metrics().query(
      beam.metrics.MetricsFilter().with_namespace(_NAMESPACE))
  totals = {}
  for counter in query["counters"]:
    value = counter.committed if counter.committed is not None else (
        counter.attempted)
    totals[counter.key.metric.name] = totals.get(counter.key.metric.name,
                                                 0) + int(value or 0)
  return totals


def main(argv: Optional[Sequence[str]] = None) -> None:
  """Command line: `python -m cabb_tf.pipelines.similarity_beam --input=...`."""
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--input", required=True, help="event file pattern")
  parser.add_argument("--catalog", required=True, help="catalog CSV")
  parser.add_argument("--output_dir", required=True)
  parser.add_argument("--event_weights", default=None,
                      help='JSON, e.g. {"click": 1, "purchase": 4}')
  parser.add_argument("--max_leaves_per_user", type=int, default=None)
  parser.add_argument("--min_timestamp", type=int, default=None)
  parser.add_argument("--max_timestamp", type=int, default=None)
  parser.add_argument("--runner", default="DirectRunner")
  args, pipeline_args = parser.parse_known_args(argv)
  weights = json.loads(args.event_weights) if args.event_weights else None
  similarity = run(args.input, args.catalog, args.output_dir, weights,
                   runner=args.runner, pipeline_args=pipeline_args,
                   max_leaves_per_user=args.max_leaves_per_user,
                   min_timestamp=args.min_timestamp,
                   max_timestamp=args.max_timestamp)
  print(similarity)


if __name__ == "__main__":
  main()
