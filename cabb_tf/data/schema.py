"""The canonical event log and catalog that every data source is converted to.

Events (one row per interaction, docs/method.md, "Event log"):

| column       | dtype                          | meaning                              |
|--------------|--------------------------------|--------------------------------------|
| `user_id`    | int64 or string                | the user                             |
| `session_id` | int64 or string (optional)     | source session id, or derived        |
| `timestamp`  | int64, ms since the epoch      | event time                           |
| `item_id`    | int64 or string                | the product                          |
| `event_type` | `EVENT_TYPE_DTYPE` categorical | impression, click, add_to_cart, purchase |

Loaders may add source columns (for example `price`); downstream code ignores
columns it does not know.

The catalog has one row per item:

| column          | dtype           | meaning                                           |
|-----------------|-----------------|---------------------------------------------------|
| `item_id`       | as in events    | the product                                       |
| `category_path` | tuple of str    | root → leaf; `(UNKNOWN_LEAF,)` when unknown        |
| `leaf`          | str             | the full path joined by `PATH_SEPARATOR`          |
| `top_category`  | str             | the first element of the path                     |
| `brand`         | str or None     | where the source has brands                       |
| `price`         | float64 or NaN  | where the source has prices                       |

The leaf is the whole path, so `kitchen/coffee` and `garden/coffee` differ.
"""

from typing import Iterable, Optional, Sequence

import numpy as np
import pandas as pd

EVENT_TYPES = ("impression", "click", "add_to_cart", "purchase")
EVENT_TYPE_DTYPE = pd.CategoricalDtype(list(EVENT_TYPES), ordered=False)
# Integer codes of EVENT_TYPE_DTYPE, for vectorized code on `.cat.codes`.
IMPRESSION, CLICK, ADD_TO_CART, PURCHASE = range(4)

EVENT_COLUMNS = ("user_id", "session_id", "timestamp", "item_id", "event_type")
REQUIRED_EVENT_COLUMNS = ("user_id", "timestamp", "item_id", "event_type")
CATALOG_COLUMNS = ("item_id", "category_path", "leaf", "top_category", "brand",
                   "price")

UNKNOWN_LEAF = "<unknown>"
PATH_SEPARATOR = "/"


def leaf_of(path: Sequence[str]) -> str:
  """Returns the leaf name of a root→leaf category path."""
  if not path:
    return UNKNOWN_LEAF
  return PATH_SEPARATOR.join(str(p) for p in path)


def make_catalog(item_id: Iterable,
                 category_path: Iterable[Optional[Sequence[str]]],
                 brand: Optional[Iterable] = None,
                 price: Optional[Iterable] = None) -> pd.DataFrame:
  """Builds a canonical catalog from per-item values.

  Args:
    item_id: the item ids, unique.
    category_path: for each item a root→leaf tuple of strings, or None / an
      empty tuple when the item has no category (it gets `UNKNOWN_LEAF`).
    brand: optional brand per item (None where unknown).
    price: optional price per item (NaN where unknown).

  Returns:
    A DataFrame with `CATALOG_COLUMNS`.

  Raises:
    ValueError: if item ids repeat.
  """
  item_id = pd.Series(list(item_id) if not isinstance(
      item_id, (pd.Series, np.ndarray, pd.Index)) else item_id)
  item_id = item_id.reset_index(drop=True)
  raw_paths = pd.Series(list(category_path) if not isinstance(
      category_path, (pd.Series, np.ndarray)) else category_path,
                        dtype=object).reset_index(drop=True)
  if len(raw_paths) != len(item_id):
    raise ValueError(f"category_path has {len(raw_paths)} entries for "
                     f"{len(item_id)} items.")
  duplicated = item_id[item_id.duplicated()]
  if len(duplicated):
    raise ValueError(f"catalog item_id values repeat, e.g. {duplicated.iloc[0]!r}"
                     f" ({len(duplicated)} repeats).")
  # Paths repeat across items: normalize each distinct path once.
  codes, distinct = pd.factorize(raw_paths.map(
      lambda p: tuple(p) if isinstance(p, (list, tuple)) else p))
  paths = np.empty(len(distinct) + 1, dtype=object)
  for i, path in enumerate(distinct):
    paths[i] = tuple(str(p) for p in path) if path else (UNKNOWN_LEAF,)
  paths[-1] = (UNKNOWN_LEAF,)  # code -1: None / NaN
  leaves = np.array([leaf_of(p) for p in paths], dtype=object)
  tops = np.array([p[0] for p in paths], dtype=object)
  n = len(item_id)
  catalog = pd.DataFrame({
      "item_id": item_id,
      "category_path": pd.Series(paths[codes], dtype=object),
      "leaf": pd.Series(leaves[codes], dtype=object),
      "top_category": pd.Series(tops[codes], dtype=object),
      "brand": pd.Series(
          list(brand) if brand is not None else [None] * n, dtype=object),
      "price": pd.Series(
          np.asarray(list(price) if price is not None else [np.nan] * n,
                     dtype=np.float64)),
  })
  return catalog


def empty_catalog(item_dtype="int64") -> pd.DataFrame:
  """Returns a catalog with no rows."""
  return make_catalog(pd.Series([], dtype=item_dtype), [])


def catalog_from_parquet_frame(catalog: pd.DataFrame) -> pd.DataFrame:
  """A catalog read back from Parquet, with this module's column types.

  Parquet gives `category_path` as arrays: they become tuples of str;
  `leaf` and `top_category` become object columns, missing brands None and
  `price` float64. Changes `catalog` in place and returns it.
  """
  catalog["category_path"] = pd.Series(
      [tuple(str(p) for p in path) for path in catalog["category_path"]],
      dtype=object, index=catalog.index)
  for name in ("leaf", "top_category"):
    catalog[name] = catalog[name].astype(object)
  brand = catalog["brand"].astype(object)
  catalog["brand"] = brand.where(pd.notna(brand), None)
  catalog["price"] = catalog["price"].astype(np.float64)
  return catalog


def validate_events(events: pd.DataFrame, name: str = "events") -> None:
  """Checks that `events` follows the canonical schema.

  Args:
    events: the event log.
    name: what to call it in error messages (e.g. a file name).

  Raises:
    ValueError: naming the column and the problem.
  """
  missing = [c for c in REQUIRED_EVENT_COLUMNS if c not in events.columns]
  if missing:
    raise ValueError(f"{name}: missing column(s) {missing}; the canonical "
                     f"columns are {list(EVENT_COLUMNS)}.")
  if events["event_type"].dtype != EVENT_TYPE_DTYPE:
    raise ValueError(
        f"{name}: column 'event_type' must have dtype EVENT_TYPE_DTYPE "
        f"(categories {list(EVENT_TYPES)}), not {events['event_type'].dtype}.")
  if events["event_type"].isna().any():
    raise ValueError(f"{name}: column 'event_type' has missing values.")
  if events["timestamp"].dtype != np.int64:
    raise ValueError(f"{name}: column 'timestamp' must be int64 milliseconds "
                     f"since the epoch, not {events['timestamp'].dtype}.")
  for column in ("user_id", "item_id", "session_id"):
    if column in events.columns and events[column].isna().any():
      raise ValueError(f"{name}: column {column!r} has missing values.")


def event_type_codes(events: pd.DataFrame) -> np.ndarray:
  """Returns the event types as int8 codes (`CLICK`, `PURCHASE`, ...)."""
  return events["event_type"].cat.codes.to_numpy()
