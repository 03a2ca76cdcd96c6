r"""Measures a run's training/serving skew: its export against its model.

    python experiments/check_export.py --base_dir=runs/multitask \
        --gin_file=runs/multitask/config.gin

Writes `export_check.json` (the largest absolute difference of each head's
probability, per signature, over every test row) to the run's directory.
"""

from cabb_tf import cli

if __name__ == "__main__":
  cli.check_export()
