"""TFDS builder `session_log`: click examples from your own event log.

The log is whatever gin binds to `cabb_tf.data.loaders.load_csv` (a file or a
glob, its column and event-type mappings, timestamp unit or format, session
and category columns): `gin/datasets/session_log.gin` selects this dataset,
and your own gin file includes it and binds `load_csv.*` (docs/loading.md,
"Your own log, end to end").

A build records (in `builder.info.metadata`)

* `gin_bindings`: the bindings of `load_csv` and of the preparation
  (sessions, labels, features), as every click-example builder does, so that
  `click_examples.binding_mismatches` refuses to reuse the build under other
  bindings;
* `source_files`: for each file read, its absolute path, size in bytes,
  modification time and the SHA-256 of its first and last MiB
  (`source_fingerprints`). A later request whose files differ in size or in
  those bytes fails (`source_mismatches`, checked by `check_reuse` before the
  build is reused); a modification time alone (a copy, a `touch`) does not
  count, and an edit in the middle of a file that keeps its size and both
  ends is not seen.
"""

import dataclasses
import hashlib
import os
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from absl import logging
import gin
import tensorflow as tf
import tensorflow_datasets as tfds

from cabb_tf import gin_utils
from cabb_tf.data import loaders
from cabb_tf.datasets import click_examples

SOURCE_FILES_KEY = "source_files"
# Bytes hashed at each end of a source file.
HASHED_BYTES = 1 << 20
_LOAD_CSV = "cabb_tf.data.loaders.load_csv"


@dataclasses.dataclass(eq=False)
class SessionLogConfig(click_examples.ClickExamplesConfig):
  """The time split of a `session_log` build (the log itself is in gin)."""


def _fingerprint(path: str) -> Dict[str, Any]:
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


def source_fingerprints(path: os.PathLike) -> Dict[str, Dict[str, Any]]:
  """{absolute path: fingerprint} of the files `load_csv` reads for `path`.

  Args:
    path: a file or a glob pattern (see `loaders.source_files`).

  Returns:
    For each file: `size` (bytes), `mtime_ns` and `head_tail_sha256` (of the
    first and the last MiB).

  Raises:
    ValueError: if no file matches.
  """
  return {os.path.abspath(f): _fingerprint(f)
          for f in loaders.source_files(path)}


def _differs(then: Optional[Dict[str, Any]],
             now: Optional[Dict[str, Any]]) -> bool:
  if then is None or now is None:
    return then is not now
  return any(then.get(k) != now.get(k) for k in ("size", "head_tail_sha256"))


def source_mismatches(builder: tfds.core.DatasetBuilder
                      ) -> Dict[str, Tuple[Any, Any]]:
  """Source files of a prepared build that differ from the files now bound.

  Args:
    builder: a prepared builder; builders that record no `source_files` (or
      that cannot name their current source) give {}.

  Returns:
    {absolute path: (fingerprint at build or None, fingerprint now or None)}
    for every file added, removed, resized or rewritten at either end.
  """
  metadata = builder.info.metadata or {}
  recorded = metadata.get(SOURCE_FILES_KEY)
  current_path = getattr(builder, "source_path", lambda: None)()
  if not recorded or current_path is None:
    return {}
  try:
    current = source_fingerprints(current_path)
  except ValueError:
    current = {}
  out = {}
  for path in sorted(set(recorded) | set(current)):
    then, now = recorded.get(path), current.get(path)
    if _differs(then, now):
      out[path] = (then, now)
  return out


def check_reuse(builder: "click_examples.ClickExamplesBuilder") -> None:
  """Checks a prepared build before it is reused; marks its bindings read.

  Raises ValueError when its source files changed (`source_mismatches`).
  Reusing the build calls none of the functions whose gin bindings shaped it;
  `input_pipeline.load_data` compares those bindings with the build's record
  (`click_examples.binding_mismatches`), so they are marked read for
  `gin_utils.report_unused_bindings`.

  Args:
    builder: a prepared click-example builder.

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
        f"files than the ones now bound ({lines}). Delete that directory to "
        "rebuild it, or give this log its own load_data.data_dir.")
  # pylint: disable=protected-access
  bound = click_examples.bound_gin_parameters(
      builder._gin_configurables(), ignore=builder._gin_explicit())
  # pylint: enable=protected-access
  gin_utils.mark_read(
      bound, why=f"compared with the record of the build in {builder.data_path}")


class Builder(click_examples.ClickExamplesBuilder):
  """Click examples from the event log that gin binds to `load_csv`.

  Nothing is downloaded: the log is read from `load_csv.path` (a file or a
  glob pattern) with the mappings bound in gin. Sessions, labels, features
  and the split are those of every click-example builder
  (`click_examples`). Build each log into its own `load_data.data_dir`: TFDS
  reuses a build by name, config and version, and a build made from other
  bindings or other files is refused, never read silently.
  """

  BUILDER_CONFIGS = [
      SessionLogConfig(
          name="default",
          description="The log bound to load_csv in gin; the last 20 % of its "
                      "time range is test, the 10 % before it validation."),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "default"

  def _gin_configurables(self) -> Sequence[Callable[..., Any]]:
    return tuple(super()._gin_configurables()) + (loaders.load_csv,)

  def source_path(self) -> Optional[str]:
    """The `load_csv.path` bound in gin now, or None."""
    try:
      return str(gin.query_parameter(f"{_LOAD_CSV}.path"))
    except ValueError:
      return None

  def download_and_prepare(self, *args, **kwargs):
    """Checks a reused build first (`session_log.check_reuse`)."""
    if self.is_prepared():
      check_reuse(self)
    return super().download_and_prepare(*args, **kwargs)

  def _load_log(self, dl_manager: tfds.download.DownloadManager
                ) -> click_examples.Log:
    del dl_manager  # The log is named in gin, not downloaded.
    missing = []
    for parameter in ("path", "columns", "event_type_map"):
      try:
        gin.query_parameter(f"{_LOAD_CSV}.{parameter}")
      except ValueError:
        missing.append(f"load_csv.{parameter}")
    if missing:
      raise ValueError(
          f"{self.info.full_name} reads the log that gin binds to load_csv, "
          f"but {', '.join(missing)} is not bound. Include "
          "'datasets/session_log.gin' in your gin file and bind load_csv.path, "
          ".columns, .event_type_map and .timestamp_unit or .timestamp_format "
          "(see gin/datasets/session_log_example_*.gin and docs/loading.md).")
    path = self.source_path()
    fingerprints = source_fingerprints(path)
    logging.info("%s: reading %d file(s) for %s.", self.info.full_name,
                 len(fingerprints), path)
    events, catalog, report = loaders.load_csv()
    # The files are fingerprinted before reading: a file that changes while
    # it is read is seen as changed by the next request.
    self.info.metadata[SOURCE_FILES_KEY] = fingerprints
    return events, catalog, report
