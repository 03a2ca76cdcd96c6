r"""Trains, evaluates and exports one conversion model.

    python experiments/train.py --base_dir=runs/multitask \
        --gin_file=gin/multitask.gin --gin_file=gin/quick.gin

Baselines: --gin_file=gin/last_click.gin or --gin_file=gin/caba_only.gin.
Writes config.gin, metrics.json, TensorBoard logs (train/, eval/),
checkpoints and export/ (a SavedModel) to --base_dir; an interrupted run
resumes when started again with the same --base_dir.
"""

from absl import app
from absl import flags

import cabb_tf  # pylint: disable=unused-import  (selects Keras 2 first)
from cabb_tf import gin_utils
from cabb_tf import train

_BASE_DIR = flags.DEFINE_string("base_dir", None, "Run directory.",
                                required=True)
_GIN_FILE = flags.DEFINE_multi_string("gin_file", [], "Gin config files.")
_GIN_BINDINGS = flags.DEFINE_multi_string("gin_bindings", [],
                                          "Gin bindings.")


def main(argv):
  del argv
  gin_utils.parse(_GIN_FILE.value, _GIN_BINDINGS.value)
  train.run(_BASE_DIR.value)


if __name__ == "__main__":
  app.run(main)
