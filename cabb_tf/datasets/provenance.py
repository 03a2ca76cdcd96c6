"""What a built click-example dataset was built from: its source files.

TFDS reuses a prepared dataset by name, config and version alone. The
click-example builders add two records to `builder.info.metadata` so that a
build is never reused for another log (docs/loading.md, "Your own log, end to
end"):

* `gin_bindings`, compared by `click_examples.binding_mismatches`;
* `source_files` (this module): for each file read, its absolute path, size
  in bytes, modification time and the SHA-256 of its first and last MiB.

A later request whose files differ in size or in those bytes is refused
(`check_sources`); a modification time alone (a copy, a `touch`) does not
count, and an edit in the middle of a file that keeps its size and both ends
is not seen. When none of the recorded files can be found any more (the raw
log was deleted after the build, as large logs often are), the build is
reused with a warning: there is nothing left to compare it with.
"""

import hashlib
import os
from typing import Any, Dict, Optional, Tuple

from absl import logging
import tensorflow as tf

from cabb_tf.data import loaders

SOURCE_FILES_KEY = "source_files"
# Bytes hashed at each end of a source file.
HASHED_BYTES = 1 << 20

Fingerprint = Dict[str, Any]


def fingerprint(path: str) -> Fingerprint:
  """Size, modification time and the SHA-256 of the first and last MiB."""
  stat = tf.io.gfile.stat(path)
  digest = hashlib.sha256()
  with tf.io.gfile.GFile(path, "rb") as f:
    digest.update(f.read(HASHED_BYTES))
    if stat.length > HASHED_BYTES:
      f.seek(max(stat.length - HASHED_BYTES, HASHED_BYTES))
      digest.update(f.read(HASHED_BYTES))
  return {"size": int(stat.length), "mtime_ns": int(stat.mtime_nsec),
          "head_tail_sha256": digest.hexdigest()}


def source_fingerprints(path: os.PathLike) -> Dict[str, Fingerprint]:
  """{absolute path: fingerprint} of the files a loader reads for `path`.

  Args:
    path: a file or a glob pattern (see `loaders.source_files`).

  Returns:
    For each file: `size` (bytes), `mtime_ns` and `head_tail_sha256` (of the
    first and the last MiB).

  Raises:
    ValueError: if no file matches.
  """
  return {os.path.abspath(f): fingerprint(f)
          for f in loaders.source_files(path)}


def _differs(then: Optional[Fingerprint], now: Optional[Fingerprint]) -> bool:
  if then is None or now is None:
    return then is not now
  return any(then.get(k) != now.get(k) for k in ("size", "head_tail_sha256"))


def source_mismatches(builder) -> Dict[str, Tuple[Any, Any]]:
  """Source files of a prepared build that differ from the files now named.

  Args:
    builder: a prepared click-example builder (`source_path()`: the file or
      glob it would read now, or None). Builders that record no
      `source_files`, or name no current source, give {}.

  Returns:
    {absolute path: (fingerprint at build or None, fingerprint now or None)}
    for every file added, removed, resized or rewritten at either end; {}
    when none of the files now named exists (nothing to compare with).
  """
  metadata = builder.info.metadata or {}
  recorded = metadata.get(SOURCE_FILES_KEY)
  current_path = builder.source_path()
  if not recorded or current_path is None:
    return {}
  try:
    current = source_fingerprints(current_path)
  except ValueError:
    current = {}
  if not current:
    logging.warning(
        "%s was built from %s; no file matches %s now, so the build is reused "
        "unchecked.", builder.data_path, sorted(recorded), current_path)
    return {}
  out = {}
  for path in sorted(set(recorded) | set(current)):
    then, now = recorded.get(path), current.get(path)
    if _differs(then, now):
      out[path] = (then, now)
  return out


def check_sources(builder) -> None:
  """Raises when a prepared build's source files differ from those named now.

  Args:
    builder: a prepared builder (see `source_mismatches`).

  Raises:
    ValueError: naming the changed files and the directory to delete.
  """
  changed = source_mismatches(builder)
  if changed:
    lines = "; ".join(
        f"{path}: built from {then or 'no such file'}, now "
        f"{now or 'no such file'}" for path, (then, now) in changed.items())
    raise ValueError(
        f"the dataset in {builder.data_path} was built from other source "
        f"files than the ones now named ({lines}). Delete that directory to "
        "rebuild it, or give this log its own load_data.data_dir.")
