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
import tensorflow as tf
import tensorflow_datasets as tfds

from cabb_tf import datasets  # pylint: disable=unused-import  (registers builders)
from cabb_tf.models import factory

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


def make_example_fn(task: str, feature_statistics: Mapping[str, Any],
                    alpha_fn: Optional[AlphaFn],
                    negative_weight: float = 1.0):
  """Returns record → (features, labels, sample weights) for `Dataset.map`.

  Args:
    task: one of `TASKS`.
    feature_statistics: the dataset's training statistics (fixes the inputs).
    alpha_fn: the weighting scheme's in-graph α(record); None means α = 1.
    negative_weight: `w_cabb` on rows without a CABB purchase.

  Returns:
    A function for `tf.data.Dataset.map` (batched or not).
  """
  heads = TASKS[task]
  dtypes = factory.model_features(feature_statistics)

  def example(record):
    features = model_inputs(record, dtypes)
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
