"""Item embeddings from session co-engagement via a TFRS retrieval model.

The `i2i_embedding` weighting scheme (docs/method.md, "Weights"; paper §4.3 and Table 3
row 2): α(A, B) = max(0, cos(e_A, e_B)) for item embeddings e learned from
item–item co-engagement.

**Training period.** `fit_i2i_embeddings` uses every event it is given. The
caller restricts `events` to the training period first (docs/method.md, "Features").

**Pairs.** Within each session — `(user_id, session_id)`; when `events` has
no `session_id`, sessions are derived by `sessions.assign_sessions` (gin) —
the distinct *engaged* items (clicks, add-to-carts, purchases; impressions
are ignored) are taken in the order of their first engagement (timestamp,
ties by input order). Only the first `max_items_per_session` of them are
kept: a session with k items yields k·(k−1) ordered pairs, so the cap bounds
the quadratic blow-up of long sessions. Every unordered pair {A, B} of two
distinct kept items gives both (A, B) and (B, A); a pair co-engaged in n
sessions occurs n times. With more than `max_pairs` pairs, a uniform random
subset of the unordered pairs (seeded) is kept, each still in both
directions. Everything is vectorized with NumPy (sorts and `np.repeat`, no
Python loop over sessions or events).

**Vocabulary.** An item enters the vocabulary when it has at least
`min_count` engaged events (repeats count) and occurs in at least one kept
pair; pairs with a rarer item are dropped. An item outside the vocabulary is
*unknown* and gets the fallback α. The vocabulary is sorted by item string.

**Model.** A two-tower `tfrs.models.Model` whose query tower (item A) and
candidate tower (item B) are one shared tower: `tf.keras.layers.StringLookup`
(one OOV index, 0) → `tf.keras.layers.Embedding` → L2 normalization. The
loss is `tfrs.tasks.Retrieval`'s in-batch softmax (summed over the batch)
on cosines / `temperature`; in-batch negatives that are the row's positive
item (accidental hits) or its query item are masked out. Adagrad or Adam.

Two choices differ from a retrieval model built for recommending:

* no logQ correction by default (`sampling_correction=False`): popular items
  are in-batch negatives more often, so the uncorrected softmax pushes them
  away from everything. For α that popularity penalty is welcome — a
  coincidental purchase tends to be of a popular item. On the package's
  simulator (10k users, ~0.56M pairs) the AUC of α for genuine vs noise
  CABB pairs was 0.96 without and 0.88 with the correction;
* `batch_size` 1024: a step costs O(batch_size²) for the score matrix, and
  on a 2-core CPU 4096 was 8x slower per epoch for +0.005 AUC.

**Item ids** may be integers or strings; they are compared as strings:
integers print in decimal (`7` → `"7"`, as `tf.strings.as_string` does),
bytes are decoded as UTF-8, so the int 7 and the string "7" are one item.
Float ids are rejected (convert them to int64 first).

**Determinism.** The seed drives NumPy generators (pair subsampling, the
per-epoch order) and the embedding initializer; no global seed is touched.
On CPU, two fits with one seed give the same embeddings.
"""

import io
import json
import os
import time
from typing import (Any, BinaryIO, Callable, Dict, List, NamedTuple, Optional,
                    Tuple, Union)

from absl import logging
import gin
import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from cabb_tf import files
from cabb_tf.data import schema
from cabb_tf.data import sessions as sessions_lib

ArrayLike = Any
ENGAGED_EVENT_TYPES = ("click", "add_to_cart", "purchase")
OPTIMIZERS = ("adagrad", "adam")
_ALPHA_CHUNK = 1 << 16  # Pairs per NumPy block in `alpha`.


def item_keys(items: ArrayLike) -> np.ndarray:
  """Converts item ids to the strings this module compares.

  Args:
    items: item ids of any shape: integers, str or bytes (object arrays may
      mix them).

  Returns:
    An object array of str of the same shape: integers in decimal, bytes
    decoded as UTF-8.

  Raises:
    ValueError: on missing, float or other non-integer, non-string ids.
  """
  items = items.to_numpy() if isinstance(items, (pd.Series, pd.Index)) else (
      np.asarray(items))
  codes, uniques = _factorize(items.ravel())
  return uniques[codes].reshape(items.shape)


def _factorize(values: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """Returns (codes, unique strings) of 1-D item ids, uniques in first order.

  Ids with the same string (the int 7 and "7") share a code.
  """
  if not values.size:
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=object)
  if values.dtype.kind == "b" or values.dtype.kind not in "iuUSO":
    raise ValueError(f"item ids must be integers or strings, not "
                     f"{values.dtype}; convert float ids with "
                     "`.astype('int64')`.")
  codes, uniques = pd.factorize(values)
  if (codes < 0).any():
    raise ValueError("item ids have missing values (None or NaN).")
  uniques = np.asarray(uniques)
  if uniques.dtype.kind in "iu":
    strings = uniques.astype(str).astype(object)
  elif uniques.dtype.kind == "U":
    strings = uniques.astype(object)
  else:
    strings = np.array([_one_key(u) for u in uniques], dtype=object)
  merged, distinct = pd.factorize(strings)
  return merged[codes], np.asarray(distinct, dtype=object)


def _one_key(value) -> str:
  if isinstance(value, str):
    return value
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if isinstance(value, (int, np.integer)) and not isinstance(
      value, (bool, np.bool_)):
    return str(int(value))
  raise ValueError(f"item id {value!r} ({type(value).__name__}) is neither "
                   "an integer nor a string; convert float ids with "
                   "`.astype('int64')`.")


class TfAlphaLookup(NamedTuple):
  """What a `tf.data` pipeline needs to compute α in-graph.

  Attributes:
    vocabulary: 1-D string tensor, the item ids in `item_ids` order. A
      `tf.keras.layers.StringLookup(vocabulary=vocabulary)` (one OOV index)
      maps item i to i + 1 and unknown items to 0 — the rows of `embeddings`.
    embeddings: float32 tensor of shape [len(vocabulary) + 1, d]; row 0 (OOV)
      is zero, row i + 1 the unit embedding of item i.
    fallback: α for a pair with an unknown item.
    alpha_fn: `alpha_fn(item_a, item_b) -> float32 tensor`, the same values
      as `ItemEmbeddingSimilarity.alpha` for string or integer id tensors of
      broadcastable shapes; pure TF ops, usable in `tf.data.Dataset.map`.
  """
  vocabulary: Any
  embeddings: Any
  fallback: float
  alpha_fn: Callable[[Any, Any], Any]


class ItemEmbeddingSimilarity:
  """α(A, B) = max(0, cos(e_A, e_B)) over unit item embeddings.

  Attributes:
    fallback: α for a pair with an unknown item.
    stats: what the fit used and dropped (JSON-ready dict).
  """

  key_name = "item"

  def __init__(self,
               item_ids: ArrayLike,
               embeddings: ArrayLike,
               *,
               fallback: float = 0.0,
               stats: Optional[Dict[str, Any]] = None):
    """Wraps precomputed embeddings.

    Args:
      item_ids: unique item ids (ints or strings, see `item_keys`), 1-D.
      embeddings: array of shape [len(item_ids), d]; rows are L2-normalized
        here (stored as float32).
      fallback: α for a pair with an unknown item, in [0, 1].
      stats: optional JSON-ready dict about the fit.

    Raises:
      ValueError: if ids repeat (as strings), shapes disagree, an embedding
        is zero or not finite, or fallback is outside [0, 1].
    """
    keys = item_keys(item_ids)
    if keys.ndim != 1:
      raise ValueError(f"item_ids must be 1-D, not of shape {keys.shape}.")
    embeddings = np.asarray(embeddings, dtype=np.float64)
    if embeddings.ndim != 2 or embeddings.shape[0] != len(keys):
      raise ValueError(f"embeddings have shape {embeddings.shape} for "
                       f"{len(keys)} items; expected [{len(keys)}, d].")
    index = pd.Index(keys)
    if not index.is_unique:
      raise ValueError("item ids repeat (compared as strings, so 7 and '7' "
                       "are the same item); each row needs a distinct id.")
    if not np.isfinite(embeddings).all():
      raise ValueError("embeddings have NaN or infinite values.")
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    if (norms == 0).any():
      raise ValueError(f"the embedding of item "
                       f"{keys[np.flatnonzero(norms[:, 0] == 0)[0]]!r} is "
                       "zero; cosine similarity is undefined for it.")
    _check_fallback(fallback)
    self._item_ids = keys
    self._index = index
    self._embeddings = (embeddings / norms).astype(np.float32)
    self.fallback = float(fallback)
    self.stats = dict(stats or {})

  @property
  def item_ids(self) -> np.ndarray:
    """The item ids (object array of str) in row order."""
    return self._item_ids

  @property
  def keys(self) -> np.ndarray:
    return self._item_ids

  @property
  def embeddings(self) -> np.ndarray:
    """float32 array of shape [len(self), d] with unit rows."""
    return self._embeddings

  @property
  def dim(self) -> int:
    return int(self._embeddings.shape[1])

  def __len__(self) -> int:
    return len(self._item_ids)

  def __repr__(self) -> str:
    return (f"{type(self).__name__}({len(self)} items, dim {self.dim}, "
            f"fallback={self.fallback})")

  def index_of(self, items: ArrayLike) -> np.ndarray:
    """Returns the row of each item (int64, same shape, -1 when unknown)."""
    items = items.to_numpy() if isinstance(items, (pd.Series, pd.Index)) else (
        np.asarray(items))
    codes, uniques = _factorize(items.ravel())
    rows = self._index.get_indexer(uniques).astype(np.int64)
    return rows[codes].reshape(items.shape)

  def alpha(self, item_a: ArrayLike,
            item_b: ArrayLike) -> Union[np.ndarray, float]:
    """Returns α(A, B) = max(0, cos(e_A, e_B)) for aligned item ids.

    Args:
      item_a: item ids (any shape); broadcast against `item_b`.
      item_b: item ids.

    Returns:
      float64 array of the broadcast shape (a float for two scalars), in
      [0, 1]: 1 for the same known item, the clipped cosine for two known
      items, `fallback` when either item is unknown (also for an unknown
      item paired with itself).
    """
    scalar = np.ndim(item_a) == 0 and np.ndim(item_b) == 0
    ia, ib = np.broadcast_arrays(self.index_of(item_a), self.index_of(item_b))
    shape = ia.shape
    ia, ib = ia.ravel(), ib.ravel()
    out = np.full(ia.shape, self.fallback, dtype=np.float64)
    known = np.flatnonzero((ia >= 0) & (ib >= 0))
    for start in range(0, len(known), _ALPHA_CHUNK):
      block = known[start:start + _ALPHA_CHUNK]
      ra, rb = ia[block], ib[block]
      cos = np.einsum("ij,ij->i", self._embeddings[ra], self._embeddings[rb])
      values = np.clip(cos, 0.0, 1.0).astype(np.float64)
      values[ra == rb] = 1.0
      out[block] = values
    out = out.reshape(shape)
    return float(out) if scalar else out

  def as_tf_lookup(self) -> TfAlphaLookup:
    """Returns the vocabulary, embedding matrix and `alpha_fn` for TF graphs.

    `alpha_fn` looks items up in a `tf.lookup.StaticHashTable` (integer id
    tensors are first converted with `tf.strings.as_string`, matching
    `item_keys`), gathers rows of the padded embedding matrix and returns
    float32 α with the rules of `alpha`. It runs per batch or per example
    inside `tf.data.Dataset.map`, with no Python per example.

    Returns:
      A `TfAlphaLookup`.
    """
    n, d = self._embeddings.shape
    vocabulary = tf.constant(self._item_ids.astype(str).reshape(n),
                             dtype=tf.string)
    padded = np.zeros((n + 1, d), dtype=np.float32)
    padded[1:] = self._embeddings
    embeddings = tf.constant(padded)
    fallback = self.fallback
    table = None
    if n:
      table = tf.lookup.StaticHashTable(
          tf.lookup.KeyValueTensorInitializer(
              vocabulary, tf.range(1, n + 1, dtype=tf.int64)),
          default_value=tf.constant(0, dtype=tf.int64))

    def rows(items):
      items = tf.convert_to_tensor(items)
      if items.dtype.is_integer:
        items = tf.strings.as_string(items)
      elif items.dtype != tf.string:
        raise ValueError(f"alpha_fn takes string or integer item ids, not "
                         f"{items.dtype.name}.")
      if table is None:
        return tf.zeros_like(items, dtype=tf.int64)
      return table.lookup(items)

    def alpha_fn(item_a, item_b):
      """α(A, B) for string or integer id tensors (float32)."""
      ra, rb = rows(item_a), rows(item_b)
      cos = tf.reduce_sum(
          tf.gather(embeddings, ra) * tf.gather(embeddings, rb), axis=-1)
      alpha = tf.clip_by_value(cos, 0.0, 1.0)
      alpha = tf.where(tf.equal(ra, rb), tf.ones_like(alpha), alpha)
      known = tf.logical_and(ra > 0, rb > 0)
      return tf.where(known, alpha, tf.fill(tf.shape(alpha), fallback))

    return TfAlphaLookup(vocabulary=vocabulary, embeddings=embeddings,
                         fallback=fallback, alpha_fn=alpha_fn)

  def save(self, path: Union[str, os.PathLike, BinaryIO]) -> None:
    """Writes the ids, embeddings, fallback and stats to one `.npz` file.

    Args:
      path: a local path (written atomically: temp file + rename), a URL such
        as `gs://...` (written through `tf.io.gfile`), or a binary file
        object. No suffix is added.
    """
    arrays = dict(
        item_ids=self._item_ids.astype(str), embeddings=self._embeddings,
        meta=np.array(json.dumps({"class": type(self).__name__,
                                  "fallback": self.fallback,
                                  "stats": self.stats},
                                 default=_json_default)))
    files.write_npz(path, arrays)

  @classmethod
  def load(cls, path: Union[str, os.PathLike, BinaryIO]
           ) -> "ItemEmbeddingSimilarity":
    """Reads a file written by `save` (no pickle).

    Raises:
      ValueError: if the file was not written by this class.
    """
    source = path
    if not hasattr(path, "read") and "://" in str(path):
      with tf.io.gfile.GFile(str(path), "rb") as f:
        source = io.BytesIO(f.read())
    with np.load(source, allow_pickle=False) as z:
      if "meta" not in z or "embeddings" not in z:
        raise ValueError(f"{path} is not an ItemEmbeddingSimilarity file "
                         "(no 'meta' / 'embeddings' arrays).")
      meta = json.loads(str(z["meta"]))
      if meta.get("class") != cls.__name__:
        raise ValueError(f"{path} holds a {meta.get('class')}, not a "
                         f"{cls.__name__}.")
      return cls(z["item_ids"].astype(object), z["embeddings"],
                 fallback=meta["fallback"], stats=meta["stats"])


# ---------------------------------------------------------------------------
# Pairs.


class _EngagedItems(NamedTuple):
  """The distinct engaged items per session, in first-engagement order."""
  session: np.ndarray  # int64 session code per kept (session, item), sorted.
  item: np.ndarray  # int64 item code (index into `items`).
  items: np.ndarray  # Item strings, sorted.
  item_counts: np.ndarray  # Engaged events per item code.
  stats: Dict[str, Any]


def _engaged_items(events: pd.DataFrame,
                   max_items_per_session: int) -> _EngagedItems:
  """Sessions' first `max_items_per_session` distinct engaged items."""
  _check_events(events)
  if "session_id" not in events.columns:
    events = sessions_lib.assign_sessions(events)
  engaged = _engaged_mask(events["event_type"])
  item_code, items = _factorize(events["item_id"].to_numpy()[engaged])
  # Sorted vocabulary order: remap the first-appearance codes.
  order = np.argsort(items.astype(str), kind="stable")
  rank = np.empty(len(items), dtype=np.int64)
  rank[order] = np.arange(len(items))
  item_code = rank[item_code]
  items = items[order]
  item_counts = np.bincount(item_code, minlength=len(items))
  session = events[["user_id", "session_id"]][engaged].groupby(
      ["user_id", "session_id"], sort=False).ngroup().to_numpy(np.int64)
  if "timestamp" in events.columns:
    timestamp = events["timestamp"].to_numpy()[engaged]
    by_time = np.lexsort((timestamp, session))  # Stable: ties keep input order.
  else:
    by_time = np.argsort(session, kind="stable")
  session, item_code = session[by_time], item_code[by_time]
  # The first engagement of each (session, item), kept in time order.
  _, first = np.unique(session * np.int64(max(len(items), 1)) + item_code,
                       return_index=True)
  first.sort()
  session, item_code = session[first], item_code[first]
  starts = _run_starts(session)
  sizes = np.diff(np.append(starts, len(session)))
  position = np.arange(len(session)) - np.repeat(starts, sizes)
  capped = position < max_items_per_session
  stats = {
      "events_in": int(len(events)),
      "events_engaged": int(engaged.sum()),
      "sessions": int(len(starts)),
      "session_items": int(len(session)),
      "session_items_over_cap": int((~capped).sum()),
      "sessions_capped": int((sizes > max_items_per_session).sum()),
  }
  return _EngagedItems(session[capped], item_code[capped], items, item_counts,
                       stats)


def _unordered_pairs(session: np.ndarray,
                     item: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """Every pair of two positions i < j in one session, as item codes.

  Args:
    session: sorted session codes, one per distinct (session, item).
    item: item codes aligned with `session`.

  Returns:
    (item_a, item_b): the items at the earlier and the later position, one
    entry per unordered pair — Σ_s k_s (k_s − 1) / 2 of them.
  """
  starts = _run_starts(session)
  sizes = np.diff(np.append(starts, len(session)))
  position = np.arange(len(session)) - np.repeat(starts, sizes)
  partners = np.repeat(sizes, sizes) - 1 - position  # Later items.
  left = np.repeat(np.arange(len(session)), partners)
  block_start = np.cumsum(partners) - partners
  right = left + 1 + (np.arange(len(left)) - np.repeat(block_start, partners))
  return item[left], item[right]


def _subsample(item_a: np.ndarray, item_b: np.ndarray,
               max_unordered: Optional[int],
               rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
  """A uniform subset of at most `max_unordered` pairs, in input order."""
  if max_unordered is None or len(item_a) <= max_unordered:
    return item_a, item_b
  keep = np.sort(rng.choice(len(item_a), size=max_unordered, replace=False))
  return item_a[keep], item_b[keep]


def _mirror(item_a: np.ndarray,
            item_b: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """Both directions of each pair: (A, B) and (B, A)."""
  return np.concatenate([item_a, item_b]), np.concatenate([item_b, item_a])


def session_item_pairs(events: pd.DataFrame,
                       *,
                       max_items_per_session: int = 20,
                       max_pairs: Optional[int] = None,
                       seed: int = 0) -> pd.DataFrame:
  """Returns the ordered item pairs co-engaged in a session.

  See the module docstring for the rules; `fit_i2i_embeddings` trains on
  these pairs (after dropping pairs with a rare item).

  Args:
    events: canonical events: `user_id`, `item_id`, `event_type`
      (`schema.EVENT_TYPE_DTYPE`), and `session_id` or (to derive sessions)
      `timestamp`. Training-period events only.
    max_items_per_session: distinct engaged items kept per session (the
      first ones by time), >= 2.
    max_pairs: keep at most this many ordered pairs (a seeded uniform subset
      of the unordered pairs, each in both directions), or None for all.
    seed: seed of the subsampling.

  Returns:
    A DataFrame with str columns `item_a`, `item_b`: all unordered pairs as
    (A, B) first, then the same pairs as (B, A).

  Raises:
    ValueError: on missing columns, a non-canonical `event_type`, bad ids or
      bad options.
  """
  _check_pair_args(max_items_per_session, max_pairs)
  engaged = _engaged_items(events, max_items_per_session)
  a, b = _unordered_pairs(engaged.session, engaged.item)
  a, b = _mirror(*_subsample(a, b, _max_unordered(max_pairs),
                             np.random.default_rng(seed)))
  return pd.DataFrame({"item_a": engaged.items[a],
                       "item_b": engaged.items[b]})


# ---------------------------------------------------------------------------
# Training.


class _PairRetrievalModel(tfrs.models.Model):
  """Two towers sharing one item tower; in-batch softmax over item B."""

  def __init__(self, vocabulary: np.ndarray, embedding_dim: int,
               temperature: float,
               candidate_probability: Optional[np.ndarray], seed: int):
    """Builds the shared tower and the task.

    Args:
      vocabulary: item strings; StringLookup maps item i to i + 1, others
        to 0 (OOV).
      embedding_dim: d.
      temperature: of the softmax.
      candidate_probability: per vocabulary item, its share of the training
        candidates (for the logQ correction), or None.
      seed: of the embedding initializer.
    """
    super().__init__()
    n = len(vocabulary)
    self.lookup = tf.keras.layers.StringLookup(
        vocabulary=list(vocabulary), num_oov_indices=1, name="item_lookup")
    self.embedding = tf.keras.layers.Embedding(
        n + 1, embedding_dim, name="item_embedding",
        embeddings_initializer=tf.keras.initializers.TruncatedNormal(
            stddev=1.0 / np.sqrt(embedding_dim), seed=seed))
    self.normalize = tf.keras.layers.UnitNormalization(axis=-1)
    self.task = tfrs.tasks.Retrieval(temperature=temperature)
    self.loss_per_pair = tf.keras.metrics.Mean(name="loss_per_pair")
    self._probability = None
    if candidate_probability is not None:
      # Row 0 (OOV) never occurs as a candidate; 1 keeps its log finite.
      self._probability = tf.constant(
          np.append(1.0, candidate_probability).astype(np.float32))

  def compute_loss(self, features, training: bool = False):
    """In-batch softmax loss (summed over the batch) of a batch of pairs."""
    ids_a = self.lookup(features["item_a"])
    ids_b = self.lookup(features["item_b"])
    query = self.normalize(self.embedding(ids_a))
    candidate = self.normalize(self.embedding(ids_b))
    loss = self._batch_loss(query, candidate, ids_a, ids_b)
    self.loss_per_pair.update_state(loss / tf.cast(tf.shape(ids_a)[0],
                                                   loss.dtype))
    return loss

  def _batch_loss(self, query, candidate, ids_a, ids_b):
    """`tfrs.tasks.Retrieval` on [B, d] unit embeddings and [B] ids."""
    # Negatives equal to the row's positive B (accidental hits) or to its
    # query A are masked out; the diagonal holds the positives.
    keep = tf.logical_and(
        tf.not_equal(ids_b[tf.newaxis, :], ids_b[:, tf.newaxis]),
        tf.not_equal(ids_b[tf.newaxis, :], ids_a[:, tf.newaxis]))
    keep = tf.logical_or(keep, tf.eye(tf.shape(ids_b)[0], dtype=tf.bool))
    probability = None
    if self._probability is not None:
      probability = tf.gather(self._probability, ids_b)
    return self.task(query, candidate,
                     candidate_sampling_probability=probability,
                     compute_metrics=False, compute_batch_metrics=False,
                     score_mask=keep)


def _train(vocabulary: np.ndarray, item_a: np.ndarray, item_b: np.ndarray, *,
           embedding_dim: int, epochs: int, batch_size: int,
           learning_rate: float, temperature: float, optimizer: str,
           sampling_correction: bool, rng: np.random.Generator,
           seed: int) -> Tuple[np.ndarray, List[float]]:
  """Trains the retrieval model on vocabulary codes of pairs.

  Every epoch visits the pairs in a fresh seeded order, in batches of
  min(batch_size, #pairs); the incomplete last batch is dropped (it would
  have fewer negatives).

  Returns:
    (embeddings of shape [len(vocabulary), d], mean loss per pair by epoch).
  """
  n = len(vocabulary)
  probability = None
  if sampling_correction:
    probability = np.bincount(item_b, minlength=n) / len(item_b)
  model = _PairRetrievalModel(vocabulary, embedding_dim, temperature,
                              probability, seed)
  if optimizer == "adagrad":
    opt = tf.keras.optimizers.Adagrad(learning_rate=learning_rate)
  else:
    opt = tf.keras.optimizers.Adam(learning_rate=learning_rate)
  model.compile(optimizer=opt)
  strings_a = tf.constant(vocabulary[item_a].astype(str))
  strings_b = tf.constant(vocabulary[item_b].astype(str))
  batch_size = min(batch_size, len(item_a))

  def batch(index):
    return {"item_a": tf.gather(strings_a, index),
            "item_b": tf.gather(strings_b, index)}

  losses = []
  for _ in range(epochs):
    order = rng.permutation(len(item_a)).astype(np.int64)
    dataset = (tf.data.Dataset.from_tensor_slices(order)
               .batch(batch_size, drop_remainder=True)
               .map(batch).prefetch(tf.data.AUTOTUNE))
    history = model.fit(dataset, epochs=1, verbose=0)
    losses.append(float(history.history[model.loss_per_pair.name][-1]))
  # Row 0 is the OOV row; StringLookup maps vocabulary item i to row i + 1.
  return model.embedding.embeddings.numpy()[1:], losses


@gin.configurable(denylist=["events"])
def fit_i2i_embeddings(events: pd.DataFrame,
                       *,
                       embedding_dim: int = 32,
                       epochs: int = 3,
                       batch_size: int = 1024,
                       learning_rate: float = 0.05,
                       min_count: int = 2,
                       max_items_per_session: int = 20,
                       max_pairs: Optional[int] = 2_000_000,
                       seed: int = 0,
                       temperature: float = 0.1,
                       optimizer: str = "adagrad",
                       sampling_correction: bool = False,
                       fallback: float = 0.0) -> ItemEmbeddingSimilarity:
  """Learns item embeddings from session co-engagement (`i2i_embedding`).

  The caller passes only training-period events (docs/method.md, "Features"). Pairs,
  vocabulary and model are described in the module docstring.

  Args:
    events: canonical events: `user_id`, `item_id`, `event_type`
      (`schema.EVENT_TYPE_DTYPE`), and `session_id` or `timestamp`.
    embedding_dim: embedding size d.
    epochs: passes over the pairs.
    batch_size: pairs per step, >= 2; the other pairs of the batch are the
      softmax negatives. Cost per step grows as batch_size².
    learning_rate: of the optimizer.
    min_count: minimum engaged events of a vocabulary item.
    max_items_per_session: distinct engaged items kept per session, >= 2.
    max_pairs: cap on the ordered training pairs (seeded uniform subset of
      the unordered pairs, both directions kept), or None.
    seed: seeds the subsampling, the per-epoch shuffles and the initializer.
    temperature: softmax temperature on the cosines, > 0.
    optimizer: `"adagrad"` or `"adam"`.
    sampling_correction: subtract log Q(B) (B's share of the training pairs)
      from the logits, removing the in-batch softmax's penalty on popular
      items (off by default, see the module docstring).
    fallback: α for a pair with an unknown item, in [0, 1].

  Returns:
    An `ItemEmbeddingSimilarity`; its `stats` hold the pair and vocabulary
    counts, the options, per-epoch losses and timings.

  Raises:
    ValueError: on bad events or options, or when no pair of vocabulary
      items is co-engaged in a session.
  """
  _check_pair_args(max_items_per_session, max_pairs)
  _check_fit_args(embedding_dim, epochs, batch_size, learning_rate, min_count,
                  temperature, optimizer)
  _check_fallback(fallback)
  logging.info("fit_i2i_embeddings: seed %d", seed)
  rng = np.random.default_rng(seed)
  start = time.perf_counter()
  engaged = _engaged_items(events, max_items_per_session)
  a, b = _unordered_pairs(engaged.session, engaged.item)
  stats = dict(engaged.stats, pairs_unordered=int(len(a)))
  frequent = engaged.item_counts >= min_count
  keep = frequent[a] & frequent[b]
  a, b = a[keep], b[keep]
  stats["pairs_unordered_dropped_rare"] = int((~keep).sum())
  a, b = _subsample(a, b, _max_unordered(max_pairs), rng)
  a, b = _mirror(a, b)
  stats["pairs_used"] = int(len(a))
  if not len(a):
    raise ValueError(
        f"no two items with >= {min_count} engaged events are co-engaged in "
        f"a session ({stats['events_engaged']} engaged events in "
        f"{stats['sessions']} sessions); pass more training events or lower "
        "min_count.")
  # Vocabulary: the frequent items of the kept pairs, sorted; re-code.
  used = np.zeros(len(engaged.items), dtype=bool)
  used[a] = True
  code = np.cumsum(used) - 1
  vocabulary = engaged.items[used]
  a, b = code[a], code[b]
  stats.update(items_engaged=int(len(engaged.items)),
               items_min_count=int(frequent.sum()),
               items=int(len(vocabulary)))
  stats["pairs_seconds"] = time.perf_counter() - start
  start = time.perf_counter()
  embeddings, losses = _train(
      vocabulary, a, b, embedding_dim=embedding_dim, epochs=epochs,
      batch_size=batch_size, learning_rate=learning_rate,
      temperature=temperature, optimizer=optimizer,
      sampling_correction=sampling_correction, rng=rng, seed=seed)
  stats.update(
      train_seconds=time.perf_counter() - start, epoch_losses=losses,
      options=dict(embedding_dim=embedding_dim, epochs=epochs,
                   batch_size=batch_size, learning_rate=learning_rate,
                   min_count=min_count,
                   max_items_per_session=max_items_per_session,
                   max_pairs=max_pairs, seed=seed, temperature=temperature,
                   optimizer=optimizer,
                   sampling_correction=bool(sampling_correction)))
  logging.info("fit_i2i_embeddings: %d items, %d pairs, losses %s, %.1f s",
               stats["items"], stats["pairs_used"], losses,
               stats["pairs_seconds"] + stats["train_seconds"])
  return ItemEmbeddingSimilarity(vocabulary, embeddings, fallback=fallback,
                                 stats=stats)


# ---------------------------------------------------------------------------
# Checks and helpers.


def _max_unordered(max_pairs: Optional[int]) -> Optional[int]:
  return None if max_pairs is None else int(max_pairs) // 2


def _is_int(value) -> bool:
  return (not isinstance(value, (bool, np.bool_)) and
          isinstance(value, (int, np.integer)))


def _check_pair_args(max_items_per_session: int,
                     max_pairs: Optional[int]) -> None:
  if not _is_int(max_items_per_session) or max_items_per_session < 2:
    raise ValueError(f"max_items_per_session must be an integer >= 2 (a pair "
                     f"needs two items), not {max_items_per_session!r}.")
  if max_pairs is not None and (not _is_int(max_pairs) or max_pairs < 2):
    raise ValueError(f"max_pairs must be an integer >= 2 (one pair in both "
                     f"directions) or None, not {max_pairs!r}.")


def _check_fit_args(embedding_dim, epochs, batch_size, learning_rate,
                    min_count, temperature, optimizer) -> None:
  for name, value, low in (("embedding_dim", embedding_dim, 1),
                           ("epochs", epochs, 1),
                           ("batch_size", batch_size, 2),
                           ("min_count", min_count, 1)):
    if not _is_int(value) or value < low:
      raise ValueError(f"{name} must be an integer >= {low}, not {value!r}.")
  for name, value in (("learning_rate", learning_rate),
                      ("temperature", temperature)):
    if not np.isfinite(float(value)) or float(value) <= 0:
      raise ValueError(f"{name} must be a positive number, not {value!r}.")
  if optimizer not in OPTIMIZERS:
    raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, not "
                     f"{optimizer!r}.")


def _check_events(events: pd.DataFrame) -> None:
  needed = ["user_id", "item_id", "event_type"]
  if "session_id" not in events.columns:
    needed.append("timestamp")
  missing = [c for c in needed if c not in events.columns]
  if missing:
    raise ValueError(f"events lack column(s) {missing} (sessions come from "
                     "'session_id', or are derived from 'timestamp'); the "
                     f"canonical columns are {list(schema.EVENT_COLUMNS)}.")
  if events["event_type"].dtype != schema.EVENT_TYPE_DTYPE:
    raise ValueError(
        "events column 'event_type' must have dtype schema.EVENT_TYPE_DTYPE "
        f"(categories {list(schema.EVENT_TYPES)}), not "
        f"{events['event_type'].dtype}; convert with "
        "`.astype(schema.EVENT_TYPE_DTYPE)`.")
  for column in ("event_type", "user_id", "session_id", "item_id"):
    if column in events.columns and events[column].isna().any():
      raise ValueError(f"events column {column!r} has missing values.")


def _engaged_mask(event_type: pd.Series) -> np.ndarray:
  """True for the events whose type is in `ENGAGED_EVENT_TYPES`.

  Works on the categories' names, so any category order is fine.
  """
  categories = np.asarray(event_type.cat.categories, dtype=object)
  engaged_category = np.isin(categories, ENGAGED_EVENT_TYPES)
  codes = event_type.cat.codes.to_numpy()
  return engaged_category[codes] & (codes >= 0)


def _check_fallback(fallback: float) -> None:
  if not 0.0 <= float(fallback) <= 1.0:
    raise ValueError(f"fallback must lie in [0, 1] (it is a weight α), not "
                     f"{fallback!r}.")


def _run_starts(sorted_values: np.ndarray) -> np.ndarray:
  """Start positions of the runs of equal values in a sorted array."""
  if not len(sorted_values):
    return np.zeros(0, dtype=np.int64)
  return np.flatnonzero(np.concatenate(
      [[True], sorted_values[1:] != sorted_values[:-1]]))


def _json_default(value):
  if hasattr(value, "item"):
    return value.item()
  raise TypeError(f"not JSON serializable: {type(value)}")
