"""cabb_tf: Click A, Buy B conversion attribution in TensorFlow/Keras.

Importing the package selects Keras 2 (`tf-keras`), which tensorflow-recommenders
0.7.7 requires: it sets `TF_USE_LEGACY_KERAS=1` unless the variable is already
set, and fails with a clear message if `tf.keras` nevertheless resolves to
Keras 3 (for example because TensorFlow was imported and `tf.keras` touched
before `cabb_tf`, or the variable was set to 0).
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from cabb_tf import _keras_check  # pylint: disable=g-import-not-at-top
from cabb_tf.version import __version__  # pylint: disable=g-import-not-at-top

_keras_check.ensure_legacy_keras()

__all__ = ["__version__"]
