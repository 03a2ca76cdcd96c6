"""How much a run prints (docs/architecture.md, "Output").

By default a binary prints what a researcher reads: the package's own log
lines, at the binary's verbosity, and the errors of anything else. Asked for
more with `--verbosity=1` (absl's flag), it prints everything again:

* TensorFlow's C++ log (`TF_CPP_MIN_LOG_LEVEL`): the failed `cuInit` of a
  machine without a GPU, `node_def_util` and grappler lines. The level is
  read once, when TensorFlow loads, so `native_level` decides it from the
  command line before the package imports TensorFlow; a level set in the
  environment is always kept. The lines TensorFlow's libraries write while
  they load, before the level applies ("Could not find cuda drivers"), are
  kept out by `native_stderr_muted` around that import.
* The Python log lines of TensorFlow, TFDS, tf-keras and other libraries
  below ERROR (deprecations, retracing notices, "Reusing dataset ..."):
  `quiet_libraries` filters them out of absl's handler.
* TFDS' progress bars (`tfds.disable_progress_bar`).
"""

import contextlib
import io
import logging as std_logging
import os
import re
import sys
from typing import Mapping, Optional, Sequence

# Verbosity (absl's: -1 WARNING, 0 INFO, 1 DEBUG) from which the libraries'
# lines, the C++ log and the progress bars are shown.
LOUD = 1
# TF_CPP_MIN_LOG_LEVEL when quiet: only FATAL (a failed cuInit is an ERROR).
QUIET_NATIVE_LEVEL = "3"
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_VERBOSITY_FLAG = re.compile(r"^--?(?:verbosity|v)=(-?\d+)$")


def verbosity_in(argv: Sequence[str]) -> Optional[int]:
  """The `--verbosity=N` (or `-v=N`, `--verbosity N`) of a command line."""
  for i, arg in enumerate(argv):
    match = _VERBOSITY_FLAG.match(arg)
    if match:
      return int(match.group(1))
    if arg in ("--verbosity", "-v") and i + 1 < len(argv):
      try:
        return int(argv[i + 1])
      except ValueError:
        return None
  return None


def native_level(argv: Sequence[str], environ: Mapping[str, str]
                 ) -> Optional[str]:
  """The TF_CPP_MIN_LOG_LEVEL to set before TensorFlow loads, or None.

  None keeps what is there: a level the environment sets, or TensorFlow's
  own default when the command line asks for `--verbosity` ≥ `LOUD`.
  """
  if "TF_CPP_MIN_LOG_LEVEL" in environ:
    return None
  verbosity = verbosity_in(argv)
  if verbosity is not None and verbosity >= LOUD:
    return None
  return QUIET_NATIVE_LEVEL


@contextlib.contextmanager
def native_stderr_muted(muted: bool):
  """Sends file descriptor 2 to /dev/null inside the block when `muted`.

  For the import of TensorFlow only: what its shared libraries print while
  they load ignores `TF_CPP_MIN_LOG_LEVEL`. Python's own `sys.stderr` is
  flushed first, and the descriptor is restored even if the import fails,
  so its traceback is printed.
  """
  if not muted:
    yield
    return
  sys.stderr.flush()
  saved = os.dup(2)
  try:
    with open(os.devnull, "w") as null:
      os.dup2(null.fileno(), 2)
    yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)


class _LibraryFilter(std_logging.Filter):
  """Lets through the package's records and other code's errors."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    if record.levelno >= std_logging.ERROR:
      return True
    return os.path.abspath(record.pathname).startswith(_PACKAGE_DIR)


_LIBRARY_FILTER = _LibraryFilter()


def quiet_libraries(verbosity: int) -> None:
  """Below `LOUD`, keeps other libraries' lines under ERROR out of the log.

  The filter sits on absl's handler (where TensorFlow's and TFDS' Python
  logs end) and on the 'tensorflow' logger's own handlers; TFDS' progress
  bars are turned off too. At `LOUD` and above it is removed again.
  """
  from absl import logging  # pylint: disable=g-import-not-at-top
  # absl's handler under absl.app; the root's own in a process without it
  # (a pool's worker); TensorFlow's logger has a handler of its own.
  handlers = [logging.get_absl_handler()]
  handlers += std_logging.getLogger().handlers
  handlers += std_logging.getLogger("tensorflow").handlers
  for handler in handlers:
    if verbosity >= LOUD:
      handler.removeFilter(_LIBRARY_FILTER)
    else:
      handler.addFilter(_LIBRARY_FILTER)
  if verbosity < LOUD:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    tfds.disable_progress_bar()


def quiet_stdout() -> contextlib.AbstractContextManager:
  """Keeps what libraries print to stdout (TFDS' "Downloading and preparing
  dataset ...") out of the block unless the verbosity is `LOUD`."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  if logging.get_verbosity() >= LOUD:
    return contextlib.nullcontext()
  return contextlib.redirect_stdout(io.StringIO())
