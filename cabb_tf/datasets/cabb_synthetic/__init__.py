"""The `cabb_synthetic` dataset: click examples from the package's simulator."""

from cabb_tf.datasets.cabb_synthetic.cabb_synthetic_dataset_builder import Builder
from cabb_tf.datasets.cabb_synthetic.cabb_synthetic_dataset_builder import SyntheticConfig
