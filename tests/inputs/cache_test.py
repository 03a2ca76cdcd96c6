"""Tests of the cache the runs of a process share."""

import os
import tempfile
import unittest

import numpy as np

from cabb_tf.inputs import cache as cache_lib


class CacheTest(unittest.TestCase):

  def test_each_key_is_made_once_until_cleared(self):
    cache = cache_lib.Cache()
    calls = []

    def make(value):
      calls.append(value)
      return [value]

    first = cache.column_split(("dir", "train"), lambda: make(1))
    self.assertIs(cache.column_split(("dir", "train"), lambda: make(2)),
                  first)
    self.assertEqual(cache.column_split(("dir", "test"), lambda: make(3)),
                     [3])
    self.assertEqual(cache.alpha_table(("taxonomy_cf",), lambda: make(4)),
                     [4])
    self.assertEqual(cache.alpha_table(("taxonomy_cf",), lambda: make(5)),
                     [4])
    self.assertEqual(cache.id_lookups(("dir", ()), lambda: make(7)), [7])
    self.assertEqual(cache.id_lookups(("dir", ()), lambda: make(8)), [7])
    self.assertEqual(cache.id_lookups(("dir", (("item", 4),)),
                                      lambda: make(9)), [9])
    self.assertEqual(calls, [1, 3, 4, 7, 9])
    cache.clear()
    self.assertEqual((cache.columns, cache.alpha_tables, cache.lookups),
                     ({}, {}, {}))
    self.assertEqual(cache.column_split(("dir", "train"), lambda: make(6)),
                     [6])
    self.assertEqual(calls, [1, 3, 4, 7, 9, 6])

  def test_a_directory_shares_alpha_tables_between_caches(self):
    with tempfile.TemporaryDirectory() as directory:
      first = cache_lib.Cache(directory)
      second = cache_lib.Cache(directory)
      key = ("taxonomy_cf", "/data/cabb_synthetic/default/1.1.0", 0.0, ())
      table = {"alpha": np.arange(3.0), "keys": ["a", "b", "c"]}
      self.assertIs(first.alpha_table(key, lambda: table), table)

      def fail():
        raise AssertionError("made again")

      got = second.alpha_table(key, fail)
      self.assertEqual(got["keys"], table["keys"])
      np.testing.assert_array_equal(got["alpha"], table["alpha"])
      # Another key (another dataset) is made; nothing partial is left.
      other = key[:1] + ("/data/other",) + key[2:]
      self.assertEqual(second.alpha_table(other, lambda: [1]), [1])
      self.assertNotEqual(first.alpha_path(key), first.alpha_path(other))
      self.assertCountEqual(os.listdir(directory), [
          os.path.basename(first.alpha_path(k)) for k in (key, other)])
    self.assertIsNone(cache_lib.Cache().alpha_path(key))

  def test_default_is_one_object(self):
    self.assertIs(cache_lib.default(), cache_lib.default())
    self.assertIsNot(cache_lib.Cache().columns, cache_lib.default().columns)


if __name__ == "__main__":
  unittest.main()
