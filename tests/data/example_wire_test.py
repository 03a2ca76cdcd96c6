"""`example_wire.serialize_rows` against TFDS's own per-example encoding."""

from absl.testing import absltest
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.core import example_serializer

from cabb_tf.data import example_wire
from cabb_tf.data import pipeline
from cabb_tf.data import records
from cabb_tf.data import simulator
from cabb_tf.datasets.cabb_synthetic import cabb_synthetic_dataset_builder

_LONG_KEY = "a_field_name_longer_than_a_one_byte_length_" * 4


def _tfds_records(features, columns, num_rows):
  """Each row encoded and serialized by TFDS, one example at a time, then
  re-serialized with its map in key order (`deterministic=True`)."""
  serializer = example_serializer.ExampleSerializer(
      features.get_serialized_info())
  out = []
  for i in range(num_rows):
    row = {name: values[i].item() if isinstance(values, np.ndarray) and
           values.dtype != object else values[i]
           for name, values in columns.items()}
    record = serializer.serialize_example(features.encode_example(row))
    out.append(tf.train.Example.FromString(record).SerializeToString(
        deterministic=True))
  return out


def _edge_case_columns(num_rows, seed=0):
  """Columns of every kind with the values whose encoding is delicate."""
  rng = np.random.default_rng(seed)
  int64 = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max,
                       num_rows, dtype=np.int64)
  int64[:6] = [0, -1, 127, 128, np.iinfo(np.int64).min,
               np.iinfo(np.int64).max]
  int32 = rng.integers(-300, 300, num_rows).astype(np.int32)
  int32[:2] = [np.iinfo(np.int32).min, np.iinfo(np.int32).max]
  floats = rng.normal(scale=1e3, size=num_rows).astype(np.float32)
  floats[:5] = [np.nan, np.inf, -np.inf, -0.0, np.finfo(np.float32).tiny]
  # Lengths around the one-byte varint limit (127) and above 16,383.
  lengths = rng.integers(0, 300, num_rows)
  lengths[:4] = [0, 127, 128, 20_000]
  text = np.array(["ü" * int(n // 2) + "x" * int(n % 2) for n in lengths],
                  dtype=object)
  return {
      "int64": int64,
      "int32": int32,
      "bool": rng.integers(0, 2, num_rows).astype(bool),
      "small": rng.integers(0, 3, num_rows),
      "float32": floats,
      "text": text,
      "bytes": np.array([bytes([i % 256]) * (i % 5) for i in range(num_rows)],
                        dtype=object),
      "same": np.full(num_rows, "constant", dtype=object),
      _LONG_KEY: rng.integers(0, 2**40, num_rows),
  }


_EDGE_FEATURES = {
    "int64": tf.int64, "int32": tf.int32, "bool": tf.bool, "small": tf.int64,
    "float32": tf.float32, "text": tf.string, "bytes": tf.string,
    "same": tf.string, _LONG_KEY: tf.int64,
}


class SerializeRowsTest(absltest.TestCase):

  def test_equals_tfds_on_edge_cases(self):
    features = tfds.features.FeaturesDict(
        {name: tfds.features.Scalar(dtype)
         for name, dtype in _EDGE_FEATURES.items()})
    columns = _edge_case_columns(300)
    got = example_wire.serialize_rows(example_wire.field_kinds(features),
                                      columns)
    self.assertEqual(got, _tfds_records(features, columns, 300))

  def test_equals_tfds_on_click_example_rows(self):
    log = simulator.simulate_events(3_000, seed=1)
    examples = pipeline.prepare_examples(log.events, log.catalog).examples
    truth = cabb_synthetic_dataset_builder.SimulatedTruth(log)(
        examples, log.events)
    features = records.example_features(
        cabb_synthetic_dataset_builder.truth_features())
    rows = np.arange(min(len(examples), 400))
    arrays = {name: read(rows) for name, read in records.example_columns(
        examples, truth, arrays=True).items()}
    lists = {name: read(rows) for name, read in records.example_columns(
        examples, truth).items()}
    got = example_wire.serialize_rows(example_wire.field_kinds(features),
                                      arrays)
    self.assertEqual(got, _tfds_records(features, lists, len(rows)))
    # The records parse back to the arrays' values.
    kinds = dict(example_wire.field_kinds(features))
    spec = {name: tf.io.FixedLenFeature([], {
        example_wire.INT: tf.int64, example_wire.FLOAT: tf.float32,
        example_wire.BYTES: tf.string}[kinds[name]]) for name in arrays}
    parsed = tf.io.parse_example(tf.constant(got), spec)
    for name, values in arrays.items():
      want = (np.array([v.encode() for v in values], dtype=object)
              if values.dtype == object else values)
      np.testing.assert_array_equal(parsed[name].numpy(), want, name)

  def test_fields_are_sorted_by_name(self):
    features = tfds.features.FeaturesDict(
        {"b": tfds.features.Scalar(tf.int64),
         "a": tfds.features.Scalar(tf.string),
         "C": tfds.features.Scalar(tf.float32)})
    self.assertEqual(example_wire.field_kinds(features),
                     [("C", example_wire.FLOAT), ("a", example_wire.BYTES),
                      ("b", example_wire.INT)])

  def test_varint_size(self):
    values = np.array([0, 127, 128, 2**14 - 1, 2**14, 2**63, 2**64 - 1],
                      dtype=np.uint64)
    np.testing.assert_array_equal(example_wire.varint_size(values),
                                  [1, 1, 2, 2, 3, 10, 10])

  def test_no_rows(self):
    self.assertEqual(example_wire.serialize_rows(
        [("a", example_wire.INT)], {"a": np.zeros(0, np.int64)}), [])

  def test_bad_columns_are_errors(self):
    fields = [("a", example_wire.INT), ("b", example_wire.BYTES)]
    ints = np.arange(3)
    strings = np.array(["x", "y", "z"], dtype=object)
    for columns, message in (
        ({"a": ints}, "no column"),
        ({"a": ints, "b": strings, "c": ints}, "not fields"),
        ({"a": ints, "b": strings[:2]}, "2 values for 3 rows"),
        ({"a": ints + 0.5, "b": strings}, "integers"),
        ({"a": ints, "b": np.array(["x", None, "z"], dtype=object)},
         "missing"),
    ):
      with self.assertRaisesRegex(ValueError, message):
        example_wire.serialize_rows(fields, columns)
    with self.assertRaisesRegex(ValueError, "not a scalar"):
      example_wire.field_kinds(tfds.features.FeaturesDict(
          {"v": tfds.features.Tensor(shape=(2,), dtype=tf.int64)}))


if __name__ == "__main__":
  absltest.main()
