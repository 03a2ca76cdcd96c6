"""The `rees46` dataset: click examples from the REES46 store log."""

from cabb_tf.datasets.rees46.rees46_dataset_builder import Builder
from cabb_tf.datasets.rees46.rees46_dataset_builder import Rees46Config
