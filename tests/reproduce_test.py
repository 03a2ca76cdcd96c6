"""Unit tests of reproduce.py's checks before training and its progress."""

import types
from unittest import mock

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


class ProgressTest(absltest.TestCase):

  def test_time_left_counts_builds_runs_and_the_analysis(self):
    clock = mock.patch.object(reproduce.time, "time")
    now = clock.start()
    self.addCleanup(clock.stop)
    now.return_value = 100.0
    progress = reproduce._Progress(builds=2, runs=10, analysis_runs=3)  # pylint: disable=protected-access
    self.assertIsNone(progress._left_s())  # pylint: disable=protected-access
    now.return_value = 130.0
    progress.dataset_built("main")
    # One build in 30 s, no run timed yet: the datasets' time only.
    self.assertEqual(progress._left_s(), 30)  # pylint: disable=protected-access
    now.return_value = 160.0
    progress.dataset_built("window")
    progress.start_runs(already_done=4)  # a resumed reproduction
    now.return_value = 180.0
    progress.run_done("a seed 0")
    progress.run_done("a seed 1")
    # Two runs in 20 s: 4 left at 10 s each, then 3 runs' worth of analysis.
    self.assertEqual(progress._left_s(), (4 + 3) * 10)  # pylint: disable=protected-access
    self.assertEqual(reproduce._Progress.analysis_runs_of(3200, 4),  # pylint: disable=protected-access
                     4 + 3200 * 4 / 300)

if __name__ == "__main__":
  absltest.main()
