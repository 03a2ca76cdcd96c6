"""The console commands of an installed cabb_tf.

    cabb-train       --base_dir=runs/multitask --gin_file=multitask.gin
    cabb-reproduce   --base_dir=runs/reproduce --gin_file=reproduce.gin
    cabb-prepare     --base_dir=runs/data --gin_file=datasets/synthetic.gin
    cabb-similarity  --base_dir=runs/similarity --gin_file=similarity.gin
    cabb-check-export --base_dir=runs/mt --gin_file=runs/mt/config.gin

Each runs what a binary of a checkout's `experiments/` runs: `cabb-train`
is `train.py`, `cabb-reproduce` `reproduce.py`, `cabb-prepare`
`prepare_data.py`, `cabb-similarity` `build_similarity.py` and
`cabb-check-export` `check_export.py`, with the same flags `--base_dir`,
`--gin_file` and `--gin_bindings` (`gin_utils.run_binary`). A `--gin_file`
that is not a path from the current directory is looked up among the gin
files the package ships, so `multitask.gin` works from any directory
(`gin_utils.find_gin_file`).
"""

import cabb_tf  # pylint: disable=unused-import  (selects Keras 2 first)
from cabb_tf import gin_utils


def train() -> None:
  from cabb_tf import train as train_lib  # pylint: disable=g-import-not-at-top
  # train.run records config.gin itself, on the chief only.
  gin_utils.run_binary(train_lib.run, record_config=False)


def reproduce() -> None:
  """Quiet by default: a line per dataset and run, then Table 1
  (`--verbosity=0` for each run's log)."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  from cabb_tf import reproduce as reproduce_lib  # pylint: disable=g-import-not-at-top
  gin_utils.run_binary(reproduce_lib.run, default_verbosity=logging.WARNING)


def prepare() -> None:
  from cabb_tf.data import pipeline  # pylint: disable=g-import-not-at-top

  def prepare_and_print(base_dir: str) -> None:
    prepared = pipeline.prepare_to_dir(base_dir)
    print("\n".join(pipeline.summary_lines(prepared.report)))

  gin_utils.run_binary(prepare_and_print)


def similarity() -> None:
  from cabb_tf.analysis import similarity_report  # pylint: disable=g-import-not-at-top
  gin_utils.run_binary(similarity_report.build)


def check_export() -> None:
  from cabb_tf.analysis import export_check  # pylint: disable=g-import-not-at-top
  # It reads a run's directory and leaves that run's config.gin as it is;
  # of that config it reads the model and data bindings, not the training
  # ones, which are not unused by mistake.
  gin_utils.run_binary(export_check.run, record_config=False,
                       report_unused=False)
