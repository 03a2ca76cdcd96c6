"""Rescoring served probabilities, for the tests of exported models."""

from typing import Dict, Mapping

import numpy as np
import tensorflow as tf

from cabb_tf import input_pipeline
from cabb_tf import train


def rescore(test: Mapping[str, tf.Tensor],
            served: Mapping[str, tf.Tensor]) -> Dict[str, float]:
  """`train.score` of an export's `caba` / `cabb` on a split in memory.

  α-free metrics only are meaningful: the split gets α = 1.
  """
  columns = {k: np.asarray(v) for k, v in input_pipeline.evaluation_columns(
      input_pipeline.with_alpha(test, None)).items()}
  return train.score(columns["y_caba"], columns["y_cabb"], columns["w_caba"],
                     columns["alpha"], np.asarray(served["caba"]),
                     np.asarray(served["cabb"]))
