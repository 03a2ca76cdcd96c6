"""tf.data input: TFDS click examples → model features, labels and weights.

α is attached here, never frozen into the dataset files: `with_alpha` adds
a split's `alpha` column once, by the weighting scheme's table lookup
(`inputs.weighting`), and training, evaluation and the analyses read that
column. The CABB weight has one rule, `cabb_weight`:

    w_cabb = α(A, B)            on CABB-positive rows (y_cabb = 1),
    w_cabb = negative_weight    on the other rows (docs/method.md, "Labels",
                                default 1; the α-weighted CABB NE uses 1).

Tasks (`TASKS`):

* `multitask` — heads `caba` (label `y_caba`, weight `w_caba`) and `cabb`
  (label `y_cabb`, weight `w_cabb`);
* `last_click` — Baseline 1, one head on `y_last_click` weighted by `w_caba`;
* `caba_only` — Baseline 2, one head on `y_caba` weighted by `w_caba`.
"""

import dataclasses
import functools
import time
from typing import (Any, Callable, Dict, Iterable, Iterator, Mapping,
                    Optional, Sequence, Tuple)

from absl import logging
import gin
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from cabb_tf import datasets  # pylint: disable=unused-import  (registers builders)
from cabb_tf.data import truth
from cabb_tf.datasets import click_examples
from cabb_tf.datasets import locking
from cabb_tf.inputs import cache as cache_lib

AlphaFn = Callable[[Mapping[str, tf.Tensor]], tf.Tensor]
# String tensor → integer row indices (e.g. a `StringLookup` layer).
IdLookup = Callable[[tf.Tensor], tf.Tensor]

# Task → {head: (label key, weight key)}.
TASKS: Dict[str, Dict[str, Tuple[str, str]]] = {
    "multitask": {"caba": ("y_caba", "w_caba"), "cabb": ("y_cabb", "w_cabb")},
    "last_click": {"conversion": ("y_last_click", "w_caba")},
    "caba_only": {"conversion": ("y_caba", "w_caba")},
}


def heads_of(task: str) -> Tuple[str, ...]:
  """The model heads of a task."""
  if task not in TASKS:
    raise ValueError(f"unknown task {task!r}; expected one of {list(TASKS)}.")
  return tuple(TASKS[task])


@dataclasses.dataclass
class Data:
  """The prepared splits of one dataset and what describes them.

  `train`, `validation` and `test` are the splits' record datasets, opened
  when first asked for: a run that reads its splits as columns (in memory)
  or as serialized records (streamed) never opens them.
  """
  builder: tfds.core.DatasetBuilder
  feature_statistics: Dict[str, Any]
  num_examples: Dict[str, int]

  def split(self, name: str) -> tf.data.Dataset:
    """The record dataset of split `name`."""
    return self.builder.as_dataset(split=name, shuffle_files=False)

  @functools.cached_property
  def train(self) -> tf.data.Dataset:
    return self.split("train")

  @functools.cached_property
  def validation(self) -> tf.data.Dataset:
    return self.split("validation")

  @functools.cached_property
  def test(self) -> tf.data.Dataset:
    return self.split("test")


# How a worker that does not build waits for the build (seconds).
BUILD_POLL_S = 10.0
BUILD_WAIT_S = 24 * 3600.0


@gin.configurable(denylist=["build"])
def load_data(name: str = "cabb_synthetic/default",
              data_dir: Optional[str] = None,
              manual_dir: Optional[str] = None,
              prepared_dir: Optional[str] = None,
              build: bool = True) -> Data:
  """Prepares (once) and opens a cabb_tf TFDS dataset.

  Args:
    name: the TFDS name with config, e.g. 'cabb_synthetic/small',
      'taobao_user_behavior', 'rees46'.
    data_dir: TFDS data directory (None: TFDS's default).
    manual_dir: where manually downloaded files are (REES46, Taobao).
    prepared_dir: instead of `name`, a directory that
      `cabb_tf.pipelines.prepare_beam` wrote (docs/beam.md), read as it is
      with `tfds.builder_from_directory`.
    build: prepare the dataset if it is missing. False (the workers of a
      cluster other than the chief) waits until another process has
      prepared it instead, up to `BUILD_WAIT_S`.

  Returns:
    The `Data` with raw record datasets of each split.

  Raises:
    ValueError: if the dataset cannot be prepared (e.g. a missing manual
      download), with what to set.
  """
  try:
    csv_path = gin.query_parameter("cabb_tf.data.loaders.load_csv.path")
  except ValueError:
    csv_path = None
  if csv_path is not None and not name.startswith("session_log"):
    raise ValueError(
        f"load_csv.path is bound ({csv_path!r}) but this run reads the "
        f"dataset {name!r}, which never reads it: include "
        "'datasets/session_log.gin' in your gin file to train on that log "
        "(docs/loading.md), or drop the load_csv bindings.")
  if prepared_dir is not None:
    builder = tfds.builder_from_directory(prepared_dir)
    if "feature_statistics" not in (builder.info.metadata or {}):
      raise ValueError(
          f"{prepared_dir} is a TFDS dataset but not one prepared by "
          "cabb_tf.pipelines.prepare_beam: its metadata has no "
          "feature_statistics.")
    return _open(builder)
  config = tfds.download.DownloadConfig(manual_dir=manual_dir)
  try:
    builder = (locking.prepared_builder(name, data_dir, config) if build else
               _wait_for_build(name, data_dir))
  except (AssertionError, FileNotFoundError) as e:
    raise ValueError(
        f"cannot prepare dataset {name!r}: {e}. For datasets that need a "
        "manual download, set load_data.manual_dir (gin) to the directory "
        "holding the raw file.") from e
  mismatches = click_examples.binding_mismatches(builder)
  if mismatches:
    changes = "; ".join(f"{key}: built with {then!r}, now {now!r}"
                        for key, (then, now) in mismatches.items())
    raise ValueError(
        f"the dataset in {builder.data_path} was built under other gin "
        f"bindings than this run's ({changes}): give this configuration its "
        "own load_data.data_dir, or delete that directory to rebuild it.")
  if isinstance(builder, click_examples.ClickExamplesBuilder):
    # The source files are unchanged; the bindings just compared count as read.
    builder.check_reuse()
  return _open(builder)


def _wait_for_build(name: str, data_dir: Optional[str]
                    ) -> tfds.core.DatasetBuilder:
  """The builder of `name` once another process has prepared it.

  Raises:
    ValueError: if it is not prepared within `BUILD_WAIT_S`.
  """
  start = time.monotonic()
  logged = None
  while True:
    builder = tfds.builder(name, data_dir=data_dir)
    if builder.is_prepared():
      return builder
    waited = time.monotonic() - start
    if waited >= BUILD_WAIT_S:
      raise ValueError(
          f"dataset {name!r} was not prepared in {builder.data_path} within "
          f"{waited:.0f} s: the chief builds it; is the chief running, with "
          "the same load_data.data_dir?")
    if logged is None or time.monotonic() - logged >= 60:
      logged = time.monotonic()
      logging.info("Waiting for the chief to prepare %s in %s (%.0f s).",
                   name, builder.data_path, waited)
    time.sleep(BUILD_POLL_S)


def _open(builder: tfds.core.DatasetBuilder) -> Data:
  """The `Data` of a prepared builder."""
  statistics = builder.info.metadata["feature_statistics"]
  counts = {s: builder.info.splits[s].num_examples
            for s in click_examples.SPLITS}
  return Data(builder=builder, feature_statistics=statistics,
              num_examples=counts)


def model_inputs(record: Mapping[str, tf.Tensor],
                 feature_dtypes: Mapping[str, tf.DType],
                 id_lookups: Optional[Mapping[str, IdLookup]] = None
                 ) -> Dict[str, tf.Tensor]:
  """The model's feature tensors from a dataset record (or a whole split).

  Args:
    record: the record's (or split's) raw columns.
    feature_dtypes: the model's inputs (`factory.input_dtypes(model)`).
    id_lookups: string → row index of the id features
      (`factory.id_lookups(feature_statistics)`); needed when the model
      takes a feature as an integer that the record holds as a string.

  Returns:
    {feature: the record's value cast to the model's dtype}; a string id
    the model takes as an integer is its lookup's index.

  Raises:
    ValueError: if a string feature is an integer input of the model and
      `id_lookups` has no lookup for it.
  """
  out = {}
  for name, dtype in feature_dtypes.items():
    value = record[name]
    if value.dtype == tf.string and dtype != tf.string:
      if not id_lookups or name not in id_lookups:
        raise ValueError(
            f"the model takes {name!r} as {dtype.name} row indices but the "
            "record holds strings: pass id_lookups="
            "factory.id_lookups(feature_statistics).")
      value = id_lookups[name](value)
    out[name] = tf.cast(value, dtype)
  return out


ALPHA = "alpha"


def with_alpha(record: Mapping[str, tf.Tensor],
               alpha_fn: Optional[AlphaFn]) -> Dict[str, tf.Tensor]:
  """`record` (a record, a batch or a whole split) with its `alpha` column.

  Args:
    record: the raw columns.
    alpha_fn: the weighting scheme's in-graph α(record)
      (`weighting.make_alpha_fn`); None means α = 1 (the baselines).

  Returns:
    A new dict: the columns and `alpha`, float32 with `y_cabb`'s shape.
  """
  y_cabb = tf.cast(record["y_cabb"], tf.float32)
  alpha = (tf.ones_like(y_cabb) if alpha_fn is None else
           tf.cast(alpha_fn(record), tf.float32))
  return dict(record, **{ALPHA: alpha})


def cabb_weight(y_cabb, alpha, negative_weight: float = 1.0):
  """w_cabb: α on CABB-positive rows, `negative_weight` on the others.

  The one rule of the CABB weight (Eq. 5; docs/method.md, "Labels"), for
  tensors (training) and for NumPy arrays (scoring: the α-weighted CABB NE
  weighs negatives by 1).
  """
  if isinstance(y_cabb, np.ndarray):
    return np.where(y_cabb > 0, alpha, negative_weight)
  return tf.where(y_cabb > 0, alpha,
                  tf.fill(tf.shape(y_cabb), negative_weight))


def _alpha_column(record: Mapping[str, tf.Tensor]) -> tf.Tensor:
  if ALPHA not in record:
    raise ValueError("the record has no 'alpha' column: add it with "
                     "input_pipeline.with_alpha(record, alpha_fn).")
  return record[ALPHA]


# The record fields `make_example_fn` reads besides the model's inputs and α.
EXAMPLE_FIELDS = ("y_caba", "y_cabb", "y_last_click", "w_caba")


def example_fields(feature_dtypes: Mapping[str, tf.DType],
                   alpha_fields: Tuple[str, ...] = ()) -> Tuple[str, ...]:
  """The record fields a training example is made of: the model's inputs,
  the labels and weights, and the fields α is looked up by
  (`weighting.KEYS` of the scheme; none for the baselines)."""
  return tuple(dict.fromkeys([*feature_dtypes, *EXAMPLE_FIELDS,
                              *alpha_fields]))


def make_example_fn(task: str, feature_dtypes: Mapping[str, tf.DType],
                    negative_weight: float = 1.0,
                    id_lookups: Optional[Mapping[str, IdLookup]] = None):
  """Returns record → (features, labels, sample weights) for `Dataset.map`.

  Args:
    task: one of `TASKS`.
    feature_dtypes: the model's inputs (`factory.input_dtypes(model)`).
    negative_weight: `w_cabb` on rows without a CABB purchase.
    id_lookups: string → row index of the id features the model takes as
      indices (`factory.id_lookups`; see `model_inputs`).

  Returns:
    A function of a record with its `alpha` column (`with_alpha`) for
    `tf.data.Dataset.map` (batched or not), or for a whole in-memory split
    (`prepare_columns`), which then looks every id up once.
  """
  heads = TASKS[task]

  def example(record):
    features = model_inputs(record, feature_dtypes, id_lookups)
    y_cabb = tf.cast(record["y_cabb"], tf.float32)
    weights_of = {
        "w_caba": tf.cast(record["w_caba"], tf.float32),
        "w_cabb": cabb_weight(y_cabb, _alpha_column(record), negative_weight),
    }
    labels = {head: tf.cast(record[label], tf.float32)[..., tf.newaxis]
              for head, (label, _) in heads.items()}
    weights = {head: weights_of[weight] for head, (_, weight) in
               heads.items()}
    return features, labels, weights

  return example


# The record fields scoring reads besides the model's inputs, the labels and
# weights (`EXAMPLE_FIELDS`) and α: the rows' ids, which `evaluation_columns`
# passes on as they are, and the simulator's ground truth, which the datasets
# that have it hold as strings and scoring keeps as codes
# (`cabb_tf.data.truth`).
ROW_IDS = ("session_id", "click_id")
GROUND_TRUTH = {"relation": truth.relation_codes, "cause": truth.cause_codes}


def evaluation_fields(data: "Data", feature_dtypes: Mapping[str, tf.DType],
                      alpha_fields: Tuple[str, ...] = ()) -> Tuple[str, ...]:
  """The record fields of `data` that scoring a split reads."""
  present = data.builder.info.features
  return tuple(dict.fromkeys([
      *example_fields(feature_dtypes, alpha_fields), *ROW_IDS,
      *(name for name in GROUND_TRUTH if name in present)]))


def split_batches(data: "Data", split: str, fields: Sequence[str],
                  alpha_fn: Optional[AlphaFn],
                  batch_size: int) -> tf.data.Dataset:
  """A split's rows in file order as batches of columns, with α.

  The streaming path's evaluation: only `fields` are parsed, a batch of
  serialized records at a time (`click_examples.column_dataset`), and no
  more than a few batches are held. The batches are those of the in-memory
  split (`split_columns`) cut every `batch_size` rows.
  """
  return click_examples.column_dataset(
      data.builder, split, fields, batch_size=batch_size).map(
          lambda columns: with_alpha(columns, alpha_fn),
          num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def stream_columns(data: "Data", split: str, fields: Sequence[str],
                   alpha_fn: Optional[AlphaFn],
                   batch_size: int) -> Iterator[Dict[str, tf.Tensor]]:
  """`split_batches`, iterated (`click_examples.read_batches`).

  Raises:
    ValueError: as `click_examples.reading_split`, when the split's files
      cannot be read.
  """
  return click_examples.read_batches(
      data.builder, split,
      split_batches(data, split, fields, alpha_fn, batch_size), numpy=False)


def evaluation_columns(record: Mapping[str, tf.Tensor]
                       ) -> Dict[str, tf.Tensor]:
  """Labels, weights and α (the `with_alpha` column) every evaluation
  needs, whatever the task, as float32, and the rows' ids (`ROW_IDS`)."""
  columns = {name: tf.cast(record[name], tf.float32)
             for name in EXAMPLE_FIELDS}
  columns[ALPHA] = _alpha_column(record)
  columns.update({name: record[name] for name in ROW_IDS})
  return columns


def split_columns(data: "Data", split: str,
                  cache: Optional[cache_lib.Cache] = None
                  ) -> Dict[str, tf.Tensor]:
  """A split of `data` in memory as columns, read once per cache.

  Experiments train many models on one dataset; decoding its records once
  instead of once per run saves most of a short run's time.

  Args:
    data: the dataset.
    split: 'train', 'validation' or 'test'.
    cache: where the columns are kept (None: the process's
      `cache.default()`).

  Raises:
    ValueError: if the split's files cannot be read (a damaged build),
      naming the directory to delete so that the next run rebuilds it.
  """
  def read():
    # Only the parse of whole batches of serialized records: much faster
    # than decoding `as_dataset`'s records one at a time.
    return _concat(click_examples.read_batches(
        data.builder, split, click_examples.column_dataset(
            data.builder, split, list(data.builder.info.features)),
        numpy=False))

  cache = cache or cache_lib.default()
  return cache.column_split((str(data.builder.data_path), split), read)


def stream_batches(records: tf.data.Dataset, parse, example_fn,
                   alpha_fn: Optional[AlphaFn], batch_size: int,
                   shuffle_buffer: int, seed: int) -> tf.data.Dataset:
  """The streaming path's batches (`train.run.in_memory = False`).

  Serialized records are shuffled, batched, and then parsed
  (`click_examples.record_parser`) and made examples a batch at a time:
  far cheaper than decoding and preparing records one at a time.

  Args:
    records: serialized records (`click_examples.serialized_records`).
    parse: serialized batch → columns.
    example_fn: `make_example_fn`'s function.
    alpha_fn: the scheme's α, or None (α = 1).
    batch_size: rows per batch.
    shuffle_buffer: records in the shuffle buffer.
    seed: the shuffling seed (the same seed, the same order).
  """
  return records.shuffle(
      shuffle_buffer, seed=seed, reshuffle_each_iteration=False).batch(
          batch_size).map(
              lambda serialized: example_fn(with_alpha(parse(serialized),
                                                       alpha_fn)),
              num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _concat(batches: Iterable[Mapping[str, tf.Tensor]]
            ) -> Dict[str, tf.Tensor]:
  """One tensor per field from column batches."""
  parts: Dict[str, list] = {}
  for batch in batches:
    for key, value in batch.items():
      parts.setdefault(key, []).append(value)
  return {key: tf.concat(values, axis=0) for key, values in parts.items()}


def prepare_columns(columns: Mapping[str, tf.Tensor], example_fn):
  """Applies `example_fn` to a whole in-memory split at once.

  Casting, the id and α lookups and label shaping are then done once per
  split instead of once per batch and epoch; batches only gather rows.
  """
  return example_fn(columns)


def _is_column(value: tf.Tensor) -> bool:
  """Whether a float32 leaf is one value per row ([n] or [n, 1])."""
  return value.dtype == tf.float32 and (value.shape.rank == 1 or (
      value.shape.rank == 2 and value.shape[1] == 1))


def _pack(prepared):
  """Splits a structure's leaves into one float32 matrix and the rest.

  Gathering one [n, k] matrix is several times cheaper than gathering k
  separate columns, so all float32 leaves of shape [n] or [n, 1] travel
  together and are unstacked after the gather.
  """
  leaves = tf.nest.flatten(prepared)
  packable = [i for i, v in enumerate(leaves) if _is_column(v)]
  matrix = tf.stack([tf.reshape(leaves[i], [-1]) for i in packable], axis=1)
  others = {i: v for i, v in enumerate(leaves) if i not in set(packable)}
  return matrix, packable, others


def row_gatherer(prepared):
  """Returns `gather(index)`: the rows `index` of a prepared in-memory split.

  Args:
    prepared: `prepare_columns` output, (features, labels, weights) with
      one row per example along the first axis.

  Returns:
    A function from an int64 index vector to the same structure restricted
    to those rows (pure TF ops, usable inside a train step).
  """
  leaves = tf.nest.flatten(prepared)
  matrix, packable, others = _pack(prepared)
  ranks = [v.shape.rank for v in leaves]

  def gather(index):
    rows = tf.unstack(tf.gather(matrix, index), axis=1)
    out = [None] * len(leaves)
    for column, i in zip(rows, packable):
      out[i] = column if ranks[i] == 1 else column[:, tf.newaxis]
    for i, value in others.items():
      out[i] = tf.gather(value, index)
    return tf.nest.pack_sequence_as(prepared, out)

  return gather


def num_rows(prepared) -> int:
  """Rows of a prepared in-memory split."""
  return int(tf.nest.flatten(prepared)[0].shape[0])


def index_batches(num_examples: int, batch_size: int, seed: int,
                  drop_remainder: bool = False) -> tf.data.Dataset:
  """One epoch of shuffled batches (the same seed, the same order).

  The epoch's order is `np.random.default_rng(seed).permutation(
  num_examples)`; batch i is the rows `order[i * batch_size:(i + 1) *
  batch_size]`. An element does not hold those rows but says where they
  are: a dict of `order` (the same tensor, by reference, in every element)
  and `batch`, the int64 vector `[seed, start, stop]` — the batch is
  `order[start:stop]`. `InMemoryRows` turns it into the rows.

  Args:
    num_examples: rows of the split.
    batch_size: rows per batch (the last batch may be smaller).
    seed: the epoch's shuffling seed (≥ 0).
    drop_remainder: leave out the last batch if it is smaller.

  Returns:
    A dataset of `ceil(num_examples / batch_size)` elements (`floor` with
    `drop_remainder`).

  Raises:
    ValueError: for a batch size below 1 or a negative seed.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
  if seed < 0:
    raise ValueError(f"the shuffling seed must be non-negative, got {seed}.")
  order = np.random.default_rng(seed).permutation(num_examples)
  end = (num_examples - num_examples % batch_size if drop_remainder else
         num_examples)
  starts = np.arange(0, end, batch_size, dtype=np.int64)
  stops = np.minimum(starts + batch_size, num_examples)
  # Two components, not four: each costs the iterator time in every step.
  return tf.data.Dataset.zip({
      "order": tf.data.Dataset.from_tensors(order).repeat(),
      "batch": tf.data.Dataset.from_tensor_slices(np.stack(
          [np.full_like(starts, seed), starts, stops], axis=1)),
  }).prefetch(tf.data.AUTOTUNE)


class ShuffledCopy:
  """A prepared split copied in one epoch's order, for slicing batches.

  Gathering each batch's rows inside the train step costs the step a
  gather per column, at random places in memory. Here the rows are put in
  the epoch's order once per epoch (`load`: one gather of all float columns
  as a matrix and one of all integer id columns as another), into
  variables; a batch is then a contiguous slice of them (`rows`), except
  the epoch's first, gathered while the load runs (`batch`).

  The model's id features arrive as int32 row indices (`factory.id_lookups`
  ran once on the whole split), so a batch slices them and does no string
  work at all. A 1-D string column, if a prepared split still has one, is
  kept as int32 codes into its own vocabulary (`tf.unique` of the column)
  in the same matrix and decoded per batch from that small vocabulary —
  the same strings as the column's; strings are the costly part of a
  gather (every string is copied, those longer than 22 bytes each to a new
  allocation).

  Leaves of the prepared structure go three ways: float32 columns ([n] or
  [n, 1]) into one [k, n] matrix, 1-D int32 and string columns into one
  [n, s] int32 matrix (strings as codes), anything else gathered as it is.
  """

  def __init__(self, prepared):
    """Encodes the columns; the variables stay empty until `load`.

    Args:
      prepared: `prepare_columns` output, one row per example along the
        first axis of every leaf.
    """
    self._structure = prepared
    leaves = tf.nest.flatten(prepared)
    self._ranks = [v.shape.rank for v in leaves]
    self._rows = num_rows(prepared)
    self._floats = [i for i, v in enumerate(leaves) if _is_column(v)]
    self._codes = [i for i, v in enumerate(leaves)
                   if v.dtype in (tf.int32, tf.string) and v.shape.rank == 1]
    self._others = [i for i in range(len(leaves))
                    if i not in self._floats and i not in self._codes]
    # Per code column: the vocabulary its codes index (None: the codes are
    # the column's own int32 values).
    self._vocabularies, codes = [], []
    for i in self._codes:
      if leaves[i].dtype == tf.string:
        vocabulary, code = tf.unique(leaves[i], out_idx=tf.int32)
      else:
        vocabulary, code = None, leaves[i]
      self._vocabularies.append(vocabulary)
      codes.append(code)
    # The sources of `load` ([n, k] and [n, s], gathered by row) and the
    # variables it fills ([k, n] so that a column of a batch is contiguous).
    self._sources = []
    self._loaded = []
    if self._floats:
      self._sources.append(tf.stack([tf.reshape(leaves[i], [-1])
                                     for i in self._floats], axis=1))
      self._loaded.append(_variable([len(self._floats), None], tf.float32,
                                    "float_rows"))
    if self._codes:
      self._sources.append(tf.stack(codes, axis=1))
      self._loaded.append(_variable([None, len(self._codes)], tf.int32,
                                    "code_rows"))
    for i in self._others:
      self._sources.append(leaves[i])
      self._loaded.append(_variable([None] + leaves[i].shape[1:].as_list(),
                                    leaves[i].dtype, "other_rows"))
    self._seed = tf.Variable(tf.constant(-1, tf.int64), trainable=False,
                             name="loaded_seed")

  def load(self, order: tf.Tensor) -> None:
    """Puts the rows in `order` (an int64 permutation of the rows)."""
    tf.debugging.assert_equal(
        tf.size(order, out_type=tf.int64), tf.constant(self._rows, tf.int64),
        message="the order is not a permutation of this split's rows: give "
        "index_batches the split's number of rows")
    for k, (source, loaded) in enumerate(zip(self._sources, self._loaded)):
      rows = tf.gather(source, order)
      loaded.assign(tf.transpose(rows) if k == 0 and self._floats else rows)

  def ensure_loaded(self, seed: tf.Tensor, order: tf.Tensor) -> tf.Tensor:
    """Loads `order` unless the epoch of `seed` is loaded already.

    Args:
      seed: the epoch's shuffling seed (int64 scalar, ≥ 0): one seed, one
        order (`index_batches`).
      order: that epoch's permutation of the rows.

    Returns:
      Whether it loaded (a bool scalar).
    """
    def load():
      self.load(order)
      self._seed.assign(seed)
      return tf.constant(True)

    return tf.cond(tf.equal(seed, self._seed), lambda: tf.constant(False),
                   load)

  def batch(self, seed: tf.Tensor, order: tf.Tensor, start: tf.Tensor,
            stop: tf.Tensor):
    """The rows `order[start:stop]`, structured as `prepared`.

    A batch of the loaded epoch is sliced from the copy (`rows`). The first
    batch of another epoch is gathered from the split directly, and that
    epoch is loaded after it (`ensure_loaded`, later in program order, so
    automatic control dependencies run it after this batch's reads) without
    the batch waiting for the load: inside a train step the load overlaps
    the step's forward and backward pass, and the epoch's next batch
    slices the loaded copy.

    Args:
      seed: the epoch's shuffling seed (int64 scalar, ≥ 0; `index_batches`).
      order: that epoch's permutation of the rows.
      start: the batch's first position in `order`.
      stop: one past its last position.

    Returns:
      The rows, the same values `rows(start, stop)` gives once `order` is
      loaded.
    """
    rows = tf.cond(tf.equal(seed, self._seed),
                   lambda: self.rows(start, stop),
                   lambda: self.gather(order[start:stop]))
    self.ensure_loaded(seed, order)
    return rows

  def gather(self, index: tf.Tensor):
    """The split's rows `index`, gathered from the sources of `load`."""
    sources = iter(self._sources)
    floats = codes = ()
    if self._floats:
      floats = tf.unstack(tf.gather(next(sources), index), axis=1,
                          num=len(self._floats))
    if self._codes:
      codes = tf.unstack(tf.gather(next(sources), index), axis=1,
                         num=len(self._codes))
    return self._structured(floats, codes,
                            [tf.gather(source, index) for source in sources])

  def rows(self, start: tf.Tensor, stop: tf.Tensor):
    """The loaded rows `start:stop`, structured as `prepared`."""
    loaded = iter(self._loaded)
    floats = codes = ()
    if self._floats:
      floats = tf.unstack(next(loaded)[:, start:stop], axis=0,
                          num=len(self._floats))
    if self._codes:
      codes = tf.unstack(next(loaded)[start:stop], axis=1,
                         num=len(self._codes))
    return self._structured(floats, codes,
                            [rows[start:stop] for rows in loaded])

  def _structured(self, floats, codes, others):
    """Rows as `prepared` from their float columns, codes and other leaves."""
    out = [None] * len(self._ranks)
    for i, column in zip(self._floats, floats):
      out[i] = column if self._ranks[i] == 1 else column[:, tf.newaxis]
    for i, vocabulary, code in zip(self._codes, self._vocabularies, codes):
      out[i] = code if vocabulary is None else tf.gather(vocabulary, code)
    for i, rows in zip(self._others, others):
      out[i] = rows
    return tf.nest.pack_sequence_as(self._structure, out)


def _variable(shape, dtype: tf.DType, name: str) -> tf.Variable:
  """An empty variable whose None dimensions take any size on assignment."""
  return tf.Variable(tf.zeros([d or 0 for d in shape], dtype),
                     trainable=False, shape=tf.TensorShape(shape), name=name)


class InMemoryRows:
  """A train step's rows from an in-memory split (a model's row source).

  `ConversionModel.read_rows_from(InMemoryRows(prepared))` makes `model.fit`
  take `index_batches` elements (or plain index vectors): called inside the
  compiled train step, it turns an element into its rows, in the same graph
  as the forward and backward pass, so no tf.data thread competes with the
  step for the cores.

  An `index_batches` element is sliced out of a `ShuffledCopy` of
  `prepared`, loaded in the epoch's order by the epoch's first step (the
  step whose seed differs from the loaded one), whose own rows are gathered
  directly so that the load overlaps its forward and backward pass
  (`ShuffledCopy.batch`). A plain int64 vector of row indices is gathered
  from `prepared` instead.
  """

  def __init__(self, prepared):
    """Keeps the split; the copy and the gatherer are made on first use.

    Args:
      prepared: the prepared in-memory training split
        (`prepare_columns` output).
    """
    self._prepared = prepared
    self._made = {}

  def _once(self, name: str, make):
    """`make(prepared)`, built eagerly on the first trace that needs it."""
    if name not in self._made:
      with tf.init_scope():
        self._made[name] = make(self._prepared)
    return self._made[name]

  def __call__(self, element):
    """The rows of `element`: (features, labels, sample weights)."""
    if isinstance(element, Mapping):
      copy = self._once("copy", ShuffledCopy)
      seed, start, stop = tf.unstack(element["batch"], num=3)
      return copy.batch(seed, element["order"], start, stop)
    return self._once("gather", row_gatherer)(element)
