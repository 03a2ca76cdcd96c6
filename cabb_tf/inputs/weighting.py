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

**A precomputed similarity** (gin `make_alpha_fn.similarity_file`): for
`taxonomy_cf` and `taxonomy_cf_debiased`, α can come from a
`category_similarity.npz` instead of a refit — the file
`CategorySimilarity.save` writes (e.g. experiments/build_similarity.py) or
`cabb_tf.pipelines.similarity_beam.run` writes (the same format; docs/beam.md).
Written from the dataset's training events with the same options, it gives
the α a refit gives. Leaves of the dataset's CABB pairs that the file lacks
get the file's fallback, as a refit gives leaves unseen in training; they
are counted in the log, with a warning when training-split CABB-positive
rows have one (a fit on this dataset's training events saw nearly all of
those leaves) and when the file's fit options differ from the configured
ones. `load_similarity_file` lists the errors.

**Scale** (gin `make_alpha_fn.scale`): `'raw'` is α as Eq. (3) gives it, in
[0, 1], so the α-weighted CABB head learns the α-weighted rate, a fraction of
the rate of the rows it is scored on; `'mean_one'` divides every α (and the
fallback) by the mean α over the training split's CABB-positive rows — the
rows Eq. (5) weighs — so positives keep their relative weights but carry, on
average, the weight of a negative row (docs/metrics.md).
"""

import dataclasses
import inspect
import json
import os
import zipfile
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from absl import logging
import gin
import numpy as np
import pandas as pd
import tensorflow as tf

from cabb_tf import datasets as datasets_lib
from cabb_tf.data import schema
from cabb_tf.datasets import click_examples
from cabb_tf.inputs import cache as cache_lib
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
# The schemes whose α depends on the items' leaf categories.
CATEGORY_SCHEMES = ("taxonomy_tree", "taxonomy_cf", "taxonomy_cf_debiased")
# The schemes α can be read for from a category similarity file, and the
# fit function whose options the file should match.
FILE_SCHEMES = {
    "taxonomy_cf": category_cf.fit_category_similarity,
    "taxonomy_cf_debiased": category_cf.fit_debiased_category_similarity,
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
  decoded to str (and a `split` column when `with_split`).

  Only `fields` and `y_cabb` are parsed, a batch of records at a time
  (`click_examples.read_columns`): on a build of 56 M rows this is the one
  pass over the examples that α from a file needs.
  """
  frames = []
  for split in ("train", "validation", "test"):
    for batch in click_examples.read_columns(builder, split, fields,
                                             keep="y_cabb"):
      frame = pd.DataFrame({
          f: (pd.Series(batch[f]).str.decode("utf-8")
              if batch[f].dtype == object else batch[f]) for f in fields})
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
               fallback: float = 0.0,
               rows: Optional[pd.DataFrame] = None) -> PairTable:
  """Scores the distinct CABB (A, B) pairs of a dataset with a fitted scheme.

  The table also records the mean α over the training split's CABB-positive
  rows (`PairTable.train_row_mean`), which `'mean_one'` scaling divides by.
  `rows` are `cabb_rows(builder, KEYS[scheme], with_split=True)` when the
  caller has read them already.
  """
  fields = KEYS[scheme]
  if rows is None:
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


@gin.configurable(denylist=["scheme", "builder", "cache"])
def make_alpha_fn(scheme: str, builder, fallback: float = 0.0,
                  scale: str = "raw",
                  similarity_file: Optional[str] = None,
                  cache: Optional[cache_lib.Cache] = None
                  ) -> Optional[AlphaFn]:
  """The in-graph α of a scheme for the records of a prepared TFDS dataset.

  Args:
    scheme: one of `SCHEMES`.
    builder: a prepared cabb_tf TFDS builder.
    fallback: α of pairs the table does not hold.
    scale: 'raw' (Eq. 3 as it is) or 'mean_one' (every α divided by the mean
      α over the training split's CABB-positive rows; see the module doc).
    similarity_file: a `category_similarity.npz` (`CategorySimilarity.save`
      or `similarity_beam.run`) to read α from instead of refitting the
      scheme on the dataset's training events; only for `FILE_SCHEMES`
      (module doc, "A precomputed similarity"). None refits.
    cache: where the fitted table is kept for later runs (None: the
      process's `cache.default()`).

  Returns:
    `alpha_fn(record) -> float32 tensor`, or None for `static` (α = 1, whose
    mean is already 1).

  Raises:
    ValueError: on an unknown scheme or scale, 'mean_one' when the
      training split's CABB-positive rows have mean α 0, or a
      `similarity_file` that cannot serve the scheme or this dataset
      (`load_similarity_file`, `file_table`).
  """
  check_scheme(scheme)
  check_scale(scale)
  cache = cache or cache_lib.default()
  if similarity_file is not None:
    check_file_scheme(scheme, similarity_file)
    key = (scheme, str(builder.data_path), fallback,
           _file_identity(similarity_file))
    table = cache.alpha_table(key, lambda: file_table(
        scheme, builder, similarity_file, fallback))
    return _scaled(table, scheme, scale).alpha_fn()
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
  table = cache.alpha_table(key, lambda: _fit_table(scheme, builder,
                                                     fallback))
  return _scaled(table, scheme, scale).alpha_fn()


def _scaled(table: PairTable, scheme: str, scale: str) -> PairTable:
  """The table under `make_alpha_fn.scale`."""
  if scale != "mean_one":
    return table
  mean = table.train_row_mean
  if not mean > 0:
    raise ValueError(
        f"make_alpha_fn.scale = 'mean_one' needs a positive mean α over "
        f"the training split's CABB-positive rows; {scheme} gives {mean}.")
  logging.info("Weighting %s: α scaled by 1 / %.4f (mean over training "
               "CABB-positive rows).", scheme, mean)
  return table.scaled(1.0 / mean)


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


def check_file_scheme(scheme: str, path: str) -> None:
  """Raises ValueError unless α of `scheme` can be read from a file."""
  check_scheme(scheme)
  if scheme not in FILE_SCHEMES:
    raise ValueError(
        f"make_alpha_fn.similarity_file = {path!r}: a category similarity "
        f"file serves the schemes {sorted(FILE_SCHEMES)}, not {scheme!r}; "
        "unset similarity_file to fit that scheme.")


def _file_identity(path: str) -> Tuple:
  """The file as a cache key: a rewritten file is read again."""
  if "://" not in str(path) and os.path.exists(path):
    status = os.stat(path)
    return (os.path.realpath(path), status.st_mtime_ns, status.st_size)
  return (str(path),)


def _file_options(stats: Mapping[str, Any]) -> Dict[str, Any]:
  """The fit options a similarity file records (Beam's: no damping)."""
  debiasing = stats.get("debiasing") or {}
  return {
      "event_weights": stats.get("event_weights"),
      "user_damping": debiasing.get("user_damping", "none"),
      "user_beta": float(debiasing.get("user_beta", 1.0)),
      "popularity_gamma": float(debiasing.get("popularity_gamma", 0.0)),
      "top_k": stats.get("top_k"),
      "min_similarity": float(stats.get("min_similarity", 0.0)),
  }


def _configured_options(scheme: str) -> Dict[str, Any]:
  """The options a refit of `scheme` would use (gin bindings, defaults)."""
  fit = FILE_SCHEMES[scheme]
  options = {name: parameter.default for name, parameter in
             inspect.signature(fit).parameters.items()
             if parameter.default is not inspect.Parameter.empty}
  options.update(gin.get_bindings(fit))
  options.setdefault("user_damping", "none")
  options.setdefault("user_beta", 1.0)
  options.setdefault("popularity_gamma", 0.0)
  if options["user_damping"] == "none" and options["popularity_gamma"] == 0:
    options["user_beta"] = 1.0  # Unused without damping.
  options["event_weights"] = category_cf.weights_dict(
      category_cf.event_weight_table(options.get("event_weights")))
  return {name: options[name] for name in (
      "event_weights", "user_damping", "user_beta", "popularity_gamma",
      "top_k", "min_similarity", "fallback")}


def load_similarity_file(path: str,
                         scheme: str) -> category_cf.CategorySimilarity:
  """Reads a leaf similarity for `scheme` from a `category_similarity.npz`.

  Both writers give this format: `CategorySimilarity.save` (in memory) and
  `cabb_tf.pipelines.similarity_beam.run` (Beam).

  Args:
    path: the `.npz` file (a local path or a `tf.io.gfile` URL).
    scheme: `taxonomy_cf` (the file must hold Eq. 2 without damping) or
      `taxonomy_cf_debiased` (the file must hold a damped fit).

  Returns:
    The `CategorySimilarity`.

  Raises:
    ValueError: naming the file, if it is missing or unreadable, holds
      another similarity (item keys, another class), or cannot serve
      `scheme`.
  """
  check_file_scheme(scheme, path)
  where = f"make_alpha_fn.similarity_file = {path!r}"
  if "://" not in str(path) and not os.path.isfile(path):
    raise ValueError(f"{where}: no such file. Write it with "
                     "experiments/build_similarity.py or "
                     "cabb_tf.pipelines.similarity_beam.")
  try:
    similarity = category_cf.CategorySimilarity.load(path)
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile,
          json.JSONDecodeError, tf.errors.OpError) as e:
    raise ValueError(f"{where}: not a readable category similarity file "
                     f"({type(e).__name__}: {e}).") from e
  if similarity.keys.dtype != object:
    raise ValueError(f"{where}: its keys are {similarity.keys.dtype} (item "
                     f"ids?), not leaf names; it cannot serve {scheme}.")
  options = _file_options(similarity.stats)
  damped = options["user_damping"] != "none" or options["popularity_gamma"] > 0
  if scheme == "taxonomy_cf" and damped:
    raise ValueError(
        f"{where}: the file holds a debiased similarity "
        f"({similarity.stats.get('debiasing')}), not the plain Eq. (2) of "
        "taxonomy_cf; use weighting_scheme = 'taxonomy_cf_debiased'.")
  if scheme == "taxonomy_cf_debiased" and not damped:
    raise ValueError(
        f"{where}: the file holds the plain Eq. (2) similarity (no damping; "
        "the Beam pipeline writes only that), not a debiased one; use "
        "weighting_scheme = 'taxonomy_cf'.")
  return similarity


def file_table(scheme: str, builder, path: str,
               fallback: float = 0.0) -> PairTable:
  """Scores a dataset's distinct CABB pairs with α read from a file.

  Leaves of the pairs that the file lacks get the file's fallback (what the
  fit that wrote it gives unseen leaves, 0 by default), as a refit gives
  leaves unseen in the training events. They are counted in the log; a
  warning names the file when training-split CABB-positive rows have such
  a leaf (other than `UNKNOWN_LEAF`, which never has a similarity), or
  when the file's fit options differ from what a refit would use.

  Args:
    scheme: one of `FILE_SCHEMES`.
    builder: a prepared cabb_tf TFDS builder.
    path: the `category_similarity.npz`.
    fallback: α of pairs the table does not hold (`make_alpha_fn.fallback`).

  Returns:
    The `PairTable`.

  Raises:
    ValueError: as `load_similarity_file`, or when the file holds none of the
      dataset's (known) leaves: a similarity of another catalog.
  """
  similarity = load_similarity_file(path, scheme)
  fields = KEYS[scheme]
  rows = cabb_rows(builder, fields, with_split=True)
  leaves = pd.unique(np.concatenate([
      rows[f].astype(str).to_numpy(dtype=object) for f in fields]))
  leaves = leaves[leaves != schema.UNKNOWN_LEAF]
  missing = leaves[similarity.index_of(leaves) < 0]
  if len(leaves) and len(missing) == len(leaves):
    raise ValueError(
        f"make_alpha_fn.similarity_file = {path!r} holds none of the "
        f"{len(leaves)} leaves of {builder.data_path}'s CABB pairs (e.g. "
        f"{leaves[0]!r}; the file has {len(similarity)} leaves, e.g. "
        f"{similarity.keys[0] if len(similarity) else None!r}): a similarity "
        "of another catalog.")
  table = pair_table(scheme, similarity, builder, fallback, rows=rows)
  options = dict(_file_options(similarity.stats),
                 fallback=similarity.fallback)
  configured = _configured_options(scheme)
  differ = {name: (options[name], configured[name]) for name in options
            if options[name] != configured[name]
            and not (name == "event_weights" and options[name] is None)}
  if differ:
    logging.warning(
        "Weighting %s from %s: the file was fitted with other options than a "
        "refit would use (%s); α is the file's.", scheme, path,
        "; ".join(f"{k}: file {a!r}, configured {b!r}"
                  for k, (a, b) in differ.items()))
  if len(missing):
    is_missing = np.zeros(len(rows), dtype=bool)
    for field in fields:
      is_missing |= rows[field].astype(str).isin(set(missing)).to_numpy()
    train = (rows["split"].to_numpy() == "train") & is_missing
    log = logging.warning if train.any() else logging.info
    log("Weighting %s from %s: %d of the dataset's %d leaves are not in the "
        "file (e.g. %r) and get its fallback α %.4g: %d CABB-positive rows, "
        "%d of them in the training split.", scheme, path, len(missing),
        len(leaves), missing[0], similarity.fallback, int(is_missing.sum()),
        int(train.sum()))
  logging.info("Weighting %s read from %s (%d leaves, %s): %d distinct CABB "
               "pairs, mean α %.4f over the training split's CABB-positive "
               "rows.", scheme, path, len(similarity),
               {k: v for k, v in options.items() if v is not None},
               len(table.alpha), table.train_row_mean)
  return table
