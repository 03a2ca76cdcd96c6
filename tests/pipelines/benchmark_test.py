"""Tests of the Beam benchmark's process-tree memory sampler."""

import os
import sys

from absl.testing import absltest

from cabb_tf.pipelines import benchmark

# A parent that starts a child; each holds `MB` MiB of touched memory.
_MB = 150
_SCRIPT = f"""
import subprocess, sys, time
block = bytearray({_MB} << 20)
if len(sys.argv) == 1:
  child = subprocess.Popen([sys.executable, __file__, "child"])
  child.wait()
else:
  time.sleep(3)
"""


class TreeMemoryTest(absltest.TestCase):

  def test_the_tree_of_two_processes_is_counted_whole(self):
    script = self.create_tempfile("two.py", content=_SCRIPT).full_path
    measured = benchmark.run_sampled([sys.executable, script], sample_s=0.2)
    self.assertEqual(measured["returncode"], 0)
    self.assertEqual(measured["max_processes"], 2)
    # Both processes' buffers are private: the tree holds at least 2 × 150 MiB
    # (plus two interpreters), which one process alone never reaches.
    self.assertGreater(measured["peak_tree_pss_bytes"], 2 * (_MB << 20))
    self.assertLess(measured["peak_tree_pss_bytes"], 2 * (_MB << 20) + (
        200 << 20))
    self.assertGreaterEqual(measured["peak_tree_rss_bytes"],
                            measured["peak_tree_pss_bytes"])
    self.assertEqual(max(pss for _, pss, _ in measured["pss_timeline"]),
                     measured["peak_tree_pss_bytes"])

  def test_tree_pids_holds_this_process(self):
    self.assertIn(os.getpid(), benchmark.tree_pids(os.getppid()))


if __name__ == "__main__":
  absltest.main()
