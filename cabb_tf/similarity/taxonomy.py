"""Taxonomy mapping (paper §3.3): items to leaf categories, paths to leaves.

Every product is anchored at the *leaf* of a static taxonomy, and the leaf is
the whole root→leaf path (`schema.leaf_of`), so `kitchen/coffee` and
`garden/coffee` are different leaves (docs/method.md, "Event log"). The sources describe
categories in three ways, and this module turns each into paths:

* dotted codes (REES46 `category_code`, e.g. `appliances.kitchen.washer`),
  with a fallback to the flat `category_id` when the code is empty;
* flat ids (Taobao `category_id`), which give paths of length 1;
* parent-id tree files, read by `cabb_tf.data.category_tree` into a mapping
  id → root→leaf tuple (`paths_from_tree_file`).

A missing category gives the empty path `()`, which `schema.make_catalog`
and `schema.leaf_of` turn into `UNKNOWN_LEAF`.
"""

from typing import (Any, Hashable, Iterable, List, Mapping, Optional, Sequence,
                    Tuple)

import numpy as np
import pandas as pd

from cabb_tf.data import schema

Path = Tuple[str, ...]


def _is_missing(value: Any) -> bool:
  """True for None, NaN and empty / whitespace-only strings."""
  if value is None:
    return True
  if isinstance(value, float) and np.isnan(value):
    return True
  if value is pd.NA or value is pd.NaT:
    return True
  if isinstance(value, str) and not value.strip():
    return True
  return False


def path_from_dotted(code: Any,
                     category_id: Any = None,
                     separator: str = ".") -> Path:
  """Returns the root→leaf path of one dotted category code.

  Args:
    code: a dotted code such as `"appliances.kitchen.washer"` (REES46
      `category_code`), or a missing value.
    category_id: used as a flat path `(str(category_id),)` when `code` is
      missing (REES46 leaves `category_code` empty for about a third of its
      rows but always has `category_id`).
    separator: the separator inside `code`.

  Returns:
    A tuple of strings; `()` when both `code` and `category_id` are missing.

  Raises:
    ValueError: if `code` has an empty component (e.g. `"a..b"`).
  """
  if not _is_missing(code):
    parts = tuple(p.strip() for p in str(code).split(separator))
    if any(not p for p in parts):
      raise ValueError(f"category code {code!r} has an empty component; "
                       f"expected names joined by {separator!r}.")
    return parts
  return path_from_flat_id(category_id)


def path_from_flat_id(category_id: Any) -> Path:
  """Returns `(str(category_id),)`, or `()` for a missing id (Taobao)."""
  if _is_missing(category_id):
    return ()
  if isinstance(category_id, (float, np.floating)) and float(
      category_id).is_integer():
    category_id = int(category_id)  # ids read as float because of NaNs.
  return (str(category_id),)


def _map_unique(values: Sequence, fn) -> List:
  """Applies `fn` once per distinct value (values repeat a lot in logs)."""
  codes, uniques = pd.factorize(pd.Series(values, dtype=object),
                                use_na_sentinel=True)
  mapped = [fn(u) for u in uniques]
  missing = fn(None)
  return [mapped[c] if c >= 0 else missing for c in codes]


def paths_from_dotted(codes: Sequence,
                      category_ids: Optional[Sequence] = None,
                      separator: str = ".") -> List[Path]:
  """Vectorized `path_from_dotted` over aligned sequences.

  Args:
    codes: dotted codes, missing values allowed.
    category_ids: optional flat ids aligned with `codes`, used where the code
      is missing.
    separator: the separator inside the codes.

  Returns:
    One path per input row.

  Raises:
    ValueError: if the two sequences differ in length, or a code has an
      empty component.
  """
  codes = list(codes)
  if category_ids is None:
    return _map_unique(codes, lambda c: path_from_dotted(c, None, separator))
  category_ids = list(category_ids)
  if len(category_ids) != len(codes):
    raise ValueError(f"codes has {len(codes)} rows but category_ids has "
                     f"{len(category_ids)}; they must be aligned.")
  pairs = list(zip(codes, category_ids))
  return _map_unique(
      pairs, lambda p: path_from_dotted(*(p or (None, None)), separator))


def paths_from_flat_ids(category_ids: Sequence) -> List[Path]:
  """Vectorized `path_from_flat_id`."""
  return _map_unique(list(category_ids), path_from_flat_id)


def leaves_from_paths(paths: Iterable[Optional[Sequence[str]]]) -> np.ndarray:
  """Returns the leaf names (object array of str) of root→leaf paths.

  A missing or empty path gives `UNKNOWN_LEAF`.
  """
  return np.array([schema.leaf_of(p) if p else schema.UNKNOWN_LEAF
                   for p in paths], dtype=object)


def paths_from_tree(category_ids: Sequence,
                    tree: Mapping[Hashable, Sequence[str]]) -> List[Path]:
  """Looks up each category id in a parsed parent-id tree.

  Args:
    category_ids: one id per item; missing values allowed.
    tree: id → root→leaf path, as returned by
      `cabb_tf.data.category_tree.read_category_tree`. Ids are compared as
      strings, so `7` and `"7"` match.

  Returns:
    One path per id; `()` (unknown) for a missing id or one not in `tree`.
  """
  by_str = {str(k): tuple(str(p) for p in v) for k, v in tree.items()}

  def lookup(category_id):
    flat = path_from_flat_id(category_id)
    return by_str.get(flat[0], ()) if flat else ()

  return _map_unique(list(category_ids), lookup)


def paths_from_tree_file(category_ids: Sequence, tree_path: str) -> List[Path]:
  """Reads a parent-id tree file and maps `category_ids` onto its paths.

  The file format is owned by `cabb_tf.data.category_tree.read_category_tree`.

  Args:
    category_ids: one id per item.
    tree_path: the tree file.

  Returns:
    One path per id, as `paths_from_tree`.

  Raises:
    ImportError: if `cabb_tf.data.category_tree` is not available.
  """
  try:
    # pylint: disable-next=g-import-not-at-top
    from cabb_tf.data import category_tree
  except ImportError as e:
    raise ImportError(
        "paths_from_tree_file needs cabb_tf.data.category_tree "
        "(read_category_tree), which this installation lacks.") from e
  return paths_from_tree(category_ids,
                         category_tree.read_category_tree(tree_path))


def item_positions(catalog_items: pd.Series, items) -> np.ndarray:
  """Returns the row of each of `items` in `catalog_items`, -1 if absent.

  Args:
    catalog_items: the catalog's `item_id` column (unique ids).
    items: the ids to look up (array-like).

  Returns:
    An integer array (int32 when it fits) aligned with `items`.

  Raises:
    ValueError: as `lookup_items`.
  """
  rows = np.arange(len(catalog_items), dtype=np.int64)
  return lookup_items(catalog_items, items, rows)


def lookup_items(catalog_items: pd.Series, items,
                 values: np.ndarray) -> np.ndarray:
  """Maps each of `items` to the `values` entry of its catalog row, else -1.

  Integer ids in a compact range go through a direct lookup table of
  `values` (one gather per event, no hashing); other ids through a hash
  index.

  Args:
    catalog_items: the catalog's `item_id` column (unique ids).
    items: the ids to look up (array-like).
    values: int64 array aligned with `catalog_items` (e.g. leaf indices).

  Returns:
    An integer array aligned with `items` (int32 when `values` fit, to save
    memory on long logs): `values[row]`, or -1 when the item is not in the
    catalog.

  Raises:
    ValueError: if catalog ids repeat, or one side has integer ids and the
      other does not (they could never match).
  """
  catalog_values = np.asarray(catalog_items)
  items = items.to_numpy() if isinstance(items, (pd.Series, pd.Index)) else (
      np.asarray(items))
  values = np.asarray(values, dtype=np.int64)
  dtype = np.int32 if (not len(values) or (
      values.min() >= -1 and values.max() < 2**31 - 1)) else np.int64
  cat_int = np.issubdtype(catalog_values.dtype, np.integer)
  item_int = np.issubdtype(items.dtype, np.integer)
  if len(catalog_values) and len(items) and cat_int != item_int:
    raise ValueError(
        f"item ids of the events ({items.dtype}) and of the catalog "
        f"({catalog_values.dtype}) have different types, so none would match;"
        " convert one side (e.g. `catalog['item_id'].astype('int64')`).")
  if cat_int and item_int and len(catalog_values):
    lo = min(int(catalog_values.min()), int(items.min()) if len(items) else 0)
    hi = max(int(catalog_values.max()), int(items.max()) if len(items) else 0)
    span = hi - lo + 1
    if span <= 4 * (len(catalog_values) + len(items)) + (1 << 20):
      seen = np.zeros(span, dtype=bool)
      seen[catalog_values - lo] = True
      if np.count_nonzero(seen) != len(catalog_values):
        raise ValueError("catalog item_id values repeat; the catalog must "
                         "have one row per item.")
      table = np.full(span, -1, dtype=dtype)
      table[catalog_values - lo] = values
      return table[items - lo] if lo else table[items]
  index = pd.Index(catalog_values)
  if not index.is_unique:
    raise ValueError("catalog item_id values repeat; the catalog must have "
                     "one row per item.")
  pos = index.get_indexer(items)
  return np.where(pos >= 0, values[pos], -1).astype(dtype, copy=False)


def item_leaves(catalog: pd.DataFrame, items) -> np.ndarray:
  """Returns the leaf of each item (vectorized), `UNKNOWN_LEAF` if unknown.

  Args:
    catalog: a canonical catalog (`item_id`, `leaf`, ...).
    items: item ids (array-like, any shape is flattened).

  Returns:
    An object array of leaf names aligned with the flattened `items`. Items
    absent from the catalog, or with a missing leaf, get `UNKNOWN_LEAF`.

  Raises:
    ValueError: if the catalog lacks `item_id` / `leaf`, or as
      `item_positions`.
  """
  check_catalog(catalog)
  items = np.asarray(items).ravel()
  pos = item_positions(catalog["item_id"], items)
  leaves = catalog["leaf"].to_numpy(dtype=object, na_value=None)
  out = np.full(len(items), schema.UNKNOWN_LEAF, dtype=object)
  found = pos >= 0
  out[found] = leaves[pos[found]]
  out[pd.isna(out)] = schema.UNKNOWN_LEAF
  return out


def check_catalog(catalog: pd.DataFrame) -> None:
  """Raises ValueError unless `catalog` has `item_id` and `leaf` columns."""
  missing = [c for c in ("item_id", "leaf") if c not in catalog.columns]
  if missing:
    raise ValueError(f"catalog lacks column(s) {missing}; build it with "
                     "cabb_tf.data.schema.make_catalog.")
