"""Tests of the cache the runs of a process share."""

import unittest

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

  def test_default_is_one_object(self):
    self.assertIs(cache_lib.default(), cache_lib.default())
    self.assertIsNot(cache_lib.Cache().columns, cache_lib.default().columns)


if __name__ == "__main__":
  unittest.main()
