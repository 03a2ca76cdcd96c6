r"""Prepares a dataset: load or simulate → sessions → labels → features.

    python experiments/prepare_data.py --base_dir=runs/data \
        --gin_file=gin/datasets/synthetic.gin

Writes `data_report.json`, `feature_statistics.json`, `examples.parquet` and
`config.gin` to `--base_dir` and prints the report's main figures.
"""

from absl import app
from absl import flags

import cabb_tf  # pylint: disable=unused-import  (selects Keras 2 first)
from cabb_tf import gin_utils
from cabb_tf.data import pipeline

_BASE_DIR = flags.DEFINE_string("base_dir", None, "Output directory.",
                                required=True)
_GIN_FILE = flags.DEFINE_multi_string("gin_file", [], "Gin config files.")
_GIN_BINDINGS = flags.DEFINE_multi_string("gin_bindings", [],
                                          "Gin bindings.")


def main(argv):
  del argv
  gin_utils.parse(_GIN_FILE.value, _GIN_BINDINGS.value)
  prepared = pipeline.prepare_to_dir(_BASE_DIR.value)
  gin_utils.record(_BASE_DIR.value)
  print("\n".join(pipeline.summary_lines(prepared.report)))


if __name__ == "__main__":
  app.run(main)
