r"""Trains, evaluates and exports one conversion model.

    python experiments/train.py --base_dir=runs/multitask \
        --gin_file=gin/multitask.gin --gin_file=gin/quick.gin

Baselines: --gin_file=gin/last_click.gin or --gin_file=gin/caba_only.gin.
Writes config.gin, metrics.json, TensorBoard logs (train/, eval/),
checkpoints and export/ (a SavedModel) to --base_dir; an interrupted run
resumes when started again with the same --base_dir.
"""

from cabb_tf import cli

if __name__ == "__main__":
  cli.train()
