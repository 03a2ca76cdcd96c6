"""Benchmark of the Beam preparation (docs/beam.md, "Measured here").

For each size, a child process writes a simulated log as sharded Parquet in
bounded memory (`simulate_shards.write_sharded_log`); then
`python -m cabb_tf.pipelines.prepare_beam` runs on it as a separate process
tree (the DirectRunner's workers are its children) while a sampler reads the
memory of the whole tree every `sample_s` seconds from /proc:

* `peak_tree_rss_bytes`: the largest sum of the processes' resident sets
  (pages shared between processes, such as TensorFlow's libraries, count
  once per process: an upper bound);
* `peak_tree_pss_bytes`: the largest sum of proportional set sizes (shared
  pages split between the processes that map them: the tree's footprint).

Bucket and block counts follow the size (`events_per_bucket`,
`events_per_block`), so the work unit stays the same size as the log grows:
memory bounded by the work unit shows as a flat peak across sizes.
"""

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence

from absl import logging
import gin

from cabb_tf.data import benchmark as data_benchmark
from cabb_tf.data import report as report_lib


def _children() -> Dict[int, List[int]]:
  """{parent pid: [child pids]} of every process now running."""
  out: Dict[int, List[int]] = {}
  for name in os.listdir("/proc"):
    if not name.isdigit():
      continue
    try:
      with open(f"/proc/{name}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
      continue
    out.setdefault(int(fields[1]), []).append(int(name))
  return out


def tree_pids(root: int) -> List[int]:
  """`root` and all its descendants."""
  children = _children()
  pids, stack = [], [root]
  while stack:
    pid = stack.pop()
    pids.append(pid)
    stack.extend(children.get(pid, ()))
  return pids


def _memory(pid: int) -> Optional[Dict[str, int]]:
  """{'rss', 'pss'} in bytes of one process (None once it is gone)."""
  try:
    with open(f"/proc/{pid}/smaps_rollup") as f:
      values = {}
      for line in f:
        parts = line.split()
        if parts[0] in ("Rss:", "Pss:"):
          values[parts[0][:-1].lower()] = int(parts[1]) * 1024
    return values
  except OSError:
    return None


def tree_memory(root: int) -> Dict[str, int]:
  """Summed RSS and PSS of `root`'s process tree, in bytes."""
  total = {"rss": 0, "pss": 0, "processes": 0}
  for pid in tree_pids(root):
    values = _memory(pid)
    if values:
      total["rss"] += values.get("rss", 0)
      total["pss"] += values.get("pss", 0)
      total["processes"] += 1
  return total


def run_sampled(command: Sequence[str], sample_s: float = 0.5,
                log_path: Optional[str] = None) -> Dict[str, Any]:
  """Runs `command`, sampling its process tree's memory until it exits.

  Args:
    command: the command line.
    sample_s: seconds between samples.
    log_path: where the command's output goes (default: discarded).

  Returns:
    {"wall_s", "returncode", "peak_tree_rss_bytes", "peak_tree_pss_bytes",
     "max_processes", "samples", "pss_timeline"}: the timeline holds
    (seconds, tree PSS, processes) every 10 s and at each new peak, to find
    the stage that sets the peak in the pipeline's log.
  """
  out = open(log_path, "w") if log_path else subprocess.DEVNULL  # pylint: disable=consider-using-with
  start = time.perf_counter()
  process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
  peak = {"rss": 0, "pss": 0, "processes": 0}
  samples = 0
  timeline = []  # (seconds, tree PSS bytes, processes), at most every 10 s.
  try:
    while process.poll() is None:
      now = tree_memory(process.pid)
      samples += 1
      for key in peak:
        peak[key] = max(peak[key], now[key])
      elapsed = time.perf_counter() - start
      if not timeline or elapsed - timeline[-1][0] >= 10.0 or (
          now["pss"] >= peak["pss"]):
        timeline.append((round(elapsed, 1), now["pss"], now["processes"]))
      time.sleep(sample_s)
  finally:
    if process.poll() is None:
      process.kill()
    if log_path:
      out.close()
  return {"wall_s": time.perf_counter() - start,
          "returncode": process.returncode,
          "peak_tree_rss_bytes": peak["rss"],
          "peak_tree_pss_bytes": peak["pss"],
          "max_processes": peak["processes"], "samples": samples,
          "pss_timeline": timeline}


def _write_log(directory: str, num_events: int, seed: int,
               chunk_events: int) -> Dict[str, Any]:
  from cabb_tf.data import simulate_shards  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  written = simulate_shards.write_sharded_log(
      directory, num_events=num_events, chunk_events=chunk_events, seed=seed)
  return {"events": int(written["events"]),
          "shards": len(written["shards"]),
          "simulate_s": time.perf_counter() - start}


@gin.configurable(denylist=["base_dir"])
def run(base_dir: str,
        sizes: Sequence[int] = (10**6,),
        events_per_bucket: int = 250_000,
        events_per_block: int = 1_000_000,
        direct_num_workers: int = 2,
        chunk_events: int = 2_000_000,
        seed: int = 0,
        work_dir: str = "",
        sample_s: float = 0.5) -> List[Dict[str, Any]]:
  """Measures the Beam preparation's speed and memory at each size.

  Args:
    base_dir: where `benchmark_beam.json`, `benchmark_beam.md` and each
      size's pipeline log go.
    sizes: numbers of simulated events.
    events_per_bucket: events per user bucket (num_buckets = events / this).
    events_per_block: events per time block (num_blocks = events / this).
    direct_num_workers: the DirectRunner's worker processes.
    chunk_events: the simulator's user-block size (its memory bound).
    seed: simulator seed.
    work_dir: scratch directory for the log and the output (default: a temp
      dir), deleted after each size.
    sample_s: seconds between memory samples.

  Returns:
    One dict of measurements per size.
  """
  os.makedirs(base_dir, exist_ok=True)
  results = []
  for size in sizes:
    scratch = tempfile.mkdtemp(prefix="cabb_beam_bench_",
                               dir=work_dir or None)
    try:
      log_dir = os.path.join(scratch, "log")
      written = data_benchmark.in_child(_write_log, log_dir, int(size), seed,
                                        chunk_events)
      num_buckets = max(1, math.ceil(written["events"] / events_per_bucket))
      num_blocks = max(1, math.ceil(written["events"] / events_per_block))
      command = [
          sys.executable, "-m", "cabb_tf.pipelines.prepare_beam",
          f"--input_pattern={log_dir}/events/*.parquet",
          f"--catalog_path={log_dir}/catalog.parquet",
          f"--output_dir={scratch}/prepared",
          f"--num_buckets={num_buckets}", f"--num_blocks={num_blocks}",
          "--runner=DirectRunner",
          f"--direct_num_workers={direct_num_workers}",
          "--direct_running_mode=multi_processing"]
      logging.info("size %d: %d events in %d shards; running %s", size,
                   written["events"], written["shards"], " ".join(command))
      measured = run_sampled(
          command, sample_s,
          log_path=os.path.join(base_dir, f"prepare_beam_{size}.log"))
      if measured["returncode"]:
        raise RuntimeError(
            f"prepare_beam failed at size {size} (exit "
            f"{measured['returncode']}); see "
            f"{os.path.join(base_dir, f'prepare_beam_{size}.log')}.")
      with open(os.path.join(scratch, "prepared", "data_report.json")) as f:
        report = json.load(f)
      measured.update(
          requested_events=int(size), events=written["events"],
          shards=written["shards"], simulate_s=written["simulate_s"],
          num_buckets=num_buckets, num_blocks=num_blocks,
          direct_num_workers=direct_num_workers,
          examples=int(report["examples"]),
          events_per_s=written["events"] / measured["wall_s"])
      logging.info("size %d: %s", size, measured)
      results.append(measured)
    finally:
      shutil.rmtree(scratch, ignore_errors=True)
  report_lib.write_benchmark(base_dir, "benchmark_beam", results,
                             markdown_table(results))
  return results


def markdown_table(results: Sequence[Dict[str, Any]]) -> str:
  """The results as a markdown table, with each peak's ratio to the first."""
  lines = ["| events | buckets / blocks | wall s | events/s | peak tree PSS GB "
           "| × first | peak tree RSS GB | processes |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|"]
  first = results[0]["peak_tree_pss_bytes"] if results else 1
  for r in results:
    lines.append(
        f"| {r['events']:,} | {r['num_buckets']} / {r['num_blocks']} | "
        f"{r['wall_s']:.1f} | {r['events_per_s']:,.0f} | "
        f"{r['peak_tree_pss_bytes'] / 1e9:.2f} | "
        f"{r['peak_tree_pss_bytes'] / first:.2f} | "
        f"{r['peak_tree_rss_bytes'] / 1e9:.2f} | {r['max_processes']} |")
  return "\n".join(lines) + "\n"
