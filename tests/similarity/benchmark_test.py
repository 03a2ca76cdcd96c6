"""Smoke test of experiments/benchmark_similarity.py (similarity.benchmark)."""

import json
import os
import pathlib
import subprocess
import sys

from absl.testing import absltest

_REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
_BINARY = _REPO_ROOT / "experiments" / "benchmark_similarity.py"


class BenchmarkSmokeTest(absltest.TestCase):

  def test_binary_writes_table_json_and_config(self):
    base_dir = self.create_tempdir().full_path
    bindings = ["run.sizes = (3000,)", "run.num_items = 300",
                "run.num_leaves = 25", "run.min_users = 200",
                "run.repeats = 1"]
    proc = subprocess.run(
        [sys.executable, str(_BINARY), f"--base_dir={base_dir}"] +
        [f"--gin_bindings={b}" for b in bindings],
        capture_output=True, text=True, timeout=300, check=False,
        cwd=str(_REPO_ROOT))
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    with open(os.path.join(base_dir, "benchmark_similarity.json")) as f:
      results = json.load(f)
    rows = {row["method"]: row for row in results["rows"]}
    self.assertEqual(set(rows), {"cabb_tf", "scipy_reference",
                                 "pandas_dense"})
    for method, row in rows.items():
      self.assertNotIn("error", row, method)
      self.assertGreater(row["seconds"], 0)
      self.assertGreater(row["peak_rss_mb"], 0)
      if method != "cabb_tf":  # Three implementations agree.
        self.assertLess(row["max_abs_diff"], 1e-12)
    with open(os.path.join(base_dir, "benchmark_similarity.md")) as f:
      self.assertIn("| 3,000 |", f.read())
    with open(os.path.join(base_dir, "config.gin")) as f:
      self.assertIn("run.sizes = (3000,)", f.read())
    self.assertFalse(os.path.exists(os.path.join(base_dir, "data")))


if __name__ == "__main__":
  absltest.main()
