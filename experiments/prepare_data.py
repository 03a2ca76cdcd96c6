r"""Prepares a dataset: load or simulate → sessions → labels → features.

    python experiments/prepare_data.py --base_dir=runs/data \
        --gin_file=gin/datasets/synthetic.gin

Writes `data_report.json`, `feature_statistics.json`, `examples.parquet` and
`config.gin` to `--base_dir` and prints the report's main figures.
"""

from cabb_tf import cli

if __name__ == "__main__":
  cli.prepare()
