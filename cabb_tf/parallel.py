"""Many runs at once: processes that share the parent's gin config.

A reproduction trains dozens of small models. One TensorFlow process leaves
most of a small machine idle: tracing a model's functions, reading a split
and scoring are single-threaded Python, and a small model's steps gain
little from a second thread. `Pool` starts `processes` worker processes
(spawned, not forked: a forked TensorFlow is not safe), each with `threads`
TensorFlow threads (by default as many as a single process has, so that
results do not change), the parent's gin config, verbosity and log filters,
and runs module-level functions in them. Each worker keeps its own
`inputs.cache.Cache`, so the splits and α tables it reads once serve all the
runs it is given; α tables can also be shared between the workers through a
directory (`Pool(shared_dir=...)`), so that each is fitted once.

With `processes = 1` nothing is spawned: the functions run in the parent, as
a plain loop would (tests and debugging).

What each call read from gin comes back with its result, so that the parent
writes a complete `config.gin` and reports only bindings that no process
read (`gin_utils.merge_operative`).
"""

import concurrent.futures
import multiprocessing
import os
from typing import (Any, Callable, Hashable, Iterator, Optional, Sequence,
                    Tuple)

from absl import flags
from absl import logging
import gin
import tensorflow as tf

from cabb_tf import gin_utils
from cabb_tf import logs
from cabb_tf.inputs import cache as cache_lib

# The worker's cache (one per process).
_CACHE: Optional[cache_lib.Cache] = None


@gin.configurable
def pool_size(processes: int = 0, threads: int = 0) -> Tuple[int, int]:
  """(processes, TensorFlow threads per process); 0 chooses.

  Args:
    processes: worker processes; 0: one per core.
    threads: intra- and inter-op threads per process; 0: TensorFlow's own
      choice, the number of cores, as a single process has. A model's sums
      are split by thread, so a run's result depends on this count (in the
      last digits), not on the process it ran in: with 0, every run equals
      the run of a single process byte for byte (docs/architecture.md,
      "Many runs at once").

  Returns:
    (processes, threads); threads 0 means TensorFlow's default.

  Raises:
    ValueError: on a negative count.
  """
  for name, value in (("processes", processes), ("threads", threads)):
    if value < 0:
      raise ValueError(f"pool_size.{name} must be ≥ 0 (0: chosen), got "
                       f"{value}.")
  return processes or os.cpu_count() or 1, threads


def _set_threads(threads: int) -> None:
  if not threads:
    return
  try:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
  except RuntimeError:  # TensorFlow already started: keep its threads.
    logging.warning("TensorFlow is already running: its thread counts stay.")


def _start_worker(config: str, threads: int, verbosity: int,
                  shared_dir: Optional[str]) -> None:
  """A worker's initializer: gin, threads, logging as the parent has them,
  and a cache that shares α tables through `shared_dir`."""
  global _CACHE
  # As absl.app does in the parent; parsed flags also keep absl from
  # warning that it logs "before flag parsing".
  flags.FLAGS.mark_as_parsed()
  logging.use_absl_handler()
  logging.set_verbosity(verbosity)
  logs.quiet_libraries(verbosity)
  _set_threads(threads)
  gin.parse_config(config)
  _CACHE = cache_lib.Cache(directory=shared_dir)


def cache() -> cache_lib.Cache:
  """The calling process's cache of a worker (or the parent's default)."""
  return _CACHE if _CACHE is not None else cache_lib.default()


def _call(fn: Callable[..., Any], args: Tuple[Any, ...]):
  result = fn(*args)
  return result, gin_utils.operative_records()


class Pool:
  """Worker processes, or the parent itself when `processes` is 1.

  With `shared_dir`, the workers' caches share α tables through that
  directory (`cache.Cache`): a table one worker fitted, the others read.
  """

  def __init__(self, processes: int, threads: int,
               shared_dir: Optional[str] = None):
    self.processes = processes
    self.threads = threads
    self._executor = None
    if processes > 1:
      context = multiprocessing.get_context("spawn")
      self._executor = concurrent.futures.ProcessPoolExecutor(
          max_workers=processes, mp_context=context,
          initializer=_start_worker,
          initargs=(gin.config_str(), threads, logging.get_verbosity(),
                    shared_dir))

  def submit(self, fn: Callable[..., Any], *args) -> concurrent.futures.Future:
    """Runs `fn(*args)`; the future's result is `fn`'s.

    `fn` must be a module-level function and `args` picklable. In the
    parent (`processes == 1`) it runs now, and the future is done on return.
    """
    if self._executor is None:
      future = concurrent.futures.Future()
      try:
        future.set_result(fn(*args))
      except Exception as e:  # pylint: disable=broad-except
        future.set_exception(e)
      return future
    inner = self._executor.submit(_call, fn, args)
    outer = concurrent.futures.Future()

    def done(f):
      try:
        result, records = f.result()
      except BaseException as e:  # pylint: disable=broad-except
        outer.set_exception(e)
        return
      gin_utils.merge_operative(records)
      outer.set_result(result)

    inner.add_done_callback(done)
    return outer

  def imap_unordered(self, fn: Callable[..., Any],
                     calls: Sequence[Tuple[Hashable, Tuple[Any, ...]]]
                     ) -> Iterator[Tuple[Hashable, Any]]:
    """Yields (key, `fn(*args)`) for each (key, args) of `calls` as each
    finishes: in the pool, in the order they finish; in the parent, one
    after another, each computed when the caller asks for it."""
    if self._executor is None:
      for key, args in calls:
        yield key, fn(*args)
      return
    futures = {self.submit(fn, *args): key for key, args in calls}
    for future in concurrent.futures.as_completed(futures):
      yield futures[future], future.result()

  def close(self) -> None:
    if self._executor is not None:
      self._executor.shutdown(wait=True, cancel_futures=True)
      self._executor = None

  def __enter__(self) -> "Pool":
    return self

  def __exit__(self, *exc) -> None:
    self.close()
