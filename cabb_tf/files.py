"""Writing output files atomically (a temp file in the same folder, then a rename)."""

import os
import tempfile
from typing import BinaryIO, Mapping, Union

import numpy as np

PathOrFile = Union[str, os.PathLike, BinaryIO]


def write_npz(path: PathOrFile, arrays: Mapping[str, np.ndarray],
              compressed: bool = False) -> None:
  """Saves arrays as `.npz` (no pickle) to a path, a URL or a file object.

  Args:
    path: a local path (written atomically), a URL such as `gs://...`
      (written through `tf.io.gfile`) or a binary file object. No suffix is
      added.
    arrays: the arrays by name.
    compressed: use `np.savez_compressed`.
  """
  save = np.savez_compressed if compressed else np.savez
  if hasattr(path, "write"):
    save(path, **arrays)
    return
  if "://" in str(path):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    with tf.io.gfile.GFile(str(path), "wb") as f:
      save(f, **arrays)
    return
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".npz")
  try:
    with os.fdopen(fd, "wb") as f:
      save(f, **arrays)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
