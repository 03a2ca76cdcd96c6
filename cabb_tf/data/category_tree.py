"""Category trees given as parent ids, resolved to root→leaf category paths.

Some sources (RetailRocket's `category_tree.csv`) ship a flat category id per
item plus a table `categoryid,parentid` in which an empty parent marks a root.
`read_category_tree` turns such a table into `{category id: (root, ..., id)}`,
the path form the catalog needs (`schema.make_catalog`). Ids are strings.

The walk is memoized and iterative: cost is linear in the number of categories
(not events), and deep trees cannot overflow the Python stack.
"""

import csv
import os
from typing import Callable, Dict, List, Mapping, Optional, Tuple, Union

Path = Tuple[str, ...]


def resolve_paths(parent: Mapping[str, Optional[str]]) -> Dict[str, Path]:
  """Resolves every category to its root→leaf path.

  Args:
    parent: maps each category id to its parent id, or to None (or "") when
      the category is a root.

  Returns:
    A dict mapping every key of `parent` to the tuple of ids from its root down
    to itself, e.g. `{"1": ("1",), "2": ("1", "2")}`.

  Raises:
    ValueError: if a parent id is not itself a key of `parent` (missing
      parent) or if following parents loops (cycle); the message names the ids.
  """
  return _resolve(parent, describe=repr)


def read_category_tree(path: Union[str, os.PathLike],
                       encoding: str = "utf-8") -> Dict[str, Path]:
  """Reads a `categoryid,parentid` CSV and resolves it to category paths.

  The file has a header row (column names are not checked, the first column is
  the category id and the second its parent); an empty parent marks a root.
  Blank lines are skipped. A category listed twice with the same parent is
  accepted; with different parents it is an error.

  Args:
    path: the CSV file (RetailRocket's `category_tree.csv` format).
    encoding: the file's text encoding.

  Returns:
    A dict mapping every category id (a string) to its root→leaf path.

  Raises:
    ValueError: if the file is empty, a row does not have two fields, a
      category has two different parents, a parent is missing or the parents
      form a cycle; the message names the file, the line and the ids.
  """
  parent: Dict[str, Optional[str]] = {}
  line_of: Dict[str, int] = {}
  if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
    encoding = "utf-8-sig"  # Tolerates a byte-order mark.
  with open(path, encoding=encoding, newline="") as f:
    reader = csv.reader(f)
    header = next(reader, None)
    if header is None:
      raise ValueError(f"{path}: the category tree file is empty; expected a "
                       "header 'categoryid,parentid' and one row per category.")
    for row in reader:
      if not row:
        continue
      if len(row) != 2:
        raise ValueError(
            f"{path}: line {reader.line_num}: expected 2 fields "
            f"(categoryid,parentid), got {len(row)}: {row!r}.")
      category, parent_id = row[0], row[1] or None
      if not category:
        raise ValueError(f"{path}: line {reader.line_num}: empty category id.")
      if category in parent and parent[category] != parent_id:
        raise ValueError(
            f"{path}: line {reader.line_num}: category {category!r} has parent "
            f"{parent_id!r}, but line {line_of[category]} gave it parent "
            f"{parent[category]!r}; a category must have one parent.")
      if category not in parent:
        parent[category] = parent_id
        line_of[category] = reader.line_num

  def describe(category: str) -> str:
    return f"{category!r} (line {line_of[category]})"

  try:
    return _resolve(parent, describe=describe)
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from None


def _resolve(parent: Mapping[str, Optional[str]],
             describe: Callable[[str], str]) -> Dict[str, Path]:
  """Memoized iterative walk behind `resolve_paths` and `read_category_tree`."""
  paths: Dict[str, Path] = {}
  for start in parent:
    if start in paths:
      continue
    chain: List[str] = []  # Unresolved ids from `start` upwards.
    on_chain = set()
    node = start
    while True:
      chain.append(node)
      on_chain.add(node)
      up = parent[node]
      if up is None or up == "":
        prefix: Path = ()
        break
      if up in paths:
        prefix = paths[up]
        break
      if up not in parent:
        raise ValueError(
            f"category {describe(node)} has parent {up!r}, which is not a "
            "category of the tree (missing parent); add a row for it or give "
            f"{node!r} an empty parent to make it a root.")
      if up in on_chain:
        cycle = chain[chain.index(up):]
        raise ValueError(
            "the category parents form a cycle: "
            + " -> ".join(describe(c) for c in cycle + [up])
            + "; every chain of parents must end at a root (empty parent).")
      node = up
    for node in reversed(chain):
      prefix = prefix + (node,)
      paths[node] = prefix
  return paths
