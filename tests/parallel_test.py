"""Tests of the process pool of many runs (cabb_tf/parallel.py)."""

import os
import time

from absl.testing import absltest
import gin

from cabb_tf import gin_utils
from cabb_tf import parallel
from cabb_tf.inputs import cache as cache_lib


@gin.configurable
def scaled(x, factor=1):
  """A configurable a pool worker calls with the parent's bindings."""
  return x * factor, os.getpid()


def alpha_of(key, meeting=None):
  """The worker's α table under `key`, made as (maker's pid, key).

  With `meeting` (a directory), first waits until two processes have called
  with it, so that two such calls run in two workers.
  """
  if meeting is not None:
    open(os.path.join(meeting, str(os.getpid())), "w").close()
    deadline = time.time() + 120
    while len(os.listdir(meeting)) < 2 and time.time() < deadline:
      time.sleep(0.05)
  return (parallel.cache().alpha_table(key, lambda: (os.getpid(), key)),
          os.getpid())


def failing(x):
  raise ValueError(f"bad input {x}")


class PoolSizeTest(absltest.TestCase):

  def test_from_the_cores(self):
    cores = os.cpu_count() or 1
    self.assertEqual(parallel.pool_size(), (cores, 0))
    self.assertEqual(parallel.pool_size(1), (1, 0))
    self.assertEqual(parallel.pool_size(3, 2), (3, 2))
    with self.assertRaisesRegex(ValueError, "pool_size.threads"):
      parallel.pool_size(1, -1)


class PoolTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    gin.clear_config()
    self.addCleanup(gin.clear_config)
    gin.parse_config(f"import {__name__}\nscaled.factor = 3")

  def test_workers_share_the_config_and_report_what_they_read(self):
    with parallel.Pool(2, 1) as pool:
      results = dict(pool.imap_unordered(scaled, [(i, (i,)) for i in range(6)]))
      self.assertEqual({k: v[0] for k, v in results.items()},
                       {i: 3 * i for i in range(6)})
      self.assertNotIn(os.getpid(), {pid for _, pid in results.values()})
      with self.assertRaisesRegex(ValueError, "bad input 7"):
        pool.submit(failing, 7).result()
    # The parent never called `scaled`: its binding counts as read because
    # the workers read it, and it is in the config the parent writes.
    self.assertIn("scaled.factor = 3", gin.operative_config_str())
    self.assertFalse(any(key[1].endswith("scaled")
                         for key in gin_utils.unused_bindings([
                             ("binding", "scaled.factor = 3")])))

  def test_workers_share_alpha_tables_through_a_directory(self):
    for shared in (True, False):
      with parallel.Pool(2, 1, shared_dir=(
          self.create_tempdir().full_path if shared else None)) as pool:
        (table, maker), = [pool.submit(alpha_of, "k").result()]
        self.assertEqual(table, (maker, "k"))
        # Two calls that wait for each other: one in each worker.
        meeting = self.create_tempdir().full_path
        answers = [f.result() for f in [pool.submit(alpha_of, "k", meeting)
                                        for _ in range(2)]]
      callers = {pid for _, pid in answers}
      self.assertLen(callers, 2)
      makers = {made_by for (made_by, _), _ in answers}
      # Shared, every worker has the first table; else each made its own.
      self.assertEqual(makers, {maker} if shared else callers)

  def test_one_process_is_the_parent(self):
    with parallel.Pool(1, 1) as pool:
      order = []
      for key, (value, pid) in pool.imap_unordered(
          scaled, [(i, (i,)) for i in range(3)]):
        order.append(key)
        self.assertEqual((value, pid), (3 * key, os.getpid()))
      self.assertEqual(order, [0, 1, 2])
      with self.assertRaisesRegex(ValueError, "bad input 1"):
        pool.submit(failing, 1).result()
    # The parent has no worker cache: runs share the process's default.
    self.assertIs(parallel.cache(), cache_lib.default())


if __name__ == "__main__":
  absltest.main()
