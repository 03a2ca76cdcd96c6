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
"""

from typing import Any, Callable, Dict, Hashable


class Cache:
  """Splits in memory (`columns`), α tables (`alpha_tables`) and id
  lookups (`lookups`) by key."""

  def __init__(self):
    self.columns: Dict[Hashable, Any] = {}
    self.alpha_tables: Dict[Hashable, Any] = {}
    self.lookups: Dict[Hashable, Any] = {}

  def column_split(self, key: Hashable, read: Callable[[], Any]) -> Any:
    """The split under `key`, read with `read()` the first time."""
    if key not in self.columns:
      self.columns[key] = read()
    return self.columns[key]

  def alpha_table(self, key: Hashable, make: Callable[[], Any]) -> Any:
    """The α table under `key`, made with `make()` the first time."""
    if key not in self.alpha_tables:
      self.alpha_tables[key] = make()
    return self.alpha_tables[key]

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
