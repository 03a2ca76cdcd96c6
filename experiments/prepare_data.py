r"""Prepares a dataset: load or simulate → sessions → labels → features.

    python experiments/prepare_data.py --base_dir=runs/data \
        --gin_file=gin/datasets/synthetic.gin

Writes `data_report.json`, `feature_statistics.json`, `examples.parquet` and
`config.gin` to `--base_dir` and prints the report's main figures.
"""

import cabb_tf  # pylint: disable=unused-import  (selects Keras 2 first)
from cabb_tf import gin_utils
from cabb_tf.data import pipeline


def prepare_and_print(base_dir: str) -> None:
  prepared = pipeline.prepare_to_dir(base_dir)
  print("\n".join(pipeline.summary_lines(prepared.report)))


if __name__ == "__main__":
  gin_utils.run_binary(prepare_and_print)
