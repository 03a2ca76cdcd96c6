"""cabb_tf: Click A, Buy B conversion attribution in TensorFlow/Keras.

Importing the package selects Keras 2 (`tf-keras`), which tensorflow-recommenders
0.7.7 requires: it sets `TF_USE_LEGACY_KERAS=1` unless the variable is already
set, and fails with a clear message if `tf.keras` nevertheless resolves to
Keras 3 (for example because TensorFlow was imported and `tf.keras` touched
before `cabb_tf`, or the variable was set to 0).

It also keeps TensorFlow's C++ log to fatal errors unless the environment
sets `TF_CPP_MIN_LOG_LEVEL` or the command line asks for `--verbosity=1`
(`cabb_tf.logs`, docs/architecture.md "Output").
"""

import os
import sys

from cabb_tf import logs as _logs  # pylint: disable=g-bad-import-order

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
_native_level = _logs.native_level(sys.argv, os.environ)
if _native_level is not None:
  os.environ["TF_CPP_MIN_LOG_LEVEL"] = _native_level

from cabb_tf import _keras_check  # pylint: disable=g-import-not-at-top
from cabb_tf.version import __version__  # pylint: disable=g-import-not-at-top

# Also in a spawned worker, which inherits the level but not the argv.
with _logs.native_stderr_muted(os.environ.get("TF_CPP_MIN_LOG_LEVEL") ==
                               _logs.QUIET_NATIVE_LEVEL):
  _keras_check.ensure_legacy_keras()  # The first import of TensorFlow.

__all__ = ["__version__"]
