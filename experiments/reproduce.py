r"""Reproduces the paper's Tables 1–3 and RQ-4 on a dataset.

    python experiments/reproduce.py --base_dir=runs/reproduce \
        --gin_file=gin/reproduce.gin [--gin_file=gin/quick.gin]

Real logs: add --gin_file=gin/datasets/taobao.gin (or rees46.gin) after
reproduce.gin. Writes results.json, results.md, PNG plots and per-run
directories (TensorBoard: --logdir=<base_dir>/runs) to --base_dir; started
again with the same --base_dir it continues where it stopped.
"""

from absl import app
from absl import flags

import cabb_tf  # pylint: disable=unused-import  (selects Keras 2 first)
from cabb_tf import gin_utils
from cabb_tf import reproduce

_BASE_DIR = flags.DEFINE_string("base_dir", None, "Output directory.",
                                required=True)
_GIN_FILE = flags.DEFINE_multi_string("gin_file", [], "Gin config files.")
_GIN_BINDINGS = flags.DEFINE_multi_string("gin_bindings", [],
                                          "Gin bindings.")


def main(argv):
  del argv
  gin_utils.parse(_GIN_FILE.value, _GIN_BINDINGS.value)
  reproduce.run(_BASE_DIR.value)


if __name__ == "__main__":
  app.run(main)
