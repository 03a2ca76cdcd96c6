"""Paths of the public data samples in ../shared/data/raw (never copied here).

Tests that read them call `require(...)`, which skips the test cleanly when the
samples are absent (for example on a machine without ../shared).
"""

import pathlib
import unittest

SHARED_RAW = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "raw"
TAOBAO = SHARED_RAW / "taobao_userbehavior" / "UserBehavior_head_by_user.csv"
REES46 = SHARED_RAW / "rees46_multi_category_store" / "2019-Oct_head.csv"
OTTO = SHARED_RAW / "otto" / "train_sample_20_sessions.jsonl"
DIGINETICA = SHARED_RAW / "diginetica" / "sample_train-item-views.csv"
STATS_SCRIPT = SHARED_RAW / "click_a_buy_b_stats.py"


def require(path: pathlib.Path) -> pathlib.Path:
  """Returns `path`, or skips the calling test when it does not exist."""
  if not path.exists():
    raise unittest.SkipTest(f"shared sample {path} is absent")
  return path
