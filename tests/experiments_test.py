"""Smoke tests of every binary, every shipped gin file and every named path."""

import json
import os
import pathlib
import re
import subprocess
import sys

from absl.testing import absltest
from absl.testing import parameterized
import gin

import cabb_tf  # pylint: disable=unused-import
from cabb_tf import gin_utils

REPO = pathlib.Path(__file__).resolve().parents[1]
GIN_FILES = sorted(str(p.relative_to(gin_utils.GIN_DIR))
                   for p in gin_utils.GIN_DIR.rglob("*.gin"))


def _run(binary: str, base_dir: str, *args: str
         ) -> subprocess.CompletedProcess:
  """Runs an experiment binary (its log is its stderr); fails the test with
  its output on error."""
  command = [sys.executable, str(REPO / "experiments" / binary),
             f"--base_dir={base_dir}", *args]
  done = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                        timeout=900, check=False)
  if done.returncode:
    raise AssertionError(f"{binary} failed:\n{done.stdout[-3000:]}\n"
                         f"{done.stderr[-6000:]}")
  return done


class GinFilesTest(parameterized.TestCase):

  @parameterized.parameters(*GIN_FILES)
  def test_gin_file_parses(self, name):
    gin.clear_config()
    gin_utils.parse([name], [])
    gin.clear_config()


class PathsTest(absltest.TestCase):

  def test_paths_named_in_docs_exist(self):
    docs = [REPO / "README.md", REPO / "notebooks" / "README.md",
            *sorted((REPO / "docs").glob("*.md"))]
    pattern = re.compile(
        r"(?<![\w/.-])((?:experiments|gin|cabb_tf|notebooks|docs|tests)/"
        r"[\w./-]*\w)")
    missing = []
    for doc in docs:
      if not doc.exists():
        continue
      for path in pattern.findall(doc.read_text()):
        if "*" in path or "<" in path:
          continue
        if not (REPO / path).exists():
          missing.append(f"{doc.name}: {path}")
    self.assertEqual(missing, [])


class BinariesTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.data_dir = os.path.join(absltest.get_default_test_tmpdir(),
                                "tfds_experiments_test")
    cls.tiny = [f"--gin_bindings=load_data.data_dir = '{cls.data_dir}'",
                "--gin_bindings=SYNTHETIC_DATASET = 'cabb_synthetic/tiny'"]

  def test_prepare_data(self):
    base_dir = self.create_tempdir().full_path
    out = _run("prepare_data.py", base_dir, "--gin_file=gin/datasets/synthetic.gin",
               "--gin_file=gin/quick.gin",
               "--gin_bindings=simulate.num_users = 200").stdout
    self.assertIn("cabb_share", out)
    with open(os.path.join(base_dir, "data_report.json")) as f:
      report = json.load(f)
    self.assertEqual(report["rows_in"], report["rows_kept"] +
                     sum(report["dropped"].values()))
    self.assertTrue(os.path.exists(os.path.join(base_dir, "config.gin")))

  def test_train_writes_checkpoint_events_config_and_export(self):
    base_dir = self.create_tempdir().full_path
    log = _run("train.py", base_dir, "--gin_file=gin/multitask.gin",
               "--gin_file=gin/quick.gin", *self.tiny,
               "--gin_bindings=train.run.max_steps_per_epoch = 3").stderr
    for name in ("config.gin", "metrics.json", "export/saved_model.pb",
                 "checkpoints/checkpoint"):
      self.assertTrue(os.path.exists(os.path.join(base_dir, name)), name)
    for phase in ("train", "eval"):
      self.assertNotEmpty(os.listdir(os.path.join(base_dir, phase)))
    # The run writes its config.gin once, and the log says which cabb_tf ran.
    config = os.path.join(base_dir, "config.gin")
    self.assertEqual(log.count("Operative gin config written to"), 1, log)
    self.assertIn(f"cabb_tf {cabb_tf.__version__} from {REPO / 'cabb_tf'}",
                  log)
    # The skew check reads the run and leaves its config.gin as it was.
    with open(config) as f:
      written = f.read()
    stamp = os.stat(config).st_mtime_ns
    log = _run("check_export.py", base_dir, f"--gin_file={config}").stderr
    self.assertTrue(os.path.exists(os.path.join(base_dir,
                                                "export_check.json")))
    self.assertNotIn("Operative gin config", log)
    # The run's training bindings are not its to read: no warning of them.
    self.assertNotIn("NEVER READ", log)
    self.assertEqual(os.stat(config).st_mtime_ns, stamp)
    with open(config) as f:
      self.assertEqual(f.read(), written)

  def test_build_similarity(self):
    base_dir = self.create_tempdir().full_path
    _run("build_similarity.py", base_dir, "--gin_file=gin/similarity.gin",
         *self.tiny, "--gin_bindings=similarity_report.build.schemes = "
         "('static', 'taxonomy_cf')")
    with open(os.path.join(base_dir, "similarity_report.json")) as f:
      report = json.load(f)
    schemes = report["ground_truth"]["schemes"]
    self.assertEqual(schemes["static"]["auc_genuine_vs_noise"], 0.5)
    for name in ("category_similarity.npz", "leaves.txt", "top_pairs.csv",
                 "alpha_heatmap.png", "config.gin"):
      self.assertTrue(os.path.exists(os.path.join(base_dir, name)), name)

  def test_reproduce_quick(self):
    base_dir = self.create_tempdir().full_path
    args = ["--gin_file=gin/reproduce.gin", "--gin_file=gin/quick.gin",
            *self.tiny, "--gin_bindings=train.run.max_steps_per_epoch = 3",
            "--gin_bindings=train.run.max_epochs = 1",
            "--gin_bindings=reproduce.run.bootstrap_resamples = 20",
            # quick.gin leaves these two tables out; the test keeps them.
            "--gin_bindings=reproduce.run.lambda_optimizers = ('sgd',)",
            "--gin_bindings=reproduce.run.regimes = "
            "{'paper': %PAPER_SIGNAL_SCALE}"]
    out = _run("reproduce.py", base_dir, *args).stdout
    # Quiet: a line per dataset and run, Table 1 and where the rest is.
    progress = [line for line in out.splitlines()
                if line.startswith("[reproduce] run ")]
    self.assertLen(progress, 16 * 2)
    self.assertTrue(progress[-1].startswith("[reproduce] run 32/32 done"))
    self.assertIn("min left", progress[0])
    self.assertIn("Table 1", out)
    with open(os.path.join(base_dir, "results.json")) as f:
      results = json.load(f)
    self.assertCountEqual(results["table1"],
                          ["last_click", "caba_only", "multitask"])
    self.assertCountEqual(results["table2"], ["single_task", "0.0", "0.75"])
    self.assertLen(results["table1"]["multitask"]["overall_ne"]["runs"], 2)
    for name in ("results.md", "ne_vs_lambda.png", "schemes.png",
                 "importance.png", "calibration.png", "alpha_heatmap.png"):
      self.assertTrue(os.path.exists(os.path.join(base_dir, name)), name)
    # The tables beyond the paper (gin/beyond.gin, shrunk by quick.gin).
    self.assertEqual(list(results["balance"]), ["fixed", "best_fixed", "dwa"])
    self.assertEqual(results["balance"]["fixed"]["final_lambda"]["mean"],
                     0.75)
    # DWA keeps w = 1 for its first two epochs (Liu et al.): λ = 1 after the
    # one epoch of the quick run, read back from TensorBoard.
    self.assertEqual(results["balance_lambda_by_epoch"]["dwa"], [[1.0]] * 2)
    self.assertCountEqual(results["bottoms"], ["shared_mlp", "mmoe"])
    self.assertEqual(results["bottoms"]["shared_mlp"],
                     results["table1"]["multitask"])
    self.assertCountEqual(results["windows"], ["session", "86400s"])
    windows = results["window_data"]
    # A simulated session lasts less than a day, so a one-day window keeps
    # every purchase the session rule counts and adds later sessions'.
    self.assertGreater(windows["86400s"]["cabb_positive_rows"],
                       windows["session"]["cabb_positive_rows"])
    self.assertEqual(windows["86400s"]["window"], 86400)
    self.assertIn("vs_last_click",
                  results["paired_differences"]["windows"]["86400s"])
    truth = results["ground_truth_ne"]
    self.assertEqual(truth["static"]["alpha_auc"]["mean"], 0.5)
    self.assertGreater(truth["taxonomy_cf"]["alpha_auc"]["mean"], 0.5)
    self.assertEqual([row["beta"] for row in
                      results["serving"]["all_clicks"]["by_beta"]], [0.0, 1.0])
    with open(os.path.join(base_dir, "results.md")) as f:
      self.assertIn("Beyond the paper: attribution window", f.read())
    # Calibration-fair NEs beside the raw ones, and the claims under both.
    self.assertIn("overall_ne_recalibrated", results["table1"]["multitask"])
    self.assertCountEqual(results["paper_directions_recalibrated"],
                          [k for k in results["paper_directions"]
                           if not k.startswith("rq4")])
    # The oracle floor of every simulated dataset, the headroom per cell.
    paper_scale = results["regimes"]["paper"]
    self.assertCountEqual(results["oracle"], [
        "main", "window_86400s", f"signal_{paper_scale:g}"])
    for oracle in results["oracle"].values():
      for key in ("caba_ne", "cabb_ne", "last_click_ne", "overall_ne"):
        self.assertTrue(0 < oracle[key] < 1.5, key)
    floor = results["floors"]["table1"]["multitask"]["overall_ne"]
    self.assertEqual(floor["floor"], results["oracle"]["main"]["overall_ne"])
    runs = results["table1"]["multitask"]["overall_ne"]["runs"]
    self.assertAlmostEqual(
        floor["headroom_closed"]["runs"][0],
        (1 - runs[0]) / (1 - results["oracle"]["main"]["overall_ne"]))
    # No model beats the true probabilities beyond the Monte-Carlo error.
    self.assertEqual(results["below_floor"], [])
    # The α-scale ablation and the λ sweep under SGD.
    self.assertCountEqual(results["alpha_scale"], ["raw", "mean_one"])
    self.assertEqual(results["alpha_scale"]["raw"],
                     results["table1"]["multitask"])
    self.assertCountEqual(results["sgd/table2"],
                          ["single_task", "0.0", "0.75"])
    self.assertIn("vs_last_click",
                  results["paired_differences"]["sgd/table2"]["0.75"])
    # The 'paper' regime: Tables 1–3 on its own simulated dataset.
    self.assertGreater(paper_scale, 1.0)
    self.assertCountEqual(results["paper/table1"],
                          ["last_click", "caba_only", "multitask"])
    self.assertIn("paper/paper_directions", results)
    self.assertGreaterEqual(results["wall_time_total_s"],
                            results["wall_time_s"])
    # Started again, it reuses every finished run: no run directory changes.
    metrics_files = sorted(pathlib.Path(base_dir, "runs").rglob(
        "metrics.json"))
    # 4 variants of Tables 1–3, DWA, MMoE, the one-day window's multitask
    # model and Baseline 1, α mean_one, 3 SGD variants and the paper
    # regime's 4, × 2 seeds.
    self.assertLen(metrics_files, 16 * 2)
    stamps = [p.stat().st_mtime_ns for p in metrics_files]
    _run("reproduce.py", base_dir, *args)
    self.assertEqual([p.stat().st_mtime_ns for p in metrics_files], stamps)
    with open(os.path.join(base_dir, "results.json")) as f:
      self.assertEqual(json.load(f)["table1"], results["table1"])

  def test_benchmark_data(self):
    base_dir = self.create_tempdir().full_path
    _run("benchmark_data.py", base_dir, "--gin_bindings=benchmark.run.sizes = (20000,)")
    with open(os.path.join(base_dir, "benchmark_data.json")) as f:
      result = json.load(f)["results"][0]
    self.assertGreater(result["events"], 10_000)
    self.assertGreater(result["examples"], 0)


if __name__ == "__main__":
  absltest.main()
