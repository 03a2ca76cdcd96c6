"""Training on more than one device or worker: `train.run.strategy`.

    train.run.strategy = ('default' | 'mirrored' | 'multi_worker'
                          | 'parameter_server')

* `default`      — one device, no distribution (the fast path of one CPU).
* `mirrored`     — `tf.distribute.MirroredStrategy`: one process, the
  replicas of its local devices (several GPUs, or CPUs split into logical
  devices).
* `multi_worker` — `tf.distribute.MultiWorkerMirroredStrategy`: one process
  per worker, synchronous all-reduce; the cluster comes from `TF_CONFIG`
  (docs/distributed.md).
* `parameter_server` — `tf.distribute.ParameterServerStrategy`: a chief
  (the coordinator, which runs `train.run`) dispatches steps to worker
  tasks asynchronously, and the variables live on `ps` tasks, large
  embedding tables split across them (`variable_partitioner`). The worker
  and ps tasks only serve (`serve`).

Under every synchronous strategy a step sees the same rows as under `default`: an
epoch's order is `np.random.default_rng(seed).permutation(n)`, global batch
k is `order[k * B:(k + 1) * B]`, and replica r of R takes the r-th of its R
near-equal contiguous pieces (`replica_pieces`). Each worker holds the
training split in memory and feeds its own replicas' pieces
(`index_batches`); the streaming path shards records by file when a split
has at least one file per worker, by record otherwise (`shard_policy`).

Only the chief writes the run directory (`config.gin`, summaries,
checkpoints, `metrics.json`, the export) and evaluates the test split; the
other workers take part in the synchronous steps and the per-epoch
validation, and write their checkpoints to a scratch directory
(`scratch_dir`) that they delete at the end.

Under `parameter_server` the steps are asynchronous: each worker draws its
batches from its own permutation of the epoch (`worker_batches`), and the
chief, which alone runs the trainer, writes everything and computes the
validation loss on a plain copy of the weights.
"""

import json
import os
from typing import Callable, Dict, Iterator, List, Optional

from absl import logging
import gin
import numpy as np
import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker", "parameter_server")
# The task types of a parameter-server cluster that serve the chief.
SERVER_TASKS = ("worker", "ps")


def check_strategy(name: str) -> None:
  if name not in STRATEGIES:
    raise ValueError(f"train.run.strategy must be one of {STRATEGIES}, got "
                     f"{name!r}.")


def make_strategy(name: str) -> tf.distribute.Strategy:
  """The `tf.distribute` strategy of `train.run.strategy`.

  Create it before any other TensorFlow work of the process: a multi-worker
  strategy configures the collective ops of the runtime, which TensorFlow
  allows only before the runtime starts.

  Raises:
    ValueError: for an unknown name; `multi_worker` without a `TF_CONFIG`
      naming a cluster of workers and this process's task;
      `parameter_server` without a chief, workers and ps tasks in it, or in
      a process other than the chief.
  """
  check_strategy(name)
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  config = _tf_config(name)
  if name == "parameter_server":
    if config["task"].get("type") != "chief":
      raise ValueError(
          "Under train.run.strategy = 'parameter_server' only the chief runs "
          "train.run; worker and ps tasks run distribute.serve "
          "(experiments/train.py does this for them).")
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    num_ps = len(config["cluster"]["ps"])
    return tf.distribute.ParameterServerStrategy(
        resolver, variable_partitioner=variable_partitioner(num_ps))
  return tf.distribute.MultiWorkerMirroredStrategy()


def _tf_config(name: str) -> Dict:
  """`TF_CONFIG` of a cluster strategy, checked for what `name` needs."""
  config = json.loads(os.environ.get("TF_CONFIG") or "{}")
  cluster = config.get("cluster", {})
  if name == "parameter_server":
    missing = [task for task in ("chief", "worker", "ps")
               if not cluster.get(task)]
    if missing:
      raise ValueError(
          "train.run.strategy = 'parameter_server' needs a cluster of a "
          "chief, workers and ps tasks in the TF_CONFIG environment variable, "
          f"and its cluster has no {' and no '.join(missing)} (TF_CONFIG = "
          "{\"cluster\": {\"chief\": [\"host:port\"], \"worker\": [...], "
          "\"ps\": [...]}, \"task\": {\"type\": \"chief\", \"index\": "
          "0}}); docs/distributed.md.")
  elif not cluster.get("worker") and not cluster.get("chief"):
    raise ValueError(
        "train.run.strategy = 'multi_worker' needs the cluster in the "
        "TF_CONFIG environment variable (TF_CONFIG = {\"cluster\": "
        "{\"worker\": [\"host:port\", ...]}, \"task\": {\"type\": \"worker\", "
        "\"index\": i}}); docs/distributed.md.")
  if "task" not in config:
    raise ValueError("TF_CONFIG names a cluster but not this process's task "
                     "({\"task\": {\"type\": \"worker\", \"index\": i}}).")
  return config


@gin.configurable
def variable_partitioner(num_ps: int, min_shard_bytes: int = 256 << 10
                         ) -> tf.distribute.experimental.partitioners.Partitioner:
  """How `parameter_server` splits a variable across the ps tasks.

  A variable is cut along its first axis (an embedding table's rows) into
  at most `num_ps` shards of at least `min_shard_bytes` each: the small
  dense layers stay whole, a large id table is spread over every ps.
  """
  return tf.distribute.experimental.partitioners.MinSizePartitioner(
      min_shard_bytes=min_shard_bytes, max_shards=num_ps)


def serve(name: str) -> None:
  """Runs this process's TensorFlow server if it is a worker or ps task of
  a `parameter_server` cluster; returns at once otherwise.

  A server task executes the steps (worker) or holds the variables (ps)
  that the chief sends it. It never returns: the job ends when its launcher
  stops it, after the chief has finished (docs/distributed.md).

  Raises:
    ValueError: under 'parameter_server', when `TF_CONFIG` lacks the
      cluster's chief, workers or ps tasks (naming which) or this task.
  """
  if name != "parameter_server":
    return
  config = _tf_config(name)
  task_type = config["task"].get("type")
  if task_type not in SERVER_TASKS:
    return
  resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
  # A failed remote call is reported to the chief rather than retried here.
  os.environ["GRPC_FAIL_FAST"] = "use_caller"
  server = tf.distribute.Server(
      resolver.cluster_spec(), job_name=task_type,
      task_index=resolver.task_id, protocol=resolver.rpc_layer or "grpc",
      start=True)
  logging.info("Serving as %s %d of a parameter-server cluster.", task_type,
               resolver.task_id)
  server.join()


def is_parameter_server(strategy: tf.distribute.Strategy) -> bool:
  return isinstance(strategy, tf.distribute.ParameterServerStrategy)


def split_variables(model: tf.keras.Model) -> Dict[str, List[str]]:
  """The variables of `model` split across ps tasks: name → shard devices."""
  split = {}
  for layer in model.layers:
    for name, value in vars(layer).items():
      if isinstance(value, tf.__internal__.distribute.ShardedVariable):
        split[f"{layer.name}/{name}"] = [v.device for v in value.variables]
  return split


def _task(strategy: tf.distribute.Strategy):
  """(task type, task id, cluster dict) of a multi-worker strategy."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return None, None, {}
  return (resolver.task_type, resolver.task_id,
          resolver.cluster_spec().as_dict())


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes the run: the `chief` task, or worker 0 of
  a cluster without one, or the one process of a local strategy."""
  task_type, task_id, cluster = _task(strategy)
  if task_type is None:
    return True
  if task_type == "chief":
    return True
  return task_type == "worker" and task_id == 0 and "chief" not in cluster


def num_workers(strategy: tf.distribute.Strategy) -> int:
  """The input pipelines (processes) that feed the strategy's replicas."""
  _, _, cluster = _task(strategy)
  return max(1, len(cluster.get("worker", [])) + len(cluster.get("chief", [])))


def scratch_dir(base_dir: str, strategy: tf.distribute.Strategy) -> str:
  """Where a worker other than the chief writes what a strategy makes every
  worker write (checkpoints): `base_dir/workers/<type>_<id>`."""
  task_type, task_id, _ = _task(strategy)
  return os.path.join(base_dir, "workers", f"{task_type}_{task_id}")


def replica_pieces(order: np.ndarray, batch_size: int,
                   num_replicas: int) -> Iterator[List[np.ndarray]]:
  """Each global batch of `order` split into `num_replicas` pieces.

  Global batch k is `order[k * batch_size:(k + 1) * batch_size]`; its pieces
  are contiguous and differ in size by at most one row. A last batch with
  fewer rows than replicas is left out: every replica needs a row.

  Yields:
    One list of `num_replicas` index arrays per global batch.
  """
  for start in range(0, len(order), batch_size):
    batch = order[start:start + batch_size]
    if len(batch) < num_replicas:
      return
    yield np.array_split(batch, num_replicas)


def num_steps(num_examples: int, batch_size: int, num_replicas: int) -> int:
  """Global batches of an epoch (`replica_pieces`' count)."""
  full, rest = divmod(num_examples, batch_size)
  return full + (1 if rest >= num_replicas else 0)


def index_batches(strategy: tf.distribute.Strategy, num_examples: int,
                  batch_size: int, seed: int,
                  max_steps: Optional[int] = None):
  """One epoch of the in-memory split's row indices, per replica.

  Args:
    strategy: a strategy other than the default one.
    num_examples: rows of the training split.
    batch_size: the global batch size.
    seed: the epoch's shuffling seed.
    max_steps: a cap on the epoch's global batches.

  Returns:
    (a `tf.distribute.DistributedDataset` of int64 index vectors, one per
    replica and step, the number of steps).
  """
  replicas = strategy.num_replicas_in_sync
  order = np.random.default_rng(seed).permutation(num_examples)
  steps = num_steps(num_examples, batch_size, replicas)
  if max_steps:
    steps = min(steps, max_steps)

  def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
    # A worker's replicas are the consecutive ids of its input pipeline.
    local = replicas // context.num_input_pipelines
    first = context.input_pipeline_id * local
    pieces = [piece for step, batch in zip(
        range(steps), replica_pieces(order, batch_size, replicas))
              for piece in batch[first:first + local]]
    ragged = tf.RaggedTensor.from_row_lengths(
        np.concatenate(pieces).astype(np.int64) if pieces else
        np.zeros(0, np.int64), [len(p) for p in pieces])
    # A slice of a ragged matrix is a ragged vector of ragged rank 0; the
    # identity map turns it into the plain vector a train step takes.
    return tf.data.Dataset.from_tensor_slices(ragged).map(
        lambda piece: piece)

  return strategy.distribute_datasets_from_function(dataset_fn), steps


def barrier(strategy: tf.distribute.Strategy) -> None:
  """Waits until every worker reaches this point (a one-number all-reduce).

  The workers other than the chief wait here while the chief evaluates, so
  that the cluster ends together: a worker that exits first is reported as
  failed by the others' health checks.
  """
  if num_workers(strategy) > 1 and not is_parameter_server(strategy):
    strategy.reduce(tf.distribute.ReduceOp.SUM,
                    strategy.run(lambda: tf.constant(1.0)), axis=None)


def shard_policy(num_files: int, workers: int
                 ) -> tf.data.experimental.AutoShardPolicy:
  """How the streaming path splits a split's records among workers: by file
  when every worker gets one, else by record (each reads every file)."""
  if num_files >= workers:
    return tf.data.experimental.AutoShardPolicy.FILE
  return tf.data.experimental.AutoShardPolicy.DATA


def with_shard_policy(dataset: tf.data.Dataset, num_files: int,
                      strategy: tf.distribute.Strategy) -> tf.data.Dataset:
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = shard_policy(
      num_files, num_workers(strategy))
  return dataset.with_options(options)


def worker_batches(rows: Callable[[tf.Tensor], object], num_examples: int,
                   batch_size: int, seed: int
                   ) -> tf.keras.utils.experimental.DatasetCreator:
  """One epoch's batches for `parameter_server`, made on each worker.

  Every worker shuffles the split's row indices by its own permutation (the
  epoch's `seed` and the time the worker makes its dataset, so that two
  workers do not train on the same batches), cuts it into batches of
  `batch_size` and turns each into rows with `rows` (an in-memory split's
  `input_pipeline.row_gatherer`, which travels to the worker with the
  dataset). The steps are dispatched asynchronously to whichever worker is
  free, so an epoch is a number of steps, not one pass over each row
  exactly once; the stream repeats.
  """

  def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
    del context  # one input pipeline per worker, with no worker index
    worker = tf.cast(tf.timestamp() * 1e6, tf.int64)
    order = tf.argsort(tf.random.stateless_uniform(
        [num_examples], seed=tf.stack([tf.constant(seed, tf.int64), worker])))
    return tf.data.Dataset.from_tensor_slices(tf.cast(order, tf.int64)).batch(
        batch_size).repeat().map(rows).prefetch(tf.data.AUTOTUNE)

  return tf.keras.utils.experimental.DatasetCreator(dataset_fn)
