"""Benchmarks the category similarity of Eq. (1)–(2): events/s and peak memory.

    python experiments/benchmark_similarity.py \
      --base_dir=runs/bench_similarity \
      [--gin_file=...] [--gin_bindings='run.sizes = (1000000, 10000000)']

Writes `benchmark_similarity.{json,md}` and `config.gin` to `--base_dir`;
all settings are arguments of the gin-configurable
`cabb_tf.similarity.benchmark.run`.
"""

import os

from absl import app
from absl import flags
from absl import logging
import gin

from cabb_tf.similarity import benchmark

_BASE_DIR = flags.DEFINE_string("base_dir", None, "Output directory.",
                                required=True)
_GIN_FILE = flags.DEFINE_multi_string("gin_file", [], "Gin config files.")
_GIN_BINDINGS = flags.DEFINE_multi_string("gin_bindings", [],
                                          "Gin bindings, e.g. 'run.repeats=1'.")


def main(argv):
  del argv  # Unused.
  gin.parse_config_files_and_bindings(_GIN_FILE.value, _GIN_BINDINGS.value,
                                      skip_unknown=False)
  os.makedirs(_BASE_DIR.value, exist_ok=True)
  logging.info("Gin config:\n%s", gin.config_str())
  config_path = os.path.join(_BASE_DIR.value, "config.gin")
  with open(config_path, "w") as f:
    f.write(gin.config_str())
  benchmark.run(_BASE_DIR.value)
  with open(config_path, "w") as f:
    f.write(gin.operative_config_str())


if __name__ == "__main__":
  app.run(main)
