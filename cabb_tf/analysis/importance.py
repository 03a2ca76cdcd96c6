"""Per-head permutation importance (RQ-4, paper §4.4).

The importance of a feature (or a feature family) for a head is the rise in
that head's test NE when the feature's column is shuffled across the test
rows, everything else fixed: CABA NE over clicks (weights `w_caba`) for the
`caba` head, CABB NE over all rows (uniform) for the `cabb` head.

Id features are shuffled as the row indices the model takes
(`factory.id_lookups` of the strings, looked up once in `load_split`):
shuffling rows commutes with the lookup, so this is shuffling the strings.
"""

from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np
import tensorflow as tf

from cabb_tf import input_pipeline
from cabb_tf import metrics
from cabb_tf.data import features as features_lib
from cabb_tf.models import conversion
from cabb_tf.models import factory


def load_split(columns: Mapping[str, tf.Tensor], feature_statistics
               ) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
  """A split's (model inputs, evaluation columns) as NumPy arrays.

  Args:
    columns: the split in memory (`input_pipeline.split_columns`).
    feature_statistics: the dataset's statistics (fixes the inputs).

  Returns:
    The inputs of a `factory.build_model` model ({feature: array [n]}, id
    features as int32 row indices of the training vocabulary) and the
    labels and weights (`y_caba`, `y_cabb`, `w_caba`, float64).
  """
  inputs = input_pipeline.model_inputs(
      columns, factory.model_features(feature_statistics),
      factory.id_lookups(feature_statistics))
  inputs = {name: value.numpy() for name, value in inputs.items()}
  labels = {name: columns[name].numpy().astype(np.float64)
            for name in ("y_caba", "y_cabb", "w_caba")}
  return inputs, labels


def _head_ne(model: tf.keras.Model, inputs, columns,
             batch_size: int) -> Dict[str, float]:
  outputs = model.predict({k: v for k, v in inputs.items()
                           if k in model.input_names},
                          batch_size=batch_size, verbose=0)
  by_task = conversion.task_outputs(outputs)
  p_caba = by_task["caba"].reshape(-1)
  p_cabb = by_task["cabb"].reshape(-1)
  return {
      "caba": metrics.normalized_entropy(columns["y_caba"], p_caba,
                                         columns["w_caba"]),
      "cabb": metrics.normalized_entropy(columns["y_cabb"], p_cabb),
  }


def permutation_importance(model: tf.keras.Model,
                           inputs: Mapping[str, np.ndarray],
                           columns: Mapping[str, np.ndarray],
                           seed: int = 0,
                           batch_size: int = 8192,
                           families: bool = True) -> Dict[str, Dict[str,
                                                                    float]]:
  """Rise in each task's NE when a feature (or family) is shuffled.

  A baseline's one head is scored on both tasks (`conversion.task_outputs`).

  Args:
    model: a trained model.
    inputs: the test split's model inputs (see `load_split`).
    columns: its labels and weights.
    seed: the shuffling seed.
    batch_size: prediction batch size.
    families: also shuffle each feature family of
      `features.FEATURE_FAMILIES` together (keys 'family:<name>').

  Returns:
    {"caba": {feature: ΔNE}, "cabb": {feature: ΔNE}}.
  """
  base = _head_ne(model, inputs, columns, batch_size)
  rng = np.random.default_rng(seed)
  groups = {name: (name,) for name in inputs if name in model.input_names}
  if families:
    for family, names in features_lib.FEATURE_FAMILIES.items():
      present = tuple(n for n in names if n in groups)
      if present:
        groups[f"family:{family}"] = present
  out = {"caba": {}, "cabb": {}}
  n = len(next(iter(inputs.values())))
  for key, names in groups.items():
    order = rng.permutation(n)
    shuffled = dict(inputs)
    for name in names:
      shuffled[name] = inputs[name][order]
    ne = _head_ne(model, shuffled, columns, batch_size)
    for head in ("caba", "cabb"):
      out[head][key] = float(ne[head] - base[head])
  return out


def top_features(importances: Sequence[Mapping[str, float]],
                 n: int = 10) -> List[Tuple[str, float]]:
  """Features ranked by mean importance over seeds (families excluded)."""
  keys = [k for k in importances[0] if not k.startswith("family:")]
  means = {k: float(np.mean([imp[k] for imp in importances])) for k in keys}
  return sorted(means.items(), key=lambda kv: -kv[1])[:n]


def family_importance(importances: Sequence[Mapping[str, float]]
                      ) -> List[Tuple[str, float]]:
  """Feature families ranked by mean importance over seeds."""
  keys = [k for k in importances[0] if k.startswith("family:")]
  means = {k.split(":", 1)[1]: float(np.mean([imp[k] for imp in importances]))
           for k in keys}
  return sorted(means.items(), key=lambda kv: -kv[1])
