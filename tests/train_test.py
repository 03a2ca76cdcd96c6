"""End-to-end tests of training: outputs, baselines, resumption, failures."""

import json
import math
import os
from unittest import mock

from absl.testing import absltest
import gin
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

import cabb_tf  # pylint: disable=unused-import
from cabb_tf import gin_utils
from cabb_tf import input_pipeline
from cabb_tf import metrics as metrics_lib
from cabb_tf import train
from cabb_tf.analysis import export_check
from cabb_tf.inputs import weighting
from cabb_tf.models import factory
from tests import input_pipeline_test
from tests import scoring
from tests import training
from tests.models import factory_test


class TrainTest(absltest.TestCase):

  def tearDown(self):
    gin.clear_config()
    super().tearDown()

  def _run(self, base_dir, *gin_files, bindings=()):
    return training.tiny_run(base_dir, *gin_files, bindings=bindings)

  def test_multitask_outputs_and_resumption(self):
    full_dir = self.create_tempdir().full_path
    full = self._run(full_dir, "multitask.gin")
    self.assertCountEqual(full.keys(), train.METRIC_KEYS)
    with open(os.path.join(full_dir, "metrics.json")) as f:
      written = json.load(f)
    for key in train.METRIC_KEYS:
      self.assertEqual(written[key], full[key])
    self.assertTrue(all(math.isfinite(full[k]) for k in ("caba_ne", "cabb_ne",
                                                         "overall_ne")))
    # The directory says how the run was made.
    with open(os.path.join(full_dir, "config.gin")) as f:
      config = f.read()
    # Gin shortens a selector to `run` when no other `run` is registered.
    self.assertRegex(config, r"(?m)^(train\.)?run\.cabb_weight = 0\.75$")
    self.assertIn("weighting_scheme = 'taxonomy_cf'", config)
    for phase in ("train", "eval"):
      events = tf.io.gfile.glob(os.path.join(full_dir, phase, "events.*"))
      self.assertNotEmpty(events, phase)
    self.assertNotEmpty(tf.io.gfile.glob(
        os.path.join(full_dir, "checkpoints", "ckpt-3*")))

    # The vocabularies are asset files, one entry a line, not graph
    # constants; nothing is left beside the export.
    data = input_pipeline.load_data()
    vocabulary = data.feature_statistics["vocabulary"]["leaf_a"]
    with open(os.path.join(full_dir, "export", "assets", "leaf.vocab")) as f:
      self.assertEqual(f.read().splitlines(), list(vocabulary))
    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(full_dir, "export", "saved_model.pb"), "rb") as f:
      saved.ParseFromString(f.read())
    constants = set()
    for graph in saved.meta_graphs:
      nodes = list(graph.graph_def.node) + [
          n for function in graph.graph_def.library.function
          for n in function.node_def]
      for node in nodes:
        if node.op == "Const":
          constants.update(node.attr["value"].tensor.string_val)
    self.assertFalse({v.encode() for v in vocabulary} <= constants)
    self.assertFalse(os.path.exists(os.path.join(full_dir,
                                                 "export.vocabularies")))
    # The exported model serves both heads from raw features.
    loaded = tf.saved_model.load(os.path.join(full_dir, "export"))
    serve = loaded.signatures["serving_default"]
    inputs = {name: spec for name, spec in
              serve.structured_input_signature[1].items()}
    batch = {name: tf.cast(["x", "y"] if spec.dtype == tf.string else [1, 2],
                           spec.dtype) for name, spec in inputs.items()}
    out = serve(**batch)
    self.assertCountEqual(out.keys(), ["caba", "cabb"])
    self.assertEqual(out["caba"].shape, (2,))
    # It takes the records' raw features as the records hold them (ids as
    # strings, counts as int32).
    statistics = data.feature_statistics
    stored = {name: tf.as_dtype(data.builder.info.features[name].tf_dtype)
              for name in inputs}
    self.assertEqual({n: s.dtype for n, s in inputs.items()}, stored)
    self.assertEqual(inputs["leaf_a"].dtype, tf.string)
    self.assertEqual(inputs["u_item_clicks"].dtype, tf.int32)
    # The feature spec travels with the model.
    with open(os.path.join(full_dir, "export", "assets",
                           train.FEATURE_SPEC_FILE)) as f:
      spec = json.load(f)
    self.assertEqual({n: v["dtype"] for n, v in spec["features"].items()},
                     {n: d.name for n, d in stored.items()})
    self.assertEqual(spec["features"]["u_item_clicks"]["example"],
                     "int64_list")
    # It holds the model's weights and nothing else: no optimizer state,
    # which Keras saves under .../optimizer/... of a compiled model.
    variables = tf.train.list_variables(os.path.join(
        full_dir, "export", "variables", "variables"))
    self.assertEqual([name for name, _ in variables if "optimizer" in name],
                     [])
    model = train.load_best_model(full_dir, statistics, "multitask")
    self.assertEqual(
        sum(np.prod(shape, dtype=np.int64) for name, shape in variables
            if name.startswith("variables/")),
        sum(int(np.prod(w.shape)) for w in model.weights))
    # Both signatures serve the trained model's probabilities on every test
    # row: the skew check (experiments/check_export.py).
    check = export_check.run(full_dir)
    test = input_pipeline.split_columns(data, "test")
    self.assertEqual(check["rows"], len(test["y_caba"]))
    for signature in ("serving_default", "from_examples"):
      for head in ("caba", "cabb"):
        self.assertLessEqual(check["max_abs_diff"][signature][head], 1e-6,
                             f"{signature} {head}")
    with open(os.path.join(full_dir, export_check.RESULT_FILE)) as f:
      self.assertEqual(json.load(f), check)
    # So the served probabilities give the run's test metrics (α-free ones
    # only: the rescored split has α = 1).
    rescored = scoring.rescore(test, serve(**{name: test[name]
                                              for name in inputs}))
    for key in ("caba_ne", "cabb_ne", "overall_ne", "caba_auc", "cabb_auc"):
      self.assertAlmostEqual(rescored[key], full[key], places=5, msg=key)

    # Interrupted after one epoch, then resumed: the same final metrics.
    resumed_dir = self.create_tempdir().full_path
    partial = self._run(resumed_dir, "multitask.gin",
                        bindings=["train.run.stop_after_epochs = 1"])
    self.assertEqual(partial, {})
    self.assertFalse(os.path.exists(os.path.join(resumed_dir,
                                                 "metrics.json")))
    # An unfinished run has no export to check, and the check says so.
    with self.assertRaisesRegex(
        ValueError, f"{resumed_dir} is not a run .* no metrics.json .* no "
        "export/saved_model.pb"):
      export_check.run(resumed_dir)
    resumed = self._run(resumed_dir, "multitask.gin")
    for key in train.METRIC_KEYS:
      self.assertAlmostEqual(resumed[key], full[key], places=6, msg=key)

  def test_recalibration_is_fitted_on_the_validation_split(self):
    base_dir = self.create_tempdir().full_path
    result = self._run(base_dir, "caba_only.gin",
                       bindings=["train.run.max_epochs = 1"])
    with open(os.path.join(base_dir, "metrics.json")) as f:
      written = json.load(f)
    data = input_pipeline.load_data()
    statistics = data.feature_statistics
    model = train.load_best_model(base_dir, statistics, "caba_only")
    validation = input_pipeline.with_alpha(
        input_pipeline.split_columns(data, "validation"), None)
    arrays = train.predict_arrays(
        model, input_pipeline.model_inputs(validation,
                                           factory.input_dtypes(model),
                                           factory.id_lookups(statistics)),
        validation, 4096)
    maps = train.fit_recalibration(arrays)
    for task, platt in maps.items():
      self.assertAlmostEqual(written["recalibration"][task]["slope"],
                             platt.slope, places=6, msg=task)
      self.assertAlmostEqual(written["recalibration"][task]["intercept"],
                             platt.intercept, places=6, msg=task)
    # The identity is one of the candidate maps, so on the split they were
    # fitted on they cannot raise NE.
    ne = metrics_lib.normalized_entropy
    self.assertLessEqual(
        ne(arrays["y_caba"], maps["caba"](arrays["p_caba"]), arrays["w_caba"]),
        ne(arrays["y_caba"], arrays["p_caba"], arrays["w_caba"]) + 1e-12)
    self.assertLessEqual(ne(arrays["y_cabb"], maps["cabb"](arrays["p_cabb"])),
                         ne(arrays["y_cabb"], arrays["p_cabb"]) + 1e-12)
    self.assertCountEqual(result.keys(), train.METRIC_KEYS)

  def test_streamed_evaluation_scores_as_the_split_in_memory(self):
    base_dir = self.create_tempdir().full_path
    self._run(base_dir, "multitask.gin",
              bindings=["train.run.max_epochs = 1",
                        "build_model.bottom = 'mmoe'"])
    data = input_pipeline.load_data()
    statistics = data.feature_statistics
    model = train.load_best_model(base_dir, statistics, "multitask")
    train._compile(model, 1e-3)  # pylint: disable=protected-access
    alpha_fn = weighting.make_alpha_fn("taxonomy_cf", data.builder)
    lookups = factory.id_lookups(statistics)
    dtypes = factory.input_dtypes(model)
    writers = train.Writers.of(base_dir, chief=False)

    def in_memory(split):
      return [input_pipeline.with_alpha(
          input_pipeline.split_columns(data, split), alpha_fn)]

    fields = input_pipeline.evaluation_fields(
        data, dtypes, weighting.KEYS["taxonomy_cf"])

    def streamed(split):  # 1,000 rows a batch: many batches per split
      return input_pipeline.stream_columns(data, split, fields, alpha_fn,
                                           1000)

    predictions = []
    for source in (in_memory, streamed):
      path = os.path.join(self.create_tempdir().full_path, "p.npz")
      predictions.append((train.evaluate(
          model, source("validation"), source("test"), lookups, "multitask",
          1000, writers, 0, path), np.load(path)))
    (want, want_arrays), (got, got_arrays) = predictions
    self.assertCountEqual(got_arrays.files, want_arrays.files)
    for key in want_arrays.files:
      np.testing.assert_array_equal(got_arrays[key], want_arrays[key],
                                    err_msg=key)
    self.assertEqual(got.metrics, want.metrics)
    for task, platt in want.recalibration.items():
      self.assertEqual(got.recalibration[task].as_dict(), platt.as_dict())
    self.assertNotEmpty(want.gates)
    for gate, weights in want.gates.items():
      np.testing.assert_allclose(got.gates[gate], weights, rtol=1e-12)
    # The per-epoch validation loss: the same from the streamed batches.
    example_fn = input_pipeline.make_example_fn("multitask", dtypes, 1.0,
                                                lookups)
    held = tf.data.Dataset.from_tensor_slices(input_pipeline.prepare_columns(
        in_memory("validation")[0], example_fn)).batch(1000)
    streamed_validation = input_pipeline.split_batches(
        data, "validation", input_pipeline.example_fields(
            dtypes, weighting.KEYS["taxonomy_cf"]), alpha_fn, 1000).map(
                example_fn)
    losses = [model.evaluate(dataset, verbose=0, return_dict=True)["loss"]
              for dataset in (held, streamed_validation)]
    self.assertAlmostEqual(losses[1], losses[0], places=6)

  def test_a_damaged_validation_split_is_named_while_streaming(self):
    data_dir = self.create_tempdir().full_path
    data = input_pipeline.load_data("cabb_synthetic/tiny", data_dir=data_dir)
    input_pipeline_test.damage_first_shard(data, "validation")
    # The per-epoch validation loss reads it first (no α to look up).
    with self.assertRaisesRegex(
        ValueError, "validation split of cabb_synthetic/tiny.* cannot be read "
        r"\(corrupted record at \d+\).*damaged"):
      self._run(self.create_tempdir().full_path, "caba_only.gin", bindings=[
          f"load_data.data_dir = '{data_dir}'", "train.run.max_epochs = 1",
          "train.run.in_memory = False"])

  def test_bad_arguments_fail_before_any_work(self):
    base_dir = self.create_tempdir().full_path
    for binding, message in (
        ("train.run.max_epochs = 0", "max_epochs must be an integer >= 1"),
        ("train.run.eval_batch_size = 0", "eval_batch_size"),
        ("train.run.max_steps_per_epoch = 0", "max_steps_per_epoch"),
        ("train.run.learning_rate = 0.0", "learning_rate must be > 0"),
        ("train.run.negative_weight = -1.0", "negative_weight"),
        ("train.run.optimizer = 'rmsprop'", "unknown optimizer"),
        ("train.run.weighting_scheme = 'popularity'", "weighting scheme"),
        ("train.run.cabb_weight = 1e999", "cabb_weight"),  # inf
        ("summaries.every_steps = -1", "summaries.every_steps"),
    ):
      gin.clear_config()
      gin_utils.parse(["multitask.gin"], [
          "load_data.data_dir = '/nonexistent/never_built'", binding])
      with self.assertRaisesRegex(ValueError, message, msg=binding):
        train.run(os.path.join(base_dir, "run"))
    # A parameter-server run that would stream fails before it looks for
    # its cluster (there is none here).
    gin.clear_config()
    gin_utils.parse(["multitask.gin"], [
        "load_data.data_dir = '/nonexistent/never_built'",
        "train.run.strategy = 'parameter_server'",
        "train.run.in_memory = False"])
    with mock.patch.dict(os.environ):
      os.environ.pop("TF_CONFIG", None)
      with self.assertRaisesRegex(ValueError, "trains from memory only"):
        train.run(os.path.join(base_dir, "run"))
    # Nothing was built or written.
    self.assertFalse(os.path.exists("/nonexistent/never_built"))
    self.assertFalse(os.path.exists(os.path.join(base_dir, "run")))

  def test_unwritable_base_dir_is_one_line(self):
    parent = self.create_tempdir().full_path
    blocker = os.path.join(parent, "file")
    with open(blocker, "w") as f:
      f.write("x")
    gin.clear_config()
    gin_utils.parse(["multitask.gin"], [])
    with self.assertRaisesRegex(ValueError, "is not writable") as raised:
      train.run(os.path.join(blocker, "run"))
    self.assertIn("is not a directory", str(raised.exception).splitlines()[0])

  def test_datasets_without_positives_fail_before_training(self):
    report = {"caba_positives": 5, "cabb_positive_rows": 0,
              "last_click_positives": 3}
    with self.assertRaisesRegex(ValueError, "no cabb positive rows.*caba_only"):
      train.check_dataset(report, "multitask", "log")
    train.check_dataset(report, "caba_only", "log")
    with self.assertRaisesRegex(ValueError, "no caba positives"):
      train.check_dataset(dict(report, caba_positives=0), "caba_only", "log")
    with self.assertLogs(level="WARNING") as logs:
      train.check_dataset(dict(report, cabb_positive_rows=3), "multitask",
                          "log")
    self.assertIn("only 3 CABB-positive rows", logs.output[0])
    with self.assertLogs(level="WARNING") as logs:
      train.check_dataset(dict(report, click_examples_by_split={
          "train": 870, "validation": 34, "test": 11390}), "caba_only", "log")
    self.assertIn("only 34 click examples in its validation split",
                  logs.output[0])

  def test_cabb_metrics_are_withheld_below_100_positive_test_rows(self):
    result = {k: 0.5 for k in train.METRIC_KEYS}
    y_cabb = np.zeros(1000)
    y_cabb[:100] = 1
    self.assertIsNone(train.withhold_cabb_metrics(result, y_cabb))
    self.assertEqual(result, {k: 0.5 for k in train.METRIC_KEYS})
    y_cabb[0] = 0  # 99 positive rows.
    with self.assertLogs(level="WARNING"):
      withheld = train.withhold_cabb_metrics(result, y_cabb)
    cabb_keys = {"cabb_ne", "cabb_ne_alpha_weighted", "overall_ne", "mean_ne",
                 "cabb_auc", "cabb_calibration", "cabb_ne_recalibrated",
                 "cabb_ne_alpha_weighted_recalibrated",
                 "overall_ne_recalibrated", "mean_ne_recalibrated",
                 "cabb_calibration_recalibrated"}
    self.assertEqual(set(withheld["keys"]), cabb_keys)
    self.assertIn("99 CABB-positive rows", withheld["reason"])
    for key, value in result.items():
      if key in cabb_keys:
        self.assertTrue(np.isnan(value), key)
      else:
        self.assertEqual(value, 0.5, key)

  def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(self):
    full = self._run(self.create_tempdir().full_path, "multitask.gin")
    for damage in ("truncate", "flip", "empty_state"):
      base_dir = self.create_tempdir().full_path
      self._run(base_dir, "multitask.gin",
                bindings=["train.run.stop_after_epochs = 2"])
      checkpoints = os.path.join(base_dir, "checkpoints")
      data = tf.io.gfile.glob(os.path.join(checkpoints, "ckpt-2.data-*"))[0]
      with open(data, "rb") as f:
        content = bytearray(f.read())
      if damage == "truncate":
        content = content[:len(content) // 2]
      elif damage == "flip":
        content[len(content) // 2] ^= 0xFF
      if damage == "empty_state":
        with open(os.path.join(checkpoints, "checkpoint"), "w") as f:
          f.write("")
      else:
        with open(data, "wb") as f:
          f.write(bytes(content))
      with self.assertLogs(level="WARNING") as logs:
        resumed = self._run(base_dir, "multitask.gin")
      if damage != "empty_state":
        self.assertTrue(any("ckpt-2 cannot be read" in line
                            for line in logs.output), damage)
      # Epochs are deterministic: training epoch 2 again gives the metrics of
      # an uninterrupted run.
      for key in ("caba_ne", "cabb_ne", "overall_ne"):
        self.assertAlmostEqual(resumed[key], full[key], places=6,
                               msg=f"{damage} {key}")

  def test_no_readable_checkpoint_says_what_to_delete(self):
    base_dir = self.create_tempdir().full_path
    self._run(base_dir, "multitask.gin",
              bindings=["train.run.stop_after_epochs = 1"])
    for data in tf.io.gfile.glob(os.path.join(base_dir, "checkpoints",
                                              "ckpt-*.data-*")):
      with open(data, "wb") as f:
        f.write(b"")
    with self.assertRaisesRegex(ValueError, "delete .*checkpoints"):
      self._run(base_dir, "multitask.gin")

  def test_baselines_score_both_tasks_with_one_head(self):
    for gin_file in ("last_click.gin", "caba_only.gin"):
      base_dir = self.create_tempdir().full_path
      result = self._run(base_dir, gin_file,
                         bindings=["train.run.max_epochs = 1"])
      self.assertTrue(math.isfinite(result["caba_ne"]), gin_file)
      self.assertTrue(math.isfinite(result["cabb_ne"]), gin_file)
      # One prediction for both tasks: calibration ratios differ only by the
      # label rates, so the CABA and CABB predictions' means are equal.
      loaded = tf.saved_model.load(os.path.join(base_dir, "export"))
      serve = loaded.signatures["serving_default"]
      inputs = serve.structured_input_signature[1]
      batch = {n: tf.cast(["a"] if s.dtype == tf.string else [3], s.dtype)
               for n, s in inputs.items()}
      out = serve(**batch)
      np.testing.assert_array_equal(out["caba"].numpy(), out["cabb"].numpy())


class FailureTest(absltest.TestCase):

  def test_nan_loss_names_the_step(self):
    callback = train._PerStep(step_offset=40)  # pylint: disable=protected-access
    callback.on_train_batch_end(0, {"loss": 0.5})
    with self.assertRaisesRegex(train.NanLossError, "step 45"):
      callback.on_train_batch_end(4, {"loss": float("nan")})

  def test_an_export_needs_the_records_dtype_of_each_input(self):
    model = factory.build_model(factory_test.statistics())
    dtypes = factory.raw_features(factory_test.statistics())
    del dtypes["hour"]
    with self.assertRaisesRegex(ValueError, r"record_dtypes .*\['hour'\]"):
      train.export_model(model, "multitask",
                         os.path.join(self.create_tempdir().full_path, "e"),
                         factory_test.statistics(), dtypes)

  def test_a_split_without_rows_is_named(self):
    model = factory.build_model(factory_test.statistics())
    with self.assertRaisesRegex(ValueError,
                                "the validation split has no rows"):
      train.predict_split(model, [], {}, 16, "validation")

  def test_unknown_gin_binding_fails_at_start(self):
    gin.clear_config()
    with self.assertRaisesRegex(ValueError, "no_such_parameter"):
      gin_utils.parse(["multitask.gin"], ["train.run.no_such_parameter = 1"])
    gin.clear_config()

  def test_missing_gin_file_says_where_it_looked(self):
    with self.assertRaisesRegex(ValueError, "does not exist"):
      gin_utils.parse(["no_such_file.gin"], [])

  def test_missing_manual_download_says_what_to_set(self):
    with self.assertRaisesRegex(ValueError, "manual_dir"):
      input_pipeline.load_data(
          name="taobao_user_behavior",
          data_dir=self.create_tempdir().full_path,
          manual_dir=self.create_tempdir().full_path)

  def test_unknown_task(self):
    with self.assertRaisesRegex(ValueError, "unknown task"):
      input_pipeline.heads_of("clicks")


if __name__ == "__main__":
  absltest.main()
