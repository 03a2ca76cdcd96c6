"""Tests of the in-memory training batches against NumPy gathers."""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import cabb_tf  # pylint: disable=unused-import
from cabb_tf import input_pipeline

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
  """A tiny two-head model with a string input, like the real one."""
  tf.keras.utils.set_random_seed(1)
  inputs = {"leaf_a": tf.keras.Input((), dtype=tf.string, name="leaf_a"),
            "brand_a": tf.keras.Input((), dtype=tf.string, name="brand_a"),
            "price_a": tf.keras.Input((), name="price_a"),
            "hour": tf.keras.Input((), name="hour"),
            "count": tf.keras.Input((), dtype=tf.int64, name="count"),
            "pair": tf.keras.Input((2,), name="pair")}
  lookup = tf.keras.layers.StringLookup(vocabulary=list(IDS[IDS != ""]),
                                        num_oov_indices=1)
  parts = [tf.keras.layers.Embedding(lookup.vocabulary_size(), 3)(
      lookup(inputs[name])) for name in ("leaf_a", "brand_a")]
  parts.append(tf.stack([inputs["price_a"], inputs["hour"] / 24,
                         tf.cast(inputs["count"], tf.float32)], axis=1))
  parts.append(inputs["pair"])
  x = tf.keras.layers.Dense(4, activation="tanh")(
      tf.keras.layers.Concatenate()(parts))
  outputs = {head: tf.keras.layers.Dense(1, activation="sigmoid",
                                         name=head)(x)
             for head in ("caba", "cabb")}
  model = tf.keras.Model(inputs, outputs)
  model.compile(optimizer=tf.keras.optimizers.SGD(0.5),
                loss={h: "binary_crossentropy" for h in outputs},
                loss_weights={"caba": 1.0, "cabb": 0.75})
  return model


class TrainOnIndicesTest(tf.test.TestCase):

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
    input_pipeline.train_on_indices(model, _tensors(split))
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
    input_pipeline.train_on_indices(model, _tensors(split))
    for seed in seeds:
      order = np.random.default_rng(seed).permutation(ROWS)
      model.fit(tf.data.Dataset.from_tensor_slices(order).batch(batch_size),
                epochs=1, verbose=0)
    self.assertSameWeights(model, reference)

  def test_wraps_the_step_already_there(self):
    split = _numpy_split()
    model = _model()

    def price_total(batch):
      features, _, _ = batch
      return {"price_total": tf.reduce_sum(features["price_a"])}

    model.train_step = price_total
    input_pipeline.train_on_indices(model, _tensors(split))
    history = model.fit(input_pipeline.index_batches(ROWS, 10, 4),
                        epochs=1, verbose=0)
    order = np.random.default_rng(4).permutation(ROWS)
    # The logs are the last step's: rows 20 to 22 of the epoch.
    self.assertAllClose(history.history["price_total"][-1],
                        split[0]["price_a"][order[20:]].sum())


if __name__ == "__main__":
  tf.test.main()
