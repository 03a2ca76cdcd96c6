"""Tests of `train.run.strategy`: the replicas' rows, and two real workers.

The cluster test starts two `MultiWorkerMirroredStrategy` workers of
experiments/train.py on localhost (TF_CONFIG) and compares the chief's
results with one process under the default strategy on the same data: the
replicas see the same rows per step, so only the order of floating-point
sums differs.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
from unittest import mock

from absl.testing import absltest
import numpy as np
import tensorflow as tf
from tensorflow.python.framework import config as tf_config  # pylint: disable=g-direct-tensorflow-import

from cabb_tf import distribute
from cabb_tf import input_pipeline
from cabb_tf.analysis import beyond
from tests import scoring

REPO = pathlib.Path(__file__).resolve().parents[1]


class _Resolver:
  """The part of a cluster resolver `distribute` reads."""

  def __init__(self, cluster, task_type, task_id):
    self.task_type, self.task_id = task_type, task_id
    self._spec = tf.train.ClusterSpec(cluster)

  def cluster_spec(self):
    return self._spec


class _Strategy:

  def __init__(self, cluster, task_type, task_id):
    self.cluster_resolver = _Resolver(cluster, task_type, task_id)


class PiecesTest(absltest.TestCase):

  def test_pieces_are_each_global_batch_in_order(self):
    order = np.random.default_rng(3).permutation(103)
    batches = list(distribute.replica_pieces(order, 20, 3))
    # 5 full batches and a last one of 3 rows: one row per replica.
    self.assertLen(batches, 6)
    self.assertEqual(distribute.num_steps(103, 20, 3), 6)
    for k, pieces in enumerate(batches):
      self.assertLen(pieces, 3)
      np.testing.assert_array_equal(np.concatenate(pieces),
                                    order[20 * k:20 * (k + 1)])
      sizes = [len(p) for p in pieces]
      self.assertLessEqual(max(sizes) - min(sizes), 1)

  def test_a_last_batch_smaller_than_the_replicas_is_left_out(self):
    order = np.arange(42)
    batches = list(distribute.replica_pieces(order, 20, 4))
    self.assertLen(batches, 2)  # 2 rows left for 4 replicas
    self.assertEqual(distribute.num_steps(42, 20, 4), 2)
    self.assertEqual(distribute.num_steps(43, 20, 3), 3)

  def test_one_replica_gets_the_batches_of_the_default_path(self):
    dataset, steps = distribute.index_batches(
        tf.distribute.get_strategy(), 50, 16, seed=7)
    self.assertEqual(steps, 4)
    got = [v.numpy() for v in dataset]
    want = input_pipeline.index_batches(50, 16, seed=7)
    want = [element["order"].numpy()[slice(*element["batch"].numpy()[1:])]
            for element in want]
    self.assertLen(got, len(want))
    for a, b in zip(got, want):
      np.testing.assert_array_equal(a, b)
    capped, steps = distribute.index_batches(
        tf.distribute.get_strategy(), 50, 16, seed=7, max_steps=2)
    self.assertEqual((steps, len(list(capped))), (2, 2))


# A parameter-server cluster: a chief, a worker and a ps task.
PS_CLUSTER = {"chief": ["a:1"], "worker": ["b:2"], "ps": ["c:3"]}


def _tf_config(cluster, task_type):
  """TF_CONFIG (and what `serve` sets) for a `with` block, restored after."""
  return mock.patch.dict(os.environ, TF_CONFIG=json.dumps(
      {"cluster": cluster, "task": {"type": task_type, "index": 0}}))


class ClusterTest(absltest.TestCase):

  def test_chief_is_the_chief_task_or_worker_zero(self):
    workers = {"worker": ["a:1", "b:2"]}
    self.assertTrue(distribute.is_chief(_Strategy(workers, "worker", 0)))
    self.assertFalse(distribute.is_chief(_Strategy(workers, "worker", 1)))
    with_chief = dict(workers, chief=["c:3"])
    self.assertTrue(distribute.is_chief(_Strategy(with_chief, "chief", 0)))
    self.assertFalse(distribute.is_chief(_Strategy(with_chief, "worker", 0)))
    self.assertEqual(distribute.num_workers(_Strategy(with_chief, "chief", 0)),
                     3)
    self.assertTrue(distribute.is_chief(tf.distribute.get_strategy()))
    self.assertEqual(
        distribute.scratch_dir("/r", _Strategy(workers, "worker", 1)),
        os.path.join("/r", "workers", "worker_1"))

  def test_streaming_shards_by_file_only_with_a_file_per_worker(self):
    policy = tf.data.experimental.AutoShardPolicy
    self.assertEqual(distribute.shard_policy(1, 2), policy.DATA)
    self.assertEqual(distribute.shard_policy(2, 2), policy.FILE)

  def test_unknown_strategy_and_missing_cluster_are_errors(self):
    with self.assertRaisesRegex(ValueError, "one of .*'multi_worker'"):
      distribute.check_strategy("tpu")
    with mock.patch.dict(os.environ):
      os.environ.pop("TF_CONFIG", None)
      with self.assertRaisesRegex(ValueError, "TF_CONFIG"):
        distribute.make_strategy("multi_worker")

  def test_parameter_server_needs_its_cluster_and_runs_on_the_chief(self):
    with _tf_config({"worker": ["b:2"]}, "worker"):
      with self.assertRaisesRegex(ValueError, "chief, workers and ps"):
        distribute.make_strategy("parameter_server")
    with _tf_config(PS_CLUSTER, "worker"):
      with self.assertRaisesRegex(ValueError, "only the chief runs"):
        distribute.make_strategy("parameter_server")

  def test_only_the_worker_and_ps_tasks_of_a_complete_cluster_serve(self):
    with mock.patch.object(tf.distribute, "Server") as server:
      # The chief runs train.run: serve returns without a server.
      with _tf_config(PS_CLUSTER, "chief"):
        distribute.serve("parameter_server")
      # So does every task under another strategy.
      with _tf_config(PS_CLUSTER, "worker"):
        distribute.serve("multi_worker")
      server.assert_not_called()
      # A worker of a cluster without ps tasks: an error naming them, not a
      # server that waits for them.
      with _tf_config({"chief": ["a:1"], "worker": ["b:2"]}, "worker"):
        with self.assertRaisesRegex(ValueError, "its cluster has no ps "):
          distribute.serve("parameter_server")
      server.assert_not_called()
      # A worker of a complete cluster serves (here the mock's join
      # returns at once).
      with _tf_config(PS_CLUSTER, "worker"):
        distribute.serve("parameter_server")
      server.assert_called_once()
      self.assertEqual(server.call_args.kwargs["job_name"], "worker")
      server.return_value.join.assert_called_once()

  def test_each_worker_draws_the_epoch_in_its_own_order(self):
    creator = distribute.worker_batches(lambda index: index, 50, 16, seed=3)
    orders = []
    # A worker's seed reads the clock, which op determinism forbids; the
    # workers of a parameter-server cluster do not enable it (another test
    # of this process may have).
    deterministic = tf_config.is_op_determinism_enabled()
    tf_config.disable_op_determinism()
    self.addCleanup(lambda: deterministic and
                    tf_config.enable_op_determinism())
    for _ in range(2):  # two workers make their datasets
      batches = [b.numpy() for b in creator(
          tf.distribute.InputContext()).take(5)]
      # 50 rows in batches of 16: 4 batches are one pass, then it repeats.
      self.assertEqual([len(b) for b in batches], [16, 16, 16, 2, 16])
      np.testing.assert_array_equal(np.sort(np.concatenate(batches[:4])),
                                    np.arange(50))
      orders.append(np.concatenate(batches[:4]))
    self.assertFalse(np.array_equal(orders[0], orders[1]))


def _free_ports(n):
  sockets = [socket.socket() for _ in range(n)]
  for s in sockets:
    s.bind(("localhost", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


class _TrainProcesses(absltest.TestCase):
  """experiments/train.py processes on the tiny simulated dataset."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    root = absltest.get_default_test_tmpdir()
    cls.args = [
        "--gin_file=gin/multitask.gin", "--gin_file=gin/quick.gin",
        f"--gin_bindings=load_data.data_dir = '{root}/tfds_distribute'",
        "--gin_bindings=SYNTHETIC_DATASET = 'cabb_synthetic/tiny'",
        "--gin_bindings=train.run.max_steps_per_epoch = 5"]

  def _train(self, base_dir, *args, tf_config=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if tf_config:
      env["TF_CONFIG"] = json.dumps(tf_config)
    return subprocess.Popen(
        [sys.executable, str(REPO / "experiments" / "train.py"),
         f"--base_dir={base_dir}", *self.args, *args], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

  def _metrics(self, base_dir):
    with open(os.path.join(base_dir, "metrics.json")) as f:
      return json.load(f)


class TwoWorkersTest(_TrainProcesses):

  def _cluster(self, base_dir, *args, data_dir=None):
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    if data_dir:
      args += (f"--gin_bindings=load_data.data_dir = '{data_dir}'",)
    workers = [self._train(base_dir, "--gin_bindings=train.run.strategy = "
                           "'multi_worker'", *args,
                           tf_config={"cluster": cluster,
                                      "task": {"type": "worker", "index": i}})
               for i in range(2)]
    outs = []
    for i, worker in enumerate(workers):
      out, _ = worker.communicate(timeout=900)
      self.assertEqual(worker.returncode, 0, f"worker {i}:\n{out[-6000:]}")
      outs.append(out)
    return outs

  def test_two_workers_train_as_one_process_and_only_the_chief_writes(self):
    single = self.create_tempdir().full_path
    mirrored = self.create_tempdir().full_path
    every_step = "--gin_bindings=summaries.every_steps = 1"
    processes = [self._train(single, every_step), self._train(
        mirrored, "--gin_bindings=train.run.strategy = 'mirrored'")]
    for process in processes:
      out, _ = process.communicate(timeout=900)
      self.assertEqual(process.returncode, 0, out[-6000:])
    multi = self.create_tempdir().full_path
    self._cluster(multi, every_step)
    want, got = self._metrics(single), self._metrics(multi)
    # One local replica under MirroredStrategy: the default path's numbers.
    for key in ("best_validation_loss", "caba_ne", "cabb_ne"):
      self.assertAlmostEqual(self._metrics(mirrored)[key], want[key],
                             delta=1e-6 * abs(want[key]), msg=key)
    # Losses and NEs move smoothly with the weights; an AUC also counts
    # pairs whose order a last-digit change flips.
    for key, rtol in (("best_validation_loss", 1e-4), ("caba_ne", 1e-4),
                      ("cabb_ne", 1e-4), ("overall_ne", 1e-4),
                      ("caba_auc", 1e-3), ("cabb_auc", 1e-3)):
      self.assertAlmostEqual(got[key], want[key], delta=rtol * abs(want[key]),
                             msg=key)
    self.assertEqual(got["epochs"], want["epochs"])
    # The step scalars are the chief's alone (the other worker's callback
    # writes to no file), the single process's within the sums' order.
    want_steps, got_steps = (
        beyond.scalar_series(os.path.join(run, "train"), "steps/total/loss")
        for run in (single, multi))
    self.assertNotEmpty(want_steps)
    np.testing.assert_allclose(got_steps, want_steps, rtol=1e-4)
    # One set of results: the worker's scratch checkpoints are gone, and no
    # temporary file is left.
    self.assertCountEqual(os.listdir(multi), os.listdir(single))
    self.assertTrue(os.path.exists(os.path.join(multi, "export",
                                                "saved_model.pb")))

  def test_two_workers_stream_records_and_only_the_chief_builds(self):
    multi = self.create_tempdir().full_path
    fresh = self.create_tempdir().full_path
    chief, worker = self._cluster(
        multi, "--gin_bindings=train.run.in_memory = False", data_dir=fresh)
    # The dataset was missing: the chief built it, the worker waited.
    waiting = "Waiting for the chief to prepare cabb_synthetic/tiny"
    self.assertIn(waiting, worker)
    self.assertNotIn(waiting, chief)
    metrics = self._metrics(multi)
    self.assertEqual(metrics["epochs"], 2)
    self.assertTrue(np.isfinite(metrics["caba_ne"]))
    self.assertFalse(os.path.exists(os.path.join(multi, "workers")))
    self.assertTrue(os.path.exists(os.path.join(multi, "export",
                                                "saved_model.pb")))


class ParameterServerTest(_TrainProcesses):
  """A chief, a worker and two ps tasks on localhost."""

  def test_chief_worker_and_ps_train_and_export(self):
    ports = _free_ports(4)
    cluster = {"chief": [f"localhost:{ports[0]}"],
               "worker": [f"localhost:{ports[1]}"],
               "ps": [f"localhost:{p}" for p in ports[2:]]}
    base_dir = self.create_tempdir().full_path
    # The item ids, hashed into 2^16 rows beyond the vocabulary: a table of
    # about 4 MB, which the partitioner splits across both ps tasks.
    args = ("--gin_bindings=train.run.strategy = 'parameter_server'",
            "--gin_bindings=build_model.excluded_features = ('user_id',)",
            "--gin_bindings=id_hashing.buckets = {'item': 65536}")
    servers = [self._train(base_dir, *args, tf_config={
        "cluster": cluster, "task": {"type": task, "index": i}})
               for task, i in (("ps", 0), ("ps", 1), ("worker", 0))]
    try:
      chief = self._train(base_dir, *args, tf_config={
          "cluster": cluster, "task": {"type": "chief", "index": 0}})
      out, _ = chief.communicate(timeout=900)
    finally:
      for server in servers:
        server.kill()
      logs = [server.communicate()[0] for server in servers]
    self.assertEqual(chief.returncode, 0, out[-6000:])
    for log, task in zip(logs, ("ps 0", "ps 1", "worker 0")):
      self.assertIn(f"Serving as {task} of a parameter-server cluster", log)
    split = [line for line in out.splitlines()
             if "item_embedding/embeddings is split in 2" in line]
    self.assertLen(split, 1, out[-6000:])
    self.assertIn("/job:ps/replica:0/task:0", split[0])
    self.assertIn("/job:ps/replica:0/task:1", split[0])
    # The steps ran on the worker and moved the weights: the validation
    # loss fell from the first epoch to the second.
    losses = [float(line.split("validation loss ")[1].split()[0])
              for line in out.splitlines() if "validation loss" in line]
    self.assertLen(losses, 2)
    self.assertLess(losses[1], losses[0])
    metrics = self._metrics(base_dir)
    self.assertAlmostEqual(metrics["best_validation_loss"], min(losses),
                           delta=1e-5)
    # The export (a plain copy of the best weights the ps tasks held)
    # serves the probabilities the chief's test metrics came from.
    data = input_pipeline.load_data(
        name="cabb_synthetic/tiny",
        data_dir=f"{absltest.get_default_test_tmpdir()}/tfds_distribute")
    test = input_pipeline.split_columns(data, "test")
    serve = tf.saved_model.load(os.path.join(
        base_dir, "export")).signatures["serving_default"]
    dtypes = {n: s.dtype for n, s in
              serve.structured_input_signature[1].items()}
    served = serve(**input_pipeline.model_inputs(test, dtypes))
    rescored = scoring.rescore(test, served)
    for key in ("caba_ne", "cabb_ne", "overall_ne", "caba_auc", "cabb_auc"):
      self.assertAlmostEqual(rescored[key], metrics[key], places=5, msg=key)
    self.assertFalse(os.path.exists(os.path.join(base_dir, "workers")))
    # No step scalars (Keras runs no batch callback here), and it says so;
    # the epoch scalars and the test split's summaries are there.
    self.assertIn("No per-step scalars under parameter_server", out)
    self.assertEqual(beyond.scalar_series(os.path.join(base_dir, "train"),
                                          "steps/total/loss"), [])
    self.assertLen(beyond.scalar_series(os.path.join(base_dir, "train"),
                                        "total/loss"), 2)
    self.assertTrue(os.path.exists(os.path.join(base_dir, "eval",
                                                "projector_config.pbtxt")))


if __name__ == "__main__":
  absltest.main()
