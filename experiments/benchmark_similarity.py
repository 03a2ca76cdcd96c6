"""Benchmarks the category similarity of Eq. (1)–(2): events/s and peak memory.

    python experiments/benchmark_similarity.py \
      --base_dir=runs/bench_similarity \
      [--gin_file=...] [--gin_bindings='benchmark.run.sizes = (1000000, 10000000)']

Writes `benchmark_similarity.{json,md}` and `config.gin` to `--base_dir`;
all settings are arguments of the gin-configurable
`cabb_tf.similarity.benchmark.run`.
"""

import cabb_tf  # pylint: disable=unused-import  (selects Keras 2 first)
from cabb_tf import gin_utils
from cabb_tf.similarity import benchmark

if __name__ == "__main__":
  gin_utils.run_binary(benchmark.run)
