r"""Reproduces the paper's Tables 1–3 and RQ-4 on a dataset.

    python experiments/reproduce.py --base_dir=runs/reproduce \
        --gin_file=gin/reproduce.gin [--gin_file=gin/quick.gin]

Real logs: add --gin_file=gin/datasets/taobao.gin (or rees46.gin) after
reproduce.gin. Writes results.json, results.md, PNG plots and per-run
directories (TensorBoard: --logdir=<base_dir>/runs) to --base_dir; started
again with the same --base_dir it continues where it stopped.
"""

from cabb_tf import cli

if __name__ == "__main__":
  cli.reproduce()
