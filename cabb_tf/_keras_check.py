"""Checks that `tf.keras` is Keras 2 (tf-keras), as tensorflow-recommenders needs."""

import os


def ensure_legacy_keras() -> None:
  """Raises ImportError unless `tf.keras` is the tf-keras (Keras 2) package.

  Raises:
    ImportError: if `tf.keras` resolves to Keras 3.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  module_name = getattr(tf.keras, "__name__", "")
  if module_name.startswith("tf_keras"):
    return
  try:
    import keras  # pylint: disable=g-import-not-at-top
    version = keras.__version__
  except ImportError:  # pragma: no cover - keras ships with tensorflow
    version = "unknown"
  raise ImportError(
      "cabb_tf needs Keras 2 (the tf-keras package) behind tf.keras, but "
      f"tf.keras is {module_name or 'not tf_keras'} (Keras {version}; "
      f"TF_USE_LEGACY_KERAS={os.environ.get('TF_USE_LEGACY_KERAS')!r}). Set "
      "the environment variable TF_USE_LEGACY_KERAS=1 before TensorFlow is "
      "first imported (or import cabb_tf first) and install tf-keras==2.21.0.")
