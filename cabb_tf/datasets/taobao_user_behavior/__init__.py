"""The `taobao_user_behavior` dataset: click examples from Taobao."""

from cabb_tf.datasets.taobao_user_behavior.taobao_user_behavior_dataset_builder import Builder
from cabb_tf.datasets.taobao_user_behavior.taobao_user_behavior_dataset_builder import TaobaoConfig
from cabb_tf.datasets.taobao_user_behavior.taobao_user_behavior_dataset_builder import TIME_RANGE_MS
