"""Unit tests of reproduce.py's checks before training."""

import types

from absl.testing import absltest

import cabb_tf  # pylint: disable=unused-import
from cabb_tf import reproduce


def _data(items, unknown):
  info = types.SimpleNamespace(
      full_name="session_log/default/1.0.0",
      metadata={"data_report": {"items": items,
                                "items_unknown_category": unknown}})
  return types.SimpleNamespace(builder=types.SimpleNamespace(info=info))


class CheckCategoriesTest(absltest.TestCase):

  def test_leaf_schemes_on_a_log_without_categories_fail(self):
    with self.assertRaisesRegex(
        ValueError, r"none of the log's 7 items has a category.*"
        r"\['taxonomy_cf', 'taxonomy_tree'\].*reproduce_uncategorized.gin"):
      reproduce.check_categories(
          _data(7, 7), ["static", "taxonomy_cf", "taxonomy_tree",
                        "taxonomy_cf"])

  def test_item_schemes_on_a_log_without_categories_pass(self):
    reproduce.check_categories(_data(7, 7),
                               ["static", "i2i_embedding", "i2i_cf"])

  def test_one_known_leaf_is_enough(self):
    reproduce.check_categories(_data(7, 6), ["taxonomy_cf"])


if __name__ == "__main__":
  absltest.main()
