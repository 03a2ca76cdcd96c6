"""Tests of the model factory: structure, shared tables, baselines, bottoms."""

from absl.testing import parameterized
import gin
import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

import cabb_tf  # pylint: disable=unused-import
from cabb_tf.data import features
from cabb_tf.models import factory


def statistics():
  numeric = {name: {"mean": 0.5, "std": 2.0, "missing": 0.0}
             for name in features.NUMERIC_FEATURES}
  numeric["price_a"]["missing"] = 0.1
  vocabulary = {"user_id": ["u1", "u2"], "item_a": ["i1", "i2", "i3"],
                "leaf_a": ["a/b", "a/c"], "top_category_a": ["a"],
                "brand_a": ["", "acme"]}
  return {"numeric": numeric, "vocabulary": vocabulary, "num_examples": 10}


def raw_batch(n=4):
  """Raw features of n rows: ids as strings (some not in the vocabulary)."""
  rng = np.random.default_rng(0)
  out = {name: tf.constant(rng.random(n).astype(np.float32) * 5)
         for name in features.NUMERIC_FEATURES}
  out["price_a"] = tf.constant([1.0, np.nan, 3.0, 4.0][:n], tf.float32)
  out["u_item_since_s"] = tf.constant([-1.0, 3.0, 5.0, -1.0][:n], tf.float32)
  out.update(user_id=tf.constant(["u1", "u2", "zz", "u1"][:n]),
             item_a=tf.constant(["i1", "i2", "i3", "new"][:n]),
             leaf_a=tf.constant(["a/b"] * n), top_category_a=tf.constant(
                 ["a"] * n), brand_a=tf.constant(["acme", "", "?", "acme"][:n]))
  return out


def numpy_index(vocabulary, values):
  """Row of each string by hand: vocabulary entry k → k + 1, others → 0."""
  row = {v: k + 1 for k, v in enumerate(vocabulary)}
  return np.array([row.get(v, 0) for v in values], np.int32)


def batch(n=4):
  """`raw_batch` as the model takes it: ids as rows, mapped with NumPy."""
  vocabulary = statistics()["vocabulary"]
  return {name: (tf.constant(numpy_index(
      vocabulary[name], [v.decode() for v in value.numpy()]))
                 if value.dtype == tf.string else value)
          for name, value in raw_batch(n).items()}


def named_layers(model):
  """(name, class) of the layers the factory names (not auto-named TF ops)."""
  return [(l.name, type(l).__name__) for l in model.layers
          if not l.name.startswith("tf.")]


class BuildModelTest(tf.test.TestCase, parameterized.TestCase):

  def test_two_heads_give_probabilities(self):
    model = factory.build_model(statistics())
    out = model(batch())
    self.assertCountEqual(out.keys(), ["caba", "cabb"])
    for head in out.values():
      self.assertEqual(head.shape, (4, 1))
      self.assertTrue(np.all((head.numpy() > 0) & (head.numpy() < 1)))
      self.assertFalse(np.any(np.isnan(head.numpy())))

  def test_one_table_per_id_space(self):
    model = factory.build_model(statistics())
    names = [layer.name for layer in model.layers
             if isinstance(layer, tf.keras.layers.Embedding)]
    self.assertCountEqual(names, [
        "user_embedding", "item_embedding", "leaf_embedding",
        "top_category_embedding", "brand_embedding", "hour_embedding",
        "weekday_embedding"])
    # Vocabulary + one OOV bucket.
    self.assertEqual(model.get_layer("item_embedding").input_dim, 4)

  @parameterized.parameters(("conversion",), ("caba",))
  def test_single_head_baseline(self, head):
    model = factory.build_model(statistics(), heads=(head,))
    self.assertEqual(list(model(batch()).keys()), [head])

  def test_dcn_cross_layers(self):
    model = factory.build_model(statistics(), cross_layers=2)
    self.assertLen([l for l in model.layers if l.name.startswith("cross_")], 2)
    self.assertEqual(model(batch())["caba"].shape, (4, 1))

  def test_shared_mlp_bottom_is_the_paper_model(self):
    stats = statistics()
    default = factory.build_model(stats)
    explicit = factory.build_model(stats, bottom="shared_mlp")
    self.assertEqual(named_layers(explicit), named_layers(default))
    dense = [l.name for l in explicit.layers
             if isinstance(l, tf.keras.layers.Dense)]
    self.assertCountEqual(dense, [
        "bottom_dense_0", "bottom_dense_1", "caba_dense_0", "cabb_dense_0",
        "caba_logit", "cabb_logit"])
    # By hand: 5 id tables of width 16 with one OOV row, hour and weekday
    # tables of width 4, and one column per numeric feature plus the "never"
    # and "missing" indicators.
    vocab_rows = sum(len(v) + 1 for v in stats["vocabulary"].values())
    numeric = [n for n in features.NUMERIC_FEATURES
               if n not in factory.INTEGER_CATEGORIES]
    width = 5 * 16 + 2 * 4 + len(numeric) + len(factory.NEVER_FEATURES) + 1
    expected = (vocab_rows * 16 + (24 + 7) * 4
                + width * 128 + 128 + 128 * 64 + 64
                + 2 * (64 * 32 + 32 + 32 + 1))
    self.assertEqual(explicit.get_layer("features").output.shape[-1], width)
    self.assertEqual(explicit.count_params(), expected)
    self.assertEqual(default.count_params(), expected)

  @parameterized.parameters((None, 2), (3, 3))
  def test_dcn_bottom(self, cross_layers, expected_layers):
    plain = factory.build_model(statistics())
    model = factory.build_model(statistics(), bottom="dcn",
                                cross_layers=cross_layers)
    crosses = [l for l in model.layers if isinstance(l, tfrs.layers.dcn.Cross)]
    self.assertEqual([l.name for l in crosses],
                     [f"cross_{i}" for i in range(expected_layers)])
    # Each full-rank Cross layer adds a d × d kernel and a bias.
    d = model.get_layer("features").output.shape[-1]
    self.assertEqual(model.count_params() - plain.count_params(),
                     expected_layers * (d * d + d))
    self.assertIs(model.get_layer("bottom_dense_0").input,
                  crosses[-1].output)

  def test_legacy_cross_layers_equal_dcn(self):
    legacy = factory.build_model(statistics(), cross_layers=2)
    dcn = factory.build_model(statistics(), bottom="dcn", cross_layers=2)
    self.assertEqual(named_layers(legacy), named_layers(dcn))

  def test_bad_bottom_names_the_options(self):
    with self.assertRaisesRegex(
        ValueError, r"'shared_mlp', 'dcn', 'mmoe', 'ple'.*'moe'"):
      factory.build_model(statistics(), bottom="moe")

  def test_dcn_without_cross_layers_is_an_error(self):
    with self.assertRaisesRegex(ValueError, "'dcn' needs cross_layers >= 1"):
      factory.build_model(statistics(), bottom="dcn", cross_layers=0)

  @parameterized.parameters("dcn", "shared_mlp")
  def test_negative_cross_layers_are_an_error(self, bottom):
    with self.assertRaisesRegex(ValueError, "cross_layers"):
      factory.build_model(statistics(), bottom=bottom, cross_layers=-1)

  def test_excluded_features_are_not_inputs(self):
    model = factory.build_model(statistics(),
                                excluded_features=("user_id", "price_a"))
    self.assertNotIn("user_id", model.input_names)
    self.assertNotIn("price_a", model.input_names)

  def test_no_heads_is_an_error(self):
    with self.assertRaisesRegex(ValueError, "head"):
      factory.build_model(statistics(), heads=())

  def test_id_features_are_int32_rows(self):
    model = factory.build_model(statistics())
    dtypes = factory.input_dtypes(model)
    self.assertEqual(dtypes, factory.model_features(statistics()))
    raw = factory.raw_features(statistics())
    self.assertCountEqual(dtypes, raw)
    for name in factory.ID_SPACES:
      self.assertEqual(dtypes[name], tf.int32)
      self.assertEqual(raw[name], tf.string)
    for name in features.NUMERIC_FEATURES:
      self.assertEqual(dtypes[name], tf.float32)
      self.assertEqual(raw[name], tf.float32)
    # The OOV row and the vocabulary's last row are rows of the table.
    table = model.get_layer("brand_embedding")
    self.assertEqual(table.input_dim, len(statistics()["vocabulary"]["brand_a"])
                     + 1)


class IdLookupTest(tf.test.TestCase, parameterized.TestCase):

  def test_lookups_match_numpy(self):
    lookups = factory.id_lookups(statistics())
    self.assertCountEqual(lookups, factory.ID_SPACES)
    raw = raw_batch()
    indexed = factory.index_ids(raw, lookups)
    expected = batch()
    for name, value in expected.items():
      self.assertEqual(indexed[name].dtype, value.dtype, name)
      self.assertAllEqual(indexed[name], value, name)
    # By hand: "zz", "new" and "?" are OOV (0); "" is brand_a's first entry.
    self.assertAllEqual(indexed["user_id"], [1, 2, 0, 1])
    self.assertAllEqual(indexed["item_a"], [1, 2, 3, 0])
    self.assertAllEqual(indexed["brand_a"], [2, 1, 0, 2])

  def test_index_ids_leaves_indices_and_other_features(self):
    lookups = factory.id_lookups(statistics())
    indexed = batch()
    again = factory.index_ids(indexed, lookups)
    for name, value in indexed.items():
      self.assertIs(again[name], value)

  def test_an_empty_vocabulary_has_only_the_oov_row_in_use(self):
    stats = statistics()
    stats["vocabulary"]["brand_a"] = []
    lookups = factory.id_lookups(stats)
    self.assertAllEqual(lookups["brand_a"](tf.constant(["acme", ""])), [0, 0])
    model = factory.build_model(stats)
    self.assertEqual(model.get_layer("brand_embedding").input_dim, 2)

  @parameterized.parameters("shared_mlp", "mmoe")
  def test_string_model_is_the_model_on_raw_features(self, bottom):
    model = factory.build_model(statistics(), bottom=bottom)
    wrapped = factory.string_model(model, statistics())
    self.assertEqual(factory.input_dtypes(wrapped),
                     factory.raw_features(statistics()))
    # No weights of its own: the same variables, not copies.
    self.assertEqual([id(w) for w in wrapped.weights],
                     [id(w) for w in model.weights])
    expected = model(batch())
    got = wrapped(raw_batch())
    for head in ("caba", "cabb"):
      self.assertAllEqual(got[head], expected[head])
    # Training the model moves the wrapper with it.
    table = model.get_layer("brand_embedding")
    table.embeddings.assign(table.embeddings + 1.0)
    moved = model(batch())
    self.assertAllEqual(wrapped(raw_batch())["caba"], moved["caba"])
    self.assertNotAllClose(moved["caba"], expected["caba"])

  def test_each_string_reads_its_embedding_row(self):
    model = factory.build_model(statistics(), excluded_features=(
        "user_id", "item_a", "leaf_a", "top_category_a"))
    table = model.get_layer("brand_embedding").embeddings
    probe = tf.keras.Model(model.input,
                           model.get_layer("brand_embedding").output)
    got = probe(factory.index_ids(
        {name: raw_batch()[name] for name in model.input_names},
        factory.id_lookups(statistics())))
    rows = numpy_index(statistics()["vocabulary"]["brand_a"],
                       ["acme", "", "?", "acme"])
    self.assertAllEqual(got, tf.gather(table, rows))

  def test_vocabularies_a_text_file_cannot_hold_stay_constants(self):
    directory = self.get_temp_dir()
    stats = statistics()
    path = factory.write_vocabulary(stats, "item_a", directory)
    with open(path) as f:
      self.assertEqual(f.read(), "i1\ni2\ni3\n")
    # brand_a holds "" (an empty line), which a text-file table refuses.
    self.assertIsNone(factory.write_vocabulary(stats, "brand_a", directory))
    stats["vocabulary"]["item_a"] = ["i1", "a\nb"]
    self.assertIsNone(factory.write_vocabulary(stats, "item_a", directory))
    # Either way the lookups map as the in-memory ones do.
    from_files = factory.id_lookups(statistics(), vocabulary_dir=directory)
    raw = raw_batch()
    self.assertAllEqual(
        factory.index_ids(raw, from_files)["brand_a"],
        factory.index_ids(raw, factory.id_lookups(statistics()))["brand_a"])

  def test_string_model_of_a_model_without_ids_is_the_model(self):
    model = factory.build_model(statistics(),
                                excluded_features=tuple(factory.ID_SPACES))
    self.assertIs(factory.string_model(model, statistics()), model)


class HashBucketsTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    gin.clear_config()
    gin.bind_parameter("id_hashing.buckets", {"item": 1 << 20, "brand": 3})

  def tearDown(self):
    gin.clear_config()
    super().tearDown()

  def test_vocabulary_rows_follow_the_buckets_and_others_hash_into_them(self):
    lookups = factory.id_lookups(statistics())
    # By hand: vocabulary entry k is row k + N.
    self.assertAllEqual(lookups["item_a"](tf.constant(["i1", "i2", "i3"])),
                        [(1 << 20) + 0, (1 << 20) + 1, (1 << 20) + 2])
    self.assertAllEqual(lookups["brand_a"](tf.constant(["", "acme"])),
                        [3, 4])
    # Spaces without buckets keep the one OOV row.
    self.assertAllEqual(lookups["user_id"](tf.constant(["zz", "u2"])), [0, 2])
    # Unseen ids: the 64-bit FarmHash fingerprint modulo N, the function a
    # serving system must use too; 2,000 ids in 2^20 rows mostly stay apart.
    unseen = tf.constant([f"new{k}" for k in range(2000)])
    rows = lookups["item_a"](unseen).numpy()
    self.assertAllEqual(rows, tf.strings.to_hash_bucket_fast(unseen, 1 << 20))
    self.assertTrue(np.all(rows < (1 << 20)))
    self.assertGreaterEqual(len(set(rows.tolist())), 1990)

  def test_tables_have_the_vocabulary_and_the_buckets(self):
    model = factory.build_model(statistics(), excluded_features=("user_id",))
    self.assertEqual(model.get_layer("item_embedding").input_dim,
                     3 + (1 << 20))
    self.assertEqual(model.get_layer("brand_embedding").input_dim, 2 + 3)
    self.assertEqual(model.get_layer("leaf_embedding").input_dim, 2 + 1)
    raw = raw_batch()
    del raw["user_id"]
    indexed = factory.index_ids(raw, factory.id_lookups(statistics()))
    # "new" is hashed, not row 0: its own row of the table.
    self.assertAllEqual(indexed["item_a"][3],
                        tf.strings.to_hash_bucket_fast("new", 1 << 20))
    exported = factory.string_model(model, statistics(),
                                    vocabulary_dir=self.get_temp_dir())
    for head in ("caba", "cabb"):
      self.assertAllEqual(exported(raw)[head], model(indexed)[head])

  def test_row_labels_name_the_rows_the_lookups_give(self):
    stats = statistics()
    model = factory.build_model(stats)
    for space, oov in (("brand", 3), ("leaf", 1)):
      name = f"{space}_a"
      table, labels = factory.embedding_rows(model, stats, space)
      self.assertLen(labels, table.shape[0])
      self.assertEqual(table.shape[0], factory.vocabulary_size(stats, name))
      vocabulary = stats["vocabulary"][name]
      rows = factory.id_lookups(stats)[name](tf.constant(vocabulary)).numpy()
      self.assertEqual([labels[r] for r in rows], vocabulary)
      self.assertAllEqual(table, model.get_layer(
          f"{space}_embedding").get_weights()[0])
      hashed = [label for label in labels if label not in vocabulary]
      self.assertEqual(hashed, ["<out of vocabulary>"] if oov == 1 else
                       [f"<hash bucket {i}>" for i in range(oov)])
    # No table of an excluded space.
    self.assertIsNone(factory.embedding_rows(
        factory.build_model(stats, excluded_features=("leaf_a",)), stats,
        "leaf"))

  def test_bad_buckets_are_errors(self):
    for bad in ({"items": 4}, {"item": 0}, {"item": 2.5}):
      gin.clear_config()
      gin.bind_parameter("id_hashing.buckets", bad)
      with self.assertRaisesRegex(ValueError, "id_hashing.buckets"):
        factory.id_lookups(statistics())


if __name__ == "__main__":
  tf.test.main()
