"""TFDS builder `session_log`: click examples from your own event log.

The log is whatever gin binds to `cabb_tf.data.loaders.load_csv` (a file or a
glob, its column and event-type mappings, timestamp unit or format, session
and category columns): `gin/datasets/session_log.gin` selects this dataset,
and your own gin file includes it and binds `load_csv.*` (docs/loading.md,
"Your own log, end to end").

A build records (in `builder.info.metadata`)

* `gin_bindings`: the bindings of `load_csv` and of the preparation
  (sessions, labels, features), as every click-example builder does, so that
  `click_examples.binding_mismatches` refuses to reuse the build under other
  bindings;
* `source_files`: the fingerprints of the files read (`provenance`), so
  that a later request naming other or changed files fails
  (`ClickExamplesBuilder.check_reuse`, before the build is reused).
"""

import dataclasses
from typing import Any, Callable, Optional, Sequence

import gin
import tensorflow_datasets as tfds

from cabb_tf.data import loaders
from cabb_tf.datasets import click_examples

_LOAD_CSV = "cabb_tf.data.loaders.load_csv"


@dataclasses.dataclass(eq=False)
class SessionLogConfig(click_examples.ClickExamplesConfig):
  """The time split of a `session_log` build (the log itself is in gin)."""


class Builder(click_examples.ClickExamplesBuilder):
  """Click examples from the event log that gin binds to `load_csv`.

  Nothing is downloaded: the log is read from `load_csv.path` (a file or a
  glob pattern) with the mappings bound in gin. Sessions, labels, features
  and the split are those of every click-example builder
  (`click_examples`). Build each log into its own `load_data.data_dir`: TFDS
  reuses a build by name, config and version, and a build made from other
  bindings or other files is refused, never read silently.
  """

  BUILDER_CONFIGS = [
      SessionLogConfig(
          name="default",
          description="The log bound to load_csv in gin; the last 20 % of its "
                      "time range is test, the 10 % before it validation."),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "default"

  def _gin_configurables(self) -> Sequence[Callable[..., Any]]:
    return tuple(super()._gin_configurables()) + (loaders.load_csv,)

  def source_path(self) -> Optional[str]:
    """The `load_csv.path` bound in gin now, or None."""
    try:
      return str(gin.query_parameter(f"{_LOAD_CSV}.path"))
    except ValueError:
      return None

  def _load_log(self, dl_manager: tfds.download.DownloadManager
                ) -> click_examples.Log:
    del dl_manager  # The log is named in gin, not downloaded.
    self._check_bindings()
    self.record_sources(self.source_path())
    return loaders.load_csv()

  def _beam_source(self, dl_manager: tfds.download.DownloadManager,
                   staging_dir: str) -> click_examples.BeamSource:
    del dl_manager, staging_dir  # The log is named in gin and read as it is.
    self._check_bindings()
    self.record_sources(self.source_path())
    return click_examples.BeamSource(
        self.source_path(), csv_options=loaders.csv_options_as_called())

  def _check_bindings(self) -> None:
    """Raises ValueError unless gin binds the log's path and mappings."""
    missing = []
    for parameter in ("path", "columns", "event_type_map"):
      try:
        gin.query_parameter(f"{_LOAD_CSV}.{parameter}")
      except ValueError:
        missing.append(f"load_csv.{parameter}")
    if missing:
      raise ValueError(
          f"{self.info.full_name} reads the log that gin binds to load_csv, "
          f"but {', '.join(missing)} is not bound. Include "
          "'datasets/session_log.gin' in your gin file and bind load_csv.path, "
          ".columns, .event_type_map and .timestamp_unit or .timestamp_format "
          "(see gin/datasets/session_log_example_*.gin and docs/loading.md).")
