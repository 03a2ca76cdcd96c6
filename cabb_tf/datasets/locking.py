"""Dataset builds that wait for each other: one lock per dataset config.

TFDS builds into `<data_dir>/<name>/<config>/incomplete.<random>_<version>/`
and renames it on success. Two processes building the same dataset at once
(two seeds of one experiment on a fresh `data_dir`) can pick the same random
name, since experiments seed Python's `random` first, and one of them fails;
a build that is killed leaves its `incomplete.*` directory behind for good.
`prepare` takes an exclusive file lock in the config directory first: a
second build waits, then finds the dataset prepared and reuses it, and the
holder of the lock removes every `incomplete.*` directory it finds (no build
can own one while the lock is held).
"""

import contextlib
import fcntl
import os
import shutil
from typing import Iterator, Optional

from absl import logging
import tensorflow_datasets as tfds

LOCK_FILE = ".build.lock"
INCOMPLETE_PREFIX = "incomplete."


@contextlib.contextmanager
def build_lock(directory: str) -> Iterator[None]:
  """An exclusive lock on `directory/.build.lock` (created), held while open."""
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, LOCK_FILE), "a") as handle:
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(handle, fcntl.LOCK_UN)


def remove_stale_builds(directory: str) -> int:
  """Removes `incomplete.*` directories (call with the lock held).

  Returns:
    How many were removed.
  """
  removed = 0
  for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
    path = os.path.join(directory, name)
    if name.startswith(INCOMPLETE_PREFIX) and os.path.isdir(path):
      logging.warning("Removing %s, left by a build that did not finish.",
                      path)
      shutil.rmtree(path)
      removed += 1
  return removed


def prepared_builder(name: str, data_dir: Optional[str] = None,
                     download_config: Optional[tfds.download.DownloadConfig]
                     = None) -> tfds.core.DatasetBuilder:
  """`tfds.builder(name, data_dir)`, prepared, serialized across processes.

  The builder is made again once the lock is held, so that one that waited
  for another process's build reads the finished dataset. Local data dirs
  only; a remote one (e.g. `gs://`) is prepared without the lock.
  """
  builder = tfds.builder(name, data_dir=data_dir)
  directory = os.fspath(builder.data_path.parent)
  if "://" in directory:
    builder.download_and_prepare(download_config=download_config)
    return builder
  with build_lock(directory):
    remove_stale_builds(directory)
    builder = tfds.builder(name, data_dir=data_dir)
    builder.download_and_prepare(download_config=download_config)
  return builder
