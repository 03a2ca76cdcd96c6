"""Leaf co-engagement similarity: the paper's taxonomy + CF weights, Eq. (1)–(3).

Each leaf category c is a vector in user space (Eq. 1),

    (v_c)_u = Σ_e w_e · count(u, c, e),

summed over the event types e with weights w_e (default click 1,
add_to_cart 2, purchase 4, impression 0; gin: `default_event_weights`), and

    S(c_i, c_j) = v_ci · v_cj / (‖v_ci‖₂ ‖v_cj‖₂) ∈ [0, 1]          (Eq. 2)

is their cosine; α(A, B) = S(leaf(A), leaf(B)) (Eq. 3).

**Training period.** `category_similarity` uses every event it is given. The
caller restricts `events` to the training period first (docs/method.md, "Features": the
similarity is fitted on training events only).

**Sparse computation.** Cost is O(n log n) in the number of events n plus
O(Σ_u k_u²) for the product, where k_u is the number of distinct leaves of
user u — never a dense |U|×|C| or |C|×|C| array:

1. event types → int codes, items → leaf indices through the catalog (one
   lookup table, no per-event string work);
2. one int64 key per event, `(user · |C| + leaf) · 4 + type`, sorted (integer
   user ids are used as they are when the key fits, else factorized); runs
   of equal keys give count(u, c, e), and runs of equal `user · |C| + leaf`
   give (v_c)_u — already in CSR order of the |U|×|C| matrix V;
3. S = Vᵀ V with scipy's sparse product (the dominant cost, single-threaded),
   its indices sorted through the CSC transpose (S is exactly symmetric),
   then scaled by the norms taken from its diagonal.

Working memory is about 25 bytes per event on top of the inputs (2.3 GB at
10^8 events; see `cabb_tf.similarity.benchmark`).

**Popularity debiasing** (the paper's §6: co-engagement can reward popular
noise; the `taxonomy_cf_debiased` scheme). Two optional, independent damping
terms, both off by default (which is Eq. 2 exactly):

* *user-activity damping* — user u's term of every dot product and squared
  norm is multiplied by d_u, i.e. the coordinates (v_c)_u are scaled by √d_u,
  with k_u the number of distinct keys (leaves) u engaged with and

      d_u = 1 / log(1 + k_u)    (`user_damping='log'`, inverse user
                                 frequency as in IUF item-CF), or
      d_u = k_u^(−β)           (`user_damping='power'`, β = `user_beta`).

  A user who browses many leaves says little about any one pair of them, and
  such users (and sessions drifting to popular leaves) are where popular
  leaves pick up co-engagement with everything. S is still the cosine of
  non-negative vectors.
* *leaf-popularity damping* — with n_c = ‖v_c‖₂ (after user damping),

      S_γ(c_i, c_j) = v_ci · v_cj / ((‖v_ci‖ ‖v_cj‖)^(1−γ) · max(n_i, n_j)^(2γ))
                    = S(c_i, c_j) · (min(n_i, n_j) / max(n_i, n_j))^γ,

  γ = `popularity_gamma` ∈ [0, 1]: the cosine's denominator moves towards
  the squared norm of the more popular leaf, so a niche leaf's similarity to
  a popular one is discounted by their popularity ratio. γ = 0 is Eq. 2;
  S_γ stays in [0, 1], symmetric, S_γ(c, c) = 1, with the nonzeros of S.

Both are O(nnz) on top of the plain computation.

Events whose item is not in the catalog or has leaf `UNKNOWN_LEAF`, and
events of a zero-weight type, are not used (their counts are in `stats`).
A leaf enters the matrix only if its vector is nonzero; every other leaf is
"unseen" and gets the fallback α.
"""

import json
import os
from typing import Any, BinaryIO, Dict, Mapping, Optional, Tuple, Union

import gin
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cabb_tf import files
from cabb_tf.data import schema
from cabb_tf.similarity import taxonomy

ArrayLike = Any
USER_DAMPINGS = ("none", "log", "power")
DEFAULT_EVENT_WEIGHTS = {"impression": 0.0, "click": 1.0, "add_to_cart": 2.0,
                         "purchase": 4.0}
_TYPE_BITS = 2  # log2(len(schema.EVENT_TYPES)): the type's bits in a key.


@gin.configurable
def default_event_weights(impression: float = 0.0,
                          click: float = 1.0,
                          add_to_cart: float = 2.0,
                          purchase: float = 4.0) -> Dict[str, float]:
  """Returns the event weights w_e of Eq. (1), keyed by canonical type.

  Bind in gin, e.g. `default_event_weights.purchase = 8.0`.
  """
  return {"impression": float(impression), "click": float(click),
          "add_to_cart": float(add_to_cart), "purchase": float(purchase)}


def event_weight_table(
    event_weights: Optional[Mapping[str, float]] = None) -> np.ndarray:
  """Returns the weights as a float64 array indexed by event-type code.

  Args:
    event_weights: weight per canonical event type (`schema.EVENT_TYPES`);
      types left out get weight 0. None uses `default_event_weights()`.

  Returns:
    Array of shape [len(schema.EVENT_TYPES)]; entry `schema.CLICK` is w_click.

  Raises:
    ValueError: on an unknown type name, a negative or non-finite weight (a
      negative weight would break S ∈ [0, 1]), or when no weight is positive.
  """
  if event_weights is None:
    event_weights = default_event_weights()
  unknown = sorted(set(event_weights) - set(schema.EVENT_TYPES))
  if unknown:
    raise ValueError(f"event_weights has unknown event type(s) {unknown}; "
                     f"the canonical types are {list(schema.EVENT_TYPES)}.")
  table = np.zeros(len(schema.EVENT_TYPES), dtype=np.float64)
  for name, value in event_weights.items():
    value = float(value)
    if not np.isfinite(value) or value < 0:
      raise ValueError(f"event weight {name!r}={value} must be finite and "
                       ">= 0 (cosines of non-negative vectors lie in [0, 1]).")
    table[schema.EVENT_TYPES.index(name)] = value
  if not (table > 0).any():
    raise ValueError(f"event_weights {dict(event_weights)} gives no event "
                     "type a positive weight; every vector would be zero.")
  return table


def weights_dict(table: np.ndarray) -> Dict[str, float]:
  """Inverse of `event_weight_table`."""
  return {name: float(w) for name, w in zip(schema.EVENT_TYPES, table)}


class SparseSimilarity:
  """A symmetric sparse similarity over a set of keys, with α lookups.

  Attributes:
    keys: the keys in matrix order (np.ndarray).
    matrix: `scipy.sparse.csr_matrix`, float64, symmetric, values in [0, 1],
      unit diagonal, sorted indices.
    fallback: α for a pair with a key outside `keys`.
    stats: what the fit used and dropped (JSON-ready dict).
  """

  key_name = "key"

  def __init__(self,
               keys: ArrayLike,
               matrix: sp.spmatrix,
               *,
               fallback: float = 0.0,
               stats: Optional[Dict[str, Any]] = None,
               validate: bool = True):
    """Wraps a precomputed matrix.

    Args:
      keys: unique keys, one per matrix row.
      matrix: square sparse matrix of shape [len(keys), len(keys)].
      fallback: α for pairs with an unknown key, in [0, 1].
      stats: optional JSON-ready dict about the fit.
      validate: check that the matrix is symmetric with values in [0, 1] and
        a unit diagonal (O(nnz); the fitting functions skip it, their output
        is so by construction).

    Raises:
      ValueError: if shapes disagree, keys repeat, fallback is outside
        [0, 1], or (with `validate`) the matrix is not a similarity.
    """
    keys = np.asarray(keys)
    if keys.dtype.kind in "UO":
      keys = keys.astype(object)
    matrix = sp.csr_matrix(matrix, dtype=np.float64)
    if matrix.shape != (len(keys), len(keys)):
      raise ValueError(f"matrix has shape {matrix.shape} for {len(keys)} "
                       f"{self.key_name}s; it must be square and aligned.")
    index = pd.Index(keys)
    if not index.is_unique:
      raise ValueError(f"{self.key_name}s repeat; each matrix row needs a "
                       "distinct key.")
    check_fallback(fallback)
    matrix.sum_duplicates()
    matrix.sort_indices()
    if validate:
      _check_similarity_matrix(matrix)
    self._keys = keys
    self._index = index
    self._matrix = matrix
    self.fallback = float(fallback)
    self.stats = dict(stats or {})
    n = np.int64(len(keys))
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(matrix.indptr))
    self._flat = rows * n + matrix.indices  # increasing: CSR, sorted indices.

  @property
  def keys(self) -> np.ndarray:
    return self._keys

  @property
  def matrix(self) -> sp.csr_matrix:
    return self._matrix

  def __len__(self) -> int:
    return len(self._keys)

  def __repr__(self) -> str:
    return (f"{type(self).__name__}({len(self)} keys ({self.key_name}), "
            f"{self._matrix.nnz} nonzeros, fallback={self.fallback})")

  def index_of(self, keys: ArrayLike) -> np.ndarray:
    """Returns the matrix row of each key (int64, -1 when unseen)."""
    keys = np.asarray(keys)
    flat = keys.ravel()
    if flat.dtype.kind == "U":
      flat = flat.astype(object)
    return self._index.get_indexer(flat).astype(np.int64).reshape(keys.shape)

  def alpha(self, a: ArrayLike, b: ArrayLike) -> Union[np.ndarray, float]:
    """Returns S(a, b) for aligned arrays of keys (Eq. 3 for leaves).

    Args:
      a: keys (any shape); broadcast against `b`.
      b: keys.

    Returns:
      float64 array of the broadcast shape (a float for two scalars): 1 for
      the same seen key, the matrix value for two seen keys (0 when the pair
      was never co-engaged or was pruned), `fallback` when either key is
      unseen.
    """
    scalar = np.ndim(a) == 0 and np.ndim(b) == 0
    ia, ib = np.broadcast_arrays(self.index_of(a), self.index_of(b))
    out = self._lookup(ia.ravel(), ib.ravel()).reshape(ia.shape)
    return float(out) if scalar else out

  def _lookup(self, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    out = np.full(ia.shape, self.fallback, dtype=np.float64)
    seen = (ia >= 0) & (ib >= 0)
    if not seen.any():  # Also covers an empty matrix.
      return out
    ia, ib = ia[seen], ib[seen]
    query = ia * np.int64(len(self)) + ib
    pos = np.minimum(np.searchsorted(self._flat, query), len(self._flat) - 1)
    values = np.where(self._flat[pos] == query, self._matrix.data[pos], 0.0)
    values[ia == ib] = 1.0
    out[seen] = values
    return out

  def top_pairs(self, n: int = 20) -> pd.DataFrame:
    """Returns the `n` most similar pairs of distinct keys.

    Args:
      n: how many pairs.

    Returns:
      A DataFrame with columns `<key>_a`, `<key>_b`, `similarity`, most
      similar first (ties by matrix order), each unordered pair once.
    """
    coo = self._matrix.tocoo()
    upper = coo.row < coo.col
    row, col, val = coo.row[upper], coo.col[upper], coo.data[upper]
    order = np.lexsort((col, row, -val))[:max(int(n), 0)]
    return pd.DataFrame({
        f"{self.key_name}_a": self._keys[row[order]],
        f"{self.key_name}_b": self._keys[col[order]],
        "similarity": val[order],
    })

  def prune(self, *, top_k: Optional[int] = None,
            min_similarity: float = 0.0) -> "SparseSimilarity":
    """Returns a copy keeping only strong off-diagonal entries.

    Entries below `min_similarity` go first. Then, with `top_k`, each row
    nominates its `top_k` largest off-diagonal entries (ties: lower column
    first), and an entry is kept when either of its two rows nominated it —
    the union of the per-row top-k, symmetrized with max. A row may thus keep
    more than `top_k` entries, and the result stays symmetric. The diagonal
    is always kept. Dropped pairs get α = 0 (not the fallback: both keys
    were seen).

    Args:
      top_k: entries nominated per row, >= 1, or None for no limit.
      min_similarity: threshold in [0, 1].

    Returns:
      A new object of the same class.

    Raises:
      ValueError: on a bad `top_k` or `min_similarity`.
    """
    check_prune_args(top_k, min_similarity)
    coo = self._matrix.tocoo()
    row, col, val = coo.row, coo.col, coo.data
    diag = row == col
    keep = diag | (val >= min_similarity)
    if top_k is not None:
      off = np.flatnonzero(keep & ~diag)
      order = off[np.lexsort((col[off], -val[off], row[off]))]
      sorted_rows = row[order]
      first = np.searchsorted(sorted_rows, sorted_rows, side="left")
      nominated = order[np.arange(len(order)) - first < top_k]
      mark = sp.csr_matrix(
          (np.ones(len(nominated)), (row[nominated], col[nominated])),
          shape=self._matrix.shape)
      mark = (mark + mark.T).tocoo()  # Union of both rows' nominations.
      union = np.zeros(len(val), dtype=bool)
      n = np.int64(len(self))
      flat = row.astype(np.int64) * n + col
      union[np.searchsorted(flat, mark.row.astype(np.int64) * n + mark.col)] = (
          True)
      keep = diag | union
    pruned = sp.csr_matrix((val[keep], (row[keep], col[keep])),
                           shape=self._matrix.shape)
    stats = dict(self.stats, top_k=top_k, min_similarity=float(min_similarity),
                 nonzeros=int(pruned.nnz))
    return type(self)(self._keys, pruned, fallback=self.fallback, stats=stats,
                      validate=False)

  def save(self, path: Union[str, os.PathLike, BinaryIO]) -> None:
    """Writes the keys, matrix, fallback and stats to one `.npz` file.

    Args:
      path: a local path (written atomically: temp file + rename), a URL such
        as `gs://...` (written through `tf.io.gfile`), or a binary file
        object. No suffix is added.

    Raises:
      ValueError: if the keys are neither all str nor integers.
    """
    keys = self._keys
    if keys.dtype == object:
      if not all(isinstance(k, str) for k in keys):
        raise ValueError(f"only str or integer {self.key_name}s can be saved.")
      keys = keys.astype(str)
    arrays = dict(
        keys=keys, data=self._matrix.data, indices=self._matrix.indices,
        indptr=self._matrix.indptr,
        meta=np.array(json.dumps({"class": type(self).__name__,
                                  "fallback": self.fallback,
                                  "stats": self.stats}, default=_builtin)))
    files.write_npz(path, arrays)

  @classmethod
  def load(cls, path: str) -> "SparseSimilarity":
    """Reads a file written by `save` (no pickle).

    Raises:
      ValueError: if the file was saved by a different class.
    """
    if "://" in str(path):
      import io  # pylint: disable=g-import-not-at-top
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      with tf.io.gfile.GFile(str(path), "rb") as f:
        source = io.BytesIO(f.read())
    else:
      source = path
    with np.load(source, allow_pickle=False) as z:
      meta = json.loads(str(z["meta"]))
      if meta["class"] != cls.__name__ and cls is not SparseSimilarity:
        raise ValueError(f"{path} holds a {meta['class']}, not a "
                         f"{cls.__name__}; load it with that class.")
      keys = z["keys"]
      n = len(keys)
      matrix = sp.csr_matrix((z["data"], z["indices"], z["indptr"]),
                             shape=(n, n))
    return cls(keys, matrix, fallback=meta["fallback"], stats=meta["stats"],
               validate=False)


class CategorySimilarity(SparseSimilarity):
  """The leaf-category similarity S of Eq. (2), with α of Eq. (3).

  `leaves` are sorted by name when built by `category_similarity`.
  """

  key_name = "leaf"

  @property
  def leaves(self) -> np.ndarray:
    return self._keys

  def alpha_for_items(self, catalog: pd.DataFrame, item_a: ArrayLike,
                      item_b: ArrayLike) -> np.ndarray:
    """α(A, B) = S(leaf(A), leaf(B)) for aligned item-id arrays (Eq. 3)."""
    leaf_a = taxonomy.item_leaves(catalog, item_a).reshape(np.shape(item_a))
    leaf_b = taxonomy.item_leaves(catalog, item_b).reshape(np.shape(item_b))
    return np.asarray(self.alpha(leaf_a, leaf_b), dtype=np.float64)


def category_similarity(events: pd.DataFrame,
                        catalog: pd.DataFrame,
                        event_weights: Optional[Mapping[str, float]] = None,
                        *,
                        top_k: Optional[int] = None,
                        fallback: float = 0.0,
                        min_similarity: float = 0.0,
                        user_damping: str = "none",
                        user_beta: float = 1.0,
                        popularity_gamma: float = 0.0) -> CategorySimilarity:
  """Fits the leaf-category cosine similarity of Eq. (1)–(2).

  The caller passes only training-period events (docs/method.md, "Features"). The damping
  options (module docstring, "Popularity debiasing") are off by default.

  Args:
    events: canonical events; uses `user_id`, `item_id` and `event_type`
      (`schema.EVENT_TYPE_DTYPE`).
    catalog: canonical catalog; uses `item_id` and `leaf`.
    event_weights: w_e per canonical type name (absent types weigh 0); None
      for `default_event_weights()` (gin).
    top_k: optional per-row pruning, see `SparseSimilarity.prune`.
    fallback: α for a pair with an unseen leaf or `UNKNOWN_LEAF`, in [0, 1].
    min_similarity: drop off-diagonal entries below this.
    user_damping: 'none', 'log' (d_u = 1 / log(1 + k_u)) or 'power'
      (d_u = k_u^(−user_beta)).
    user_beta: the exponent β of 'power' damping, >= 0.
    popularity_gamma: γ ∈ [0, 1] of the leaf-popularity damping.

  Returns:
    A `CategorySimilarity` over the leaves with a nonzero vector, sorted by
    name. `stats` holds events_in, events_used, dropped counts by reason
    (zero_weight, unknown_leaf), users, leaves, nonzeros, the weights and
    the damping options.

  Raises:
    ValueError: on missing columns, a non-canonical `event_type` dtype, bad
      weights or options, or item ids of different types in events and
      catalog.
  """
  check_events(events)
  taxonomy.check_catalog(catalog)
  check_fallback(fallback)
  check_prune_args(top_k, min_similarity)
  table = event_weight_table(event_weights)
  leaf_codes, leaves = _catalog_leaf_codes(catalog)
  event_leaf = taxonomy.lookup_items(catalog["item_id"], events["item_id"],
                                     leaf_codes)
  codes = event_codes(events["event_type"])
  matrix, used, stats = weighted_cosine(events["user_id"], event_leaf, codes,
                                        table, len(leaves),
                                        unknown_reason="unknown_leaf",
                                        user_damping=user_damping,
                                        user_beta=user_beta,
                                        popularity_gamma=popularity_gamma)
  stats["leaves"] = int(used.sum())
  result = CategorySimilarity(leaves[used], matrix, fallback=fallback,
                              stats=stats, validate=False)
  if top_k is not None or min_similarity > 0:
    result = result.prune(top_k=top_k, min_similarity=min_similarity)
  return result


@gin.configurable(denylist=["events", "catalog"])
def fit_category_similarity(
    events: pd.DataFrame,
    catalog: pd.DataFrame,
    event_weights: Optional[Mapping[str, float]] = None,
    top_k: Optional[int] = None,
    fallback: float = 0.0,
    min_similarity: float = 0.0) -> CategorySimilarity:
  """gin-configurable `category_similarity` (the `taxonomy_cf` scheme)."""
  return category_similarity(events, catalog, event_weights, top_k=top_k,
                             fallback=fallback, min_similarity=min_similarity)


@gin.configurable(denylist=["events", "catalog"])
def fit_debiased_category_similarity(
    events: pd.DataFrame,
    catalog: pd.DataFrame,
    event_weights: Optional[Mapping[str, float]] = None,
    top_k: Optional[int] = None,
    fallback: float = 0.0,
    min_similarity: float = 0.0,
    user_damping: str = "power",
    user_beta: float = 1.0,
    popularity_gamma: float = 0.25) -> CategorySimilarity:
  """The popularity-debiased Eq. (1)–(2) (the `taxonomy_cf_debiased` scheme).

  `category_similarity` with user-activity and leaf-popularity damping on by
  default (module docstring, "Popularity debiasing"); its own gin options,
  so it can be compared with `fit_category_similarity` in one run. Event
  weights default to `default_event_weights()` like Eq. (1)'s.

  Defaults d_u = 1 / k_u and γ = 0.25 were picked by a small sweep on the
  default simulator (damping none/log/power β ∈ {0.5, 1, 1.5, 2, 3},
  γ ∈ {0, 0.25, 0.5, 1}), by the AUC of α for genuine versus noise CABB
  rows of the training and validation splits.
  """
  return category_similarity(events, catalog, event_weights, top_k=top_k,
                             fallback=fallback, min_similarity=min_similarity,
                             user_damping=user_damping, user_beta=user_beta,
                             popularity_gamma=popularity_gamma)


def check_damping(user_damping: str, user_beta: float,
                  popularity_gamma: float) -> None:
  """Raises ValueError unless the popularity-debiasing options are valid."""
  if user_damping not in USER_DAMPINGS:
    raise ValueError(f"user_damping must be one of {list(USER_DAMPINGS)}, "
                     f"not {user_damping!r}.")
  if not (np.isfinite(float(user_beta)) and float(user_beta) >= 0):
    raise ValueError(f"user_beta must be finite and >= 0 (d_u = k_u^-beta "
                     f"must not grow with activity), not {user_beta!r}.")
  if not 0.0 <= float(popularity_gamma) <= 1.0:
    raise ValueError(f"popularity_gamma must lie in [0, 1] (0 is Eq. 2), not "
                     f"{popularity_gamma!r}.")


def weighted_cosine(users: ArrayLike, keys: np.ndarray, codes: np.ndarray,
                    weight_table: np.ndarray, num_keys: int, *,
                    unknown_reason: str = "unknown_key",
                    user_damping: str = "none",
                    user_beta: float = 1.0,
                    popularity_gamma: float = 0.0
                    ) -> Tuple[sp.csr_matrix, np.ndarray, Dict[str, Any]]:
  """Cosine of Eq. (1)–(2) between keys (leaves or items) in user space.

  With the damping options, the popularity-debiased cosine of the module
  docstring; k_u counts the distinct keys of user u.

  Args:
    users: user id per event (ints or any hashable; categorical allowed).
    keys: integer key index per event in [0, num_keys), or -1 for unknown.
    codes: event-type code per event (`schema.CLICK`, ...).
    weight_table: w_e by code, from `event_weight_table`.
    num_keys: the number of possible keys.
    unknown_reason: the name under which `stats["dropped"]` counts the
      weighted events with key -1.
    user_damping: 'none', 'log' or 'power' (see the module docstring).
    user_beta: β of 'power' damping.
    popularity_gamma: γ of the key-popularity damping, in [0, 1].

  Returns:
    (S, used, stats): S is the csr similarity over the used keys (those with
    a nonzero vector, in increasing key order); `used` a bool mask of shape
    [num_keys]; `stats` a JSON-ready dict.
  """
  check_damping(user_damping, user_beta, popularity_gamma)
  keys = np.asarray(keys)
  codes = np.asarray(codes)
  n_in = len(keys)
  positive = weight_table > 0
  weighted = positive[codes]
  valid = weighted & (keys >= 0)
  stats = {"events_in": int(n_in),
           "dropped": {"zero_weight": int(n_in - np.count_nonzero(weighted)),
                       unknown_reason: int(np.count_nonzero(
                           weighted & (keys < 0)))},
           "event_weights": weights_dict(weight_table)}
  if user_damping != "none" or popularity_gamma > 0:
    stats["debiasing"] = {"user_damping": user_damping,
                          "user_beta": float(user_beta),
                          "popularity_gamma": float(popularity_gamma)}
  # One key per event: (user · K + key) · 4 + type, sorted.
  key = _user_codes(users, valid, num_keys)  # A fresh int64 array.
  key *= np.int64(num_keys) << _TYPE_BITS
  part = keys[valid].astype(np.int64, copy=False)
  part <<= _TYPE_BITS
  key += part
  del part
  key += codes[valid]
  key.sort()
  stats["events_used"] = int(len(key))
  # Runs of equal keys: count(u, c, e).
  starts = _run_starts(key)
  counts = np.diff(np.append(starts, len(key)))
  unique = key[starts]
  del key
  values = weight_table[unique & ((1 << _TYPE_BITS) - 1)] * counts
  pair = unique >> _TYPE_BITS
  # Runs of equal user · K + key: (v_c)_u = Σ_e w_e · count(u, c, e), Eq. (1).
  starts = _run_starts(pair)
  values = np.add.reduceat(values, starts) if len(starts) else values
  pair = pair[starts]
  user = pair // num_keys
  key_of = pair - user * num_keys
  used = np.zeros(num_keys, dtype=bool)
  used[key_of] = True
  column = (np.cumsum(used) - 1)[key_of].astype(np.int32)
  indptr = np.append(_run_starts(user), len(user))
  num_rows = len(indptr) - 1
  num_used = int(used.sum())
  v = sp.csr_matrix((values, column, indptr), shape=(num_rows, num_used))
  v.has_canonical_format = True
  stats["users"] = int(num_rows)
  if user_damping != "none":
    # √d_u on user u's coordinates: d_u on its terms of V^T V.
    v.data *= np.repeat(np.sqrt(_user_damping(np.diff(indptr), user_damping,
                                              user_beta)), np.diff(indptr))
  # Eq. (2): S = Vᵀ V, scaled by the norms on its diagonal.
  vt_csc = v.tocsc()
  vt = sp.csr_matrix((vt_csc.data, vt_csc.indices, vt_csc.indptr),
                     shape=(num_used, num_rows))
  # Cosines do not change when a vector is scaled: dividing each by its
  # largest entry keeps squares and products clear of under/overflow
  # (weights like 1e-200 or 1e200).
  if num_used:
    largest = np.maximum.reduceat(vt.data, vt.indptr[:-1])
    vt.data /= np.repeat(largest, np.diff(vt.indptr))
    v.data /= largest[v.indices]
  s = vt @ v
  # S is exactly symmetric (S_ij and S_ji sum the same products in the same
  # user order), so its CSC arrays are its CSR arrays with sorted indices: an
  # O(nnz) counting sort instead of sorting every row.
  s_csc = s.tocsc()
  s = sp.csr_matrix((s_csc.data, s_csc.indices, s_csc.indptr),
                    shape=s.shape)
  s.has_sorted_indices = True
  inv_norm = 1.0 / np.sqrt(s.diagonal())
  row = np.repeat(np.arange(num_used), np.diff(s.indptr))
  s.data *= inv_norm[row] * inv_norm[s.indices]
  if popularity_gamma > 0 and num_used:
    # (min(n_i, n_j) / max(n_i, n_j))^γ from log norms (the vectors were
    # divided by `largest`): no overflow for any scale.
    log_norm = np.log(largest) - np.log(inv_norm)
    s.data *= np.exp(-popularity_gamma *
                     np.abs(log_norm[row] - log_norm[s.indices]))
  np.clip(s.data, 0.0, 1.0, out=s.data)
  s.data[row == s.indices] = 1.0
  stats["nonzeros"] = int(s.nnz)
  return s, used, stats


def _user_damping(num_keys_of_user: np.ndarray, kind: str,
                  beta: float) -> np.ndarray:
  """d_u from k_u >= 1: 1 / log(1 + k_u) ('log') or k_u^(−β) ('power')."""
  k = num_keys_of_user.astype(np.float64)
  if kind == "log":
    return 1.0 / np.log1p(k)
  return k ** -float(beta)


def _run_starts(sorted_values: np.ndarray) -> np.ndarray:
  """Start positions of the runs of equal values in a sorted array."""
  if not len(sorted_values):
    return np.zeros(0, dtype=np.int64)
  flags = np.empty(len(sorted_values), dtype=bool)
  flags[0] = True
  np.not_equal(sorted_values[1:], sorted_values[:-1], out=flags[1:])
  return np.flatnonzero(flags)


def _user_codes(users: ArrayLike, valid: np.ndarray,
                num_keys: int) -> np.ndarray:
  """Returns fresh non-negative int64 user codes of the valid events.

  Integer ids whose range keeps `(range · num_keys) << 2` inside int64 are
  used as they are (minus the minimum): sorting orders users anyway, so no
  hash table is needed. Other ids are factorized.
  """
  if isinstance(users, pd.Series) and isinstance(users.dtype,
                                                 pd.CategoricalDtype):
    return users.cat.codes.to_numpy()[valid].astype(np.int64)
  values = users.to_numpy() if isinstance(users, (pd.Series, pd.Index)) else (
      np.asarray(users))
  values = values[valid]  # A copy.
  if np.issubdtype(values.dtype, np.integer) and len(values):
    lo, hi = int(values.min()), int(values.max())
    if (hi - lo + 1) * (int(num_keys) << _TYPE_BITS) < 2**62:
      codes = values.astype(np.int64, copy=False)
      if lo:
        codes -= lo
      return codes
  codes, _ = pd.factorize(values)
  return codes.astype(np.int64, copy=False)


def event_codes(event_type: pd.Series) -> np.ndarray:
  """Returns `schema` codes (`schema.CLICK`, ...) of an `event_type` column.

  Robust to a categorical whose categories are the canonical ones in another
  order (pandas treats such unordered dtypes as equal).
  """
  codes = event_type.cat.codes.to_numpy()
  categories = list(event_type.cat.categories)
  if categories != list(schema.EVENT_TYPES):
    remap = np.array([schema.EVENT_TYPES.index(c) for c in categories],
                     dtype=np.int8)
    codes = remap[codes]
  return codes


def _catalog_leaf_codes(catalog: pd.DataFrame) -> Tuple[np.ndarray,
                                                        np.ndarray]:
  """Returns (leaf index per catalog row, -1 if unknown; sorted leaf names)."""
  codes, uniques = pd.factorize(catalog["leaf"], use_na_sentinel=True)
  uniques = np.asarray(uniques, dtype=object)
  known = uniques != schema.UNKNOWN_LEAF
  order = np.argsort(uniques[known].astype(str), kind="stable")
  rank = np.full(len(uniques) + 1, -1, dtype=np.int64)  # [-1] is NA.
  rank[np.flatnonzero(known)[order]] = np.arange(len(order))
  return rank[codes], uniques[known][order]


def check_events(events: pd.DataFrame) -> None:
  """Raises ValueError unless `events` has the columns Eq. (1) needs.

  Checks `user_id`, `item_id` and a canonical `event_type` without missing
  values (a subset of `schema.validate_events`: timestamps are not needed).
  """
  missing = [c for c in ("user_id", "item_id", "event_type")
             if c not in events.columns]
  if missing:
    raise ValueError(f"events lack column(s) {missing}; the canonical "
                     f"columns are {list(schema.EVENT_COLUMNS)}.")
  if events["event_type"].dtype != schema.EVENT_TYPE_DTYPE:
    raise ValueError(
        "events column 'event_type' must have dtype schema.EVENT_TYPE_DTYPE "
        f"(categories {list(schema.EVENT_TYPES)}), not "
        f"{events['event_type'].dtype}; convert with "
        "`.astype(schema.EVENT_TYPE_DTYPE)`.")
  if events["event_type"].isna().any():
    raise ValueError("events column 'event_type' has missing values.")
  if events["user_id"].isna().any():
    raise ValueError("events column 'user_id' has missing values.")


def _check_similarity_matrix(matrix: sp.csr_matrix) -> None:
  """Raises ValueError unless matrix is symmetric, in [0, 1], unit diagonal."""
  data = matrix.data
  if len(data) and not (np.all(np.isfinite(data)) and data.min() >= 0 and
                        data.max() <= 1):
    raise ValueError("similarity values must be finite and lie in [0, 1]; "
                     f"found [{data.min()}, {data.max()}].")
  if matrix.shape[0] and not np.all(matrix.diagonal() == 1.0):
    raise ValueError("a similarity matrix needs a unit diagonal "
                     "(S(c, c) = 1 for every key).")
  if (matrix != matrix.T).nnz:
    raise ValueError("the similarity matrix is not symmetric.")


def check_prune_args(top_k: Optional[int], min_similarity: float) -> None:
  """Raises ValueError unless top_k is None or >= 1, min_similarity in [0, 1]."""
  if top_k is not None and (isinstance(top_k, bool) or
                            int(top_k) != top_k or top_k < 1):
    raise ValueError(f"top_k must be a positive integer or None, not "
                     f"{top_k!r}.")
  if not 0.0 <= float(min_similarity) <= 1.0:
    raise ValueError(f"min_similarity must lie in [0, 1], not "
                     f"{min_similarity!r}.")


def check_fallback(fallback: float) -> None:
  """Raises ValueError unless the fallback α lies in [0, 1]."""
  if not 0.0 <= float(fallback) <= 1.0:
    raise ValueError(f"fallback must lie in [0, 1] (it is a weight α), not "
                     f"{fallback!r}.")


def _builtin(value):
  if hasattr(value, "item"):
    return value.item()
  raise TypeError(f"not JSON serializable: {type(value)}")
