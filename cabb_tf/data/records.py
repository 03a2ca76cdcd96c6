"""The record of one click example: its fields, their types, their values.

What a TFDS click-example builder (`cabb_tf.datasets.click_examples`) and the
Beam preparation (`cabb_tf.pipelines.prepare_beam`) write alike, so that both
encode every row the same way: the `tfds.features` dict of a record
(`example_features`), the values of each field from prepared examples
(`example_columns`), a builder's own fields (`ExtraColumns`) and the
training-period events the similarity is fitted on (`training_events`).
The fields are listed in `cabb_tf/datasets/click_examples.py`'s docstring
and docs/method.md.
"""

import json
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_datasets as tfds

from cabb_tf.data import features as features_lib
from cabb_tf.data import schema

SPLITS = features_lib.SPLITS

# The float32 features of `features.FEATURE_NAMES`; every other non-id feature
# is an int32 count or index. `_check_feature_dtypes` fails loudly when
# `cabb_tf.data.features` adds or changes a feature this table does not know.
FLOAT_FEATURES = frozenset({
    "session_elapsed_s", "u_item_since_s", "u_leaf_since_s", "item_cvr",
    "leaf_cvr", "price_a"})

_LABEL_DOCS = {
    "y_caba": "1 iff the clicked item A was bought later in the session.",
    "y_cabb": "1 iff this row's item_b (an item other than A) was bought later "
              "in the session.",
    "y_last_click": "1 iff a purchase in the session is credited to this "
                    "click by last-click attribution.",
}
_FEATURE_DOCS = {
    "user_id": "The user (id feature).",
    "item_a": "The clicked item A (id feature).",
    "leaf_a": "A's leaf category: the full root-to-leaf path joined by '/'.",
    "top_category_a": "A's top-level category (id feature).",
    "brand_a": "A's brand, '' where the source has none (id feature).",
}
_FAMILY_OF = {name: family
              for family, names in features_lib.FEATURE_FAMILIES.items()
              for name in names}


class ExtraColumns:
  """A builder's own fields, computed per user bucket from its source events.

  The TFDS builders add fields of their own to the shared ones of
  `example_features` (e.g. the simulator's ground truth in
  `cabb_synthetic`). With Beam they are computed where a bucket's examples
  are labelled, by an instance of a subclass: it travels to the workers, so
  it must be picklable and hold only what the fields need.
  """

  def features(self) -> Dict[str, Any]:
    """The fields' `tfds.features` connectors (scalars), by name."""
    raise NotImplementedError

  def __call__(self, examples: pd.DataFrame, events: pd.DataFrame
               ) -> Dict[str, np.ndarray]:
    """The fields' values, row for row with `examples`.

    Args:
      examples: a bucket's labelled examples; `event_index` are rows of
        `events`.
      events: the bucket's canonical events as read (source sessions).
    """
    raise NotImplementedError


def feature_dtype(name: str) -> tf.dtypes.DType:
  """The TFDS dtype of one of `features.FEATURE_NAMES`."""
  if name in features_lib.ID_FEATURES:
    return tf.string
  return tf.float32 if name in FLOAT_FEATURES else tf.int32


def example_features(
    extra: Optional[Mapping[str, tfds.features.FeatureConnector]] = None
) -> tfds.features.FeaturesDict:
  """The `FeaturesDict` of one example row (see the module docstring).

  Args:
    extra: further fields of a particular builder (e.g. `relation`).

  Returns:
    The features dict.
  """
  spec: Dict[str, tfds.features.FeatureConnector] = {}
  for name in features_lib.FEATURE_NAMES:
    doc = _FEATURE_DOCS.get(
        name, f"{_FAMILY_OF[name]} feature, computed from events strictly "
        "before the click (cabb_tf.data.features).")
    spec[name] = tfds.features.Scalar(feature_dtype(name), doc=doc)
  for name, doc in _LABEL_DOCS.items():
    spec[name] = tfds.features.Scalar(tf.int64, doc=doc)
  spec["w_caba"] = tfds.features.Scalar(
      tf.float32, doc="1 on the first row of a click, 0 on its other rows, "
      "so each click counts once for CABA and last-click.")
  spec["item_b"] = tfds.features.Scalar(
      tf.string, doc="The other purchased item B of this row, '' if none.")
  spec["leaf_b"] = tfds.features.Scalar(
      tf.string, doc="B's leaf category, '' if the row has no B.")
  spec["session_id"] = tfds.features.Scalar(
      tf.string, doc="The session (the source's, or a 30-minute-gap split).")
  spec["timestamp"] = tfds.features.Scalar(
      tf.int64, doc="Time of the first click on A in the session, ms since "
      "the epoch (UTC).")
  spec["click_id"] = tfds.features.Scalar(
      tf.int64, doc="Dense id of the click example; its rows share it.")
  for name, feature in (extra or {}).items():
    if name in spec:
      raise ValueError(f"extra feature {name!r} clashes with a shared one.")
    spec[name] = feature
  return tfds.features.FeaturesDict(spec)


def training_events(events: pd.DataFrame, catalog: pd.DataFrame,
                    before_ms: int) -> pd.DataFrame:
  """The events of the training period with each item's leaf.

  Args:
    events: sessionized canonical events.
    catalog: the canonical catalog (items missing from it get
      `schema.UNKNOWN_LEAF`).
    before_ms: the start of the validation period; earlier events are kept.

  Returns:
    A DataFrame with `user_id`, `session_id`, `timestamp`, `item_id`,
    `event_type` (string) and `leaf`, in the input order.
  """
  keep = events["timestamp"].to_numpy() < int(before_ms)
  train = events.loc[keep, list(schema.EVENT_COLUMNS)].reset_index(drop=True)
  leaf_of_item = catalog.set_index("item_id")["leaf"]
  leaf_of_item = leaf_of_item[~leaf_of_item.index.duplicated(keep="first")]
  leaf = leaf_of_item.reindex(pd.Index(train["item_id"])).to_numpy(
      dtype=object, copy=True)
  leaf[pd.isna(leaf)] = schema.UNKNOWN_LEAF
  train["event_type"] = train["event_type"].astype(str).to_numpy(dtype=object)
  train["leaf"] = leaf
  return train


def _strings(series: pd.Series) -> np.ndarray:
  """Values as Python str, missing values as ''."""
  return series.astype("string").fillna("").to_numpy(dtype=object)


def _check_feature_dtypes(examples: pd.DataFrame) -> None:
  """Raises ValueError if a feature column does not fit its TFDS dtype."""
  for name in features_lib.FEATURE_NAMES:
    if name not in examples.columns:
      raise ValueError(f"prepared examples lack the feature column {name!r}.")
    dtype = feature_dtype(name)
    kind = examples[name].dtype.kind if hasattr(examples[name].dtype,
                                                "kind") else "O"
    if dtype == tf.int32 and kind not in "iub":
      raise ValueError(
          f"feature {name!r} has dtype {examples[name].dtype}, but the TFDS "
          "builders store it as int32: add it to FLOAT_FEATURES in "
          "cabb_tf/datasets/click_examples.py and bump the builders' VERSION.")


def example_columns(examples: pd.DataFrame,
                    extra: Optional[Mapping[str, np.ndarray]] = None,
                    arrays: bool = False
                    ) -> Dict[str, Callable[[np.ndarray], Sequence[Any]]]:
  """Column readers: for each field, a function of row positions → values.

  Reading is done per chunk of rows, so string columns are materialized as
  Python objects a chunk at a time.

  Args:
    examples: `PreparedData.examples`.
    extra: further per-row arrays (builder-specific fields).
    arrays: give the numbers as NumPy arrays in their field's dtype
      (`feature_dtype`; int64 labels, float32 `w_caba`) and the extra fields
      as arrays, instead of as lists of the same values as Python objects.

  Returns:
    {field name: f(rows) -> the rows' values}; strings are object arrays of
    `str` either way.
  """
  _check_feature_dtypes(examples)
  readers: Dict[str, Callable[[np.ndarray], Sequence[Any]]] = {}
  as_list = (lambda values: values) if arrays else (
      lambda values: values.tolist())

  def strings(name):
    column = examples[name]
    return lambda rows: _strings(column.iloc[rows])

  def numbers(name, dtype):
    values = examples[name].to_numpy()
    if np.issubdtype(dtype, np.integer):
      info = np.iinfo(dtype)
      if len(values) and (values.min() < info.min or values.max() > info.max):
        raise ValueError(f"column {name!r} overflows {np.dtype(dtype)}.")
    values = values.astype(dtype, copy=False)
    return lambda rows: as_list(values[rows])

  for name in features_lib.FEATURE_NAMES:
    dtype = feature_dtype(name)
    readers[name] = (strings(name) if dtype == tf.string else
                     numbers(name, dtype.as_numpy_dtype))
  for name in _LABEL_DOCS:
    readers[name] = numbers(name, np.int64)
  readers["w_caba"] = numbers("w_caba", np.float32)
  for name in ("item_b", "leaf_b", "session_id"):
    readers[name] = strings(name)
  readers["timestamp"] = numbers("timestamp", np.int64)
  readers["click_id"] = numbers("click_id", np.int64)
  for name, values in (extra or {}).items():
    values = np.asarray(values)
    if len(values) != len(examples):
      raise ValueError(f"extra column {name!r} has {len(values)} values for "
                       f"{len(examples)} rows.")
    readers[name] = (lambda v: lambda rows: as_list(v[rows]))(values)
  return readers


def json_default(value):
  """`json.dumps` default: NumPy scalars and arrays, tuples; repr for the rest."""
  if isinstance(value, np.ndarray):
    return value.tolist()
  if hasattr(value, "item"):
    return value.item()
  return repr(value)


def json_ready(obj: Any) -> Any:
  """`obj` as plain JSON types (NumPy scalars converted; NaN kept)."""
  return json.loads(json.dumps(obj, default=json_default))
