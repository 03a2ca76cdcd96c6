"""A fresh install on another Python: the quickstart notebook and cabb-train.

Needs a Python 3.12 interpreter (`CABB_TEST_PYTHON`, else a pyenv 3.12 or
`python3.12` on the PATH): without one the test is skipped. In a fresh
virtual environment with nothing installed, the quickstart notebook's cells
run as a script from a directory outside the checkout: its set-up cell
installs the package from `CABB_TF_SOURCE` (a copy of the sources, not
editable), as it would in Colab, and the rest trains. Then the console
command `cabb-train` trains with gin files named without a path: its log must
name the installed package as the cabb_tf that ran, and its metrics must be
those of the same run of the checkout under this interpreter.
"""

import glob
import json
import os
import pathlib
import shutil
import subprocess
import sys

from absl.testing import absltest

REPO = pathlib.Path(__file__).resolve().parents[1]


def _python312():
  """A Python 3.12 interpreter that runs, or None."""
  candidates = [os.environ.get("CABB_TEST_PYTHON")]
  candidates += sorted(glob.glob(os.path.expanduser(
      "~/.pyenv/versions/3.12*/bin/python3.12")))
  candidates.append(shutil.which("python3.12"))  # maybe an inactive shim
  for candidate in candidates:
    if not candidate:
      continue
    version = subprocess.run(
        [candidate, "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True, text=True, check=False)
    if version.returncode == 0 and version.stdout.strip() == "(3, 12)":
      return candidate
  return None


def _notebook_script(parameters) -> str:
  """The quickstart notebook's code cells as one script, with `parameters`
  set after its parameters cell."""
  with open(REPO / "notebooks" / "quickstart.ipynb") as f:
    cells = [c for c in json.load(f)["cells"] if c["cell_type"] == "code"]
  script = []
  for cell in cells:
    source = "".join(cell["source"])
    script.append(source)
    if "# Parameters" in source:
      script += [f"{name} = {value!r}" for name, value in parameters.items()]
  return "\n".join(script)


class InstallTest(absltest.TestCase):

  def test_a_fresh_install_on_python_3_12_trains_from_anywhere(self):
    python = _python312()
    if python is None:
      self.skipTest("no Python 3.12 here (set CABB_TEST_PYTHON)")
    root = pathlib.Path(self.create_tempdir().full_path)
    # The package's sources only: an install from the checkout itself would
    # write build/ and *.egg-info into it.
    source = root / "source"
    source.mkdir()
    for name in ("setup.py", "README.md"):
      shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "cabb_tf", source / "cabb_tf",
                    ignore=shutil.ignore_patterns("__pycache__"))
    venv = root / "venv"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    notebook = _notebook_script(dict(
        DATASET="cabb_synthetic/tiny", DATA_DIR=str(root / "notebook_tfds"),
        RUN_DIR=str(root / "notebook"), MAX_EPOCHS=1, MAX_STEPS_PER_EPOCH=3,
        SIMULATED_USERS=100))
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", notebook], cwd=elsewhere,
        env=dict(env, CABB_TF_SOURCE=str(source), MPLBACKEND="Agg",
                 TF_CPP_MIN_LOG_LEVEL="2"),
        capture_output=True, text=True, timeout=3600)
    self.assertEqual(done.returncode, 0, done.stderr[-6000:])
    for name in ("last_click", "caba_only", "multitask"):
      self.assertTrue((root / "notebook" / name / "metrics.json").exists())
    args = ["--gin_file=multitask.gin", "--gin_file=quick.gin",
            "--gin_bindings=SYNTHETIC_DATASET = 'cabb_synthetic/tiny'",
            "--gin_bindings=train.run.max_steps_per_epoch = 5"]
    runs, logs = {}, {}
    for name, command in (
        ("installed", [str(venv / "bin" / "cabb-train")]),
        ("checkout", [sys.executable, str(REPO / "experiments" /
                                          "train.py")])):
      base_dir = root / name
      run_env = dict(env, TF_CPP_MIN_LOG_LEVEL="2")
      if name == "checkout":
        run_env["PYTHONPATH"] = str(REPO)
      done = subprocess.run(
          command + [f"--base_dir={base_dir}",
                     f"--gin_bindings=load_data.data_dir = '{root}/{name}_tfds'",
                     *args], cwd=elsewhere, env=run_env, capture_output=True,
          text=True, timeout=1800)
      self.assertEqual(done.returncode, 0, done.stderr[-6000:])
      with open(base_dir / "metrics.json") as f:
        runs[name] = json.load(f)
      logs[name] = done.stderr
    # Each run says which cabb_tf it imported (gin_utils.run_binary): the
    # installed package's, inside the virtual environment, and the
    # checkout's.
    located = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import cabb_tf.gin_utils as g; print(g.PACKAGE_DIR)"],
        cwd=elsewhere, env=env, capture_output=True, text=True,
        check=True).stdout.strip()
    self.assertTrue(located.startswith(str(venv)), located)
    self.assertIn(f" from {located}\n", logs["installed"])
    self.assertNotIn(str(REPO), logs["installed"])
    self.assertIn(f" from {REPO / 'cabb_tf'}\n", logs["checkout"])
    for key in ("best_validation_loss", "caba_ne", "cabb_ne", "overall_ne",
                "caba_auc", "cabb_auc"):
      self.assertAlmostEqual(runs["installed"][key], runs["checkout"][key],
                             delta=1e-6 * abs(runs["checkout"][key]), msg=key)


if __name__ == "__main__":
  absltest.main()
