"""The TFDS builders prepared with Beam equal the same builders in memory.

Each builder is prepared twice into separate data dirs: in memory (the
default) and with Beam's DirectRunner (`DownloadConfig.beam_options`, what
`python -m cabb_tf.datasets.build --beam_pipeline_options=...` passes). The
two datasets must hold the same rows in every split (every label, weight,
feature and builder field; click ids only up to renumbering), the same
metadata (report counts, feature statistics to 1e-9, time range, split
boundaries, side-file sizes, gin bindings), and the Beam build's
`category_similarity.npz` must equal `category_similarity` of its training
events. Logs are small: the simulator's `tiny` config and the public
samples in ../shared (skipped when absent).
"""

import json
import os

from absl.testing import parameterized
import gin
import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_datasets as tfds

from cabb_tf import gin_utils
from cabb_tf.datasets import build
from cabb_tf.datasets import click_examples
from cabb_tf.similarity import category_cf
from tests import shared_data

try:
  from apache_beam.options import pipeline_options
  from tests.pipelines import prepare_beam_test
except ImportError:  # The beam extra is not installed.
  pipeline_options = None

_DIRECT = "runner=DirectRunner,direct_num_workers=1,direct_running_mode=in_memory"
# A row's identity in both builds. Session ids of derived sessions and click
# ids are numbered differently (only the grouping of rows must agree).
_KEY = ["user_id", "timestamp", "item_a", "item_b"]
_IDS = ["session_id", "click_id"]


def _rows(builder, key):
  """Every split's rows as a DataFrame (strings decoded), with `split`,
  sorted by `key`."""
  frames = []
  for split in click_examples.SPLITS:
    records = list(tfds.as_numpy(builder.as_dataset(split=split,
                                                    shuffle_files=False)))
    frame = pd.DataFrame(records)
    for column in frame.columns:
      if frame[column].dtype == object:
        frame[column] = frame[column].map(lambda b: b.decode("utf-8"))
    frame["split"] = split
    frames.append(frame)
  frame = pd.concat(frames, ignore_index=True)
  return frame.sort_values(key, kind="stable").reset_index(drop=True)


class BeamBuildTest(parameterized.TestCase, tf.test.TestCase):

  def setUp(self):
    super().setUp()
    if pipeline_options is None:
      self.skipTest("apache-beam is not installed (the beam extra)")
    gin.clear_config()
    self.addCleanup(gin.clear_config)

  def _build_both(self, name, manual_dir=None):
    in_memory = build.build(name, data_dir=self.create_tempdir().full_path,
                            manual_dir=manual_dir)
    with_beam = build.build(name, data_dir=self.create_tempdir().full_path,
                            manual_dir=manual_dir,
                            beam_pipeline_options=_DIRECT)
    return in_memory, with_beam

  def _check_equal(self, in_memory, with_beam, source_sessions=False):
    # Source session ids are kept as they are, so they identify rows too.
    key = (["session_id"] if source_sessions else []) + _KEY
    ids = ["click_id"] if source_sessions else _IDS
    want, got = _rows(in_memory, key), _rows(with_beam, key)
    self.assertEqual(set(got.columns), set(want.columns))
    self.assertLen(got, len(want))
    self.assertFalse(want.duplicated(key).any())
    for column in want.columns:
      if column in ids:
        continue
      np.testing.assert_array_equal(got[column].to_numpy(),
                                    want[column].to_numpy(), err_msg=column)
    # Ids: the same grouping of rows (a bijection); click ids dense from 0.
    prepare_beam_test.assert_same_grouping(self, got, want, _IDS)
    self.assertEqual(sorted(got["click_id"].unique()),
                     list(range(got["click_id"].nunique())))
    for split in click_examples.SPLITS:
      self.assertEqual(with_beam.info.splits[split].num_examples,
                       in_memory.info.splits[split].num_examples, split)

    want_meta, got_meta = in_memory.info.metadata, with_beam.info.metadata
    for key in ("time_range_ms", "split_boundaries_ms", "train_events",
                "catalog", "config", "gin_bindings"):
      self.assertEqual(got_meta[key], want_meta[key], key)
    report, want_report = got_meta["data_report"], want_meta["data_report"]
    for key in ("rows_in", "rows_kept", "dropped", "events", "event_counts",
                "users", "items", "sessions", "clicks", "click_examples",
                "examples", "cabb_positive_rows", "purchases",
                "click_examples_by_split", "attribution_window_s"):
      self.assertEqual(report[key], want_report[key], key)
    statistics = got_meta["feature_statistics"]
    want_statistics = want_meta["feature_statistics"]
    self.assertEqual(statistics["vocabulary"], want_statistics["vocabulary"])
    for feature, moments in want_statistics["numeric"].items():
      for key, value in moments.items():
        self.assertAlmostEqual(statistics["numeric"][feature][key], value,
                               delta=1e-9 * max(1.0, abs(value)),
                               msg=f"{feature}.{key}")

    # The side files, and α's similarity computed by the pipeline.
    events, catalog = click_examples.load_training_events(with_beam)
    want_events, _ = click_examples.load_training_events(in_memory)
    self.assertLen(events, len(want_events))
    want_sim = category_cf.category_similarity(events, catalog)
    got_sim = category_cf.CategorySimilarity.load(
        os.path.join(with_beam.data_path, "category_similarity.npz"))
    self.assertEqual(list(got_sim.leaves), list(want_sim.leaves))
    np.testing.assert_allclose(got_sim.matrix.toarray(),
                               want_sim.matrix.toarray(), atol=1e-9)
    # The staging and fragment directories are gone.
    self.assertEmpty([name for name in os.listdir(with_beam.data_path)
                      if name.startswith("beam_")])
    return got

  def test_simulator_with_its_ground_truth(self):
    got = self._check_equal(*self._build_both("cabb_synthetic/tiny"),
                            source_sessions=True)
    # The ground truth is computed on the workers: some rows have each kind.
    self.assertContainsSubset({"substitute", "complement", "other_click"},
                              set(got["cause"]))

  def _taobao_head(self):
    """The first 12,000 lines of the Taobao sample (whole users: the
    sample is by user), in a temp file, to keep the test fast."""
    source = shared_data.require(shared_data.TAOBAO)
    with open(source) as f:
      lines = [next(f) for _ in range(12_000)]
    return self.create_tempfile("UserBehavior_head.csv",
                                "".join(lines)).full_path

  def test_taobao_sample(self):
    path = self._taobao_head()
    gin.bind_parameter("taobao_manual_file.name", path)
    self._check_equal(*self._build_both("taobao_user_behavior/head_sample"))

  def test_rees46_sample(self):
    source = shared_data.require(shared_data.REES46)
    self._check_equal(*self._build_both("rees46/oct_2019_head",
                                        manual_dir=str(source.parent)),
                      source_sessions=True)

  def test_session_log_from_gin(self):
    gin_utils.parse(["datasets/session_log_example_flat.gin"],
                    [f"loaders.load_csv.path = '{self._taobao_head()}'"])
    self._check_equal(*self._build_both("session_log"))

  def test_beam_pipeline_options_flag(self):
    options = build.beam_options(
        "runner=DirectRunner, direct_num_workers=2,"
        "direct_running_mode=multi_processing")
    self.assertEqual(options.get_all_options(drop_default=True),
                     {"runner": "DirectRunner", "direct_num_workers": 2,
                      "direct_running_mode": "multi_processing"})
    self.assertIsNone(build.beam_options(""))


if __name__ == "__main__":
  tf.test.main()
