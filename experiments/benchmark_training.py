r"""Benchmarks training throughput: the TFDS → tf.data pipeline vs memory.

    python experiments/benchmark_training.py --base_dir=runs/benchmark_training \
        --gin_file=gin/multitask.gin

Batch sizes and steps are gin bindings of `cabb_tf.train_benchmark.run`.
"""

import cabb_tf  # pylint: disable=unused-import  (selects Keras 2 first)
from cabb_tf import gin_utils
from cabb_tf import train_benchmark

if __name__ == "__main__":
  gin_utils.run_binary(train_benchmark.run)
