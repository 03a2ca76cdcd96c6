"""The `session_log` dataset: click examples from a log read by `load_csv`."""

# pylint: disable=line-too-long
from cabb_tf.datasets.session_log.session_log_dataset_builder import Builder
from cabb_tf.datasets.session_log.session_log_dataset_builder import SessionLogConfig
