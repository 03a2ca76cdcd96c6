"""Tests of the in-memory training batches against NumPy gathers."""

import glob
import os
from unittest import mock

from absl.testing import parameterized
import gin
import numpy as np
import tensorflow as tf

import cabb_tf  # pylint: disable=unused-import
from cabb_tf import input_pipeline
from cabb_tf.inputs import weighting
from cabb_tf.models import conversion

ROWS = 23
# Strings of up to 22 bytes are stored inline, longer ones each in their own
# allocation: both kinds are in the id column.
IDS = np.array(["a", "bb", "dept01/aisle01_3/shelf01_3_0", "", "x" * 40])


def _numpy_split(rows: int = ROWS, seed: int = 0):
  """A prepared split as NumPy arrays: every kind of leaf `train` meets."""
  rng = np.random.default_rng(seed)
  features = {
      "leaf_a": rng.choice(IDS, rows),
      "brand_a": rng.choice(IDS[:2], rows),
      "user_id": rng.integers(0, 4, rows).astype(np.int32),  # a row index
      "price_a": rng.normal(size=rows).astype(np.float32),
      "hour": rng.integers(0, 24, rows).astype(np.float32),
      "count": rng.integers(0, 9, rows),  # int64: gathered as it is
      "pair": rng.normal(size=(rows, 2)).astype(np.float32),
  }
  labels = {"caba": rng.integers(0, 2, (rows, 1)).astype(np.float32),
            "cabb": rng.integers(0, 2, (rows, 1)).astype(np.float32)}
  weights = {"caba": rng.uniform(.5, 2, rows).astype(np.float32),
             "cabb": rng.uniform(0, 1, rows).astype(np.float32)}
  return features, labels, weights


def _tensors(split):
  return tf.nest.map_structure(tf.constant, split)


def _numpy_rows(split, index):
  return tf.nest.map_structure(lambda a: a[index], split)


def damage_first_shard(data, split: str) -> None:
  """Overwrites 16 bytes of the first record file of `split`."""
  shard = sorted(glob.glob(os.path.join(str(data.builder.data_path),
                                        f"*-{split}.tfrecord*")))[0]
  with open(shard, "r+b") as f:
    f.seek(40)
    f.write(b"\xff" * 16)


class IndexBatchesTest(parameterized.TestCase):

  @parameterized.parameters((5, False), (5, True), (23, False), (30, False),
                            (1, True))
  def test_batches_are_the_seeded_permutation_in_order(self, batch_size,
                                                       drop_remainder):
    seed = 7
    order = np.random.default_rng(seed).permutation(ROWS)
    batches = list(input_pipeline.index_batches(
        ROWS, batch_size, seed, drop_remainder=drop_remainder))
    expected_count = (ROWS // batch_size if drop_remainder else
                      -(-ROWS // batch_size))
    self.assertLen(batches, expected_count)
    covered = []
    for i, batch in enumerate(batches):
      np.testing.assert_array_equal(batch["order"].numpy(), order)
      seed_of, start, stop = batch["batch"].numpy()
      self.assertEqual(seed_of, seed)
      self.assertEqual(start, i * batch_size)
      self.assertEqual(stop, min((i + 1) * batch_size, ROWS))
      covered.extend(order[start:stop])
    kept = expected_count * batch_size if drop_remainder else ROWS
    np.testing.assert_array_equal(covered, order[:kept])

  def test_another_seed_another_order(self):
    first = next(iter(input_pipeline.index_batches(ROWS, 4, 0)))["order"]
    second = next(iter(input_pipeline.index_batches(ROWS, 4, 1)))["order"]
    self.assertFalse(np.array_equal(first.numpy(), second.numpy()))

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, "batch_size"):
      input_pipeline.index_batches(ROWS, 0, 0)
    with self.assertRaisesRegex(ValueError, "non-negative"):
      input_pipeline.index_batches(ROWS, 4, -1)


class RowsTest(tf.test.TestCase, parameterized.TestCase):

  def assertStructureEqual(self, actual, expected):
    tf.nest.assert_same_structure(actual, expected)
    for a, e in zip(tf.nest.flatten(actual), tf.nest.flatten(expected)):
      self.assertEqual(a.dtype, tf.as_dtype(e.dtype))
      self.assertEqual(a.shape, e.shape)
      self.assertAllEqual(a, e)

  def test_row_gatherer_matches_numpy(self):
    split = _numpy_split()
    index = np.array([4, 0, 22, 4, 13])
    gather = input_pipeline.row_gatherer(_tensors(split))
    self.assertStructureEqual(gather(tf.constant(index)),
                              _numpy_rows(split, index))

  @parameterized.parameters(4, 8, 23)
  def test_shuffled_copy_slices_match_numpy(self, batch_size):
    split = _numpy_split()
    copy = input_pipeline.ShuffledCopy(_tensors(split))

    @tf.function
    def rows(batch):
      seed, start, stop = tf.unstack(batch["batch"])
      loaded = copy.ensure_loaded(seed, batch["order"])
      with tf.control_dependencies([loaded]):
        return loaded, copy.rows(start, stop)

    for seed in (3, 4, 3):
      order = np.random.default_rng(seed).permutation(ROWS)
      for i, batch in enumerate(input_pipeline.index_batches(
          ROWS, batch_size, seed)):
        loaded, got = rows(batch)
        # The first batch of an epoch loads its order, the others reuse it.
        self.assertEqual(bool(loaded), i == 0)
        start = i * batch_size
        self.assertStructureEqual(
            got, _numpy_rows(split, order[start:start + batch_size]))

  @parameterized.parameters(4, 23)
  def test_batches_of_epochs_match_numpy(self, batch_size):
    split = _numpy_split()
    copy = input_pipeline.ShuffledCopy(_tensors(split))

    @tf.function
    def rows(batch):
      seed, start, stop = tf.unstack(batch["batch"])
      return copy.batch(seed, batch["order"], start, stop)

    for seed in (3, 4, 3):
      order = np.random.default_rng(seed).permutation(ROWS)
      for i, batch in enumerate(input_pipeline.index_batches(
          ROWS, batch_size, seed)):
        start = i * batch_size
        self.assertStructureEqual(
            rows(batch), _numpy_rows(split, order[start:start + batch_size]))
        # The epoch's first batch (gathered) left its epoch loaded.
        self.assertStructureEqual(copy.rows(0, ROWS),
                                  _numpy_rows(split, order))

  def test_gather_matches_numpy(self):
    split = _numpy_split()
    copy = input_pipeline.ShuffledCopy(_tensors(split))
    index = np.array([4, 0, 22, 4, 13])
    self.assertStructureEqual(copy.gather(tf.constant(index)),
                              _numpy_rows(split, index))

  def test_load_then_any_slice(self):
    split = _numpy_split()
    copy = input_pipeline.ShuffledCopy(_tensors(split))
    order = np.random.default_rng(11).permutation(ROWS)
    copy.load(tf.constant(order))
    self.assertStructureEqual(copy.rows(5, 17), _numpy_rows(split,
                                                            order[5:17]))

  def test_an_order_of_another_length_is_refused(self):
    copy = input_pipeline.ShuffledCopy(_tensors(_numpy_split()))
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                "number of rows"):
      copy.load(tf.constant(np.arange(ROWS - 1)))


def _model():
  """A tiny two-head model with string inputs and an index input."""
  tf.keras.utils.set_random_seed(1)
  inputs = {"leaf_a": tf.keras.Input((), dtype=tf.string, name="leaf_a"),
            "brand_a": tf.keras.Input((), dtype=tf.string, name="brand_a"),
            "user_id": tf.keras.Input((), dtype=tf.int32, name="user_id"),
            "price_a": tf.keras.Input((), name="price_a"),
            "hour": tf.keras.Input((), name="hour"),
            "count": tf.keras.Input((), dtype=tf.int64, name="count"),
            "pair": tf.keras.Input((2,), name="pair")}
  lookup = tf.keras.layers.StringLookup(vocabulary=list(IDS[IDS != ""]),
                                        num_oov_indices=1)
  parts = [tf.keras.layers.Embedding(lookup.vocabulary_size(), 3)(
      lookup(inputs[name])) for name in ("leaf_a", "brand_a")]
  parts.append(tf.keras.layers.Embedding(4, 2)(inputs["user_id"]))
  parts.append(tf.stack([inputs["price_a"], inputs["hour"] / 24,
                         tf.cast(inputs["count"], tf.float32)], axis=1))
  parts.append(inputs["pair"])
  x = tf.keras.layers.Dense(4, activation="tanh")(
      tf.keras.layers.Concatenate()(parts))
  outputs = {head: tf.keras.layers.Dense(1, activation="sigmoid",
                                         name=head)(x)
             for head in ("caba", "cabb")}
  model = conversion.ConversionModel(inputs, outputs, cabb_weight=0.75)
  model.compile(optimizer=tf.keras.optimizers.SGD(0.5))
  return model


class InMemoryRowsTest(tf.test.TestCase):

  def _reference(self, split, batch_size, seeds):
    """The same epochs fed as batches gathered with NumPy, one fit each."""
    model = _model()
    for seed in seeds:
      order = np.random.default_rng(seed).permutation(ROWS)
      batches = [_numpy_rows(split, order[i:i + batch_size])
                 for i in range(0, ROWS, batch_size)]
      dataset = tf.data.Dataset.from_tensors(batches[0])
      for batch in batches[1:]:
        dataset = dataset.concatenate(tf.data.Dataset.from_tensors(batch))
      model.fit(dataset, epochs=1, verbose=0, shuffle=False)
    return model

  def assertSameWeights(self, model, reference):
    for got, want in zip(model.get_weights(), reference.get_weights()):
      self.assertAllClose(got, want, rtol=1e-6, atol=1e-7)

  def test_epochs_train_like_numpy_batches(self):
    split = _numpy_split()
    seeds, batch_size = (0, 1, 1, 5), 6
    reference = self._reference(split, batch_size, seeds)
    model = _model()
    model.read_rows_from(input_pipeline.InMemoryRows(_tensors(split)))
    for seed in seeds:
      model.fit(input_pipeline.index_batches(ROWS, batch_size, seed),
                epochs=1, verbose=0)
    self.assertSameWeights(model, reference)
    # The model moved: the comparison is not between two untrained models.
    untrained = _model()
    self.assertNotAllClose(model.get_weights()[-1],
                           untrained.get_weights()[-1])

  def test_index_vectors_train_like_numpy_batches(self):
    split = _numpy_split()
    seeds, batch_size = (2, 3), 5
    reference = self._reference(split, batch_size, seeds)
    model = _model()
    model.read_rows_from(input_pipeline.InMemoryRows(_tensors(split)))
    for seed in seeds:
      order = np.random.default_rng(seed).permutation(ROWS)
      model.fit(tf.data.Dataset.from_tensor_slices(order).batch(batch_size),
                epochs=1, verbose=0)
    self.assertSameWeights(model, reference)

  def test_rows_of_two_epochs_are_the_numpy_rows(self):
    # Called eagerly: each epoch's first batch is gathered, the others are
    # sliced from the copy that batch loaded.
    split = _numpy_split()
    rows = input_pipeline.InMemoryRows(_tensors(split))
    for seed in (4, 6):
      order = np.random.default_rng(seed).permutation(ROWS)
      for i, element in enumerate(input_pipeline.index_batches(ROWS, 10,
                                                               seed)):
        want = _numpy_rows(split, order[10 * i:10 * i + 10])
        for got, expected in zip(tf.nest.flatten(rows(element)),
                                 tf.nest.flatten(want)):
          if expected.dtype.kind == "U":
            expected = expected.astype(bytes)
          self.assertAllEqual(got, expected)


class IdLookupTest(tf.test.TestCase):
  """Id strings become the model's rows once per split, as NumPy says."""

  VOCABULARY = {"leaf_a": ["bb", "a", "x" * 40], "brand_a": ["a", ""]}

  def _lookups(self):
    return {name: tf.keras.layers.StringLookup(
        vocabulary=vocabulary, num_oov_indices=1, mask_token=None)
            for name, vocabulary in self.VOCABULARY.items()}

  def _numpy_rows(self, name, values):
    row = {v: k + 1 for k, v in enumerate(self.VOCABULARY[name])}
    return np.array([row.get(v, 0) for v in values], np.int32)

  def _records(self, rows=ROWS):
    features, labels, weights = _numpy_split(rows)
    return dict(features, y_caba=labels["caba"][:, 0],
                y_cabb=labels["cabb"][:, 0], w_caba=weights["caba"])

  def test_model_inputs_look_up_ids_the_model_takes_as_rows(self):
    records = self._records()
    dtypes = {"leaf_a": tf.int32, "brand_a": tf.int32, "price_a": tf.float32,
              "hour": tf.float32}
    got = input_pipeline.model_inputs(
        tf.nest.map_structure(tf.constant, records), dtypes, self._lookups())
    for name in ("leaf_a", "brand_a"):
      self.assertEqual(got[name].dtype, tf.int32)
      self.assertAllEqual(got[name], self._numpy_rows(name, records[name]))
    self.assertAllEqual(got["price_a"], records["price_a"])
    # A model input that stays a string is passed as it is.
    kept = input_pipeline.model_inputs(
        tf.nest.map_structure(tf.constant, records), {"leaf_a": tf.string},
        self._lookups())
    self.assertAllEqual(kept["leaf_a"], records["leaf_a"].astype(bytes))

  def test_a_string_for_a_row_input_needs_a_lookup(self):
    records = tf.nest.map_structure(tf.constant, self._records())
    with self.assertRaisesRegex(ValueError, "id_lookups"):
      input_pipeline.model_inputs(records, {"leaf_a": tf.int32})
    # Rows already (user_id is int32 in the split) need no lookup.
    rows = input_pipeline.model_inputs(records, {"user_id": tf.int32})
    self.assertAllEqual(rows["user_id"], records["user_id"])
    with self.assertRaisesRegex(ValueError, "'leaf_a'"):
      input_pipeline.model_inputs(records, {"leaf_a": tf.int32},
                                  {"brand_a": self._lookups()["brand_a"]})

  def test_a_prepared_split_holds_each_ids_row(self):
    raw = self._records()
    records = input_pipeline.with_alpha(
        tf.nest.map_structure(tf.constant, raw), None)
    example_fn = input_pipeline.make_example_fn(
        "multitask", {"leaf_a": tf.int32, "brand_a": tf.int32},
        id_lookups=self._lookups())
    features, _, _ = input_pipeline.prepare_columns(records, example_fn)
    for name in ("leaf_a", "brand_a"):
      self.assertAllEqual(features[name], self._numpy_rows(name, raw[name]))
    # The same rows record by record, as the streaming input maps them.
    dataset = tf.data.Dataset.from_tensor_slices(records).map(example_fn)
    streamed = np.array([f["leaf_a"].numpy() for f, _, _ in dataset])
    self.assertAllEqual(streamed, self._numpy_rows("leaf_a", raw["leaf_a"]))

  def test_alpha_is_a_column_and_w_cabb_has_one_rule(self):
    raw = self._records()
    alpha = np.linspace(0.1, 0.9, ROWS).astype(np.float32)
    records = input_pipeline.with_alpha(
        tf.nest.map_structure(tf.constant, raw),
        lambda record: tf.constant(alpha))
    self.assertAllEqual(records["alpha"], alpha)
    example_fn = input_pipeline.make_example_fn("multitask", {},
                                                negative_weight=0.25)
    _, labels, weights = input_pipeline.prepare_columns(records, example_fn)
    # By hand: α on CABB-positive rows, the negative weight elsewhere.
    want = np.where(raw["y_cabb"] > 0, alpha, np.float32(0.25))
    self.assertAllEqual(weights["cabb"], want)
    self.assertAllEqual(weights["caba"], raw["w_caba"])
    self.assertAllEqual(labels["cabb"][:, 0], raw["y_cabb"])
    # Evaluation reads the same column; NumPy gets the same rule.
    evaluated = input_pipeline.evaluation_columns(dict(
        records, y_last_click=records["y_caba"], session_id=records["y_caba"],
        click_id=records["y_caba"]))
    self.assertAllEqual(evaluated["alpha"], alpha)
    np.testing.assert_array_equal(
        input_pipeline.cabb_weight(raw["y_cabb"], alpha, 0.25), want)
    # Without the column, a clear error.
    with self.assertRaisesRegex(ValueError, "with_alpha"):
      example_fn(tf.nest.map_structure(tf.constant, raw))

  def test_rows_once_per_split_train_like_a_lookup_every_step(self):
    """Rows looked up once before training, or strings looked up by the
    model in every step: the same epochs end with the same weights."""
    split = _numpy_split()
    vocabulary = list(IDS[IDS != ""])

    def model(rows_inside):
      tf.keras.utils.set_random_seed(3)
      lookup = tf.keras.layers.StringLookup(vocabulary=vocabulary,
                                            num_oov_indices=1,
                                            mask_token=None)
      dtype = tf.string if rows_inside else tf.int32
      ids = tf.keras.Input((), dtype=dtype, name="leaf_a")
      price = tf.keras.Input((), name="price_a")
      rows = lookup(ids) if rows_inside else ids
      x = tf.keras.layers.Concatenate()([
          tf.keras.layers.Embedding(len(vocabulary) + 1, 3)(rows),
          price[:, tf.newaxis]])
      out = {h: tf.keras.layers.Dense(1, activation="sigmoid", name=h)(x)
             for h in ("caba", "cabb")}
      m = conversion.ConversionModel({"leaf_a": ids, "price_a": price}, out,
                                     cabb_weight=1.0)
      m.compile(optimizer=tf.keras.optimizers.Adam(0.05))
      return m

    features, labels, weights = split
    raw = ({"leaf_a": features["leaf_a"], "price_a": features["price_a"]},
           labels, weights)
    lookups = {"leaf_a": tf.keras.layers.StringLookup(
        vocabulary=vocabulary, num_oov_indices=1, mask_token=None)}
    indexed = (input_pipeline.model_inputs(
        tf.nest.map_structure(tf.constant, raw[0]),
        {"leaf_a": tf.int32, "price_a": tf.float32}, lookups),
               *tf.nest.map_structure(tf.constant, raw[1:]))
    per_step, once = model(rows_inside=True), model(rows_inside=False)
    per_step.read_rows_from(input_pipeline.InMemoryRows(_tensors(raw)))
    once.read_rows_from(input_pipeline.InMemoryRows(indexed))
    for seed in (0, 1):
      for m in (per_step, once):
        m.fit(input_pipeline.index_batches(ROWS, 5, seed), epochs=1,
              verbose=0)
    for got, want in zip(once.get_weights(), per_step.get_weights()):
      self.assertAllEqual(got, want)
    self.assertNotAllClose(once.get_weights()[0], model(False).get_weights()[0])


if __name__ == "__main__":
  tf.test.main()


class DamagedDatasetTest(tf.test.TestCase):

  def test_a_worker_that_does_not_build_waits_then_gives_up(self):
    data_dir = self.create_tempdir().full_path
    with mock.patch.object(input_pipeline, "BUILD_WAIT_S", 0.0):
      with self.assertRaisesRegex(ValueError, "not prepared in .*chief"):
        input_pipeline.load_data("cabb_synthetic/tiny", data_dir=data_dir,
                                 build=False)
    # Nothing was built by the waiting side.
    self.assertEqual(os.listdir(data_dir), [])

  def test_a_damaged_split_names_the_directory_to_delete(self):
    data_dir = self.create_tempdir().full_path
    data = input_pipeline.load_data("cabb_synthetic/tiny", data_dir=data_dir)
    damage_first_shard(data, "test")
    data = input_pipeline.load_data("cabb_synthetic/tiny", data_dir=data_dir)
    with self.assertRaisesRegex(ValueError, "damaged; delete that directory"):
      input_pipeline.split_columns(data, "test")
    # The α schemes read the splits too, before the model is fed.
    with self.assertRaisesRegex(
        ValueError, "test split of cabb_synthetic/tiny.*damaged; delete"):
      weighting.cabb_rows(data.builder, ("leaf_a", "leaf_b"))


class BuildBindingsTest(tf.test.TestCase):

  def tearDown(self):
    gin.clear_config()
    super().tearDown()

  def test_a_bound_csv_path_without_the_session_log_dataset_fails(self):
    gin.bind_parameter("cabb_tf.data.loaders.load_csv.path", "/data/my.csv")
    with self.assertRaisesRegex(
        ValueError, "load_csv.path is bound.*'cabb_synthetic/tiny'.*"
        "datasets/session_log.gin"):
      input_pipeline.load_data("cabb_synthetic/tiny",
                               data_dir=self.create_tempdir().full_path)

  def test_a_build_is_not_reused_under_other_data_bindings(self):
    data_dir = self.create_tempdir().full_path
    input_pipeline.load_data("cabb_synthetic/tiny", data_dir=data_dir)
    # The defaults bound explicitly change nothing: the same data.
    gin.parse_config(["label_clicks.attribution_window_s = None",
                      "simulate.signal_scale = 1.0"])
    input_pipeline.load_data("cabb_synthetic/tiny", data_dir=data_dir)
    gin.parse_config(["label_clicks.attribution_window_s = 86400"])
    with self.assertRaisesRegex(
        ValueError, "attribution_window_s: built with None, now 86400"):
      input_pipeline.load_data("cabb_synthetic/tiny", data_dir=data_dir)
