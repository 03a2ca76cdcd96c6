"""Executes both notebooks with tiny parameters."""

import os
import pathlib

from absl.testing import absltest
import nbclient
import nbformat

REPO = pathlib.Path(__file__).resolve().parents[1]


def _execute(name: str, parameters: str, workdir: str) -> nbformat.NotebookNode:
  notebook = nbformat.read(REPO / "notebooks" / name, as_version=4)
  cell = next(c for c in notebook.cells if c.cell_type == "code" and
              "# Parameters" in c.source)
  cell.source += "\n" + parameters
  client = nbclient.NotebookClient(notebook, timeout=900,
                                   kernel_name="python3",
                                   resources={"metadata": {"path": workdir}})
  client.execute()
  return notebook


def _outputs(notebook) -> str:
  texts = []
  for cell in notebook.cells:
    for output in cell.get("outputs", []):
      texts.append(output.get("text", "") + str(output.get("data", {})))
  return "\n".join(texts)


class NotebooksTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.data_dir = os.path.join(absltest.get_default_test_tmpdir(),
                                "tfds_notebooks_test")

  def test_quickstart(self):
    workdir = str(REPO)
    run_dir = self.create_tempdir().full_path
    notebook = _execute("quickstart.ipynb", (
        "DATASET = 'cabb_synthetic/tiny'\n"
        f"DATA_DIR = {self.data_dir!r}\n"
        f"RUN_DIR = {run_dir!r}\n"
        "MAX_EPOCHS = 1\nMAX_STEPS_PER_EPOCH = 3\nSIMULATED_USERS = 100\n"),
                        workdir)
    text = _outputs(notebook)
    self.assertIn("overall_ne", text)
    for name in ("last_click", "caba_only", "multitask"):
      self.assertTrue(os.path.exists(os.path.join(run_dir, name,
                                                  "metrics.json")), name)

  def test_analysis(self):
    run_dir = self.create_tempdir().full_path
    bindings = [f"load_data.data_dir = '{self.data_dir}'",
                "SYNTHETIC_DATASET = 'cabb_synthetic/tiny'",
                "train.run.max_steps_per_epoch = 3",
                "train.run.max_epochs = 1",
                "reproduce.run.bootstrap_resamples = 20",
                "reproduce.run.importance = False"]
    # The defaults: no reproduction in RUN_DIR, so the notebook runs a
    # quick one beside it and analyses that.
    notebook = _execute("analysis.ipynb", (
        f"RUN_DIR = {run_dir!r}\nEXTRA_BINDINGS = {bindings!r}\n"),
                        str(REPO))
    text = _outputs(notebook)
    self.assertIn("auc", text.lower())
    self.assertIn(f"Running the reproduction into {run_dir}_quick", text)
    self.assertTrue(os.path.exists(os.path.join(run_dir + "_quick",
                                                "results.json")))
    self.assertFalse(os.path.exists(os.path.join(run_dir, "results.json")))


if __name__ == "__main__":
  absltest.main()
