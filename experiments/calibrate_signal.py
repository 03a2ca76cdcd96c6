r"""Fixes a simulator regime's signal scale by one calibration target.

    python experiments/calibrate_signal.py --base_dir=runs/calibrate_paper \
        --gin_file=gin/calibrate_paper.gin

Trains the calibration model (by default the CABA-only baseline) on datasets
simulated at a grid of `simulate.signal_scale` values and writes
calibration.json and regime.gin (the chosen scale) to --base_dir.
"""

import cabb_tf  # pylint: disable=unused-import  (selects Keras 2 first)
from cabb_tf import calibrate_signal
from cabb_tf import gin_utils

if __name__ == "__main__":
  gin_utils.run_binary(calibrate_signal.run)
