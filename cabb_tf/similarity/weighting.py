"""The weighting-scheme switch: one gin setting picks how α(A, B) is made.

    weighting_scheme = 'static' | 'i2i_embedding' | 'i2i_cf' |
                       'taxonomy_tree' | 'taxonomy_cf' |
                       'taxonomy_cf_debiased'

* `static`        — α = 1 for every pair ("No-Weight", paper Table 3 row 1);
* `i2i_embedding` — max(0, cosine) of item embeddings learned with a
  tensorflow-recommenders retrieval model (Table 3 row 2);
* `i2i_cf`        — item-level co-engagement cosine (Eq. 1–2 over items);
* `taxonomy_tree` — shared prefix of the two taxonomy paths;
* `taxonomy_cf`   — the paper's leaf co-engagement cosine (Eq. 1–3, row 3);
* `taxonomy_cf_debiased` — the same cosine with user-activity and
  leaf-popularity damping (the paper's §6 concern that co-engagement rewards
  popular noise; `category_cf.fit_debiased_category_similarity`).

Every scheme is fitted on the dataset's training-period events only. α is
attached in the tf.data pipeline by a table lookup: the distinct (A, B) keys
of the dataset's CABB rows are scored once, vectorized, with the scheme's
NumPy `alpha`, and put in a `tf.lookup.StaticHashTable`; pairs not in the
table (none, for the dataset the table was built from) get the fallback.

**Scale** (gin `make_alpha_fn.scale`): `'raw'` is α as Eq. (3) gives it, in
[0, 1], so the α-weighted CABB head learns the α-weighted rate, a fraction of
the rate of the rows it is scored on; `'mean_one'` divides every α (and the
fallback) by the mean α over the training split's CABB-positive rows — the
rows Eq. (5) weighs — so positives keep their relative weights but carry, on
average, the weight of a negative row (docs/metrics.md).
"""

import dataclasses
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from absl import logging
import gin
import numpy as np
import pandas as pd
import tensorflow as tf

from cabb_tf import datasets as datasets_lib
from cabb_tf.similarity import category_cf
from cabb_tf.similarity import i2i_embedding
from cabb_tf.similarity import item_cf
from cabb_tf.similarity import tree

SCALES = ("raw", "mean_one")
SCHEMES = ("static", "i2i_embedding", "i2i_cf", "taxonomy_tree",
           "taxonomy_cf", "taxonomy_cf_debiased")
# Which record fields key each scheme's α.
KEYS: Dict[str, Tuple[str, str]] = {
    "static": ("leaf_a", "leaf_b"),
    "i2i_embedding": ("item_a", "item_b"),
    "i2i_cf": ("item_a", "item_b"),
    "taxonomy_tree": ("leaf_a", "leaf_b"),
    "taxonomy_cf": ("leaf_a", "leaf_b"),
    "taxonomy_cf_debiased": ("leaf_a", "leaf_b"),
}
_SEPARATOR = "\x1f"

AlphaFn = Callable[[Mapping[str, tf.Tensor]], tf.Tensor]


def check_scheme(scheme: str) -> None:
  if scheme not in SCHEMES:
    raise ValueError(f"unknown weighting scheme {scheme!r}; gin "
                     f"weighting_scheme must be one of {list(SCHEMES)}.")


class _Static:
  """α = 1 for every pair."""

  def alpha(self, a, b) -> np.ndarray:
    return np.ones(np.broadcast(np.asarray(a), np.asarray(b)).shape)


@gin.configurable(denylist=["scheme", "events", "catalog"])
def fit_scheme(scheme: str, events: pd.DataFrame, catalog: pd.DataFrame):
  """Fits a weighting scheme on training-period events.

  Each scheme's own options are gin bindings of its fit function
  (`fit_category_similarity`, `fit_debiased_category_similarity`,
  `fit_item_similarity`, `fit_tree_similarity`, `fit_i2i_embeddings`).

  Args:
    scheme: one of `SCHEMES`.
    events: canonical training-period events.
    catalog: canonical catalog.

  Returns:
    An object with a vectorized `alpha(keys_a, keys_b)` over `KEYS[scheme]`.
  """
  check_scheme(scheme)
  if scheme == "static":
    return _Static()
  if scheme == "taxonomy_cf":
    return category_cf.fit_category_similarity(events, catalog)
  if scheme == "taxonomy_cf_debiased":
    return category_cf.fit_debiased_category_similarity(events, catalog)
  if scheme == "i2i_cf":
    return item_cf.fit_item_similarity(events)
  if scheme == "taxonomy_tree":
    return tree.fit_tree_similarity(catalog)
  return i2i_embedding.fit_i2i_embeddings(events)


@dataclasses.dataclass
class PairTable:
  """α of the distinct CABB (A, B) pairs of a dataset, as a TF lookup."""
  keys_a: np.ndarray
  keys_b: np.ndarray
  alpha: np.ndarray
  fields: Tuple[str, str]
  fallback: float = 0.0
  # Mean α over the training split's CABB-positive rows (NaN without any).
  train_row_mean: float = float("nan")

  def lookup(self, keys_a, keys_b) -> np.ndarray:
    """α of aligned key arrays (str), the fallback for pairs not held."""
    held = pd.MultiIndex.from_arrays([self.keys_a, self.keys_b])
    index = held.get_indexer(pd.MultiIndex.from_arrays(
        [np.asarray(keys_a, dtype=object), np.asarray(keys_b, dtype=object)]))
    values = self.alpha[np.maximum(index, 0)].astype(np.float64)
    return np.where(index >= 0, values, self.fallback)

  def scaled(self, factor: float) -> "PairTable":
    """The table with every α and the fallback multiplied by `factor`."""
    return dataclasses.replace(
        self, alpha=(self.alpha * factor).astype(np.float32),
        fallback=self.fallback * factor,
        train_row_mean=self.train_row_mean * factor)

  def table(self) -> tf.lookup.StaticHashTable:
    joined = np.array([f"{a}{_SEPARATOR}{b}" for a, b in
                       zip(self.keys_a, self.keys_b)], dtype=object)
    initializer = tf.lookup.KeyValueTensorInitializer(
        tf.constant(joined if len(joined) else np.zeros(0, dtype=object),
                    tf.string),
        tf.constant(self.alpha, tf.float32))
    return tf.lookup.StaticHashTable(initializer, default_value=self.fallback)

  def alpha_fn(self) -> AlphaFn:
    """α(record) in-graph: a hash lookup of 'A<US>B' (pure TF ops)."""
    table = self.table()
    field_a, field_b = self.fields

    def alpha(record):
      a = tf.strings.as_string(record[field_a]) if record[
          field_a].dtype != tf.string else record[field_a]
      b = tf.strings.as_string(record[field_b]) if record[
          field_b].dtype != tf.string else record[field_b]
      return table.lookup(tf.strings.join([a, b], separator=_SEPARATOR))

    return alpha


def cabb_rows(builder, fields: Sequence[str],
              with_split: bool = False) -> pd.DataFrame:
  """The CABB-positive rows of all splits of a dataset: `fields`, with bytes
  decoded to str (and a `split` column when `with_split`)."""
  frames = []
  for split in ("train", "validation", "test"):
    for batch in builder.as_dataset(split=split).batch(
        65_536).as_numpy_iterator():
      positive = batch["y_cabb"] > 0
      frame = pd.DataFrame({
          f: (pd.Series(batch[f][positive]).str.decode("utf-8")
              if batch[f].dtype == object else batch[f][positive])
          for f in fields})
      if with_split:
        frame["split"] = split
      frames.append(frame)
  if not frames:
    columns = list(fields) + (["split"] if with_split else [])
    return pd.DataFrame({f: pd.Series([], dtype=object) for f in columns})
  return pd.concat(frames, ignore_index=True)


def score_pairs(similarity: Any, keys_a: np.ndarray,
                keys_b: np.ndarray) -> np.ndarray:
  """α of aligned key arrays, as float64 with the keys' shape.

  Dataset records hold ids as strings; a similarity fitted on integer ids
  (its `keys` are integers) gets them back as int64 (non-numeric: unseen).
  """
  reference = getattr(similarity, "keys", None)
  if reference is not None and np.issubdtype(np.asarray(reference).dtype,
                                              np.integer):
    keys_a, keys_b = (pd.to_numeric(pd.Series(k), errors="coerce").fillna(
        -1).astype(np.int64).to_numpy() for k in (keys_a, keys_b))
  alpha = np.asarray(similarity.alpha(keys_a, keys_b), dtype=np.float64)
  return np.broadcast_to(alpha, np.shape(keys_a)).copy()


def pair_table(scheme: str, similarity: Any, builder,
               fallback: float = 0.0) -> PairTable:
  """Scores the distinct CABB (A, B) pairs of a dataset with a fitted scheme.

  The table also records the mean α over the training split's CABB-positive
  rows (`PairTable.train_row_mean`), which `'mean_one'` scaling divides by.
  """
  fields = KEYS[scheme]
  rows = cabb_rows(builder, fields, with_split=True)
  rows_a = rows[fields[0]].astype(str).to_numpy(dtype=object)
  rows_b = rows[fields[1]].astype(str).to_numpy(dtype=object)
  pairs = pd.DataFrame({"a": rows_a, "b": rows_b}).drop_duplicates()
  keys_a = pairs["a"].to_numpy(dtype=object)
  keys_b = pairs["b"].to_numpy(dtype=object)
  alpha = score_pairs(similarity, keys_a, keys_b).astype(np.float32)
  table = PairTable(keys_a, keys_b, alpha, fields, fallback)
  train = rows["split"].to_numpy() == "train"
  if train.any():
    table.train_row_mean = float(np.mean(table.lookup(rows_a[train],
                                                      rows_b[train])))
  return table


def check_scale(scale: str) -> None:
  if scale not in SCALES:
    raise ValueError(f"unknown α scale {scale!r}; gin make_alpha_fn.scale "
                     f"must be one of {list(SCALES)}.")


@gin.configurable(denylist=["scheme", "builder"])
def make_alpha_fn(scheme: str, builder, fallback: float = 0.0,
                  scale: str = "raw") -> Optional[AlphaFn]:
  """The in-graph α of a scheme for the records of a prepared TFDS dataset.

  Args:
    scheme: one of `SCHEMES`.
    builder: a prepared cabb_tf TFDS builder.
    fallback: α of pairs the table does not hold.
    scale: 'raw' (Eq. 3 as it is) or 'mean_one' (every α divided by the mean
      α over the training split's CABB-positive rows; see the module doc).

  Returns:
    `alpha_fn(record) -> float32 tensor`, or None for `static` (α = 1, whose
    mean is already 1).

  Raises:
    ValueError: on an unknown scheme or scale, or 'mean_one' when the
      training split's CABB-positive rows have mean α 0.
  """
  check_scheme(scheme)
  check_scale(scale)
  if scheme == "static":
    return None
  # Experiments train many models on one dataset: fit each scheme once. The
  # key includes the gin bindings that set the schemes' options.
  options = tuple(repr(sorted(gin.get_bindings(fn).items())) for fn in (
      category_cf.fit_category_similarity,
      category_cf.fit_debiased_category_similarity,
      category_cf.default_event_weights,
      item_cf.fit_item_similarity, tree.fit_tree_similarity,
      i2i_embedding.fit_i2i_embeddings))
  key = (scheme, str(builder.data_path), fallback, options)
  if key not in _TABLES:
    _TABLES[key] = _fit_table(scheme, builder, fallback)
  table = _TABLES[key]
  if scale == "mean_one":
    mean = table.train_row_mean
    if not mean > 0:
      raise ValueError(
          f"make_alpha_fn.scale = 'mean_one' needs a positive mean α over "
          f"the training split's CABB-positive rows; {scheme} gives {mean}.")
    table = table.scaled(1.0 / mean)
    logging.info("Weighting %s: α scaled by 1 / %.4f (mean over training "
                 "CABB-positive rows).", scheme, mean)
  return table.alpha_fn()


_TABLES: Dict[Tuple, PairTable] = {}


def _fit_table(scheme: str, builder, fallback: float) -> PairTable:
  """Fits a scheme on a dataset's training events and scores its pairs."""
  events, catalog = datasets_lib.load_training_events(builder)
  similarity = fit_scheme(scheme, events, catalog)
  table = pair_table(scheme, similarity, builder, fallback)
  logging.info("Weighting %s: %d distinct CABB pairs, mean α %.4f over the "
               "pairs and %.4f over the training split's CABB-positive rows",
               scheme, len(table.alpha), float(np.mean(table.alpha)) if len(
                   table.alpha) else float("nan"), table.train_row_mean)
  if table.train_row_mean == 0:
    logging.warning(
        "Weighting %s gives α = 0 to every CABB-positive training row: the "
        "CABB head learns from negatives only. A log without categories has "
        "one unknown leaf for every item; use the 'static' scheme "
        "(gin/weighting/static.gin) there.", scheme)
  return table
