"""Builds one cabb_tf TFDS dataset: `python -m cabb_tf.datasets.build`.

    python -m cabb_tf.datasets.build --dataset=cabb_synthetic/small \
        --data_dir=$HOME/tensorflow_datasets
    python -m cabb_tf.datasets.build --dataset=taobao_user_behavior \
        --data_dir=$HOME/tensorflow_datasets --manual_dir=/data/taobao

With Beam (docs/beam.md; needs `pip install 'cabb_tf[beam]'`), as
`tfds build` takes it:

    python -m cabb_tf.datasets.build --dataset=cabb_synthetic/small \
        --beam_pipeline_options="runner=DirectRunner,direct_num_workers=2,\
direct_running_mode=multi_processing"

The same as `tfds build`, whose command line needs packages (mlcroissant)
that cabb_tf does not install.
"""

from typing import Optional, Sequence

from absl import app
from absl import flags
from absl import logging
import tensorflow_datasets as tfds

from cabb_tf import gin_utils
import cabb_tf.datasets  # pylint: disable=unused-import  (registers builders)
from cabb_tf.datasets import locking

_DATASET = flags.DEFINE_string(
    "dataset", None, "Dataset and config, e.g. cabb_synthetic/small, "
    "rees46/oct_2019, taobao_user_behavior.", required=True)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "TFDS data directory (default: TFDS's, usually "
    "~/tensorflow_datasets).")
_MANUAL_DIR = flags.DEFINE_string(
    "manual_dir", None, "Directory holding the manually downloaded source "
    "file (rees46, taobao_user_behavior); default <data_dir>/downloads/manual.")
_BEAM_PIPELINE_OPTIONS = flags.DEFINE_string(
    "beam_pipeline_options", None, "Prepare with Apache Beam under these "
    "comma-separated pipeline options, e.g. 'runner=DirectRunner,"
    "direct_num_workers=2' (docs/beam.md); unset: in memory.")
_GIN_FILE = flags.DEFINE_multi_string(
    "gin_file", [], "Gin files (e.g. a session_log dataset's, or "
    "beam_work_units bindings).")
_GIN_BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings.")


def beam_options(text: Optional[str]):
  """`--beam_pipeline_options` as Beam's `PipelineOptions` (None if unset).

  'runner=DirectRunner,direct_num_workers=2' → --runner=DirectRunner
  --direct_num_workers=2, as `tfds build` reads the flag.
  """
  if not text:
    return None
  from apache_beam.options import pipeline_options  # pylint: disable=g-import-not-at-top
  return pipeline_options.PipelineOptions(
      flags=[f"--{option.strip()}" for option in text.split(",")
             if option.strip()])


def build(dataset: str, data_dir: Optional[str] = None,
          manual_dir: Optional[str] = None,
          beam_pipeline_options: Optional[str] = None
          ) -> tfds.core.DatasetBuilder:
  """Prepares `dataset` (name/config) and returns its builder.

  Args:
    dataset: e.g. 'cabb_synthetic/small'.
    data_dir: TFDS data directory.
    manual_dir: directory with the manually downloaded file.
    beam_pipeline_options: prepare with Beam under these options
      (`beam_options`); None: in memory.

  Returns:
    The prepared builder.
  """
  return locking.prepared_builder(
      dataset, data_dir, tfds.download.DownloadConfig(
          manual_dir=manual_dir,
          beam_options=beam_options(beam_pipeline_options)))


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  gin_utils.parse(_GIN_FILE.value, _GIN_BINDINGS.value)
  builder = build(_DATASET.value, _DATA_DIR.value, _MANUAL_DIR.value,
                  _BEAM_PIPELINE_OPTIONS.value)
  logging.info("%s in %s: %s", builder.info.full_name, builder.data_path,
               {name: split.num_examples
                for name, split in builder.info.splits.items()})
  print(builder.data_path)


if __name__ == "__main__":
  app.run(main)
