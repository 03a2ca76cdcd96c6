"""The whole event log → click examples preparation as one Beam pipeline.

Computes what `cabb_tf.data.pipeline.prepare_examples` computes (the same
examples row for row, the same report counts, the same feature statistics
up to float rounding, docs/method.md) and the category similarity of
Eq. (1)–(2), for logs larger than one machine's memory, and writes them as
the TFDS builders do (`cabb_tf.datasets.click_examples`):

* `click_examples-{train,validation,test}.tfrecord-BBBBB-of-NNNNN`: one
  `tf.train.Example` per example row, encoded by the builders' features dict;
* `data_report.json` (dropped rows by reason included),
  `feature_statistics.json`, `catalog.parquet`, `train_events.parquet`;
* `category_similarity.npz` and `similarity_beam_stats.json` (written by
  `run` after the pipeline, as `similarity_beam.run` does);
* `prepare_beam_counters.json`: the pipeline's counters.

Design (docs/beam.md has the why and the memory bounds):

1. Each input shard (Parquet with the canonical columns of `schema`, or CSV
   parsed by `loaders.read_csv_shard` with `load_csv`'s arguments) is split
   into Parquet fragments by user bucket (hash of the user mod
   `num_buckets`). The shuffle that groups them by bucket carries paths.
2. Each bucket (whole users) is deduplicated across shards, sessionized,
   labelled and featurized by `pipeline.label_and_featurize`, all but the
   popularity family, and split by time (the log's range is a combine of
   the shards' ranges, a side input). It writes its examples and, per time
   block, its events and its click examples' (item, time) queries.
3. Per time block, per-key counts; in time order, the counts of each key
   before each block (`prepare_parts.prefix_counts`); per block, the
   popularity of each query from the block's events plus those prefixes
   (`features.as_of_popularity`).
4. Each bucket joins its answers, gets dense click ids and writes its
   TFRecords; the training examples' statistics parts are merged.

Usage:

    python -m cabb_tf.pipelines.prepare_beam \\
      --input_pattern='events/part-*.parquet' --catalog_path=catalog.parquet \\
      --output_dir=prepared --num_buckets=64 --num_blocks=16 \\
      --runner=DirectRunner --direct_num_workers=2 \\
      --direct_running_mode=multi_processing

Unknown flags are passed to Beam as pipeline options.
"""

import inspect
import json
import os
import shutil
import sys
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging
import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
import gin
import pyarrow as pa
import pyarrow.parquet as pq

from cabb_tf.data import features as features_lib
from cabb_tf.data import labels as labels_lib
from cabb_tf.data import loaders
from cabb_tf.data import pipeline as pipeline_lib
from cabb_tf.data import report as report_lib
from cabb_tf.data import sessions as sessions_lib
from cabb_tf.pipelines import prepare_parts
from cabb_tf.pipelines import similarity_beam
from cabb_tf.similarity import category_cf

NAMESPACE = "cabb_prepare"
DATA_REPORT_FILE = "data_report.json"
FEATURE_STATISTICS_FILE = "feature_statistics.json"
CATALOG_FILE = "catalog.parquet"
TRAIN_EVENTS_FILE = "train_events.parquet"
COUNTERS_FILE = "prepare_beam_counters.json"
# The shards' layout (rows and bytes per split and shard), the time range and
# the split boundaries: what a TFDS dataset's info needs (`dataset_metadata`).
SPLITS_FILE = "prepare_beam_splits.json"
CSV_PRESETS = {"rees46": loaders.rees46_options,
               "taobao": loaders.taobao_options}


def _counter(name: str):
  return beam.metrics.Metrics.counter(NAMESPACE, name)


class _ReadShard(beam.DoFn):
  """(shard, path) → (bucket, fragment path); the summary as "summary"."""

  def __init__(self, options: prepare_parts.Options):
    self._options = options

  def process(self, shard_and_path):
    shard, path = shard_and_path
    fragments, summary = prepare_parts.read_shard(shard, path, self._options)
    report = summary["report"]
    _counter("rows_in").inc(report["rows_in"])
    for reason, count in report["dropped"].items():
      _counter(f"dropped_{reason}").inc(count)
    _counter("shards").inc()
    yield beam.pvalue.TaggedOutput("summary", summary)
    for fragment in fragments:
      yield fragment


class _PrepareBucket(beam.DoFn):
  """(bucket, fragment paths) → bucket summary; per-block fragments as
  "blocks", pair products as "products"."""

  def __init__(self, options: prepare_parts.Options):
    self._options = options

  def process(self, bucket_and_paths, log, catalog, moves):
    bucket, paths = bucket_and_paths
    result = prepare_parts.prepare_bucket(bucket, list(paths), log, catalog,
                                          moves, self._options)
    for reason, count in result["drops"].items():
      if reason != "duplicate_rows_kept":
        _counter(f"dropped_{reason}").inc(count)
    _counter("buckets").inc()
    if not result["empty"]:
      _counter("events").inc(result["counts"]["log"]["events"])
      _counter("click_examples").inc(result["clicks"])
      for block, history, queries in result.pop("blocks"):
        yield beam.pvalue.TaggedOutput("blocks",
                                       (block, (bucket, history, queries)))
      for product in result.pop("products"):
        yield beam.pvalue.TaggedOutput("products", product)
    yield result


class _BlockAnswers(beam.DoFn):
  """(block, [(bucket, history, queries)]) → (bucket, answers path)."""

  def __init__(self, options: prepare_parts.Options):
    self._options = options

  def process(self, block_and_parts, prefixes):
    block, parts = block_and_parts
    parts = list(parts)
    answers = prepare_parts.block_answers(
        block, [h for _, h, _ in parts], [q for _, _, q in parts],
        prefixes["prefix"][block], self._options)
    _counter("blocks").inc()
    for bucket_and_path in answers:
      yield bucket_and_path


class _WriteBucket(beam.DoFn):
  """(bucket, {examples, answers}) → the bucket's statistics part; its
  shards' sizes as "written"."""

  def __init__(self, options: prepare_parts.Options):
    self._options = options

  def process(self, bucket_and_joined, offsets):
    bucket, joined = bucket_and_joined
    examples_paths = list(joined["examples"])
    if not examples_paths:
      return
    (examples_path,) = examples_paths
    examples = prepare_parts.complete_examples(
        examples_path, list(joined["answers"]), offsets[bucket],
        prepare_parts.extra_names(self._options))
    written = prepare_parts.write_tfrecords(examples, bucket, self._options)
    for split, (rows, _) in written.items():
      _counter(f"rows_{split}").inc(rows)
    yield beam.pvalue.TaggedOutput("written", (bucket, written))
    train = examples[examples["split"].astype(str).to_numpy() == "train"]
    statistics = self._options.statistics_options or {}
    yield features_lib.feature_statistics_part(
        train, max_vocabulary=statistics.get("max_vocabulary", 100_000))


class _MergeStatistics(beam.CombineFn):
  """The buckets' training statistics parts merged into one part.

  Pairwise (`features.combine_statistics_parts`), so the merge holds counts
  ∝ distinct values, not one part per bucket (docs/beam.md, memory bounds).
  """

  def __init__(self, max_vocabulary: int):
    super().__init__()
    self._max_vocabulary = max_vocabulary

  def create_accumulator(self):
    return None

  def add_input(self, accumulator, part):
    if accumulator is None:
      return part
    return features_lib.combine_statistics_parts(
        accumulator, part, max_vocabulary=self._max_vocabulary)

  def merge_accumulators(self, accumulators):
    merged = None
    for accumulator in accumulators:
      if accumulator is not None:
        merged = self.add_input(merged, accumulator)
    return merged

  def extract_output(self, accumulator):
    return accumulator


def _click_offsets(buckets: List[Dict[str, Any]]) -> Dict[int, int]:
  """Dense click ids: each bucket's first id, buckets in order."""
  offsets, total = {}, 0
  for summary in sorted(buckets, key=lambda b: b["bucket"]):
    offsets[summary["bucket"]] = total
    total += 0 if summary["empty"] else summary["clicks"]
  return offsets


def _write_text(path: str, text: str) -> None:
  if "://" in path:
    with FileSystems.create(path) as f:
      f.write(text.encode("utf-8"))
  else:
    report_lib.write_json(json.loads(text), path)


def _write_side_files(_, log, catalog_and_extra, buckets, items,
                      statistics_parts, written,
                      options: prepare_parts.Options, source: str,
                      has_session_column: bool):
  """Writes the report, the statistics, the catalog, the train events and
  the layout of the shards (`SPLITS_FILE`)."""
  catalog, extra = catalog_and_extra
  report = prepare_parts.assemble_report(source, log, buckets, items, extra,
                                         options, has_session_column)
  statistics = features_lib.merge_feature_statistics(
      [] if statistics_parts is None else [statistics_parts],
      **(options.statistics_options or {}))
  out = options.output_dir
  _write_text(os.path.join(out, DATA_REPORT_FILE),
              json.dumps(report, default=_builtin))
  _write_text(os.path.join(out, FEATURE_STATISTICS_FILE),
              json.dumps(statistics, default=_builtin))
  side = catalog.copy()
  side["category_path"] = [list(p) for p in side["category_path"]]
  prepare_parts.write_frame(side, os.path.join(out, CATALOG_FILE))
  train_rows = _concat_parquet(
      [b["train"] for b in sorted(buckets, key=lambda b: b["bucket"])
       if not b["empty"] and b["train"]],
      os.path.join(out, TRAIN_EVENTS_FILE))
  test_start, validation_start = features_lib.split_boundaries(
      log["range"], options.validation_fraction, options.test_fraction)
  sizes = dict(written)
  layout = {
      "dataset_name": options.dataset_name,
      "num_shards": options.num_buckets,
      "splits": {split: {
          "shard_lengths": [sizes.get(b, {}).get(split, (0, 0))[0]
                            for b in range(options.num_buckets)],
          "num_bytes": sum(sizes.get(b, {}).get(split, (0, 0))[1]
                           for b in range(options.num_buckets))}
                 for split in features_lib.SPLITS},
      "time_range_ms": [int(t) for t in log["range"]],
      "split_boundaries_ms": {"validation_start": int(validation_start),
                              "test_start": int(test_start)},
      "train_events_rows": int(train_rows),
      "catalog_rows": int(len(catalog)),
  }
  _write_text(os.path.join(out, SPLITS_FILE), json.dumps(layout))
  yield report


def _concat_parquet(paths: Sequence[str], target: str) -> int:
  """Streams fragments into one Parquet file (memory ∝ one fragment);
  returns its rows."""
  writer, rows = None, 0
  with FileSystems.create(target) as f:
    for path in paths:
      with FileSystems.open(path) as g:
        table = pq.read_table(g)
      if writer is None:
        writer = pq.ParquetWriter(f, table.schema)
      writer.write_table(table.cast(writer.schema))
      rows += table.num_rows
    if writer is None:
      pq.write_table(pa.table({}), f)
    else:
      writer.close()
  return rows


def _builtin(value):
  if hasattr(value, "tolist"):
    return value.tolist()
  if hasattr(value, "item"):
    return value.item()
  if isinstance(value, (set, tuple)):
    return list(value)
  raise TypeError(f"not JSON serializable: {type(value)}")


def build_pipeline(pipeline: beam.Pipeline, files: Sequence[str],
                   options: prepare_parts.Options,
                   source: str) -> Dict[str, beam.PCollection]:
  """Adds the preparation to `pipeline`.

  Args:
    pipeline: the pipeline.
    files: the input shards, in the order that defines the input order
      (ties of equal timestamps, as `load_csv` reads a glob).
    options: the run's options.
    source: the report's source name.

  Returns:
    The main PCollections (for tests): "report", "triples".
  """
  shards = (pipeline
            | "Shards" >> beam.Create(list(enumerate(files)))
            | "SpreadShards" >> beam.Reshuffle())
  read = shards | "ReadShards" >> beam.ParDo(
      _ReadShard(options)).with_outputs("summary", main="fragments")
  summaries = read.summary | "ShardSummaries" >> beam.combiners.ToList()
  log = summaries | "LogView" >> beam.Map(prepare_parts.merge_summaries,
                                          options=options)
  if options.input_format == "csv":
    catalog_and_extra = summaries | "BuildCatalog" >> beam.Map(
        prepare_parts.build_catalog, log=beam.pvalue.AsSingleton(log),
        options=options)
  else:
    catalog_and_extra = (pipeline
                         | "CatalogPath" >> beam.Create([options.catalog_path])
                         | "ReadCatalog" >> beam.Map(
                             lambda path: (prepare_parts.read_catalog(path),
                                           {})))
  catalog = catalog_and_extra | "Catalog" >> beam.Map(lambda ce: ce[0])
  log_side = beam.pvalue.AsSingleton(log)
  catalog_side = beam.pvalue.AsSingleton(catalog)

  # Users of a source session shared with other users join the bucket of
  # the first of them (the in-memory path keeps such a session whole).
  moves = (summaries
           | "SessionFragments" >> beam.FlatMap(
               lambda all_: [f for s in all_ for f in s["session_fragments"]])
           | "GroupSessions" >> beam.GroupByKey()
           | "SharedSessions" >> beam.FlatMap(
               lambda kv, log: prepare_parts.multi_user_sessions(
                   list(kv[1]), log), log=log_side)
           | "AllShared" >> beam.combiners.ToList()
           | "UserMoves" >> beam.Map(prepare_parts.user_moves,
                                     options=options))
  moves_side = beam.pvalue.AsSingleton(moves)
  buckets = (read.fragments
             | "RouteFragments" >> beam.FlatMap(prepare_parts.route_fragment,
                                                moves=moves_side)
             | "GroupFragments" >> beam.GroupByKey()
             | "PrepareBuckets" >> beam.ParDo(
                 _PrepareBucket(options), log=log_side,
                 catalog=catalog_side, moves=moves_side).with_outputs(
                     "blocks", "products", main="summaries"))
  bucket_list = buckets.summaries | "BucketSummaries" >> (
      beam.combiners.ToList())
  examples = buckets.summaries | "BucketExamples" >> beam.FlatMap(
      lambda b: [] if b["empty"] else [(b["bucket"], b["examples"])])

  blocks = buckets.blocks | "GroupBlocks" >> beam.GroupByKey()
  counts = blocks | "BlockCounts" >> beam.Map(
      lambda kv: (kv[0], prepare_parts.block_counts(
          kv[0], [h for _, h, _ in kv[1]], options)))
  prefixes = (counts
              | "AllBlockCounts" >> beam.combiners.ToList()
              | "Prefixes" >> beam.Map(prepare_parts.prefix_counts,
                                       catalog=catalog_side,
                                       options=options))
  answers = blocks | "BlockAnswers" >> beam.ParDo(
      _BlockAnswers(options), prefixes=beam.pvalue.AsSingleton(prefixes))
  offsets = bucket_list | "ClickOffsets" >> beam.Map(_click_offsets)
  statistics_parts = (
      {"examples": examples, "answers": answers}
      | "JoinAnswers" >> beam.CoGroupByKey()
      | "WriteBuckets" >> beam.ParDo(
          _WriteBucket(options), offsets=beam.pvalue.AsSingleton(
              offsets)).with_outputs("written", main="statistics"))
  written = statistics_parts.written | "ShardSizes" >> (
      beam.combiners.ToList())
  statistics_parts = (
      statistics_parts.statistics
      | "MergeStatistics" >> beam.CombineGlobally(_MergeStatistics(
          (options.statistics_options or {}).get("max_vocabulary", 100_000))))
  has_session_column = "session_column" in (options.csv_options or {}) or (
      "session_id" in (options.csv_options or {}).get("columns", {}))
  report = (pipeline
            | "Finish" >> beam.Create([None])
            | "WriteSideFiles" >> beam.FlatMap(
                _write_side_files, log=log_side,
                catalog_and_extra=beam.pvalue.AsSingleton(catalog_and_extra),
                buckets=beam.pvalue.AsSingleton(bucket_list),
                items=beam.pvalue.AsSingleton(prefixes),
                statistics_parts=beam.pvalue.AsSingleton(statistics_parts),
                written=beam.pvalue.AsSingleton(written),
                options=options, source=source,
                has_session_column=has_session_column))
  triples = buckets.products | "Similarity" >> (
      similarity_beam.TriplesFromProducts(options.output_dir))
  return {"report": report, "triples": triples}


def _gin_value(fn, parameter: str) -> Any:
  """A parameter's gin binding (unscoped), else its default in `fn`."""
  try:
    return gin.query_parameter(f"{fn.__module__}.{fn.__name__}.{parameter}")
  except ValueError:
    return inspect.signature(fn).parameters[parameter].default


def configured_options(**overrides) -> Dict[str, Any]:
  """The preparation's settings as the in-memory path would use them now.

  The Beam workers see no gin config, so the launcher reads the bindings
  of `assign_sessions`, `label_clicks`, `compute_features` and
  `fit_feature_statistics` here and passes them explicitly.
  """
  sessions = sessions_lib.assign_sessions
  features = features_lib.compute_features
  statistics = features_lib.fit_feature_statistics
  prepare = pipeline_lib.prepare_examples
  values = {
      "session_options": {
          "session_gap_minutes": _gin_value(sessions, "session_gap_minutes"),
          "use_source_sessions": _gin_value(sessions, "use_source_sessions"),
          "day_sessions": _gin_value(sessions, "day_sessions"),
      },
      "feature_options": {
          "cvr_prior_mean": _gin_value(features, "cvr_prior_mean"),
          "cvr_prior_strength": _gin_value(features, "cvr_prior_strength"),
          "num_threads": _gin_value(features, "num_threads"),
      },
      "statistics_options": {
          "max_vocabulary": _gin_value(statistics, "max_vocabulary"),
          "min_count": _gin_value(statistics, "min_count"),
      },
      "attribution_window_s": labels_lib.configured_attribution_window(),
      "validation_fraction": _gin_value(prepare, "validation_fraction"),
      "test_fraction": _gin_value(prepare, "test_fraction"),
  }
  values.update({k: v for k, v in overrides.items() if v is not None})
  return values


def run(input_pattern: str,
        output_dir: str,
        *,
        catalog_path: Optional[str] = None,
        input_format: Optional[str] = None,
        csv_options: Optional[Dict[str, Any]] = None,
        csv_preset: Optional[str] = None,
        num_buckets: int = 16,
        num_blocks: int = 8,
        time_range: Optional[Tuple[int, int]] = None,
        validation_fraction: Optional[float] = None,
        test_fraction: Optional[float] = None,
        event_weights: Optional[Dict[str, float]] = None,
        temp_dir: Optional[str] = None,
        keep_temp: bool = False,
        runner: str = "DirectRunner",
        pipeline_args: Optional[Sequence[str]] = None,
        beam_options: Optional[PipelineOptions] = None,
        dataset_name: str = "click_examples",
        extra_columns: Optional[Any] = None,
        tfds_metadata: bool = True) -> Dict[str, Any]:
  """Runs the whole preparation and returns the data report.

  The output directory is a TFDS dataset: `tfds.builder_from_directory`
  (and `input_pipeline.load_data(prepared_dir=...)`) reads it.

  Args:
    input_pattern: the event shards (a glob, any Beam filesystem), read in
      sorted name order.
    output_dir: where the TFRecords and side files go.
    catalog_path: the canonical catalog Parquet (Parquet input; CSV input
      builds its catalog as `load_csv` does).
    input_format: 'parquet' or 'csv'; None guesses from the extension.
    csv_options: `loaders.load_csv` keyword arguments for CSV input.
    csv_preset: 'rees46' or 'taobao' instead of `csv_options`.
    num_buckets: user buckets (memory per bucket ∝ events / num_buckets).
    num_blocks: time blocks (memory per block ∝ events / num_blocks).
    time_range: `prepare_examples`' [start, end) ms; events outside are
      dropped as `out_of_time_range`.
    validation_fraction: as in `prepare_examples` (gin, else 0.1).
    test_fraction: as in `prepare_examples` (gin, else 0.2).
    event_weights: w_e of the similarity (None: gin / defaults).
    temp_dir: fragments' directory (default `output_dir/tmp`).
    keep_temp: keep the fragments after a successful run.
    runner: a Beam runner (when `beam_options` names none).
    pipeline_args: further Beam pipeline options.
    beam_options: Beam's options as an object (`tfds`' `DownloadConfig`
      holds them so); `pipeline_args` are added to them.
    dataset_name: the TFRecords' name prefix.
    extra_columns: a builder's own fields (`records.ExtraColumns`).
    tfds_metadata: write TFDS's `dataset_info.json` and `features.json`
      (a TFDS builder that calls `run` writes its own).

  Returns:
    The data report (also in `output_dir/data_report.json`).

  Raises:
    ValueError: on bad arguments or input (as the loaders raise).
  """
  files = sorted(m.path for m in FileSystems.match([input_pattern])[0]
                 .metadata_list)
  if not files:
    raise ValueError(f"no file matches {input_pattern!r}.")
  input_format = input_format or similarity_beam.format_of(input_pattern)
  if input_format not in prepare_parts.INPUT_FORMATS:
    raise ValueError(f"input_format must be one of "
                     f"{prepare_parts.INPUT_FORMATS}, not {input_format!r}.")
  if csv_preset is not None:
    if csv_preset not in CSV_PRESETS:
      raise ValueError(f"csv_preset must be one of {sorted(CSV_PRESETS)}, "
                       f"not {csv_preset!r}.")
    csv_options = {**CSV_PRESETS[csv_preset](), **(csv_options or {})}
  if input_format == "csv" and not csv_options:
    raise ValueError("CSV input needs csv_options (load_csv's arguments) or "
                     "csv_preset.")
  if input_format == "parquet" and not catalog_path:
    raise ValueError("Parquet input needs catalog_path (a canonical catalog "
                     "Parquet).")
  for name, value in (("num_buckets", num_buckets),
                      ("num_blocks", num_blocks)):
    if int(value) != value or value < 1:
      raise ValueError(f"{name} must be a positive integer, not {value!r}.")
  category_cf.event_weight_table(event_weights)  # Fails early on bad ones.
  temp_dir = temp_dir or os.path.join(output_dir, "tmp")
  settings = configured_options(validation_fraction=validation_fraction,
                                test_fraction=test_fraction)
  options = prepare_parts.Options(
      input_format=input_format, csv_options=csv_options,
      catalog_path=catalog_path, num_buckets=int(num_buckets),
      num_blocks=int(num_blocks), temp_dir=temp_dir, output_dir=output_dir,
      time_range=tuple(int(t) for t in time_range) if time_range else None,
      event_weights=event_weights, dataset_name=dataset_name,
      extra_columns=extra_columns, **settings)
  for directory in (output_dir, temp_dir):
    FileSystems.mkdirs(directory) if not FileSystems.exists(directory) else (
        None)
  stale = FileSystems.match([os.path.join(
      output_dir, f"{dataset_name}-*.tfrecord-*")])[0].metadata_list
  if stale:
    FileSystems.delete([m.path for m in stale])
  if beam_options is None:
    beam_options = PipelineOptions(list(pipeline_args or []) +
                                   [f"--runner={runner}"])
  else:
    given = beam_options.get_all_options(drop_default=True)
    if pipeline_args:
      given.update(PipelineOptions(list(pipeline_args)).get_all_options(
          drop_default=True))
    given.setdefault("runner", runner)
    beam_options = PipelineOptions.from_dictionary(given)
  with beam.Pipeline(options=beam_options) as pipeline:
    build_pipeline(pipeline, files, options, source=input_pattern)
  result = pipeline.result
  _fill_empty_shards(output_dir, dataset_name, int(num_buckets))
  counters = _counters(result)
  similarity = similarity_beam.read_triples(output_dir)
  similarity.stats.update(event_weights=category_cf.weights_dict(
      category_cf.event_weight_table(event_weights)))
  similarity_beam.write_outputs(similarity, output_dir)
  _write_text(os.path.join(output_dir, COUNTERS_FILE), json.dumps(counters))
  report = _read_json(output_dir, DATA_REPORT_FILE)
  if tfds_metadata:
    write_tfds_metadata(output_dir, extra_columns)
  if not keep_temp:
    if "://" in temp_dir:
      FileSystems.delete([temp_dir])
    else:
      shutil.rmtree(temp_dir, ignore_errors=True)
  logging.info("Prepared %d example rows from %d events into %s",
               report["examples"], report["events"], output_dir)
  return report


def _fill_empty_shards(output_dir: str, dataset_name: str,
                       num_shards: int) -> None:
  """Writes an empty file for every bucket without examples (TFDS wants
  every shard of a split to exist)."""
  for split in features_lib.SPLITS:
    for bucket in range(num_shards):
      path = prepare_parts.tfrecord_path(output_dir, split, bucket,
                                         num_shards, dataset_name)
      if not FileSystems.exists(path):
        FileSystems.create(path).close()


def _read_json(output_dir: str, name: str) -> Any:
  """A JSON side file of the output (any Beam filesystem)."""
  with FileSystems.open(os.path.join(output_dir, name)) as f:
    return json.loads(f.read().decode("utf-8"))


def dataset_metadata(output_dir: str) -> Dict[str, Any]:
  """What a TFDS builder records of this preparation in its metadata.

  The keys of the in-memory builders' `info.metadata`
  (`cabb_tf.datasets.click_examples.ClickExamplesBuilder`): `data_report`,
  `feature_statistics`, `time_range_ms`, `split_boundaries_ms`,
  `train_events` and `catalog`.
  """
  layout = _read_json(output_dir, SPLITS_FILE)
  boundaries = layout["split_boundaries_ms"]
  return {
      "data_report": _read_json(output_dir, DATA_REPORT_FILE),
      "feature_statistics": _read_json(output_dir, FEATURE_STATISTICS_FILE),
      "time_range_ms": layout["time_range_ms"],
      "split_boundaries_ms": boundaries,
      "train_events": {"file": TRAIN_EVENTS_FILE,
                       "rows": layout["train_events_rows"],
                       "before_ms": boundaries["validation_start"]},
      "catalog": {"file": CATALOG_FILE, "rows": layout["catalog_rows"]},
  }


def split_infos(output_dir: str, filename_template) -> List[Any]:
  """The `tfds.core.SplitInfo` of each split (shard lengths and bytes as
  written), for the TFRecords that `filename_template` names."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  layout = _read_json(output_dir, SPLITS_FILE)
  return [tfds.core.SplitInfo(
      name=split, shard_lengths=list(info["shard_lengths"]),
      num_bytes=int(info["num_bytes"]),
      filename_template=filename_template.replace(split=split))
          for split, info in layout["splits"].items()]


def write_tfds_metadata(output_dir: str,
                        extra_columns: Optional[Any] = None) -> None:
  """Makes `output_dir` a TFDS dataset: `dataset_info.json` (with the
  `dataset_metadata`) and `features.json`, so that
  `tfds.builder_from_directory(output_dir)` reads it."""
  from etils import epath  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from cabb_tf.data import records  # pylint: disable=g-import-not-at-top
  name = _read_json(output_dir, SPLITS_FILE)["dataset_name"]
  template = tfds.core.ShardedFileTemplate(
      data_dir=epath.Path(output_dir), dataset_name=name,
      template=tfds.core.naming.DEFAULT_FILENAME_TEMPLATE,
      filetype_suffix="tfrecord")
  tfds.folder_dataset.write_metadata(
      data_dir=output_dir,
      features=records.example_features(
          extra_columns.features() if extra_columns else None),
      split_infos=split_infos(output_dir, template),
      filename_template=template, check_data=False,
      description="Click examples prepared by cabb_tf.pipelines.prepare_beam "
                  "(docs/beam.md).",
      metadata=tfds.core.MetadataDict(
          records.json_ready(dataset_metadata(output_dir))))


def _counters(result) -> Dict[str, int]:
  query = result.metrics().query(
      beam.metrics.MetricsFilter().with_namespace(NAMESPACE))
  totals: Dict[str, int] = {}
  for counter in query["counters"]:
    value = counter.committed if counter.committed is not None else (
        counter.attempted)
    name = counter.key.metric.name
    totals[name] = totals.get(name, 0) + int(value or 0)
  return dict(sorted(totals.items()))


def _define_flags(values: flags.FlagValues) -> None:
  """The command line's flags (in their own FlagValues: importing this module
  defines no global flag)."""
  flags.DEFINE_string("input_pattern", None, "Event shards (glob).",
                      flag_values=values)
  flags.DEFINE_string("output_dir", None, "Output directory.",
                      flag_values=values)
  flags.DEFINE_string("catalog_path", None, "Catalog Parquet (Parquet input).",
                      flag_values=values)
  flags.DEFINE_enum("input_format", None, list(prepare_parts.INPUT_FORMATS),
                    "Input format; guessed from the extension when unset.",
                    flag_values=values)
  flags.DEFINE_string("csv_options", None,
                      "JSON of load_csv keyword arguments (CSV input).",
                      flag_values=values)
  flags.DEFINE_enum("csv_preset", None, sorted(CSV_PRESETS),
                    "A source's load_csv arguments (CSV input).",
                    flag_values=values)
  flags.DEFINE_integer("num_buckets", 16, "User buckets.", flag_values=values)
  flags.DEFINE_integer("num_blocks", 8, "Time blocks.", flag_values=values)
  flags.DEFINE_list("time_range", None, "start_ms,end_ms of events to keep.",
                    flag_values=values)
  flags.DEFINE_string("event_weights", None, "JSON w_e of the similarity.",
                      flag_values=values)
  flags.DEFINE_string("temp_dir", None, "Fragments (default OUTPUT/tmp).",
                      flag_values=values)
  flags.DEFINE_boolean("keep_temp", False, "Keep the fragments.",
                       flag_values=values)
  flags.DEFINE_string("runner", "DirectRunner", "Beam runner.",
                      flag_values=values)
  flags.DEFINE_multi_string("gin_file", [], "Gin files.", flag_values=values)
  flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings.",
                            flag_values=values)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  """Command line: `python -m cabb_tf.pipelines.prepare_beam --flags...`.

  Flags not defined here are passed to Beam as pipeline options.

  Args:
    argv: the program name and its arguments (default `sys.argv`).

  Returns:
    The data report.
  """
  values = flags.FlagValues()
  _define_flags(values)
  argv = list(sys.argv if argv is None else argv)
  rest = values(argv, known_only=True)
  for name in ("input_pattern", "output_dir"):
    if not values[name].value:
      raise app.UsageError(f"--{name} is required.")
  logging.set_verbosity(logging.INFO)
  # Not finalized: workers of the in-process runner import modules lazily,
  # and a locked config refuses the gin configurables they define.
  gin.parse_config_files_and_bindings(values.gin_file, values.gin_bindings,
                                      finalize_config=False)
  report = run(
      values.input_pattern, values.output_dir,
      catalog_path=values.catalog_path, input_format=values.input_format,
      csv_options=(json.loads(values.csv_options) if values.csv_options
                   else None),
      csv_preset=values.csv_preset, num_buckets=values.num_buckets,
      num_blocks=values.num_blocks,
      time_range=([int(t) for t in values.time_range] if values.time_range
                  else None),
      event_weights=(json.loads(values.event_weights) if values.event_weights
                     else None),
      temp_dir=values.temp_dir, keep_temp=values.keep_temp,
      runner=values.runner, pipeline_args=rest[1:])
  for line in pipeline_lib.summary_lines(report):
    print(line)
  return report


if __name__ == "__main__":
  main()
