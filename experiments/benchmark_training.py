r"""Benchmarks training throughput: the TFDS → tf.data pipeline vs memory.

    python experiments/benchmark_training.py --base_dir=runs/benchmark_training \
        --gin_file=gin/multitask.gin

Batch sizes and steps are gin bindings of `cabb_tf.train_benchmark.run`.
"""

from absl import app
from absl import flags

import cabb_tf  # pylint: disable=unused-import  (selects Keras 2 first)
from cabb_tf import gin_utils
from cabb_tf import train_benchmark

_BASE_DIR = flags.DEFINE_string("base_dir", None, "Output directory.",
                                required=True)
_GIN_FILE = flags.DEFINE_multi_string("gin_file", [], "Gin config files.")
_GIN_BINDINGS = flags.DEFINE_multi_string("gin_bindings", [],
                                          "Gin bindings.")


def main(argv):
  del argv
  gin_utils.parse(_GIN_FILE.value, _GIN_BINDINGS.value)
  train_benchmark.run(_BASE_DIR.value)


if __name__ == "__main__":
  app.run(main)
