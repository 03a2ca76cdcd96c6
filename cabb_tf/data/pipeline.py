"""Data preparation: event log → sessions → labels → features → split → report.

`prepare_examples` is the one entry point every consumer uses (TFDS builders,
the training input pipeline, the benchmark): it takes a canonical log and
returns the labeled click examples with their point-in-time features, the
train/validation/test split, the feature statistics fitted on the training
split and the data report (docs/method.md).
"""

import dataclasses
import os
from typing import Any, Callable, Dict, Optional, Tuple

from absl import logging
import gin
import numpy as np
import pandas as pd

from cabb_tf.data import encoding
from cabb_tf.data import features as features_lib
from cabb_tf.data import labels as labels_lib
from cabb_tf.data import report as report_lib
from cabb_tf.data import schema
from cabb_tf.data import sessions as sessions_lib

LogSource = Callable[[], Tuple[pd.DataFrame, pd.DataFrame, Dict[str, Any]]]


@dataclasses.dataclass
class PreparedData:
  """The output of `prepare_examples`.

  Attributes:
    examples: one row per (click example, other purchased item) with labels,
      features, `leaf_b` and a `split` column (train / validation / test).
    catalog: the canonical catalog.
    report: the data report (JSON-ready dict).
    feature_statistics: `features.fit_feature_statistics` on the train split.
    time_range: (first, last) event timestamp in ms.
  """
  examples: pd.DataFrame
  catalog: pd.DataFrame
  report: Dict[str, Any]
  feature_statistics: Dict[str, Any]
  time_range: Tuple[int, int]

  def split(self, name: str) -> pd.DataFrame:
    """Returns the examples of one split ('train', 'validation', 'test')."""
    return self.examples[self.examples["split"] == name]


@gin.configurable(denylist=["events", "catalog", "report"])
def prepare_examples(events: pd.DataFrame,
                     catalog: pd.DataFrame,
                     report: Optional[Dict[str, Any]] = None,
                     time_range: Optional[Tuple[int, int]] = None,
                     validation_fraction: float = 0.1,
                     test_fraction: float = 0.2) -> PreparedData:
  """Turns a canonical event log into labeled, featurized, split examples.

  Args:
    events: canonical events (sessions derived when there is no
      `session_id`).
    catalog: canonical catalog.
    report: the loader's report, extended in place with the preparation's
      counts; a new one when None.
    time_range: optional [start, end) in ms; events outside are dropped and
      counted as `out_of_time_range` (e.g. Taobao's stray timestamps).
    validation_fraction: share of the time range used for validation.
    test_fraction: share of the time range used for test.

  Returns:
    The `PreparedData`.
  """
  if report is None:
    report = report_lib.new_report("events")
    report["rows_in"] = report["rows_kept"] = len(events)
  schema.validate_events(events)
  if time_range is not None:
    start, end = (int(t) for t in time_range)
    ts = events["timestamp"].to_numpy()
    inside = (ts >= start) & (ts < end)
    dropped = int((~inside).sum())
    if dropped:
      events = events[inside].reset_index(drop=True)
      report_lib.add_dropped(report, "out_of_time_range", dropped)
      report["rows_kept"] -= dropped
  if not len(events):
    raise ValueError(f"{report['source']}: no events left to prepare.")

  events, encoded, examples, purchase_stats = label_and_featurize(
      events, catalog, labels_lib.configured_attribution_window())
  log_range = (int(encoded.timestamps.min()), int(encoded.timestamps.max()))
  examples["split"] = features_lib.split_by_time(
      examples, log_range, validation_fraction=validation_fraction,
      test_fraction=test_fraction).to_numpy()
  train = examples[examples["split"] == "train"]
  statistics = features_lib.fit_feature_statistics(train)

  report.update(assemble_report(
      log_counts(encoded), example_counts(examples), purchase_stats,
      len(encoded.item_ids), unknown_items(encoded.item_ids, catalog)))
  report_lib.check_report(report)
  return PreparedData(examples=examples, catalog=catalog, report=report,
                      feature_statistics=statistics, time_range=log_range)


def label_and_featurize(
    events: pd.DataFrame,
    catalog: pd.DataFrame,
    attribution_window_s: Optional[float] = None,
    *,
    popularity: bool = True,
    day_resolution: Optional[bool] = None,
    session_options: Optional[Dict[str, Any]] = None,
    feature_options: Optional[Dict[str, Any]] = None,
) -> Tuple[pd.DataFrame, encoding.EncodedLog, pd.DataFrame, Dict[str, Any]]:
  """Sessions, labels and features of a log, or of a part of it.

  `prepare_examples` calls it on the whole log; the Beam preparation
  (`cabb_tf.pipelines.prepare_beam`, docs/beam.md) on each user bucket, with
  `popularity=False` (the item and leaf families need the whole log before
  each click: `features.as_of_popularity` computes them per time block) and
  the whole log's `day_resolution`. Every rule of docs/method.md runs here
  and only here.

  Args:
    events: canonical events (sessions derived when there is no
      `session_id`).
    catalog: canonical catalog.
    attribution_window_s: see `labels.label_clicks`.
    popularity: compute the popularity family (`features.compute_features`).
    day_resolution: see `sessions.assign_sessions`.
    session_options: keyword arguments of `sessions.assign_sessions` (gin's
      bindings when None).
    feature_options: keyword arguments of `features.compute_features` (gin's
      bindings when None).

  Returns:
    (sessionized events, their `EncodedLog`, the featurized examples,
    `labels.purchase_stats`).
  """
  events, codes = sessions_lib.assign_sessions(
      events, with_codes=True, day_resolution=day_resolution,
      **(session_options or {}))
  encoded = encoding.encode_events(events, codes)
  del codes
  window_s = attribution_window_s
  # The log's side of the features is arranged on a second core meanwhile.
  (examples, purchase_stats), histories = features_lib.beside_histories(
      lambda: labels_lib.label_clicks_and_stats(
          events, catalog, encoded=encoded, attribution_window_s=window_s),
      events, catalog, encoded, popularity)
  examples = features_lib.compute_features(events, catalog, examples,
                                           encoded=encoded,
                                           histories=histories,
                                           popularity=popularity,
                                           **(feature_options or {}))
  return events, encoded, examples, purchase_stats


def log_counts(encoded: encoding.EncodedLog) -> Dict[str, Any]:
  """The report's counts of a log that add up over disjoint user sets."""
  return {
      "events": int(encoded.num_events),
      "event_counts": dict(zip(schema.EVENT_TYPES, (
          int(n) for n in np.bincount(encoded.types,
                                      minlength=len(schema.EVENT_TYPES))))),
      "users": int(encoded.user.max() + 1) if encoded.num_events else 0,
      "sessions": int(len(encoded.session_ids)),
      "clicks": int((encoded.types == schema.CLICK).sum()),
      "purchases": int((encoded.types == schema.PURCHASE).sum()),
  }


def example_counts(examples: pd.DataFrame) -> Dict[str, Any]:
  """The report's counts of examples (with a `split` column); they add up
  over disjoint user sets."""
  first = examples["w_caba"].to_numpy() > 0
  split_counts = examples.loc[first, "split"].value_counts()
  return {
      "click_examples": int(first.sum()),
      "examples": int(len(examples)),
      "caba_positives": int(examples["y_caba"].to_numpy()[first].sum()),
      "cabb_positive_rows": int(examples["y_cabb"].sum()),
      "last_click_positives": int(
          examples["y_last_click"].to_numpy()[first].sum()),
      "click_examples_by_split": {s: int(split_counts.get(s, 0))
                                  for s in ("train", "validation", "test")},
  }


def unknown_items(item_ids: np.ndarray, catalog: pd.DataFrame) -> int:
  """How many of `item_ids` have no known leaf in `catalog`."""
  known = catalog.loc[catalog["leaf"] != schema.UNKNOWN_LEAF, "item_id"]
  return int((~pd.Index(item_ids).isin(known)).sum())


def assemble_report(log: Dict[str, Any], examples: Dict[str, Any],
                    stats: Dict[str, Any], items: int,
                    items_unknown_category: int) -> Dict[str, Any]:
  """The preparation's part of the data report from its counts."""
  return {
      "events": log["events"],
      "event_counts": log["event_counts"],
      "users": log["users"],
      "items": int(items),
      "sessions": log["sessions"],
      "clicks": log["clicks"],
      "click_examples": examples["click_examples"],
      "examples": examples["examples"],
      "caba_positives": examples["caba_positives"],
      "cabb_positive_rows": examples["cabb_positive_rows"],
      "last_click_positives": examples["last_click_positives"],
      "purchases": log["purchases"],
      "cabb_share": stats["cabb_share"],
      "attribution_window_s": stats["attribution_window_s"],
      "purchase_attribution": stats,
      "purchases_without_prior_click": stats["purchases_without_prior_click"],
      "items_unknown_category": int(items_unknown_category),
      "click_examples_by_split": examples["click_examples_by_split"],
  }


@gin.configurable(denylist=["base_dir"])
def prepare_to_dir(base_dir: str,
                   source: LogSource = gin.REQUIRED,
                   write_examples: bool = True) -> PreparedData:
  """Loads a log with `source`, prepares it and writes the results.

  Writes `data_report.json`, `feature_statistics.json` and (optionally)
  `examples.parquet` to `base_dir`.

  Args:
    base_dir: output directory.
    source: a callable returning `(events, catalog, report)` — a loader or
      the simulator bound in gin.
    write_examples: also write the examples as Parquet.

  Returns:
    The `PreparedData`.
  """
  events, catalog, report = source()
  prepared = prepare_examples(events, catalog, report)
  os.makedirs(base_dir, exist_ok=True)
  report_lib.write_report(prepared.report,
                          os.path.join(base_dir, "data_report.json"))
  report_lib.write_json(prepared.feature_statistics,
                        os.path.join(base_dir, "feature_statistics.json"))
  if write_examples:
    path = os.path.join(base_dir, "examples.parquet")
    tmp = path + ".tmp"
    prepared.examples.to_parquet(tmp, index=False)
    os.replace(tmp, path)
  logging.info("Prepared %d examples from %d events into %s",
               len(prepared.examples), prepared.report["events"], base_dir)
  return prepared


def summary_lines(report: Dict[str, Any]) -> list:
  """Human-readable lines of the main report figures."""
  keys = ("rows_in", "rows_kept", "dropped", "sessions", "clicks",
          "click_examples", "examples", "caba_positives", "cabb_positive_rows",
          "cabb_share", "attribution_window_s",
          "purchases_without_prior_click",
          "items_unknown_category")
  lines = []
  for key in keys:
    value = report.get(key)
    if isinstance(value, float):
      value = f"{value:.4f}"
    lines.append(f"{key:>32}: {value}")
  return lines

