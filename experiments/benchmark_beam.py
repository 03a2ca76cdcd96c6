r"""Benchmarks the Beam preparation on simulated logs (docs/beam.md).

    python experiments/benchmark_beam.py --base_dir=runs/benchmark_beam \
        --gin_bindings='pipelines.benchmark.run.sizes = (10000000, 100000000)'

Each size: a sharded Parquet log from the simulator, then
`python -m cabb_tf.pipelines.prepare_beam` on the DirectRunner with its
process tree's memory sampled from /proc (`cabb_tf.pipelines.benchmark`).
Run it alone on the machine.
"""

import cabb_tf  # pylint: disable=unused-import  (selects Keras 2 first)
from cabb_tf import gin_utils
from cabb_tf.pipelines import benchmark

if __name__ == "__main__":
  gin_utils.run_binary(benchmark.run)
