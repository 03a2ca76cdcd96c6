"""What the click-example TFDS builders share: records, preparation, files.

Every builder under `cabb_tf/datasets/` turns one event log into the labeled
click examples of `cabb_tf.data.pipeline.prepare_examples` (docs/method.md) and
writes them as a TFDS dataset with the splits `train`, `validation` and `test`
(the example's `split` column: by click time, the last `test_fraction` of the
log's time range is test and the `validation_fraction` before it validation).

One record per example row (a click with k >= 1 other purchased items gives k
rows, see `cabb_tf.data.labels`) holds

* every feature of `features.FEATURE_NAMES`: the id features as strings, the
  counts as int32 and the rest as float32;
* the labels `y_caba`, `y_cabb`, `y_last_click` (int64) and the CABA weight
  `w_caba` (float32);
* `item_b` ('' when the row has no other purchased item), `leaf_a`, `leaf_b`
  ('' with no B), `session_id` (string), `timestamp` (ms) and `click_id` (the
  click example's dense id: its rows share it),

so that a weighting scheme attaches α(leaf_a, leaf_b) later, in the tf.data
pipeline, and no weight is frozen into the files. Records are stored in TFDS's
deterministic order (by a hash of the row number), not in time order;
`click_id` and `timestamp` recover the grouping and the order.

**Side files.** Similarity weights are fitted on the *training-period events*
(Eq. 1 aggregates user × leaf engagement), which the examples alone do not
hold. The builder writes them, together with the catalog and the reports,
into the dataset's own versioned directory (`builder.data_path`, e.g.
`<data_dir>/cabb_synthetic/small/1.0.0/`) while TFDS prepares it, i.e. into
TFDS's temporary `incomplete` directory, which TFDS renames into place only
when the whole preparation succeeded. So the side files appear atomically with
the records, move with the dataset directory, and a reader never sees a
dataset without them:

* `train_events.parquet`: the canonical events (`user_id`, `session_id`,
  `timestamp`, `item_id`, `event_type` as a string) with timestamp before the
  validation period, plus each item's `leaf`;
* `catalog.parquet`: the whole catalog (`category_path` as a list of strings);
* `data_report.json` and `feature_statistics.json`: as `prepare_to_dir` writes
  them.

`load_training_events` reads the first two back. The report, the feature
statistics, the time range, the split boundaries and the gin bindings in force
during the preparation are also in `builder.info.metadata`
(a `tfds.core.MetadataDict`, saved by TFDS as `metadata.json`).

**Gin.** The time split comes from the builder config. The rest of the
preparation (session gap, attribution window
`label_clicks.attribution_window_s`, CVR prior, vocabulary caps, simulator
parameters, CSV options) runs with the gin bindings in force; those that are
set are logged as a warning and recorded in `metadata["gin_bindings"]` (the
window is also `data_report["attribution_window_s"]`). TFDS reuses a
prepared dataset by name, config and version, so build a variant into its own
`data_dir`.

**Cost.** Preparation is in memory. The records are serialized a chunk of
rows at a time (`example_wire`), not by TFDS one example at a time (about
0.6 ms of CPU a row), then shuffled and written by TFDS's writer:
`cabb_synthetic/default` (about 280,000 rows, 250 MB) builds in about 8
seconds with 1.2 GB of memory, `large` (2.8 million rows, 2.4 GB) in about
2 minutes with 3.4 GB, most of it in TFDS's writer, which spills the
records to disk beyond 1 GB.

**Beam.** Given Beam options (`DownloadConfig(beam_options=...)`, or
`python -m cabb_tf.datasets.build --beam_pipeline_options=...`), a builder
prepares the same rows with `cabb_tf.pipelines.prepare_beam` instead, on any
Beam runner, with memory bounded by a work unit (`beam_work_units`), and
records the same metadata. docs/beam.md says what each builder hands to the
pipeline and what differs (click-id numbering, record order, shards).
"""

import abc
import ast
import contextlib
import dataclasses
import inspect
import json
import os
from typing import (Any, Callable, Dict, Iterator, Mapping, Optional,
                    Sequence, Tuple, Union)

from absl import logging
from etils import epath
import gin
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.core import writer as tfds_writer

from cabb_tf import gin_utils
from cabb_tf.data import example_wire
from cabb_tf.data import features as features_lib
from cabb_tf.data import labels as labels_lib
from cabb_tf.data import loaders
from cabb_tf.data import pipeline
from cabb_tf.data import records
from cabb_tf.data import report as report_lib
from cabb_tf.data import schema
from cabb_tf.data import sessions as sessions_lib
from cabb_tf.datasets import provenance

SPLITS = records.SPLITS
TRAIN_EVENTS_FILE = "train_events.parquet"
CATALOG_FILE = "catalog.parquet"
DATA_REPORT_FILE = "data_report.json"
FEATURE_STATISTICS_FILE = "feature_statistics.json"

Log = Tuple[pd.DataFrame, pd.DataFrame, Dict[str, Any]]

# The record format (`cabb_tf.data.records`), under the names the builders'
# users know.
FLOAT_FEATURES = records.FLOAT_FEATURES
ExtraColumns = records.ExtraColumns
feature_dtype = records.feature_dtype
example_features = records.example_features
example_columns = records.example_columns
training_events = records.training_events
json_ready = records.json_ready


@dataclasses.dataclass
class BeamSource:
  """What a builder gives the Beam preparation to read (`prepare_beam.run`).

  Attributes:
    input_pattern: the event shards (a glob).
    catalog_path: the canonical catalog Parquet (Parquet shards).
    csv_options: `loaders.load_csv`'s arguments (CSV shards).
    extra_columns: the builder's own fields (`_extra_features`), computed
      on the workers (`ExtraColumns`).
  """
  input_pattern: str
  catalog_path: Optional[str] = None
  csv_options: Optional[Dict[str, Any]] = None
  extra_columns: Optional[Any] = None


@gin.configurable
def beam_work_units(num_buckets: int = 16, num_blocks: int = 8
                    ) -> Dict[str, int]:
  """The Beam preparation's work units when a builder prepares with Beam.

  They bound the memory of a worker (docs/beam.md, "Memory bounds"), not
  the data: the examples do not depend on them, so the builds do not
  record them.

  Args:
    num_buckets: user buckets (about events / 2·10⁶ on a cluster); also the
      number of shards of each split.
    num_blocks: time blocks (about events / 5·10⁶).

  Returns:
    `prepare_beam.run`'s keyword arguments.
  """
  return {"num_buckets": int(num_buckets), "num_blocks": int(num_blocks)}


# Set inside `variants_apart()`.
_variants_apart = False


@contextlib.contextmanager
def variants_apart() -> Iterator[None]:
  """Builds inside it have a data_dir of their own per variant (as
  `reproduce.run` gives each): the gin bindings that change a build's data
  are logged as information, not warned of."""
  global _variants_apart
  before, _variants_apart = _variants_apart, True
  try:
    yield
  finally:
    _variants_apart = before


@dataclasses.dataclass(eq=False)
class ClickExamplesConfig(tfds.core.BuilderConfig):
  """A builder config with the time split of the examples.

  Attributes:
    validation_fraction: share of the log's time range, before the test
      period, whose clicks form the validation split.
    test_fraction: share of the time range at its end whose clicks form the
      test split.
  """
  validation_fraction: float = 0.1
  test_fraction: float = 0.2


class ClickExamplesBuilder(tfds.core.GeneratorBasedBuilder,
                           skip_registration=True):
  """Base of the click-example builders: prepare once, emit three splits.

  Subclasses implement `_load_log` and may override `_time_range` (events
  outside are dropped and counted), `_extra_features` / `_extra_columns`
  (builder-specific fields) and `_gin_configurables` / `_gin_explicit`
  (functions whose gin bindings change the data, recorded in the metadata,
  and their parameters the builder passes explicitly).
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  # Examples per chunk when converting DataFrame columns to Python values
  # or to records.
  _CHUNK_ROWS = 50_000
  # Serialize the records a chunk of rows at a time (`_write_split`); False:
  # TFDS encodes each example `_generate_examples` yields (the same records,
  # tests/datasets/cabb_synthetic_test.py; 20 times slower on `default`).
  _ENCODE_BY_COLUMN = True

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=example_features(self._extra_features()),
        homepage=self._homepage(),
        metadata=tfds.core.MetadataDict(),
    )

  def _homepage(self) -> Optional[str]:
    """The source data's home page, if it has one."""
    return None

  def _extra_features(self) -> Dict[str, tfds.features.FeatureConnector]:
    return {}

  @abc.abstractmethod
  def _load_log(self, dl_manager: tfds.download.DownloadManager) -> Log:
    """Returns the canonical `(events, catalog, report)` to prepare."""

  def _time_range(self) -> Optional[Tuple[int, int]]:
    """The [start, end) in ms of events to keep, or None for all."""
    return None

  def _extra_columns(self, examples: pd.DataFrame) -> Dict[str, np.ndarray]:
    """Values of the `_extra_features` fields, row for row with `examples`."""
    del examples
    return {}

  def _gin_configurables(self) -> Sequence[Callable[..., Any]]:
    """Functions whose gin bindings change the data of this builder."""
    return (sessions_lib.assign_sessions, labels_lib.label_clicks,
            features_lib.compute_features, features_lib.fit_feature_statistics)

  def _gin_explicit(self) -> Sequence[str]:
    """Parameters of `_gin_configurables` this builder always passes."""
    return ()

  def source_path(self) -> Optional[str]:
    """The file or glob this builder would read now; None: nothing to check.

    Builders that read files record their fingerprints at build
    (`record_sources`) and name the file they would read now here, so a
    build is not reused for another file (`provenance.check_sources`).
    """
    return None

  def record_sources(self, path: str) -> None:
    """Records the fingerprints of the files read for `path` in the metadata.

    Call it before reading: a file that changes while it is read is then seen
    as changed by the next request.
    """
    fingerprints = provenance.source_fingerprints(path)
    logging.info("%s: reading %d file(s) for %s.", self.info.full_name,
                 len(fingerprints), path)
    self.info.metadata[provenance.SOURCE_FILES_KEY] = fingerprints

  def manual_source(self, override: Optional[str], file_name: str,
                    dl_manager: Optional[tfds.download.DownloadManager] = None
                    ) -> str:
    """The raw file of a manual-download builder, when building or checking.

    `override` (a gin binding) or `file_name`; a path (with a '/') is read as
    it is, a bare name is in the manual directory: `dl_manager`'s while
    building, else the one of the last `download_and_prepare` as TFDS
    resolves it (`download_config.manual_dir`, else `<download_dir>/manual`,
    the download directory defaulting to `<data_dir>/downloads`).
    """
    chosen = override or file_name
    if "/" in chosen:
      return chosen
    if dl_manager is not None:
      return os.fspath(dl_manager.manual_dir / chosen)
    manual_dir = getattr(self, "_requested_manual_dir", None) or os.path.join(
        self.data_dir_root, "downloads", "manual")
    return os.path.join(os.fspath(manual_dir), chosen)

  def read_manual_file(self, override: Optional[str],
                       dl_manager: tfds.download.DownloadManager,
                       binding: str) -> str:
    """The raw file of a manual-download build, checked and fingerprinted.

    Args:
      override: the gin-bound file name or path, or None for the config's
        `file_name` (`manual_source`).
      dl_manager: the build's download manager.
      binding: the gin parameter that names another file (for the error).

    Returns:
      The file's path; its fingerprints are recorded (`record_sources`).

    Raises:
      ValueError: if the file does not exist, with the download steps.
    """
    path = self.manual_source(override, self.builder_config.file_name,
                              dl_manager)
    if not epath.Path(path).exists():
      raise ValueError(
          f"{path} does not exist. {self.info.full_name} reads "
          f"{epath.Path(path).name} from the manual directory (or the file "
          f"bound to {binding} in gin):\n"
          f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    self.record_sources(path)
    return path

  def manual_csv_source(self, override: Optional[str],
                        dl_manager: tfds.download.DownloadManager,
                        binding: str, csv_options: Mapping[str, Any]
                        ) -> BeamSource:
    """The `BeamSource` of a manual-download CSV (`read_manual_file`)
    parsed with its loader's `load_csv` arguments, `csv_options`."""
    path = self.read_manual_file(override, dl_manager, binding)
    return BeamSource(path, csv_options=loaders.csv_options_as_called(
        **csv_options))

  def check_reuse(self) -> None:
    """Checks a prepared build before it is reused; marks its bindings read.

    Raises ValueError when its source files changed
    (`provenance.check_sources`). Reusing the build calls none of the
    functions whose gin bindings shaped it; `input_pipeline.load_data`
    compares those bindings with the build's record (`binding_mismatches`),
    so they are marked read for `gin_utils.report_unused_bindings`.

    Raises:
      ValueError: naming the changed files and the directory to delete.
    """
    provenance.check_sources(self)
    bound = bound_gin_parameters(self._gin_configurables(),
                                 ignore=self._gin_explicit())
    gin_utils.mark_read(
        bound, why=f"compared with the record of the build in {self.data_path}")

  def download_and_prepare(self, *, download_dir=None, download_config=None,
                           **kwargs):
    """Checks a reused build first (`check_reuse`), then TFDS' own."""
    manual_dir = download_config.manual_dir if download_config else None
    if manual_dir is None and download_dir is not None:
      manual_dir = os.path.join(os.fspath(download_dir), "manual")
    self._requested_manual_dir = manual_dir
    if self.is_prepared():
      self.check_reuse()
    return super().download_and_prepare(download_dir=download_dir,
                                        download_config=download_config,
                                        **kwargs)

  def _beam_source(self, dl_manager: tfds.download.DownloadManager,
                   staging_dir: str) -> BeamSource:
    """What the Beam preparation reads; `staging_dir` is for files that a
    builder must write first (it is deleted after the build)."""
    raise NotImplementedError(
        f"{self.info.full_name} cannot be prepared with Beam.")

  def _data_bindings(self) -> Dict[str, str]:
    """The bound gin parameters that change this build's data, warned of."""
    bindings = bound_gin_parameters(self._gin_configurables(),
                                    ignore=self._gin_explicit())
    if bindings:
      logging.log(
          logging.INFO if _variants_apart else logging.WARNING,
          "Preparing %s under gin bindings that change its data: %s. They are "
          "recorded in the dataset's metadata ('gin_bindings'); build variants "
          "into separate data_dirs.", self.info.full_name, bindings)
    return bindings

  def _check_splits(self, counts: Mapping[str, int]) -> None:
    """Raises ValueError when a split has no example rows."""
    config = self.builder_config
    for split in SPLITS:
      if not counts.get(split):
        raise ValueError(
            f"{self.info.full_name}: the {split} split has no examples "
            f"({sum(counts.values())} rows in all); the log is too small or "
            "too short for validation_fraction="
            f"{config.validation_fraction}, test_fraction="
            f"{config.test_fraction}.")

  def _download_and_prepare(self, dl_manager, download_config):
    """In memory by default; with Beam when the download config has Beam
    options or a runner (`python -m cabb_tf.datasets.build
    --beam_pipeline_options=...`, docs/beam.md)."""
    if (download_config.beam_options is None and
        download_config.beam_runner is None):
      if not self._ENCODE_BY_COLUMN:
        return super()._download_and_prepare(dl_manager, download_config)
      return self._prepare_in_memory(dl_manager, download_config)
    return self._prepare_with_beam(dl_manager, download_config)

  def _prepare_in_memory(self, dl_manager, download_config) -> None:
    """TFDS's preparation of `_split_generators`' examples, with the records
    serialized a chunk of rows at a time (`_write_split`)."""
    limit = download_config.max_examples_per_split
    if limit == 0:  # As TFDS: nothing to write.
      return
    columns, rows_of_split = self._prepare_splits(dl_manager)
    fields = example_wire.field_kinds(self.info.features)
    if limit is not None:
      logging.warning("Splits capped at %s examples max.", limit)
    infos = []
    for split, rows in rows_of_split.items():
      if limit is not None:  # TFDS keeps the first rows its generator yields.
        rows = rows[:limit]
      infos.append(self._write_split(split, columns, rows, fields,
                                     download_config))
    self.info.set_splits(tfds.core.SplitDict(infos))

  def _write_split(self, split: str, columns: Mapping[str, Any],
                   rows: np.ndarray, fields: example_wire.Fields,
                   download_config: tfds.download.DownloadConfig
                   ) -> tfds.core.SplitInfo:
    """Writes the records of `rows` as TFDS writes a split's examples.

    TFDS encodes and serializes one example at a time in Python, about
    0.6 ms a row; `example_wire.serialize_rows` writes the same records for
    a chunk of rows at once (with their features in name order, see its
    docstring), and TFDS's own writer then orders them by the hash of their
    row number, shards and writes them exactly as it does
    `_generate_examples`' output.

    Args:
      split: the split's name.
      columns: `example_columns(..., arrays=True)`.
      rows: the split's row positions, in `_generate_examples`' order.
      fields: `example_wire.field_kinds(self.info.features)`.
      download_config: the build's (shards, duplicate keys).

    Returns:
      The split's info.
    """
    template = self._get_filename_template(split_name=split)
    writer = tfds_writer.Writer(
        serializer=_Serialized(), filename_template=template, hash_salt=split,
        disable_shuffling=self.info.disable_shuffling,
        example_writer=self._example_writer(),
        shard_config=download_config.get_shard_config(),
        ignore_duplicates=download_config.ignore_duplicates)
    for start in range(0, len(rows), self._CHUNK_ROWS):
      chunk = rows[start:start + self._CHUNK_ROWS]
      records_of_chunk = example_wire.serialize_rows(
          fields, {name: column(chunk) for name, column in columns.items()})
      for key, record in zip(chunk.tolist(), records_of_chunk):
        writer.write(key, record)
    shard_lengths, num_bytes = writer.finalize()
    return tfds.core.SplitInfo(name=split, shard_lengths=shard_lengths,
                               num_bytes=num_bytes,
                               filename_template=template)

  def _prepare_with_beam(self, dl_manager, download_config) -> None:
    """Runs `prepare_beam` into the dataset's directory and records its
    splits and metadata as the in-memory preparation does."""
    try:
      # Its modules define gin configurables; a binary may have locked the
      # config already.
      with gin.unlock_config():
        from cabb_tf.pipelines import prepare_beam  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ValueError(
          f"preparing {self.info.full_name} with Beam needs Apache Beam "
          f"({e}): pip install 'cabb_tf[beam]'.") from e
    config = self.builder_config
    bindings = self._data_bindings()
    directory = os.fspath(self.data_path)
    staging = os.path.join(directory, "beam_staging")
    source = self._beam_source(dl_manager, staging)
    runner = download_config.beam_runner or "DirectRunner"
    prepare_beam.run(
        source.input_pattern, directory, catalog_path=source.catalog_path,
        csv_options=source.csv_options, time_range=self._time_range(),
        validation_fraction=config.validation_fraction,
        test_fraction=config.test_fraction,
        temp_dir=os.path.join(directory, "beam_tmp"), runner=runner,
        beam_options=download_config.beam_options, dataset_name=self.name,
        extra_columns=source.extra_columns, tfds_metadata=False,
        **beam_work_units())
    if tf.io.gfile.exists(staging):
      tf.io.gfile.rmtree(staging)
    infos = prepare_beam.split_infos(
        directory, self._get_filename_template(split_name=SPLITS[0]))
    self._check_splits({info.name: info.num_examples for info in infos})
    self.info.set_splits(tfds.core.SplitDict(infos))
    metadata = prepare_beam.dataset_metadata(directory)
    metadata.update(config=config_dict(config), gin_bindings=bindings)
    self.info.metadata.update(json_ready(metadata))
    logging.info("%s: %d example rows prepared with Beam.",
                 self.info.full_name, metadata["data_report"]["examples"])

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    columns, rows_of_split = self._prepare_splits(dl_manager)
    return {split: self._generate_examples(columns, rows)
            for split, rows in rows_of_split.items()}

  def _prepare_splits(self, dl_manager: tfds.download.DownloadManager
                      ) -> Tuple[Dict[str, Callable[[np.ndarray], Any]],
                                 Dict[str, np.ndarray]]:
    """Prepares the examples, records the metadata, writes the side files.

    Returns:
      `(columns, rows)`: the fields' readers (`example_columns(...,
      arrays=True)`) and each split's row positions, in row order.
    """
    config = self.builder_config
    events, catalog, report = self._load_log(dl_manager)
    bindings = self._data_bindings()
    time_range = self._time_range()
    prepared = pipeline.prepare_examples(
        events, catalog, report, time_range=time_range,
        validation_fraction=config.validation_fraction,
        test_fraction=config.test_fraction)
    test_start, validation_start = features_lib.split_boundaries(
        prepared.time_range, config.validation_fraction, config.test_fraction)
    # `prepare_examples` drops out-of-range events itself and counts them;
    # the train events are the same in-range events, sessionized the same way.
    if time_range is not None:
      events = events[in_time_range(events, time_range)]
    train_events = training_events(
        sessions_lib.assign_sessions(events.reset_index(drop=True)), catalog,
        validation_start)

    examples = prepared.examples
    split_of_row = examples["split"].astype(str).to_numpy()
    self._check_splits(num_rows(examples))
    columns = example_columns(examples, self._extra_columns(examples),
                              arrays=True)

    metadata = {
        "data_report": prepared.report,
        "feature_statistics": prepared.feature_statistics,
        "time_range_ms": list(prepared.time_range),
        "split_boundaries_ms": {"validation_start": validation_start,
                                "test_start": test_start},
        "train_events": {"file": TRAIN_EVENTS_FILE, "rows": len(train_events),
                         "before_ms": validation_start},
        "catalog": {"file": CATALOG_FILE, "rows": len(catalog)},
        "config": config_dict(config),
        "gin_bindings": bindings,
    }
    self.info.metadata.update(json_ready(metadata))
    write_side_files(self.data_path, prepared, train_events)
    logging.info("%s: %d example rows from %d events; train events: %d.",
                 self.info.full_name, len(examples), prepared.report["events"],
                 len(train_events))
    return columns, {split: np.flatnonzero(split_of_row == split)
                     for split in SPLITS}

  def _generate_examples(self, columns: Mapping[str, Any], rows: np.ndarray
                         ) -> Iterator[Tuple[int, Dict[str, Any]]]:
    """Yields (row number, example) for the given rows of `columns`
    (`_prepare_splits`'), the values as Python objects."""
    for start in range(0, len(rows), self._CHUNK_ROWS):
      chunk = rows[start:start + self._CHUNK_ROWS]
      values = {name: column(chunk).tolist()
                for name, column in columns.items()}
      names = list(values)
      for i, row in enumerate(chunk.tolist()):
        yield row, {name: values[name][i] for name in names}


class _Serialized:
  """The serializer of TFDS's writer for records already serialized."""

  def serialize_example(self, example: bytes) -> bytes:
    return example


def in_time_range(events: pd.DataFrame,
                  time_range: Tuple[int, int]) -> np.ndarray:
  """Boolean mask of the events with timestamp in [start, end) ms."""
  start, end = (int(t) for t in time_range)
  ts = events["timestamp"].to_numpy()
  return (ts >= start) & (ts < end)


def config_dict(config: Optional[tfds.core.BuilderConfig]) -> Dict[str, Any]:
  """The fields of a builder config that define the data, as a dict."""
  if config is None:
    return {}
  skip = {"version", "release_notes", "supported_versions", "tags",
          "description"}
  return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
          if f.name not in skip}


def bound_gin_parameters(functions: Sequence[Callable[..., Any]],
                         ignore: Sequence[str] = ()) -> Dict[str, str]:
  """The unscoped gin bindings of `functions`' parameters, as strings.

  A binding has no effect where the caller passes the argument explicitly;
  list such parameters in `ignore`. Others may still be overridden by an
  explicit argument somewhere, so the result can over-report.

  Args:
    functions: gin-configurable functions.
    ignore: parameters to leave out, as "module.function.parameter".

  Returns:
    {"module.function.parameter": repr(value)} for every bound parameter.
  """
  bound = {}
  for fn in functions:
    selector = f"{fn.__module__}.{fn.__name__}"
    for name in inspect.signature(fn).parameters:
      key = f"{selector}.{name}"
      if key in ignore:
        continue
      try:
        value = gin.query_parameter(key)
      except ValueError:
        continue
      bound[key] = repr(value)
  return bound


def _effective(functions: Sequence[Callable[..., Any]], key: str,
               recorded: Mapping[str, str]) -> Any:
  """A parameter's value: its recorded binding, else the function default."""
  if key in recorded:
    try:
      return ast.literal_eval(recorded[key])
    except (ValueError, SyntaxError):
      return recorded[key]
  for fn in functions:
    selector = f"{fn.__module__}.{fn.__name__}"
    if key.startswith(selector + "."):
      parameter = inspect.signature(fn).parameters.get(key[len(selector) + 1:])
      if parameter is not None:
        return parameter.default
  return None


def binding_mismatches(builder) -> Dict[str, Tuple[Any, Any]]:
  """Data-shaping gin parameters whose value now differs from the build's.

  A prepared dataset records the bindings it was built under
  (`metadata['gin_bindings']`); TFDS reuses a build by name, config and
  version alone, so a run that binds, say, another attribution window or
  signal scale against the same `data_dir` would silently read the old
  data. Unbound parameters count at their defaults.

  Returns:
    {"module.function.parameter": (value at build, value now)}; empty for
    builders that record nothing.
  """
  if not isinstance(builder, ClickExamplesBuilder):
    return {}
  metadata = builder.info.metadata or {}
  if "gin_bindings" not in metadata:
    return {}
  functions = builder._gin_configurables()  # pylint: disable=protected-access
  recorded = dict(metadata["gin_bindings"])
  current = bound_gin_parameters(
      functions, ignore=builder._gin_explicit())  # pylint: disable=protected-access
  out = {}
  for key in sorted(set(recorded) | set(current)):
    then = _effective(functions, key, recorded)
    now = _effective(functions, key, current)
    if then != now:
      out[key] = (then, now)
  return out


@contextlib.contextmanager
def reading_split(builder: tfds.core.DatasetBuilder, split: str):
  """Reads of a split's files: a damaged file is a ValueError naming the build.

  A truncated or altered TFRecord surfaces as a TensorFlow error deep in an
  iterator; inside this context it becomes one line that names the directory
  to delete so that the next run rebuilds it.

  Args:
    builder: the prepared builder being read.
    split: the split being read.

  Yields:
    Nothing; wrap the loop that reads the split.

  Raises:
    ValueError: when the split's files cannot be read.
  """
  try:
    yield
  except (tf.errors.DataLossError, tf.errors.InvalidArgumentError,
          tf.errors.NotFoundError) as e:
    raise ValueError(
        f"the {split} split of {builder.info.full_name} cannot be read "
        f"({_cause(str(e.message))}): the build in {builder.data_path} is "
        "damaged; delete that directory and the next run rebuilds it."
    ) from None


def _cause(message: str) -> str:
  """What failed, in one line of a TensorFlow error's message.

  Its first line, except for an error of a graph function (a Keras step
  reading a dataset), whose message first says so and where the node was
  defined, then names the failure in the last unindented line.
  """
  lines = [line for line in message.splitlines() if line.strip()]
  if lines and lines[0].startswith("Graph execution error"):
    causes = [line for line in lines[1:] if not line.startswith(
        (" ", "\t", "Detected at node"))]
    if causes:
      return causes[-1]
  return lines[0] if lines else message


# The list a tf.train.Example holds a value in, by the dtype it parses to
# (`example_dtype`).
EXAMPLE_LISTS = {tf.string: "bytes_list", tf.float32: "float_list",
                 tf.int64: "int64_list"}


def example_dtype(dtype: tf.DType) -> tf.DType:
  """The dtype a tf.train.Example holds a value of `dtype` in: strings as
  bytes, floats as float32, integers as int64 (`EXAMPLE_LISTS`)."""
  if dtype == tf.string:
    return tf.string
  return tf.float32 if dtype.is_floating else tf.int64


def example_spec(dtypes: Mapping[str, tf.DType]
                 ) -> Dict[str, tf.io.FixedLenFeature]:
  """`tf.io.parse_example`'s spec of one value per feature of `dtypes`."""
  return {name: tf.io.FixedLenFeature([], example_dtype(dtype))
          for name, dtype in dtypes.items()}


def parse_examples(serialized: tf.Tensor, dtypes: Mapping[str, tf.DType]
                   ) -> Dict[str, tf.Tensor]:
  """Serialized tf.train.Example (a 1-D string tensor) → {feature: column}.

  Each feature of `dtypes` is parsed (`example_spec`) and cast back to its
  dtype, as TFDS does when it reads a record (a record's int32 count is an
  int64 in its Example).
  """
  parsed = tf.io.parse_example(serialized, example_spec(dtypes))
  return {name: tf.cast(value, dtypes[name])
          if value.dtype != dtypes[name] else value
          for name, value in parsed.items()}


def record_parser(builder: tfds.core.DatasetBuilder, fields: Sequence[str],
                  keep: Optional[str] = None
                  ) -> Callable[[tf.Tensor], Dict[str, tf.Tensor]]:
  """serialized records (a 1-D string tensor) → {field: column}.

  Parses only `fields` (and `keep`) of a batch of records at once, with the
  dtypes `builder.as_dataset` gives (`parse_examples`).

  Args:
    builder: a prepared cabb_tf builder (for the features' dtypes).
    fields: the features to parse.
    keep: an integer feature; when set, only rows where it is > 0 are kept.
  """
  features = builder.info.features
  wanted = list(dict.fromkeys(list(fields) + ([keep] if keep else [])))
  dtypes = {name: tf.as_dtype(features[name].tf_dtype) for name in wanted}

  def parse(records):
    parsed = parse_examples(records, dtypes)
    if keep:
      mask = parsed[keep] > 0
      parsed = {k: tf.boolean_mask(v, mask) for k, v in parsed.items()}
    return {k: parsed[k] for k in fields}

  return parse


def serialized_records(builder: tfds.core.DatasetBuilder,
                       split: str) -> tf.data.Dataset:
  """A split's serialized records, file after file (for a split of one
  file, the order of `as_dataset(shuffle_files=False)`)."""
  info = builder.info.splits[split]
  files = tf.constant([os.fspath(path) for path in info.filepaths], tf.string)
  # The count is known, as `as_dataset`'s is: Keras and tf.data plan with it.
  return tf.data.TFRecordDataset(files, buffer_size=8 << 20).apply(
      tf.data.experimental.assert_cardinality(info.num_examples))


def column_dataset(builder: tfds.core.DatasetBuilder, split: str,
                   fields: Sequence[str], keep: Optional[str] = None,
                   batch_size: int = 65_536) -> tf.data.Dataset:
  """A split's rows, only `fields`, as a dataset of column batches.

  Reading a few columns of a large build through `builder.as_dataset` decodes
  every feature of every record one record at a time; this parses only
  `fields` (and `keep`), a batch of serialized records at a time, straight
  from the split's TFRecord files (`serialized_records`, `record_parser`).

  Args:
    builder: a prepared cabb_tf builder.
    split: `train`, `validation` or `test`.
    fields: the features to read.
    keep: an integer feature; when set, only rows where it is > 0 are kept
      (the filter runs in the graph, before a batch reaches Python).
    batch_size: serialized records parsed per batch.

  Returns:
    A dataset of {field: 1-D tensor} batches; with `keep`, some may be empty.
    Iterate it inside `reading_split` to turn a damaged file into a clear
    error.
  """
  return (serialized_records(builder, split).batch(batch_size)
          .map(record_parser(builder, fields, keep),
               num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
          .prefetch(2))


def read_batches(builder: tfds.core.DatasetBuilder, split: str,
                 batches: tf.data.Dataset, numpy: bool = True) -> Iterator:
  """A dataset of a split's batches, iterated inside `reading_split`.

  Args:
    builder: the prepared builder the batches are read from.
    split: the split they are read from.
    batches: e.g. `column_dataset`'s, or batches made from it.
    numpy: yield NumPy (strings as bytes); False yields the tensors.

  Yields:
    The batches.

  Raises:
    ValueError: as `reading_split`, when the split's files cannot be read.
  """
  with reading_split(builder, split):
    yield from batches.as_numpy_iterator() if numpy else batches


def read_columns(builder: tfds.core.DatasetBuilder, split: str,
                 fields: Sequence[str], keep: Optional[str] = None,
                 batch_size: int = 65_536) -> Iterator[Dict[str, np.ndarray]]:
  """`column_dataset`'s batches as NumPy (strings as bytes).

  Raises:
    ValueError: as `reading_split`, when the split's files cannot be read.
  """
  return read_batches(builder, split,
                      column_dataset(builder, split, fields, keep, batch_size))


def _write_parquet(frame: pd.DataFrame, path: epath.Path) -> None:
  table = pa.Table.from_pandas(frame, preserve_index=False)
  with path.open("wb") as f:
    pq.write_table(table, f)


def write_side_files(directory: epath.Path, prepared: pipeline.PreparedData,
                     train_events: pd.DataFrame) -> None:
  """Writes the train events, catalog and reports into `directory`.

  Args:
    directory: the dataset's (temporary) versioned directory.
    prepared: the prepared examples.
    train_events: output of `training_events`.
  """
  directory = epath.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  _write_parquet(train_events, directory / TRAIN_EVENTS_FILE)
  catalog = prepared.catalog.copy()
  catalog["category_path"] = [list(p) for p in catalog["category_path"]]
  _write_parquet(catalog, directory / CATALOG_FILE)
  report_lib.check_report(prepared.report)
  for name, obj in ((DATA_REPORT_FILE, prepared.report),
                    (FEATURE_STATISTICS_FILE, prepared.feature_statistics)):
    (directory / name).write_text(
        json.dumps(obj, indent=2, default=records.json_default) + "\n")


def _dataset_dir(builder_or_dir: Union[tfds.core.DatasetBuilder,
                                       epath.PathLike]) -> epath.Path:
  if isinstance(builder_or_dir, tfds.core.DatasetBuilder):
    return builder_or_dir.data_path
  if isinstance(builder_or_dir, epath.PathLikeCls):
    return epath.Path(builder_or_dir)
  raise ValueError(
      "load_training_events takes a cabb_tf TFDS builder or its versioned "
      f"dataset directory, not {type(builder_or_dir).__name__}.")


def load_training_events(
    builder_or_dir: Union[tfds.core.DatasetBuilder, epath.PathLike]
) -> Tuple[pd.DataFrame, pd.DataFrame]:
  """Reads the training-period events and the catalog of a prepared dataset.

  Args:
    builder_or_dir: a prepared builder (e.g. `tfds.builder(
      'cabb_synthetic/small', data_dir=...)` after `download_and_prepare()`)
      or its versioned directory (`<data_dir>/cabb_synthetic/small/1.0.0`).

  Returns:
    `(events, catalog)`: canonical events of the training period (with
    `session_id`, `event_type` of dtype `schema.EVENT_TYPE_DTYPE` and each
    item's `leaf`) and the canonical catalog (`category_path` as tuples),
    ready for `cabb_tf.similarity`.

  Raises:
    ValueError: if the directory holds no prepared cabb_tf dataset.
  """
  directory = _dataset_dir(builder_or_dir)
  missing = [name for name in (TRAIN_EVENTS_FILE, CATALOG_FILE)
             if not (directory / name).exists()]
  if missing:
    raise ValueError(
        f"{directory} has no {' / '.join(missing)}: pass a cabb_tf dataset "
        "builder after download_and_prepare(), or its versioned directory "
        "such as <data_dir>/cabb_synthetic/small/1.0.0.")
  with (directory / TRAIN_EVENTS_FILE).open("rb") as f:
    events = pq.read_table(f).to_pandas()
  if events["event_type"].isna().any() or not set(
      events["event_type"].unique()) <= set(schema.EVENT_TYPES):
    raise ValueError(f"{directory / TRAIN_EVENTS_FILE}: column 'event_type' "
                     f"has values outside {list(schema.EVENT_TYPES)}.")
  events["event_type"] = pd.Categorical(
      events["event_type"].astype(str), dtype=schema.EVENT_TYPE_DTYPE)
  with (directory / CATALOG_FILE).open("rb") as f:
    catalog = pq.read_table(f).to_pandas()
  return events, schema.catalog_from_parquet_frame(catalog)


def num_rows(examples: pd.DataFrame) -> Dict[str, int]:
  """Example rows per split (what the TFDS splits hold)."""
  counts = examples["split"].astype(str).value_counts()
  return {split: int(counts.get(split, 0)) for split in SPLITS}
