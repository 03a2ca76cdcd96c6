"""TFDS builder `cabb_synthetic`: click examples from the session simulator."""

import dataclasses
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_datasets as tfds

from cabb_tf.data import report as report_lib
from cabb_tf.data import simulator
from cabb_tf.datasets import click_examples

_RELATION_DOC = (
    "Ground-truth relation of B's leaf to A's leaf in the simulated world: "
    "'substitute' (same leaf), 'complement' or 'unrelated'; '' without B.")


@dataclasses.dataclass(eq=False)
class SyntheticConfig(click_examples.ClickExamplesConfig):
  """A simulated log of about `num_events` events.

  Attributes:
    num_events: the wanted number of events (`simulator.simulate_events`
      hits it within a few per cent); every other simulator argument keeps
      its default (or its gin binding, recorded in the metadata).
    seed: the simulator's seed.
  """
  num_events: int = 500_000
  seed: int = 0


def _config(name: str, num_events: int, note: str) -> SyntheticConfig:
  return SyntheticConfig(
      name=name, num_events=num_events, seed=0,
      description=f"About {num_events:,} simulated events, seed 0. {note}")


class Builder(click_examples.ClickExamplesBuilder):
  """Click examples from `cabb_tf.data.simulator` (nothing to download)."""

  BUILDER_CONFIGS = [
      _config("tiny", 5_000, "For smoke tests."),
      _config("small", 50_000, "For quick experiments."),
      _config("default", 500_000, "The embedded default data."),
      _config("large", 5_000_000, "For scaling runs."),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "default"
  # The simulated log, kept by `_load_log` for `_extra_columns`.
  _log: Optional[simulator.SimulatedLog] = None

  def _extra_features(self) -> Dict[str, tfds.features.FeatureConnector]:
    return {"relation": tfds.features.Scalar(tf.string, doc=_RELATION_DOC)}

  def _gin_configurables(self) -> Sequence[Callable[..., Any]]:
    return tuple(super()._gin_configurables()) + (simulator.simulate,)

  def _gin_explicit(self) -> Sequence[str]:
    # `simulate_events` passes these to `simulate` itself.
    return tuple(f"cabb_tf.data.simulator.simulate.{name}"
                 for name in ("num_users", "seed", "first_user_id"))

  def _load_log(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # Nothing to download.
    config = self.builder_config
    if config.num_events < 1:
      raise ValueError(f"num_events must be >= 1, got {config.num_events}.")
    self._log = simulator.simulate_events(config.num_events, seed=config.seed)
    events = self._log.events
    report = report_lib.new_report(
        f"simulator.simulate_events({config.num_events}, seed={config.seed})")
    report["rows_in"] = report["rows_kept"] = len(events)
    return events, self._log.catalog, report

  def _extra_columns(self, examples: pd.DataFrame) -> Dict[str, np.ndarray]:
    has_b = examples["y_cabb"].to_numpy() > 0
    relation = np.full(len(examples), "", dtype=object)
    if has_b.any():
      relation[has_b] = simulator.pair_relation(
          self._log,
          examples["leaf_a"].astype(str).to_numpy()[has_b],
          examples["leaf_b"].astype(str).to_numpy()[has_b])
    return {"relation": relation}
