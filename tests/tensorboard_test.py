"""A run's TensorBoard logs read back (docs/metrics.md, "TensorBoard")."""

import collections
import os
import tempfile

from absl.testing import absltest
from google.protobuf import text_format
import gin
import numpy as np
import tensorflow as tf
from tensorboard.plugins import projector
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.plugins.hparams import metrics as hparams_metrics

import cabb_tf  # pylint: disable=unused-import
from cabb_tf import gin_utils
from cabb_tf import input_pipeline
from cabb_tf import reproduce
from cabb_tf import summaries
from cabb_tf import train
from cabb_tf.models import conversion
from cabb_tf.models import task_balance

TASKS = ("caba", "cabb", "cabb_alpha_weighted")


def read_events(log_dir):
  """{tag: [(step, summary value), ...]} of every event file in log_dir."""
  out = collections.defaultdict(list)
  for path in sorted(tf.io.gfile.glob(os.path.join(log_dir, "events.*"))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        out[value.tag].append((event.step, value))
  return out


def only(events, tag):
  """The one value of a tag written once."""
  values = events[tag]
  if len(values) != 1:
    raise AssertionError(f"{tag} written {len(values)} times")
  return values[0][1]


def scalar_series(events, tag):
  return {step: float(tf.make_ndarray(value.tensor))
          for step, value in events[tag]}


class RunLogsTest(absltest.TestCase):
  """One small multitask run (the train tests' tiny dataset), read back."""

  EVERY = 5
  BUCKETS = 3  # hashed leaf rows beyond the vocabulary

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    root = absltest.get_default_test_tmpdir()
    cls.base_dir = tempfile.mkdtemp(dir=root)
    gin.clear_config()
    gin_utils.parse(["multitask.gin"], [
        f"load_data.data_dir = '{os.path.join(root, 'tfds_train_test')}'",
        "SYNTHETIC_DATASET = 'cabb_synthetic/tiny'",
        "train.run.max_epochs = 2", "train.run.patience = 10",
        "train.run.max_steps_per_epoch = 8", "train.run.batch_size = 256",
        "train.run.eval_batch_size = 4096", "train.run.export = False",
        "train.run.save_predictions = True",
        f"summaries.every_steps = {cls.EVERY}",
        f"id_hashing.buckets = {{'leaf': {cls.BUCKETS}}}"])
    try:
      train.run(cls.base_dir)
      statistics = input_pipeline.load_data().feature_statistics
      cls.vocabulary = list(statistics["vocabulary"]["leaf_a"])
      # The leaf table of the best weights, the ones the test split was
      # scored with.
      cls.best_leaf_table = train.load_best_model(
          cls.base_dir, statistics, "multitask").get_layer(
              "leaf_embedding").get_weights()[0]
    finally:
      gin.clear_config()
    cls.eval_dir = os.path.join(cls.base_dir, "eval")
    cls.train_events = read_events(os.path.join(cls.base_dir, "train"))
    cls.eval_events = read_events(cls.eval_dir)
    with np.load(os.path.join(cls.base_dir, "predictions.npz")) as f:
      cls.arrays = dict(f)

  def test_step_scalars_every_interval_and_eq_6(self):
    # The epoch scalars' last step is the run's number of steps.
    total_steps = max(step for step, _ in self.train_events["total/loss"])
    self.assertEqual(total_steps, 2 * 8)
    series = {name: scalar_series(self.train_events, f"steps/{name}")
              for name in ("total/loss", "caba/loss", "cabb/loss", "lambda",
                           "learning_rate")}
    for name, values in series.items():
      self.assertLen(values, total_steps // self.EVERY, name)
      self.assertEqual(sorted(values), list(range(
          self.EVERY, total_steps + 1, self.EVERY)), name)
    for step, total in series["total/loss"].items():
      lam = series["lambda"][step]
      self.assertAlmostEqual(lam, 0.75, places=6)
      self.assertAlmostEqual(
          total, series["caba/loss"][step] + lam * series["cabb/loss"][step],
          delta=1e-5 * total, msg=f"step {step}")
      self.assertAlmostEqual(series["learning_rate"][step], 1e-3, places=9)
    # Running means of the epoch: they change from step to step.
    self.assertGreater(len(set(series["caba/loss"].values())), 1)

  def test_pr_curves_count_the_saved_predictions(self):
    a = self.arrays
    weights = {"caba": a["w_caba"], "cabb": np.ones_like(a["y_cabb"]),
               "cabb_alpha_weighted": np.where(a["y_cabb"] > 0, a["alpha"],
                                               1.0)}
    for task in TASKS:
      head = task.split("_")[0]
      labels, p = a[f"y_{head}"] > 0, a[f"p_{head}"]
      data = tf.make_ndarray(only(self.eval_events,
                                  f"test/{task}/pr_curves").tensor)
      n = summaries.PR_THRESHOLDS
      self.assertEqual(data.shape, (6, n))
      # A row counts at threshold i when floor(p · (n − 1)) >= i.
      bucket = np.floor(p * (n - 1))
      w = weights[task].astype(np.float64)
      tp = [w[labels & (bucket >= i)].sum() for i in range(n)]
      fp = [w[~labels & (bucket >= i)].sum() for i in range(n)]
      np.testing.assert_allclose(data[0], tp, rtol=1e-5, err_msg=task)
      np.testing.assert_allclose(data[1], fp, rtol=1e-5, err_msg=task)
      # At threshold 0 every positive is a true positive.
      np.testing.assert_allclose(data[0, 0], w[labels].sum(), rtol=1e-6)
      np.testing.assert_allclose(data[3], w[labels].sum() - data[0],
                                 rtol=1e-5, atol=1e-3)

  def test_histograms_count_every_row(self):
    a = self.arrays
    positives = a["y_cabb"] > 0
    for tag, values in (("test/caba/predictions", a["p_caba"]),
                        ("test/cabb/predictions", a["p_cabb"]),
                        ("test/w_cabb", np.where(positives, a["alpha"],
                                                 1.0)),
                        ("test/alpha", a["alpha"][positives])):
      buckets = tf.make_ndarray(only(self.eval_events, tag).tensor)
      self.assertEqual(buckets[:, 2].sum(), len(values), tag)
      self.assertLessEqual(buckets[0, 0], values.min(), tag)
      self.assertGreaterEqual(buckets[-1, 1], values.max(), tag)
    self.assertLess(positives.sum(), len(positives))

  def test_a_reliability_image_per_task(self):
    images = {tag for tag, values in self.eval_events.items()
              if values[0][1].metadata.plugin_data.plugin_name == "images"}
    self.assertEqual(images, {f"test/{task}/reliability" for task in TASKS})
    for tag in images:
      width, height, *pngs = tf.make_ndarray(
          only(self.eval_events, tag).tensor)
      self.assertLen(pngs, 1)
      self.assertTrue(pngs[0].startswith(b"\x89PNG\r\n\x1a\n"))
      decoded = tf.io.decode_png(pngs[0])
      self.assertEqual(decoded.shape[:2], (int(height), int(width)))

  def test_projector_labels_every_leaf_row(self):
    config = projector.ProjectorConfig()
    with open(os.path.join(self.eval_dir, "projector_config.pbtxt")) as f:
      text_format.Parse(f.read(), config)
    self.assertLen(config.embeddings, 1)
    embedding = config.embeddings[0]
    with open(os.path.join(self.eval_dir, embedding.metadata_path)) as f:
      labels = f.read().splitlines()
    # The projector finds the checkpoint by itself (no absolute path).
    self.assertFalse(config.model_checkpoint_path)
    table = tf.train.load_checkpoint(tf.train.latest_checkpoint(
        self.eval_dir)).get_tensor(embedding.tensor_name)
    self.assertLen(labels, table.shape[0])
    self.assertEqual(labels, [f"<hash bucket {i}>" for i in
                              range(self.BUCKETS)] + self.vocabulary)
    np.testing.assert_array_equal(table, self.best_leaf_table)

  def test_hparams_session_ends_with_the_metrics_it_declares(self):
    start = hparams_metadata.parse_session_start_info_plugin_data(only(
        self.eval_events, "_hparams_/session_start_info"
    ).metadata.plugin_data.content)
    self.assertAlmostEqual(start.hparams["lambda"].number_value, 0.75)
    end = hparams_metadata.parse_session_end_info_plugin_data(only(
        self.eval_events, "_hparams_/session_end_info"
    ).metadata.plugin_data.content)
    self.assertEqual(end.status, api_pb2.STATUS_SUCCESS)
    # The reproduction's HParams view finds each metric it declares where
    # TensorBoard looks: <session>/<group>, the session being eval/.
    config_dir = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    reproduce._hparams_config(config_dir)  # pylint: disable=protected-access
    experiment = hparams_metadata.parse_experiment_plugin_data(only(
        read_events(os.path.join(config_dir, "runs")),
        "_hparams_/experiment").metadata.plugin_data.content)
    self.assertNotEmpty(experiment.metric_infos)
    for info in experiment.metric_infos:
      run, tag = hparams_metrics.run_tag_from_session_and_metric(
          self.eval_dir, info.name)
      self.assertIn(tag, read_events(run), info.name)


class StepScalarsTest(absltest.TestCase):
  """The batch callback's scalars on a tiny model, fitted for two steps."""

  def _fit(self, heads, balance):
    x = tf.keras.Input((3,), name="x")
    hidden = tf.keras.layers.Dense(2, activation="tanh",
                                   name="bottom_dense_0")(x)
    model = conversion.ConversionModel(
        {"x": x}, {head: tf.keras.layers.Dense(1, activation="sigmoid",
                                               name=head)(hidden)
                   for head in heads},
        cabb_weight=0.5, balance=task_balance.Balance(balance))
    model.compile(optimizer=tf.keras.optimizers.SGD(0.1))
    rng = np.random.default_rng(0)
    features = {"x": rng.normal(size=(8, 3)).astype(np.float32)}
    labels = {head: (rng.random((8, 1)) < 0.5).astype(np.float32)
              for head in heads}
    log_dir = self.create_tempdir().full_path
    writer = tf.summary.create_file_writer(log_dir)
    history = model.fit(features, labels, batch_size=4, epochs=1, verbose=0,
                        callbacks=[train._PerStep(0, writer, every_steps=1)])  # pylint: disable=protected-access
    events = read_events(log_dir)
    return model, history.history, {tag: scalar_series(events, tag)
                                    for tag in events}

  def test_a_learned_lambda_is_the_one_in_force(self):
    model, history, series = self._fit(("caba", "cabb"), "uncertainty")
    self.assertEqual(sorted(series["steps/lambda"]), [1, 2])
    # Uncertainty weighting starts at w = 1 for both heads and learns: the
    # λ after the last step, neither 1 nor the compiled 0.5.
    self.assertAlmostEqual(series["steps/lambda"][2],
                           model.balancer.effective_lambda(), places=6)
    self.assertNotAlmostEqual(series["steps/lambda"][2], 1.0, places=6)
    self.assertNotAlmostEqual(series["steps/lambda"][2], 0.5, places=6)
    # The total stays Eq. (6) with the compiled λ = 0.5, and the last step's
    # running means are the epoch's.
    for step, total in series["steps/total/loss"].items():
      self.assertAlmostEqual(total, series["steps/caba/loss"][step] +
                             0.5 * series["steps/cabb/loss"][step], places=5)
    for name in ("loss", "caba_loss", "cabb_loss"):
      tag = "steps/total/loss" if name == "loss" else (
          f"steps/{name.replace('_', '/')}")
      self.assertAlmostEqual(series[tag][2], history[name][-1], places=6)
    self.assertAlmostEqual(series["steps/learning_rate"][2], 0.1, places=6)

  def test_a_one_head_model_has_no_lambda(self):
    _, _, series = self._fit(("conversion",), "fixed")
    self.assertCountEqual(series, ["steps/total/loss",
                                   "steps/learning_rate"])


class WritersTest(absltest.TestCase):
  """What `Writers` leaves out: switched off by gin, or on a worker."""

  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(0)
    n = 200
    y_cabb = (rng.random(n) < 0.3).astype(np.float32)
    self.arrays = {"y_caba": (rng.random(n) < 0.1).astype(np.float32),
                   "y_cabb": y_cabb, "w_caba": np.ones(n, np.float32),
                   "alpha": rng.random(n).astype(np.float32),
                   "p_caba": rng.random(n).astype(np.float32),
                   "p_cabb": rng.random(n).astype(np.float32)}

  def _plugins(self, base_dir, settings, chief=True):
    writers = train.Writers.of(base_dir, chief, settings)
    writers.record_evaluation(7, self.arrays)
    writers.end_session(7)
    return collections.Counter(
        values[0][1].metadata.plugin_data.plugin_name
        for values in read_events(os.path.join(base_dir, "eval")).values())

  def test_each_switch_leaves_out_its_summaries(self):
    base_dir = self.create_tempdir().full_path
    every = self._plugins(base_dir, summaries.config())
    self.assertEqual(every, {"pr_curves": 3, "images": 3, "histograms": 4,
                             "hparams": 1})
    no_images = self._plugins(self.create_tempdir().full_path,
                              summaries.config(images=False))
    self.assertEqual(no_images, {"pr_curves": 3, "histograms": 4,
                                 "hparams": 1})
    nothing = self._plugins(self.create_tempdir().full_path,
                            summaries.config(evaluation=False))
    self.assertEqual(nothing, {"hparams": 1})

  def test_a_worker_writes_nothing(self):
    base_dir = self.create_tempdir().full_path
    self.assertEqual(self._plugins(base_dir, summaries.config(), chief=False),
                     {})
    self.assertEqual(os.listdir(base_dir), [])

  def test_bad_settings_name_the_field(self):
    with self.assertRaisesRegex(ValueError, "summaries.every_steps"):
      summaries.config(every_steps=-1)
    with self.assertRaisesRegex(ValueError, "summaries.every_steps"):
      summaries.config(every_steps=2.5)
    with self.assertRaisesRegex(ValueError,
                                "summaries.projector_spaces.*'shop'"):
      summaries.config(projector_spaces=("leaf", "shop"))
    with self.assertRaisesRegex(ValueError,
                                "summaries.epoch_metrics.*'logloss'"):
      summaries.config(epoch_metrics=("ne", "logloss"))

  def test_epoch_metrics_are_what_the_model_computes(self):
    rng = np.random.default_rng(1)
    n = 64
    x = {"a": rng.normal(size=(n, 1)).astype(np.float32)}
    y = {"caba": (rng.random((n, 1)) < 0.3).astype(np.float32),
         "cabb": (rng.random((n, 1)) < 0.3).astype(np.float32)}
    for names, expected in (((), {"loss", "caba_loss", "cabb_loss"}),
                            (("auc",), {"loss", "caba_loss", "cabb_loss",
                                        "caba_auc", "cabb_auc"})):
      inputs = {"a": tf.keras.Input((1,), name="a")}
      outputs = {head: tf.keras.layers.Dense(1, activation="sigmoid",
                                             name=head)(inputs["a"])
                 for head in ("caba", "cabb")}
      model = conversion.ConversionModel(inputs, outputs)
      train._compile(model, 1e-3,  # pylint: disable=protected-access
                     epoch_metrics=names)
      logs = model.fit(x, y, epochs=1, batch_size=n, verbose=0).history
      self.assertEqual(set(logs), expected, names)


if __name__ == "__main__":
  absltest.main()
