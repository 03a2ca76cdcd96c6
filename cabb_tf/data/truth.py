"""Codes of the simulator's ground-truth fields `relation` and `cause`.

Each click example of a simulated dataset says why its CABB purchase B
happened (docs/simulator.md): `relation` is B's relation to the clicked A
(`RELATIONS`) and `cause` the mechanism that drew B (`CAUSES`); rows without
a B hold ''. Training stores them as int8 codes beside its predictions
(`train.save_arrays`), and the analyses (`analysis.ground_truth`) read them.
"""

from typing import Any, Sequence

import numpy as np

RELATIONS = ("", "substitute", "complement", "unrelated")
GENUINE = ("substitute", "complement")
NOISE = ("unrelated",)
GENUINE_CODES = tuple(RELATIONS.index(r) for r in GENUINE)
NOISE_CODES = tuple(RELATIONS.index(r) for r in NOISE)

# The values of the dataset field `cause`, '' (no B) first.
CAUSES = ("", "substitute", "complement", "noise", "other_click")
CAUSAL_GENUINE = ("substitute", "complement")
CAUSAL_GENUINE_CODES = tuple(CAUSES.index(c) for c in CAUSAL_GENUINE)


def _codes(strings: Sequence[Any], names: Sequence[str],
           what: str) -> np.ndarray:
  """Maps strings (str or UTF-8 bytes) to int8 indices in `names`."""
  values = np.asarray(strings, dtype=object)
  flat = [v.decode("utf-8") if isinstance(v, bytes) else str(v)
          for v in values.ravel()]
  lookup = {r: i for i, r in enumerate(names)}
  unknown = sorted(set(flat) - set(lookup))
  if unknown:
    raise ValueError(f"unknown {what}(s) {unknown}; the {what}s are "
                     f"{list(names)}.")
  return np.array([lookup[v] for v in flat], dtype=np.int8).reshape(
      values.shape)


def relation_codes(strings: Sequence[Any]) -> np.ndarray:
  """Maps relation strings (str or UTF-8 bytes) to int8 codes.

  Args:
    strings: relations as in the TFDS field `relation`, any shape.

  Returns:
    int8 array of the same shape: the index of each string in `RELATIONS`.

  Raises:
    ValueError: on a string outside `RELATIONS`.
  """
  return _codes(strings, RELATIONS, "relation")


def cause_codes(strings: Sequence[Any]) -> np.ndarray:
  """Maps cause strings (str or UTF-8 bytes) to int8 codes.

  Args:
    strings: causes as in the TFDS field `cause`, any shape.

  Returns:
    int8 array of the same shape: the index of each string in `CAUSES`.

  Raises:
    ValueError: on a string outside `CAUSES`.
  """
  return _codes(strings, CAUSES, "cause")
