"""What the runs of one process share: splits in memory, α tables and the
id lookups.

Experiments train many models on one dataset. Decoding a split's records,
or fitting a weighting scheme and scoring the dataset's CABB pairs, once
instead of once per run saves most of a short run's time. A `Cache` holds
both, and each id space's string lookup (`factory.id_lookups`, built from
the training vocabulary), keyed by the dataset's directory (and, for α, by
the scheme and the gin options that set it; for the lookups, by the hash
buckets), so that a changed dataset or option is never served from it.

`train.run(cache=...)` and `weighting.make_alpha_fn(cache=...)` take one;
without it they use the process's `default()`. `reproduce` makes its own,
passes it to every run and frees it when it is done (`clear`).

Processes can share α tables through a directory (`Cache(directory=...)`):
a table made by one process is written there, and the others read it instead
of fitting it again. `reproduce` fits each table once, in its pool, before
the runs that need it, in a directory that lives as long as the invocation. The files are
pickles, read only from that directory, which the invocation made itself.
"""

import hashlib
import os
import pickle
from typing import Any, Callable, Dict, Hashable, Optional


class Cache:
  """Splits in memory (`columns`), α tables (`alpha_tables`) and id
  lookups (`lookups`) by key."""

  def __init__(self, directory: Optional[str] = None):
    self.columns: Dict[Hashable, Any] = {}
    self.alpha_tables: Dict[Hashable, Any] = {}
    self.lookups: Dict[Hashable, Any] = {}
    self.directory = directory

  def column_split(self, key: Hashable, read: Callable[[], Any]) -> Any:
    """The split under `key`, read with `read()` the first time."""
    if key not in self.columns:
      self.columns[key] = read()
    return self.columns[key]

  def alpha_table(self, key: Hashable, make: Callable[[], Any]) -> Any:
    """The α table under `key`, made with `make()` the first time (or read
    from `directory`, where another process made it)."""
    if key not in self.alpha_tables:
      self.alpha_tables[key] = self._shared(key, make)
    return self.alpha_tables[key]

  def alpha_path(self, key: Hashable) -> Optional[str]:
    """The file of `key`'s α table in `directory` (None without one).

    A key is a tuple of strings and numbers, whose `repr` is the same in
    every process.
    """
    if self.directory is None:
      return None
    digest = hashlib.sha256(repr(key).encode("utf-8")).hexdigest()[:32]
    return os.path.join(self.directory, f"alpha_{digest}.pickle")

  def _shared(self, key: Hashable, make: Callable[[], Any]) -> Any:
    path = self.alpha_path(key)
    if path is not None and os.path.exists(path):
      with open(path, "rb") as f:
        return pickle.load(f)
    value = make()
    if path is not None:
      # Written whole, then renamed: a reader sees the file complete or not
      # at all.
      partial = f"{path}.{os.getpid()}.partial"
      with open(partial, "wb") as f:
        pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
      os.replace(partial, path)
    return value

  def id_lookups(self, key: Hashable, make: Callable[[], Any]) -> Any:
    """The id lookups under `key`, made with `make()` the first time."""
    if key not in self.lookups:
      self.lookups[key] = make()
    return self.lookups[key]

  def clear(self) -> None:
    """Frees everything held."""
    self.columns.clear()
    self.alpha_tables.clear()
    self.lookups.clear()


_DEFAULT = Cache()


def default() -> Cache:
  """The process's cache, used where no `Cache` is passed."""
  return _DEFAULT
