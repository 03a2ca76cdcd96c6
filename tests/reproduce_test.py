"""Unit tests of reproduce.py's checks before training and its progress."""

import types
from unittest import mock

from absl.testing import absltest

import cabb_tf  # pylint: disable=unused-import
from cabb_tf import parallel
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


class TrainAllTest(absltest.TestCase):

  def test_each_table_is_fitted_once_before_its_runs(self):
    calls = []
    v = reproduce.Variant
    variants = [v("last_click"), v("multitask", 0.75, "taxonomy_cf"),
                v("multitask", 0.75, "i2i_embedding"),
                v("multitask", 0.75, "static"),
                v("multitask", 0.1, "taxonomy_cf"),
                v("multitask", 0.75, "taxonomy_cf", signal_scale=4.0)]
    to_train = [((variant, seed), (f"runs/{variant.key}/{seed}", variant, seed))
                for variant in variants for seed in (0, 1)]
    # Each table is fitted as its first run would fit it.
    first = {}
    for variant in variants:
      if variant.scheme != "static":
        first.setdefault((variant.dataset, variant.scheme), variant)
    with mock.patch.object(reproduce, "_fit_alpha",
                           lambda variant, seed: calls.append(
                               ("fit", variant, seed))), \
         mock.patch.object(reproduce, "_train",
                           lambda run_dir, variant, seed: calls.append(
                               ("run", variant, seed)) or run_dir), \
         parallel.Pool(1, 0) as pool:
      done = dict(reproduce._train_all(pool, to_train))  # pylint: disable=protected-access
    self.assertEqual(done, {key: args[0] for key, args in to_train})
    fitted = [(c[1].dataset, c[1].scheme) for c in calls if c[0] == "fit"]
    # Once each, the slow fit first.
    self.assertCountEqual(fitted, [("main", "taxonomy_cf"),
                                   ("main", "i2i_embedding"),
                                   ("signal_4", "taxonomy_cf")])
    self.assertEqual(fitted[0], ("main", "i2i_embedding"))
    for i, call in enumerate(calls):
      if call[0] == "run" and call[1].scheme != "static" and (
          call[1].task == "multitask"):
        self.assertIn(("fit", first[(call[1].dataset, call[1].scheme)], 0),
                      calls[:i])
    # The runs without α were queued before any run that waited for a fit.
    first_waiting = min(i for i, c in enumerate(calls) if c[0] == "run" and
                        c[1].scheme != "static")
    self.assertEqual(
        {(c[1], c[2]) for c in calls[:first_waiting] if c[0] == "run"},
        {(variants[i], seed) for i in (0, 3) for seed in (0, 1)})


class ProgressTest(absltest.TestCase):

  def test_time_left_counts_builds_runs_and_the_analysis(self):
    clock = mock.patch.object(reproduce.time, "time")
    now = clock.start()
    self.addCleanup(clock.stop)
    now.return_value = 100.0
    progress = reproduce._Progress(builds=2, runs=10, analysis_runs=3,  # pylint: disable=protected-access
                                   processes=2)
    self.assertIsNone(progress._left_s())  # pylint: disable=protected-access
    now.return_value = 130.0
    progress.dataset_built("main")
    # One build in 30 s, no run timed yet: the datasets' time only.
    self.assertEqual(progress._left_s(), 30)  # pylint: disable=protected-access
    now.return_value = 160.0
    progress.dataset_built("window")
    progress.start_runs(already_done=4)  # a resumed reproduction
    # The first runs waited a minute for their α tables: not their time.
    now.return_value = 220.0
    progress.run_done("a seed 0", 16.0)
    progress.run_done("a seed 1", 24.0)
    # Runs of 20 s on 2 processes: 4 left at 10 s each, then 3 runs' worth
    # of analysis.
    self.assertEqual(progress._left_s(), (4 + 3) * 10)  # pylint: disable=protected-access
    self.assertEqual(reproduce._Progress.analysis_runs_of(3200, 4),  # pylint: disable=protected-access
                     4 + 3200 * 4 / 300)

  def test_the_last_line_gives_each_phase(self):
    with mock.patch("builtins.print") as printed:
      reproduce._Progress(1, 1, 1).done(  # pylint: disable=protected-access
          {"datasets": 9.4, "runs": 456.0, "analysis": 85.2})
    self.assertEqual(printed.call_args.args[0],
                     "[reproduce] done: datasets 9 s, runs 7.6 min, "
                     "analysis 85 s")

if __name__ == "__main__":
  absltest.main()
