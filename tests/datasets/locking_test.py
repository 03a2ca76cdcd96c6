"""Concurrent and interrupted dataset builds (cabb_tf.datasets.locking)."""

import os
import subprocess
import sys

from absl.testing import absltest

from cabb_tf.datasets import locking

_BUILD = """
import random, sys
import cabb_tf
from cabb_tf import input_pipeline
random.seed(0)  # as an experiment does before it builds: same temp names
data = input_pipeline.load_data('cabb_synthetic/tiny', data_dir=sys.argv[1])
print(data.num_examples['test'])
"""


class LockingTest(absltest.TestCase):

  def test_stale_incomplete_builds_are_removed(self):
    root = self.create_tempdir().full_path
    os.makedirs(os.path.join(root, "incomplete.ABC123_1.1.0", "x"))
    os.makedirs(os.path.join(root, "1.1.0"))
    with locking.build_lock(root):
      self.assertEqual(locking.remove_stale_builds(root), 1)
    self.assertCountEqual(os.listdir(root), ["1.1.0", locking.LOCK_FILE])

  def test_two_processes_build_one_fresh_data_dir(self):
    data_dir = self.create_tempdir().full_path
    stale = os.path.join(data_dir, "cabb_synthetic", "tiny",
                         "incomplete.OLD000_1.1.0")
    os.makedirs(stale)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    procs = [subprocess.Popen([sys.executable, "-c", _BUILD, data_dir],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
      self.assertEqual(p.returncode, 0, err[-2000:])
    # Both read the same dataset; the killed build's leftovers are gone.
    self.assertEqual(outs[0][0].split()[-1], outs[1][0].split()[-1])
    self.assertFalse(os.path.exists(stale))
    self.assertEqual([n for n in os.listdir(os.path.dirname(stale))
                      if n.startswith("incomplete.")], [])


if __name__ == "__main__":
  absltest.main()
