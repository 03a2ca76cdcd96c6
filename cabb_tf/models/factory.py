"""The two-head conversion model and its single-head baselines (paper §3.1).

A `tf.keras` functional model built from the dataset's feature statistics:

* id features → `StringLookup` with the training vocabulary (one OOV bucket)
  → an embedding table per id space, shared wherever that space appears;
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
"""

from typing import Dict, Mapping, Optional, Sequence

import gin
import tensorflow as tf
import tensorflow_recommenders as tfrs

from cabb_tf.data import features as features_lib
from cabb_tf.models import experts

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


def model_features(feature_statistics: Mapping) -> Dict[str, tf.DType]:
  """The raw input features the model takes, with their dtypes."""
  out = {name: tf.string for name in ID_SPACES
         if name in feature_statistics["vocabulary"]}
  for name in features_lib.NUMERIC_FEATURES:
    if name in INTEGER_CATEGORIES or name in feature_statistics["numeric"]:
      out[name] = tf.float32
  return out


def input_dtypes(model: tf.keras.Model) -> Dict[str, tf.DType]:
  """The raw input features a built model takes, with their dtypes."""
  return {name: tensor.dtype for name, tensor in model.input.items()}


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


@gin.configurable(denylist=["feature_statistics", "heads"])
def build_model(feature_statistics: Mapping,
                heads: Sequence[str] = ("caba", "cabb"),
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
    A `tf.keras.Model` from a dict of raw feature tensors (shape [batch]) to
    a dict {head: probabilities of shape [batch, 1]} (the trailing axis keeps
    Keras' per-example loss reduction over the last axis a no-op).

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
      vocabulary = list(feature_statistics["vocabulary"][name])
      lookup = tf.keras.layers.StringLookup(
          vocabulary=vocabulary or ["<none>"], num_oov_indices=1,
          mask_token=None, name=f"{space}_lookup")
      embedding = tf.keras.layers.Embedding(
          lookup.vocabulary_size(), embedding_dims.get(space, embedding_dim),
          name=f"{space}_embedding")
      tables[space] = (lookup, embedding)
    lookup, embedding = tables[space]
    parts.append(embedding(lookup(inputs[name])))

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
  return tf.keras.Model(inputs=inputs, outputs=outputs, name="cabb_model")
