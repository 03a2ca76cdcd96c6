"""Taxonomy tree-distance similarity: α from the shared prefix of two paths.

An alternative weighting scheme (docs/method.md, "Weights"; "taxonomy tree distance") that
uses no engagement data. For leaves with root→leaf paths a and b,

    α(a, b) = |LCP(a, b)| / max(|a|, |b|),

where |LCP| is the length of their longest common prefix. So the same leaf
gives 1; two leaves under the same parent at depth 3 give 2/3; leaves under
different roots give 0; a flat taxonomy (Taobao, depth 1) gives 1 for the
same leaf and 0 otherwise. Dividing by the deeper of the two paths (rather
than by the depth of the whole taxonomy) keeps α(a, a) = 1 in taxonomies of
uneven depth (REES46 codes have 2 to 4 levels). Unknown leaves and
`UNKNOWN_LEAF` get the fallback.
"""

from typing import Any, Iterable, Optional, Sequence, Union

import gin
import numpy as np
import pandas as pd

from cabb_tf.data import schema
from cabb_tf.similarity import taxonomy

ArrayLike = Any


class TreeSimilarity:
  """α from the longest common prefix of taxonomy paths.

  Attributes:
    leaves: the known leaf names (np.ndarray of str, sorted).
    depths: the path length of each leaf (int64).
    fallback: α for a pair with an unknown leaf.
  """

  def __init__(self, paths: Iterable[Optional[Sequence[str]]],
               *, fallback: float = 0.0):
    """Indexes the distinct root→leaf paths.

    Args:
      paths: root→leaf tuples (repeats allowed); empty / None / unknown paths
        are ignored.
      fallback: α for pairs with an unknown leaf, in [0, 1].

    Raises:
      ValueError: if two different paths have the same leaf name (a name
        containing `schema.PATH_SEPARATOR`), or on a bad fallback.
    """
    if not 0.0 <= float(fallback) <= 1.0:
      raise ValueError(f"fallback must lie in [0, 1], not {fallback!r}.")
    by_leaf = {}
    for path in paths:
      if not path:
        continue
      path = tuple(str(p) for p in path)
      leaf = schema.leaf_of(path)
      if leaf == schema.UNKNOWN_LEAF or path == (schema.UNKNOWN_LEAF,):
        continue
      if by_leaf.setdefault(leaf, path) != path:
        raise ValueError(f"paths {by_leaf[leaf]} and {path} both give leaf "
                         f"{leaf!r}; category names must not contain "
                         f"{schema.PATH_SEPARATOR!r}.")
    self.leaves = np.array(sorted(by_leaf), dtype=object)
    paths = [by_leaf[leaf] for leaf in self.leaves]
    self.depths = np.array([len(p) for p in paths], dtype=np.int64)
    max_depth = int(self.depths.max()) if len(paths) else 0
    # prefix[i, d] identifies path i's first d + 1 names (-1 past its depth);
    # equal prefixes at depth d imply equal prefixes above it.
    self._prefix = np.full((len(paths), max_depth), -1, dtype=np.int64)
    for d in range(max_depth):
      ids = {}
      for i, path in enumerate(paths):
        if len(path) > d:
          self._prefix[i, d] = ids.setdefault(path[:d + 1], len(ids))
    self._index = pd.Index(self.leaves)
    self.fallback = float(fallback)

  @classmethod
  def from_catalog(cls, catalog: pd.DataFrame,
                   *, fallback: float = 0.0) -> "TreeSimilarity":
    """Builds from a catalog's `category_path` column (else splits `leaf`)."""
    if "category_path" in catalog.columns:
      return cls(catalog["category_path"], fallback=fallback)
    taxonomy.check_catalog(catalog)
    leaves = catalog["leaf"].dropna().unique()
    return cls([str(leaf).split(schema.PATH_SEPARATOR) for leaf in leaves],
               fallback=fallback)

  def __len__(self) -> int:
    return len(self.leaves)

  def __repr__(self) -> str:
    return f"TreeSimilarity({len(self)} leaves, fallback={self.fallback})"

  def index_of(self, leaves: ArrayLike) -> np.ndarray:
    """Returns the row of each leaf (int64, -1 when unknown)."""
    leaves = np.asarray(leaves)
    flat = leaves.ravel().astype(object)
    return self._index.get_indexer(flat).astype(np.int64).reshape(leaves.shape)

  def alpha(self, a: ArrayLike, b: ArrayLike) -> Union[np.ndarray, float]:
    """Returns |LCP(a, b)| / max(|a|, |b|) for aligned arrays of leaf names.

    Args:
      a: leaf names (any shape); broadcast against `b`.
      b: leaf names.

    Returns:
      float64 array of the broadcast shape (a float for two scalars);
      `fallback` where either leaf is unknown.
    """
    scalar = np.ndim(a) == 0 and np.ndim(b) == 0
    ia, ib = np.broadcast_arrays(self.index_of(a), self.index_of(b))
    shape = ia.shape
    ia, ib = ia.ravel(), ib.ravel()
    out = np.full(ia.shape, self.fallback, dtype=np.float64)
    seen = (ia >= 0) & (ib >= 0)
    if seen.any():
      pa, pb = self._prefix[ia[seen]], self._prefix[ib[seen]]
      common = ((pa == pb) & (pa >= 0)).sum(axis=1)
      deeper = np.maximum(self.depths[ia[seen]], self.depths[ib[seen]])
      out[seen] = common / deeper
    out = out.reshape(shape)
    return float(out) if scalar else out

  def alpha_for_items(self, catalog: pd.DataFrame, item_a: ArrayLike,
                      item_b: ArrayLike) -> np.ndarray:
    """α(leaf(A), leaf(B)) for aligned item-id arrays."""
    leaf_a = taxonomy.item_leaves(catalog, item_a).reshape(np.shape(item_a))
    leaf_b = taxonomy.item_leaves(catalog, item_b).reshape(np.shape(item_b))
    return np.asarray(self.alpha(leaf_a, leaf_b), dtype=np.float64)


@gin.configurable(denylist=["catalog"])
def fit_tree_similarity(catalog: pd.DataFrame,
                        fallback: float = 0.0) -> TreeSimilarity:
  """gin-configurable `TreeSimilarity.from_catalog`."""
  return TreeSimilarity.from_catalog(catalog, fallback=fallback)
