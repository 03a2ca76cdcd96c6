"""tf.data input: TFDS click examples → model features, labels and weights.

The CABB weight is attached here, in the graph, by a weighting scheme's
lookup (`similarity.weighting`), never frozen into the dataset files:

    w_cabb = α(A, B)            on CABB-positive rows (y_cabb = 1),
    w_cabb = negative_weight    on the other rows (SPEC §2, default 1).

Tasks (`TASKS`):

* `multitask` — heads `caba` (label `y_caba`, weight `w_caba`) and `cabb`
  (label `y_cabb`, weight `w_cabb`);
* `last_click` — Baseline 1, one head on `y_last_click` weighted by `w_caba`;
* `caba_only` — Baseline 2, one head on `y_caba` weighted by `w_caba`.
"""

import dataclasses
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import gin
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from cabb_tf import datasets  # pylint: disable=unused-import  (registers builders)

AlphaFn = Callable[[Mapping[str, tf.Tensor]], tf.Tensor]

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
  """The prepared splits of one dataset and what describes them."""
  builder: tfds.core.DatasetBuilder
  train: tf.data.Dataset
  validation: tf.data.Dataset
  test: tf.data.Dataset
  feature_statistics: Dict[str, Any]
  num_examples: Dict[str, int]


@gin.configurable
def load_data(name: str = "cabb_synthetic/default",
              data_dir: Optional[str] = None,
              manual_dir: Optional[str] = None) -> Data:
  """Prepares (once) and opens a cabb_tf TFDS dataset.

  Args:
    name: the TFDS name with config, e.g. 'cabb_synthetic/small',
      'taobao_user_behavior', 'rees46'.
    data_dir: TFDS data directory (None: TFDS's default).
    manual_dir: where manually downloaded files are (REES46, Taobao).

  Returns:
    The `Data` with raw record datasets of each split.

  Raises:
    ValueError: if the dataset cannot be prepared (e.g. a missing manual
      download), with what to set.
  """
  builder = tfds.builder(name, data_dir=data_dir)
  config = tfds.download.DownloadConfig(manual_dir=manual_dir)
  try:
    builder.download_and_prepare(download_config=config)
  except (AssertionError, FileNotFoundError) as e:
    raise ValueError(
        f"cannot prepare dataset {name!r}: {e}. For datasets that need a "
        "manual download, set load_data.manual_dir (gin) to the directory "
        "holding the raw file.") from e
  metadata = builder.info.metadata
  statistics = metadata["feature_statistics"]
  splits = {s: builder.as_dataset(split=s, shuffle_files=False)
            for s in ("train", "validation", "test")}
  counts = {s: builder.info.splits[s].num_examples for s in splits}
  return Data(builder=builder, feature_statistics=statistics,
              num_examples=counts, **splits)


def model_inputs(record: Mapping[str, tf.Tensor],
                 feature_dtypes: Mapping[str, tf.DType]) -> Dict[str, tf.Tensor]:
  """The model's raw feature tensors from a dataset record."""
  return {name: tf.cast(record[name], dtype)
          for name, dtype in feature_dtypes.items()}


def make_example_fn(task: str, feature_dtypes: Mapping[str, tf.DType],
                    alpha_fn: Optional[AlphaFn],
                    negative_weight: float = 1.0):
  """Returns record → (features, labels, sample weights) for `Dataset.map`.

  Args:
    task: one of `TASKS`.
    feature_dtypes: the model's inputs (`factory.input_dtypes(model)`).
    alpha_fn: the weighting scheme's in-graph α(record); None means α = 1.
    negative_weight: `w_cabb` on rows without a CABB purchase.

  Returns:
    A function for `tf.data.Dataset.map` (batched or not).
  """
  heads = TASKS[task]

  def example(record):
    features = model_inputs(record, feature_dtypes)
    y_cabb = tf.cast(record["y_cabb"], tf.float32)
    alpha = (tf.ones_like(y_cabb) if alpha_fn is None else
             tf.cast(alpha_fn(record), tf.float32))
    weights_of = {
        "w_caba": tf.cast(record["w_caba"], tf.float32),
        "w_cabb": tf.where(y_cabb > 0, alpha,
                           tf.fill(tf.shape(y_cabb), negative_weight)),
    }
    labels = {head: tf.cast(record[label], tf.float32)[..., tf.newaxis]
              for head, (label, _) in heads.items()}
    weights = {head: weights_of[weight] for head, (_, weight) in
               heads.items()}
    return features, labels, weights

  return example


def evaluation_columns(record: Mapping[str, tf.Tensor],
                       alpha_fn: Optional[AlphaFn]) -> Dict[str, tf.Tensor]:
  """Labels and weights every evaluation needs, whatever the task."""
  y_cabb = tf.cast(record["y_cabb"], tf.float32)
  alpha = (tf.ones_like(y_cabb) if alpha_fn is None else
           tf.cast(alpha_fn(record), tf.float32))
  return {
      "y_caba": tf.cast(record["y_caba"], tf.float32),
      "y_cabb": y_cabb,
      "y_last_click": tf.cast(record["y_last_click"], tf.float32),
      "w_caba": tf.cast(record["w_caba"], tf.float32),
      "alpha": alpha,
      "session_id": record["session_id"],
  }


_COLUMNS: Dict[Tuple[str, str], Dict[str, tf.Tensor]] = {}


def split_columns(data: "Data", split: str) -> Dict[str, tf.Tensor]:
  """A split of `data` in memory as columns, read once per process.

  Experiments train many models on one dataset; decoding its records once
  instead of once per run saves most of a short run's time.
  """
  key = (str(data.builder.data_path), split)
  if key not in _COLUMNS:
    _COLUMNS[key] = to_columns(getattr(data, split))
  return _COLUMNS[key]


def to_columns(dataset: tf.data.Dataset,
               batch_size: int = 65_536) -> Dict[str, tf.Tensor]:
  """Reads a split of records into memory as one tensor per field.

  Decoding TFDS records and batching dict elements one example at a time
  costs far more than a training step of this model; reading the split once
  in large batches and gathering training batches from columns keeps the
  input pipeline off the critical path.
  """
  parts: Dict[str, list] = {}
  for batch in dataset.batch(batch_size):
    for key, value in batch.items():
      parts.setdefault(key, []).append(value)
  return {key: tf.concat(values, axis=0) for key, values in parts.items()}


def prepare_columns(columns: Mapping[str, tf.Tensor], example_fn):
  """Applies `example_fn` to a whole in-memory split at once.

  Casting, the α lookup and label shaping are then done once per split
  instead of once per batch and epoch; batches only gather rows.
  """
  return example_fn(columns)


def _pack(prepared):
  """Splits a structure's leaves into one float32 matrix and the rest.

  Gathering one [n, k] matrix is several times cheaper than gathering k
  separate columns, so all float32 leaves of shape [n] or [n, 1] travel
  together and are unstacked after the gather.
  """
  leaves = tf.nest.flatten(prepared)
  packable = [i for i, v in enumerate(leaves)
              if v.dtype == tf.float32 and (v.shape.rank == 1 or (
                  v.shape.rank == 2 and v.shape[1] == 1))]
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
  """One epoch of shuffled row-index batches (the same seed, the same order)."""
  order = np.random.default_rng(seed).permutation(num_examples)
  return tf.data.Dataset.from_tensor_slices(order).batch(
      batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def train_on_indices(model, prepared) -> None:
  """Makes `model.fit` take batches of row indices into `prepared`.

  The rows are gathered inside the compiled train step, in the same graph as
  the forward and backward pass, so no tf.data thread competes with the step
  for the cores.

  Args:
    model: a compiled Keras model.
    prepared: its prepared in-memory training split.
  """
  gather = row_gatherer(prepared)
  step = model.train_step
  model.train_step = lambda index: step(gather(index))
  model.train_function = None  # rebuilt with the new step on the next fit
