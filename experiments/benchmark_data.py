r"""Benchmarks data preparation (load → sessions → labels → features).

    python experiments/benchmark_data.py --base_dir=runs/benchmark_data

Sizes and seed are gin bindings of `cabb_tf.data.benchmark.run`, e.g.
`--gin_bindings='run.sizes = (1000000,)'`.
"""

import cabb_tf  # pylint: disable=unused-import  (selects Keras 2 first)
from cabb_tf import gin_utils
from cabb_tf.data import benchmark

if __name__ == "__main__":
  gin_utils.run_binary(benchmark.run)
