r"""Benchmarks data preparation (load → sessions → labels → features).

    python experiments/benchmark_data.py --base_dir=runs/benchmark_data

Sizes and seed are gin bindings of `cabb_tf.data.benchmark.run`, e.g.
`--gin_bindings='run.sizes = (1000000,)'`.
"""

from absl import app
from absl import flags

import cabb_tf  # pylint: disable=unused-import  (selects Keras 2 first)
from cabb_tf import gin_utils
from cabb_tf.data import benchmark

_BASE_DIR = flags.DEFINE_string("base_dir", None, "Output directory.",
                                required=True)
_GIN_FILE = flags.DEFINE_multi_string("gin_file", [], "Gin config files.")
_GIN_BINDINGS = flags.DEFINE_multi_string("gin_bindings", [],
                                          "Gin bindings.")


def main(argv):
  del argv
  gin_utils.parse(_GIN_FILE.value, _GIN_BINDINGS.value)
  gin_utils.record(_BASE_DIR.value)
  benchmark.run(_BASE_DIR.value)


if __name__ == "__main__":
  app.run(main)
