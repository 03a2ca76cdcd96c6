"""Tests of the oracle floors and headroom of a reproduction's tables."""

from absl.testing import absltest

from cabb_tf.analysis import floors
from cabb_tf.analysis import stats


def _results(runs_by_row):
  return {"table1": {row: {"overall_ne": stats.mean_ci(runs),
                           "caba_ne": stats.mean_ci(runs)}
                     for row, runs in runs_by_row.items()}}


class FloorsTest(absltest.TestCase):

  def test_headroom_by_hand(self):
    # Floor 0.6: NE 0.8 closes (1 − 0.8) / (1 − 0.6) = 0.5 of the headroom;
    # NE 1.2 is worse than the base rate: −0.5.
    self.assertAlmostEqual(floors.headroom_closed(0.8, 0.6), 0.5)
    self.assertAlmostEqual(floors.headroom_closed(1.2, 0.6), -0.5)
    self.assertAlmostEqual(floors.headroom_closed(0.6, 0.6), 1.0)

  def test_table_floors_average_per_seed_headroom(self):
    results = _results({"multitask": [0.8, 0.7, 0.9]})
    dataset_of = {"table1": {"multitask": "main"}}
    oracles = {"main": {"overall_ne": 0.6, "caba_ne": 0.5, "mc_error": 0.001}}
    out = floors.table_floors(results, dataset_of, oracles)
    cell = out["table1"]["multitask"]
    self.assertEqual(cell["overall_ne"]["floor"], 0.6)
    # Per seed: 0.5, 0.75, 0.25 → mean 0.5.
    self.assertAlmostEqual(cell["overall_ne"]["headroom_closed"]["mean"], 0.5)
    for got, want in zip(cell["overall_ne"]["headroom_closed"]["runs"],
                         [0.5, 0.75, 0.25]):
      self.assertAlmostEqual(got, want, places=12)
    # CABA against its own floor: (1 − 0.8) / 0.5 = 0.4, ...
    self.assertAlmostEqual(cell["caba_ne"]["headroom_closed"]["runs"][0], 0.4)
    # A dataset without an oracle gets no floors.
    self.assertEqual(floors.table_floors(
        results, {"table1": {"multitask": "window_1s"}}, oracles), {})

  def test_below_floor_lists_runs_beyond_the_error(self):
    results = _results({"multitask": [0.599, 0.59, 0.7]})
    dataset_of = {"table1": {"multitask": "main"}}
    oracles = {"main": {"overall_ne": 0.6, "caba_ne": 0.6, "mc_error": 0.002}}
    found = floors.below_floor(results, dataset_of, oracles)
    # 0.599 is within the 0.002 error; 0.59 is not, for both metrics.
    self.assertEqual(sorted((f["metric"], f["seed_index"]) for f in found),
                     [("caba_ne", 1), ("overall_ne", 1)])


if __name__ == "__main__":
  absltest.main()
