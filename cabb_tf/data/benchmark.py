"""Benchmark of data preparation: load → sessions → labels → features.

For each size, a child process writes a simulated log as CSV files (the
canonical columns, sessions left for the pipeline to derive, and a catalog),
then a fresh child process loads and prepares them while it is timed. Peak
memory is the child's peak resident set size (`ru_maxrss`) minus its resident
size after imports, divided by the number of events; running each measurement
in a new process keeps one size's peak from hiding the next one's.

The stages run as `pipeline.prepare_examples` runs them: while the labels
are computed, a second thread arranges the log for the history features
(`features.beside_histories`); `labels s` is the labels' own time, and
waiting for the arrangements counts in `features s`.
"""

import multiprocessing
import os
import resource
import shutil
import tempfile
import time
from typing import Any, Dict, List, Sequence

from absl import logging
import gin

from cabb_tf.data import report as report_lib

IDENTITY_EVENT_TYPES = {t: t for t in ("impression", "click", "add_to_cart",
                                       "purchase")}


def _rss_bytes() -> int:
  """The process's peak resident set size so far, in bytes (Linux: KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _current_rss_bytes() -> int:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _write_log(num_events: int, seed: int, directory: str) -> Dict[str, Any]:
  """Simulates a log and writes `events.csv` and `catalog.csv` (child)."""
  from cabb_tf.data import simulator  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import pandas as pd  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  log = simulator.simulate_events(num_events, seed=seed)
  simulate_s = time.perf_counter() - start
  events = log.events[["user_id", "item_id", "event_type", "timestamp"]]
  events.to_csv(os.path.join(directory, "events.csv"), index=False)
  catalog = pd.DataFrame({"item_id": log.catalog["item_id"],
                          "category": log.catalog["leaf"]})
  catalog.to_csv(os.path.join(directory, "catalog.csv"), index=False)
  return {"events": int(len(events)), "simulate_s": simulate_s,
          "csv_bytes": os.path.getsize(os.path.join(directory, "events.csv")),
          "purchases": int(np.sum(events["event_type"] == "purchase"))}


def _prepare_timed(directory: str) -> Dict[str, Any]:
  """Loads and prepares the written log, timing each stage (child)."""
  from cabb_tf.data import encoding  # pylint: disable=g-import-not-at-top
  from cabb_tf.data import features  # pylint: disable=g-import-not-at-top
  from cabb_tf.data import labels  # pylint: disable=g-import-not-at-top
  from cabb_tf.data import loaders  # pylint: disable=g-import-not-at-top
  from cabb_tf.data import sessions  # pylint: disable=g-import-not-at-top
  baseline = _current_rss_bytes()
  times = {}
  start = time.perf_counter()
  events, catalog, _ = loaders.load_csv(
      os.path.join(directory, "events.csv"),
      columns={"user_id": "user_id", "item_id": "item_id",
               "event_type": "event_type", "timestamp": "timestamp"},
      event_type_map=IDENTITY_EVENT_TYPES, timestamp_unit="ms",
      catalog_path=os.path.join(directory, "catalog.csv"),
      category_separator="/")
  times["load_s"] = time.perf_counter() - start
  t = time.perf_counter()
  events, codes = sessions.assign_sessions(events, with_codes=True)
  encoded = encoding.encode_events(events, codes)
  del codes
  times["sessions_s"] = time.perf_counter() - t
  t = time.perf_counter()
  labelled = []

  def label():
    examples = labels.label_clicks(events, encoded=encoded)
    labelled.append(time.perf_counter())
    return examples

  # As in pipeline.prepare_examples, the log's side of the features is
  # arranged on the second core while the labels are computed; waiting for
  # it counts as features time.
  examples, histories = features.beside_histories(label, events, catalog,
                                                  encoded)
  times["labels_s"] = labelled[0] - t
  examples = features.compute_features(events, catalog, examples,
                                       encoded=encoded, histories=histories)
  del histories
  times["features_s"] = time.perf_counter() - labelled[0]
  times["total_s"] = time.perf_counter() - start
  peak = _rss_bytes()
  n = len(events)
  return dict(times, events=n, examples=int(len(examples)),
              events_per_s=n / times["total_s"],
              baseline_rss_bytes=baseline, peak_rss_bytes=peak,
              peak_bytes_per_event=(peak - baseline) / max(n, 1))


def in_child(function, *args):
  """Runs `function(*args)` in a fresh spawned process and returns its value."""
  context = multiprocessing.get_context("spawn")
  with context.Pool(1) as pool:
    return pool.apply(function, args)


@gin.configurable(denylist=["base_dir"])
def run(base_dir: str,
        sizes: Sequence[int] = (10**6, 10**7),
        seed: int = 0,
        work_dir: str = "") -> List[Dict[str, Any]]:
  """Measures preparation speed and peak memory at each size.

  Args:
    base_dir: where `benchmark_data.json` and `benchmark_data.md` go.
    sizes: numbers of simulated events (the simulator hits them roughly).
    seed: simulator seed.
    work_dir: scratch directory for the CSV files (default: a temp dir).

  Returns:
    One dict of measurements per size.
  """
  results = []
  for size in sizes:
    scratch = tempfile.mkdtemp(prefix="cabb_bench_", dir=work_dir or None)
    try:
      written = in_child(_write_log, int(size), seed, scratch)
      logging.info("size %d: wrote %d events (%.1f MB CSV)", size,
                   written["events"], written["csv_bytes"] / 1e6)
      measured = in_child(_prepare_timed, scratch)
      measured.update(requested_events=int(size),
                      csv_bytes=written["csv_bytes"],
                      simulate_s=written["simulate_s"])
      logging.info("size %d: %s", size, measured)
      results.append(measured)
    finally:
      shutil.rmtree(scratch, ignore_errors=True)
  report_lib.write_benchmark(base_dir, "benchmark_data", results,
                             markdown_table(results))
  return results


def markdown_table(results: Sequence[Dict[str, Any]]) -> str:
  """The results as a markdown table."""
  lines = [
      "| events | load s | sessions s | labels s | features s | total s | "
      "events/s | peak bytes/event |",
      "|---:|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for r in results:
    lines.append(
        f"| {r['events']:,} | {r['load_s']:.2f} | {r['sessions_s']:.2f} | "
        f"{r['labels_s']:.2f} | {r['features_s']:.2f} | {r['total_s']:.2f} | "
        f"{r['events_per_s']:,.0f} | {r['peak_bytes_per_event']:.0f} |")
  return "\n".join(lines) + "\n"
