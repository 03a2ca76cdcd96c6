"""The two-head conversion model and its single-head baselines (paper §3.1).

A `tf.keras` functional model built from the dataset's feature statistics:

* id features, as integer row indices (`index_ids`) → an embedding table
  per id space, shared wherever that space appears;
* hour and weekday → small embeddings;
* numeric features → `log1p(max(x, 0))`, standardized with the training
  mean and standard deviation, plus indicator inputs for "never" (history
  times of -1) and "missing" (NaN prices);
* a bottom, chosen by `bottom` (`BOTTOMS`): 'shared_mlp' (the paper's shared
  MLP), 'dcn' (tensorflow-recommenders' DCN `Cross` layers, then the MLP),
  'mmoe' or 'ple' (gated experts, `experts.mmoe` / `experts.ple`, which give
  each head its own tower input);
* one small tower per head with a sigmoid output, returned in a dict keyed by
  head name (`caba`, `cabb`; baselines have one head).

The model is a `conversion.ConversionModel`: it owns Eq. (6) (λ and the task
balance are arguments of `build_model`) and the train step.

Id features reach the model as indices, not strings. The string → index
lookup of the training vocabulary (`id_lookups`: vocabulary entry k → k + 1,
anything else → 0, the one OOV row; or hashed into N rows, `hash_buckets`)
is not part of `build_model`'s model:
training does it once per split in the input pipeline
(`input_pipeline.make_example_fn(..., id_lookups=...)`), so no train step
hashes strings. Where raw records meet a model — evaluation, analyses,
serving — either map them through `id_lookups` first (`index_ids`), or wrap
the model with `string_model`, the same model (shared weights, the same
probabilities) on raw string features; `train.export_model` exports that.

Feature specs: `raw_features` are the record features the model reads, ids
as strings; `model_features` are the built model's inputs, ids as int32
indices (`input_dtypes` reads them off a built model).
"""

import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from absl import logging
import gin
import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from cabb_tf.data import features as features_lib
from cabb_tf.models import conversion
from cabb_tf.models import experts
from cabb_tf.models import task_balance

# Id feature → id space. Features of one space share an embedding table.
ID_SPACES: Dict[str, str] = {
    "user_id": "user",
    "item_a": "item",
    "leaf_a": "leaf",
    "top_category_a": "top_category",
    "brand_a": "brand",
}
# Small integer features embedded rather than normalized: name → cardinality.
INTEGER_CATEGORIES: Dict[str, int] = {"hour": 24, "weekday": 7}
# Numeric features where a negative value means "never happened".
NEVER_FEATURES = ("u_item_since_s", "u_leaf_since_s")
# Values of `build_model.bottom`.
BOTTOMS = ("shared_mlp", "dcn", "mmoe", "ple")
# Cross layers of the 'dcn' bottom when `cross_layers` is not given.
DEFAULT_DCN_CROSS_LAYERS = 2


# The dtype of an id feature's row index, as the model takes it.
ID_INDEX_DTYPE = tf.int32


def raw_features(feature_statistics: Mapping) -> Dict[str, tf.DType]:
  """The record features a model reads, with the dtypes `string_model`
  takes them in: ids as strings, every other feature as float32.

  These are not the records' own dtypes (a record holds a count as int32,
  `data.records.feature_dtype`); the export takes those and casts
  (`train.export_model`).

  Args:
    feature_statistics: the training split's `fit_feature_statistics`.

  Returns:
    {feature: dtype}, before any `build_model.excluded_features`.
  """
  out = {name: tf.string for name in ID_SPACES
         if name in feature_statistics["vocabulary"]}
  for name in features_lib.NUMERIC_FEATURES:
    if name in INTEGER_CATEGORIES or name in feature_statistics["numeric"]:
      out[name] = tf.float32
  return out


def model_features(feature_statistics: Mapping) -> Dict[str, tf.DType]:
  """`raw_features` as the model takes them: ids as `ID_INDEX_DTYPE` rows."""
  return {name: ID_INDEX_DTYPE if name in ID_SPACES else dtype
          for name, dtype in raw_features(feature_statistics).items()}


def input_dtypes(model: tf.keras.Model) -> Dict[str, tf.DType]:
  """The input features a built model takes, with their dtypes."""
  return {name: tensor.dtype for name, tensor in model.input.items()}


@gin.configurable("id_hashing")
def hash_buckets(buckets: Optional[Mapping[str, int]] = None
                 ) -> Dict[str, int]:
  """Hash buckets for the ids outside each id space's vocabulary.

  The training vocabulary of a space holds its most frequent ids, up to a
  cap (`features.fit_feature_statistics`' `max_vocabulary`). By default
  every other id shares one out-of-vocabulary row. With N buckets for a
  space (gin: `id_hashing.buckets = {'item': 2 ** 20}`), an id outside the
  vocabulary is hashed into one of N rows instead, so a table of millions of
  ids keeps most of them apart without a vocabulary of millions of strings.
  Training, evaluation and the export look ids up the same way
  (`id_lookups`), and the embedding table has the vocabulary plus N rows
  (`vocabulary_size`). Under `parameter_server` such a table is split
  across the ps tasks (`distribute.variable_partitioner`).

  Returns:
    {id space: buckets} for the spaces that hash (`ID_SPACES` values).

  Raises:
    ValueError: for an unknown space or a number of buckets below 1.
  """
  buckets = dict(buckets or {})
  for space, count in buckets.items():
    if space not in set(ID_SPACES.values()):
      raise ValueError(f"id_hashing.buckets: unknown id space {space!r}; the "
                       f"spaces are {sorted(set(ID_SPACES.values()))}.")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
      raise ValueError(f"id_hashing.buckets[{space!r}] must be an integer "
                       f">= 1, got {count!r}.")
  return buckets


def oov_rows(space: str) -> int:
  """Rows of an id space's table for ids outside its vocabulary."""
  return hash_buckets().get(space, 1)


def vocabulary_size(feature_statistics: Mapping, name: str) -> int:
  """Rows of an id feature's embedding table: its vocabulary and its OOV
  rows (one, or the space's hash buckets)."""
  return (len(_vocabulary(feature_statistics, name)) +
          oov_rows(ID_SPACES[name]))


def _vocabulary(feature_statistics: Mapping, name: str) -> list:
  """An id feature's training vocabulary; an empty one holds a placeholder
  (StringLookup refuses an empty vocabulary)."""
  return list(feature_statistics["vocabulary"][name]) or ["<none>"]


def row_labels(feature_statistics: Mapping, name: str) -> List[str]:
  """A label for each row of an id feature's embedding table, in row order.

  The rows `id_lookups` gives: first the OOV rows, labelled
  `<out of vocabulary>` (one row) or `<hash bucket i>` (N hash buckets,
  `hash_buckets`), then the vocabulary's entries. As many labels as
  `vocabulary_size` rows.
  """
  oov = oov_rows(ID_SPACES[name])
  labels = (["<out of vocabulary>"] if oov == 1 else
            [f"<hash bucket {i}>" for i in range(oov)])
  return labels + _vocabulary(feature_statistics, name)


def embedding_rows(model: tf.keras.Model, feature_statistics: Mapping,
                   space: str) -> Optional[Tuple[np.ndarray, List[str]]]:
  """An id space's embedding table and a label per row (`row_labels`).

  Args:
    model: a model from `build_model` of `feature_statistics`.
    feature_statistics: the training statistics.
    space: an id space (`ID_SPACES` values), e.g. 'leaf'.

  Returns:
    (the table's weights [rows, width], the label of each row), or None
    when the model has no table of that space (its features excluded).
  """
  names = [name for name, s in ID_SPACES.items()
           if s == space and name in feature_statistics["vocabulary"]]
  try:
    layer = model.get_layer(f"{space}_embedding")
  except ValueError:
    return None
  if not names:
    return None
  return layer.get_weights()[0], row_labels(feature_statistics, names[0])


def write_vocabulary(feature_statistics: Mapping, name: str,
                     directory: str) -> Optional[str]:
  """Writes an id feature's vocabulary as a text file, one entry a line.

  Returns:
    The file (`<directory>/<space>.vocab`), or None when an entry is empty
    or holds a line break, which a line-per-entry file cannot hold
    (TensorFlow's text-file table refuses empty lines).
  """
  vocabulary = _vocabulary(feature_statistics, name)
  if any(not v or "\n" in v or "\r" in v for v in vocabulary):
    return None
  path = os.path.join(directory, f"{ID_SPACES[name]}.vocab")
  tf.io.gfile.makedirs(directory)
  with tf.io.gfile.GFile(path, "w") as f:
    f.write("".join(f"{v}\n" for v in vocabulary))
  return path


def id_lookups(feature_statistics: Mapping,
               vocabulary_dir: Optional[str] = None
               ) -> Dict[str, tf.keras.layers.StringLookup]:
  """The string → embedding-row lookup of every id feature.

  Each is a `StringLookup` of the training vocabulary with no mask and the
  space's OOV rows (`oov_rows`): with one, vocabulary entry k → k + 1 and
  any other string → 0; with N hash buckets, vocabulary entry k → k + N and
  any other string → its hash modulo N. Features of one id space share one
  layer.

  Args:
    feature_statistics: the training split's `fit_feature_statistics`.
    vocabulary_dir: when given, each vocabulary is written there as a text
      file (`write_vocabulary`) that the lookup reads, so that a SavedModel
      holds it as an asset file rather than as constants of its graph; a
      vocabulary that cannot be a text file stays a constant (logged).

  Returns:
    {id feature: lookup layer} for the id features in the statistics.
  """
  by_space = {}
  out = {}
  for name, space in ID_SPACES.items():
    if name not in feature_statistics["vocabulary"]:
      continue
    if space not in by_space:
      vocabulary = None
      if vocabulary_dir is not None:
        vocabulary = write_vocabulary(feature_statistics, name,
                                      vocabulary_dir)
        if vocabulary is None:
          logging.warning("The %s vocabulary has an empty entry or one with a "
                          "line break; it stays in the graph, not in an asset "
                          "file.", space)
      by_space[space] = tf.keras.layers.StringLookup(
          vocabulary=vocabulary or _vocabulary(feature_statistics, name),
          num_oov_indices=oov_rows(space), mask_token=None,
          name=f"{space}_lookup")
    out[name] = by_space[space]
  return out


def index_ids(features: Mapping[str, tf.Tensor],
              lookups: Mapping[str, tf.keras.layers.Layer]
              ) -> Dict[str, tf.Tensor]:
  """`features` with every string id feature replaced by its row index.

  Args:
    features: raw feature tensors (any shape), e.g. a batch or a split.
    lookups: `id_lookups` of the training statistics.

  Returns:
    The same dict, string id features mapped through their lookup to
    `ID_INDEX_DTYPE` indices; every other feature as given.
  """
  return {name: (tf.cast(lookups[name](value), ID_INDEX_DTYPE)
                 if name in lookups and value.dtype == tf.string else value)
          for name, value in features.items()}


def string_model(model: tf.keras.Model, feature_statistics: Mapping,
                 vocabulary_dir: Optional[str] = None) -> tf.keras.Model:
  """The model on raw features: id features as strings, looked up inside.

  Args:
    model: a model from `build_model` (id inputs as indices).
    feature_statistics: the training statistics it was built from.
    vocabulary_dir: where the lookups' vocabulary files go (`id_lookups`);
      None keeps them in the graph.

  Returns:
    A `tf.keras.Model` that shares `model`'s layers and weights, takes the
    same features with every id feature as a string tensor and returns
    `model`'s outputs for the indices `id_lookups` gives those strings. A
    model without index inputs is returned as it is.
  """
  lookups = id_lookups(feature_statistics, vocabulary_dir)
  dtypes = input_dtypes(model)
  indexed = [n for n, d in dtypes.items() if n in lookups and d.is_integer]
  if not indexed:
    return model
  inputs = {name: tf.keras.Input(shape=model.input[name].shape[1:],
                                 dtype=tf.string if name in indexed else dtype,
                                 name=name)
            for name, dtype in dtypes.items()}
  outputs = model(index_ids(inputs, {n: lookups[n] for n in indexed}))
  return tf.keras.Model(inputs=inputs, outputs=outputs,
                        name=f"{model.name}_on_strings")


def _cross_layer_count(bottom: str, cross_layers: Optional[int]) -> int:
  """The number of `Cross` layers of a bottom (see `build_model`)."""
  if bottom not in BOTTOMS:
    raise ValueError(f"build_model.bottom must be one of {BOTTOMS}, got "
                     f"{bottom!r}.")
  if cross_layers is not None and cross_layers < 0:
    raise ValueError(f"build_model.cross_layers must be >= 0, got "
                     f"{cross_layers}.")
  if bottom == "dcn" and cross_layers is None:
    return DEFAULT_DCN_CROSS_LAYERS
  if bottom == "dcn" and cross_layers == 0:
    raise ValueError("build_model.bottom = 'dcn' needs cross_layers >= 1 "
                     "(None: the default of "
                     f"{DEFAULT_DCN_CROSS_LAYERS}); a DCN without Cross layers "
                     "is bottom = 'shared_mlp'.")
  return cross_layers or 0


@gin.configurable(denylist=["feature_statistics", "heads", "cabb_weight",
                             "balance"])
def build_model(feature_statistics: Mapping,
                heads: Sequence[str] = ("caba", "cabb"),
                cabb_weight: float = 0.75,
                balance: task_balance.Balance = task_balance.Balance(),
                embedding_dim: int = 16,
                embedding_dims: Optional[Mapping[str, int]] = None,
                bottom_units: Sequence[int] = (128, 64),
                tower_units: Sequence[int] = (32,),
                bottom: str = "shared_mlp",
                cross_layers: Optional[int] = None,
                dropout: float = 0.0,
                l2: float = 0.0,
                excluded_features: Sequence[str] = ()) -> tf.keras.Model:
  """Builds the functional conversion model.

  Args:
    feature_statistics: `features.fit_feature_statistics` of the training
      split (vocabularies and normalization moments).
    heads: output names; ("caba", "cabb") for the multitask model, one name
      for a baseline.
    cabb_weight: λ of Eq. (6) (the run's `train.run.cabb_weight`).
    balance: the task balance (the run's `task_balance.config()`).
    embedding_dim: embedding width of every id space not in `embedding_dims`.
    embedding_dims: optional width per id space (`ID_SPACES` values).
    bottom_units: widths of the shared MLP of the 'shared_mlp' and 'dcn'
      bottoms (the gated bottoms size their experts in `experts.mmoe` /
      `experts.ple` and do not use it).
    tower_units: widths of each head's tower.
    bottom: the shared bottom, one of `BOTTOMS`: 'shared_mlp' (an MLP of
      `bottom_units`), 'dcn' (`cross_layers` DCN-V2 `Cross` layers, then the
      MLP), 'mmoe' (Multi-gate Mixture-of-Experts) or 'ple' (Progressive
      Layered Extraction).
    cross_layers: number of DCN `Cross` layers on the feature vector before
      the bottom. None: `DEFAULT_DCN_CROSS_LAYERS` for 'dcn' (which needs at
      least one), 0 for the other bottoms. Any bottom takes them: 'shared_mlp'
      with N > 0 is the same model as 'dcn' with N (the spelling of configs
      from before `bottom` existed), and the gated bottoms' experts then read
      the crossed features.
    dropout: dropout rate after each dense layer.
    l2: L2 penalty on dense kernels.
    excluded_features: input features to leave out (ablations).

  Returns:
    A `conversion.ConversionModel` from a dict of feature tensors (shape
    [batch]; `model_features`: id features as `id_lookups` row indices, the rest
    raw) to a dict {head: probabilities of shape [batch, 1]} (the trailing
    axis keeps Keras' per-example loss reduction over the last axis a
    no-op). `string_model` gives it raw string ids.

  Raises:
    ValueError: without heads, for an unknown `bottom` or a negative
      `cross_layers`.
  """
  if not heads:
    raise ValueError("build_model needs at least one head.")
  cross_layers = _cross_layer_count(bottom, cross_layers)
  embedding_dims = dict(embedding_dims or {})
  specs = model_features(feature_statistics)
  inputs = {name: tf.keras.Input(shape=(), dtype=dtype, name=name)
            for name, dtype in specs.items() if name not in excluded_features}

  parts = []
  tables = {}
  for name, space in ID_SPACES.items():
    if name not in inputs:
      continue
    if space not in tables:
      rows = vocabulary_size(feature_statistics, name)
      if oov_rows(space) > 1:
        logging.info("The %s table: %d rows (%d hash buckets for ids "
                     "outside the vocabulary).", space, rows, oov_rows(space))
      tables[space] = tf.keras.layers.Embedding(
          rows, embedding_dims.get(space, embedding_dim),
          name=f"{space}_embedding")
    parts.append(tables[space](inputs[name]))

  for name, cardinality in INTEGER_CATEGORIES.items():
    if name not in inputs:
      continue
    index = tf.cast(tf.clip_by_value(inputs[name], 0, cardinality - 1),
                    tf.int32)
    parts.append(tf.keras.layers.Embedding(
        cardinality, 4, name=f"{name}_embedding")(index))

  numeric_names = [n for n in features_lib.NUMERIC_FEATURES
                   if n in inputs and n not in INTEGER_CATEGORIES]
  if numeric_names:
    columns = []
    for name in numeric_names:
      x = inputs[name]
      moments = feature_statistics["numeric"][name]
      missing = tf.math.is_nan(x)
      value = tf.where(missing, tf.zeros_like(x), x)
      z = (tf.math.log1p(tf.maximum(value, 0.0)) - moments["mean"]) / max(
          moments["std"], 1e-3)
      columns.append(z)
      if name in NEVER_FEATURES:
        columns.append(tf.cast(value < 0, tf.float32))
      if moments.get("missing", 0.0) > 0:
        columns.append(tf.cast(missing, tf.float32))
    parts.append(tf.stack(columns, axis=-1))

  x = tf.keras.layers.Concatenate(name="features")(parts)
  x0 = x
  for i in range(cross_layers):
    x = tfrs.layers.dcn.Cross(name=f"cross_{i}")(x0, x)
  if bottom == "mmoe":
    tower_inputs = experts.mmoe(x, heads, dropout=dropout, l2=l2)
  elif bottom == "ple":
    tower_inputs = experts.ple(x, heads, dropout=dropout, l2=l2)
  else:
    shared = experts.mlp(x, bottom_units, dropout, l2, "bottom")
    tower_inputs = {head: shared for head in heads}
  outputs = {}
  for head in heads:
    tower = experts.mlp(tower_inputs[head], tower_units, dropout, l2, head)
    logit = tf.keras.layers.Dense(1, name=f"{head}_logit")(tower)
    outputs[head] = tf.keras.layers.Activation("sigmoid", name=head)(logit)
  return conversion.ConversionModel(inputs, outputs, cabb_weight=cabb_weight,
                                    balance=balance, name="cabb_model")
