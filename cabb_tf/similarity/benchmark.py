"""Speed and memory benchmark of the category similarity (Eq. 1–2).

For each log size n, NumPy generates a random canonical event log (see
`generate`), and each method fits S on it in a fresh subprocess:

* `cabb_tf` — `category_cf.category_similarity` (sort-based, sparse);
* `scipy_reference` — the straightforward sparse recipe: catalog lookup with
  `pd.Index.get_indexer`, `pd.factorize` for users and leaves,
  `coo_matrix((w, (leaf, user))).tocsr()`, row-normalize, `V @ V.T`;
* `pandas_dense` — `pivot_table` to a dense |U|×|C| frame and a dense cosine
  (only where |U|·|C| ≤ `dense_max_cells`).

Time is the best wall-clock of `repeats` fits (events/s = n / best). Memory
is the peak resident set size (VmHWM) of the measuring subprocess: the peak
is reset after the inputs are loaded (`/proc/self/clear_refs`), so
`peak_extra_mb` is the method's own working memory on top of its inputs and
`peak_rss_mb` the process total (Python, TensorFlow and the inputs included).
Every method's S is checked against `cabb_tf`'s (`max_abs_diff`).
Results go to `base_dir/benchmark_similarity.{json,md}`.
"""

import gc
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence

import gin
import numpy as np
import pandas as pd
import scipy
import scipy.sparse as sp

from cabb_tf.data import report as report_lib
from cabb_tf.data import schema
from cabb_tf.similarity import category_cf

METHODS = ("cabb_tf", "scipy_reference", "pandas_dense")
_CHUNK = 10**7
_TYPE_P = (0.30, 0.55, 0.10, 0.05)  # impression, click, add_to_cart, purchase


def generate(directory: str, num_events: int, num_users: int,
             num_leaves: int, num_items: int, seed: int) -> None:
  """Writes a random log as .npy files (in chunks, so 10^8 events fit).

  The model: items are grouped by leaf, leaf sizes Zipf-like (∝ 1/rank);
  user activity is Pareto(1.5); half the events hit a globally popular item
  (Zipf(1.2) over a random permutation of items), the other half an item
  near the user's "home" item (a geometric offset, so mostly the same or
  neighbouring leaves: this creates co-engagement); event types are
  impression / click / add_to_cart / purchase with probabilities
  0.30 / 0.55 / 0.10 / 0.05. Ids are made non-contiguous (user · 7 + 3,
  item · 3 + 11) as in real logs.
  """
  os.makedirs(directory, exist_ok=True)
  rng = np.random.default_rng(seed)
  leaf_p = 1.0 / np.arange(1, num_leaves + 1)
  leaf_p /= leaf_p.sum()
  item_leaf = np.sort(rng.choice(num_leaves, size=num_items, p=leaf_p))
  np.save(os.path.join(directory, "catalog_item.npy"),
          np.arange(num_items, dtype=np.int64) * 3 + 11)
  np.save(os.path.join(directory, "catalog_leaf.npy"), item_leaf)
  activity = rng.pareto(1.5, size=num_users) + 1.0
  activity_cdf = np.cumsum(activity / activity.sum())
  home = rng.integers(0, num_items, size=num_users)
  popular = rng.permutation(num_items)
  out = {
      name: np.lib.format.open_memmap(os.path.join(directory, name + ".npy"),
                                      mode="w+", dtype=dtype,
                                      shape=(num_events,))
      for name, dtype in (("user", np.int64), ("item", np.int64),
                          ("type", np.int8))
  }
  for start in range(0, num_events, _CHUNK):
    n = min(_CHUNK, num_events - start)
    users = np.minimum(np.searchsorted(activity_cdf, rng.random(n)),
                       num_users - 1)
    near = (home[users] + rng.geometric(0.01, size=n)) % num_items
    far = popular[(rng.zipf(1.2, size=n) - 1) % num_items]
    items = np.where(rng.random(n) < 0.5, far, near)
    out["user"][start:start + n] = users * 7 + 3
    out["item"][start:start + n] = items * 3 + 11
    out["type"][start:start + n] = np.searchsorted(np.cumsum(_TYPE_P),
                                                   rng.random(n))
  for array in out.values():
    array.flush()


def _load(directory: str, num_leaves: int):
  events = pd.DataFrame({
      "user_id": np.load(os.path.join(directory, "user.npy")),
      "item_id": np.load(os.path.join(directory, "item.npy")),
      "event_type": pd.Categorical.from_codes(
          np.load(os.path.join(directory, "type.npy")),
          dtype=schema.EVENT_TYPE_DTYPE),
  })
  leaf_names = np.array([f"dept{i % 17}/leaf{i}" for i in range(num_leaves)],
                        dtype=object)
  catalog = pd.DataFrame({
      "item_id": np.load(os.path.join(directory, "catalog_item.npy")),
      "leaf": leaf_names[np.load(os.path.join(directory,
                                              "catalog_leaf.npy"))],
  })
  return events, catalog


def scipy_reference(events: pd.DataFrame, catalog: pd.DataFrame,
                    weights: Dict[str, float]):
  """The straightforward sparse recipe; returns (leaves, csr S)."""
  table = category_cf.event_weight_table(weights)
  w = table[events["event_type"].cat.codes.to_numpy()]
  leaf_codes, leaves = pd.factorize(catalog["leaf"])
  pos = pd.Index(catalog["item_id"]).get_indexer(events["item_id"])
  leaf = np.where(pos >= 0, leaf_codes[pos], -1)
  keep = (w > 0) & (leaf >= 0)
  users, _ = pd.factorize(events["user_id"].to_numpy()[keep])
  v = sp.coo_matrix((w[keep], (leaf[keep], users)),
                    shape=(len(leaves), users.max() + 1)).tocsr()
  norms = np.sqrt(np.asarray(v.multiply(v).sum(axis=1)).ravel())
  seen = norms > 0
  v = sp.diags(1.0 / norms[seen]) @ v[seen]
  return np.asarray(leaves, dtype=object)[seen], (v @ v.T).tocsr()


def pandas_dense(events: pd.DataFrame, catalog: pd.DataFrame,
                 weights: Dict[str, float]):
  """pivot_table to a dense |U|×|C| frame, dense cosine; (leaves, S)."""
  frame = pd.DataFrame({
      "user": events["user_id"],
      "leaf": events["item_id"].map(catalog.set_index("item_id")["leaf"]),
      "w": events["event_type"].map(weights).astype(np.float64),
  })
  frame = frame[(frame["w"] > 0) & frame["leaf"].notna()]
  pivot = frame.pivot_table(index="user", columns="leaf", values="w",
                            aggfunc="sum", fill_value=0.0)
  x = np.array(pivot.to_numpy(dtype=np.float64))  # Writable.
  x /= np.linalg.norm(x, axis=0)
  return np.asarray(pivot.columns, dtype=object), sp.csr_matrix(x.T @ x)


def _fit(method: str, events, catalog, weights):
  if method == "cabb_tf":
    sim = category_cf.category_similarity(events, catalog, weights)
    return sim.leaves, sim.matrix
  if method == "scipy_reference":
    return scipy_reference(events, catalog, weights)
  if method == "pandas_dense":
    return pandas_dense(events, catalog, weights)
  raise ValueError(f"unknown method {method!r}; expected one of {METHODS}.")


def _status_kb(field: str) -> Optional[int]:
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith(field + ":"):
          return int(line.split()[1])
  except OSError:
    pass
  return None


def _worker(spec: Dict[str, Any]) -> Dict[str, Any]:
  """Runs one measurement in this (fresh) process."""
  events, catalog = _load(spec["data_dir"], spec["num_leaves"])
  gc.collect()
  baseline_kb = _status_kb("VmRSS")
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")  # Resets VmHWM (peak RSS) to the current RSS.
    reset = True
  except OSError:
    reset = False
  times, cpu_times = [], []
  for _ in range(spec["repeats"]):
    start, cpu_start = time.perf_counter(), time.process_time()
    leaves, matrix = _fit(spec["method"], events, catalog, spec["weights"])
    times.append(time.perf_counter() - start)
    cpu_times.append(time.process_time() - cpu_start)
    if len(times) < spec["repeats"]:
      del leaves, matrix
      gc.collect()
  peak_kb = _status_kb("VmHWM")
  sp.save_npz(spec["result_path"], matrix.tocsr())
  np.save(spec["result_path"] + ".leaves.npy", np.asarray(leaves, dtype=str))
  return {"seconds": min(times), "seconds_all": times,
          "cpu_seconds": min(cpu_times),
          "peak_rss_mb": peak_kb / 1024 if peak_kb else None,
          "peak_extra_mb": ((peak_kb - baseline_kb) / 1024
                            if reset and peak_kb and baseline_kb else None),
          "input_rss_mb": baseline_kb / 1024 if baseline_kb else None,
          "nonzeros": int(matrix.nnz), "leaves": int(len(leaves))}


def _subprocess(spec: Dict[str, Any], timeout_s: float) -> Dict[str, Any]:
  """Runs `_worker` in a fresh subprocess; returns its JSON."""
  fd, out_path = tempfile.mkstemp(suffix=".json")
  os.close(fd)
  spec = dict(spec, output=out_path)
  try:
    proc = subprocess.run(
        [sys.executable, "-m", "cabb_tf.similarity.benchmark",
         json.dumps(spec)], capture_output=True, text=True,
        timeout=timeout_s, check=False)
    if proc.returncode != 0:
      tail = proc.stderr.strip().splitlines()[-3:]
      return {"error": f"exit code {proc.returncode}: {' | '.join(tail)}"}
    with open(out_path) as f:
      return json.load(f)
  except subprocess.TimeoutExpired:
    return {"error": f"timed out after {timeout_s:.0f} s"}
  finally:
    os.remove(out_path)


def _max_abs_diff(result_path: str, reference_path: str) -> Optional[float]:
  """max |S_method − S_cabb_tf| after aligning leaves by name."""
  a = sp.load_npz(result_path).tocsr()
  b = sp.load_npz(reference_path).tocsr()
  leaves_a = np.load(result_path + ".leaves.npy")
  leaves_b = np.load(reference_path + ".leaves.npy")
  if set(leaves_a) != set(leaves_b):
    return float("inf")
  order = pd.Index(leaves_a).get_indexer(leaves_b)
  a = a[order][:, order]
  diff = abs(a - b)
  return float(diff.max()) if diff.nnz else 0.0


def _mem_available_gb() -> Optional[float]:
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) / 2**20
  except OSError:
    pass
  return None


def _markdown(results: Dict[str, Any]) -> str:
  lines = [
      "# Category similarity (Eq. 1–2): speed and memory", "",
      f"{results['machine']['cpus']} CPUs, Python "
      f"{results['machine']['python']}, NumPy {results['machine']['numpy']},"
      f" SciPy {results['machine']['scipy']}, pandas "
      f"{results['machine']['pandas']}; load average before/after "
      f"{results['load_before']} / {results['load_after']}.",
      "Time: best wall-clock of the repeats (CPU s: best process CPU time; "
      "events/s from wall-clock). Peak extra: peak RSS of the measuring "
      "process above its RSS after loading the inputs.", "",
      "| events | users | leaves | method | seconds | CPU s | events/s | "
      "peak extra MB | peak RSS MB | nnz(S) | max abs diff |",
      "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
  for row in results["rows"]:
    if "error" in row or "skipped" in row:
      note = row.get("error") or row.get("skipped")
      lines.append(f"| {row['events']:,} | {row['users']:,} | "
                   f"{row['num_leaves']:,} | {row['method']} | — | — | — | — "
                   f"| — | — | {note} |")
      continue
    diff = row.get("max_abs_diff")
    lines.append(
        f"| {row['events']:,} | {row['users']:,} | {row['leaves']:,} | "
        f"{row['method']} | {row['seconds']:.2f} | "
        f"{row.get('cpu_seconds', float('nan')):.2f} | "
        f"{row['events'] / row['seconds'] / 1e6:.2f} M | "
        f"{row['peak_extra_mb']:,.0f} | {row['peak_rss_mb']:,.0f} | "
        f"{row['nonzeros']:,} | "
        f"{'—' if diff is None else f'{diff:.1e}'} |")
  return "\n".join(lines) + "\n"


def _write_text(text: str, path: str) -> None:
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
  with os.fdopen(fd, "w") as f:
    f.write(text)
  os.replace(tmp, path)


@gin.configurable(denylist=["base_dir"])
def run(base_dir: str,
        sizes: Sequence[int] = (10**6, 10**7, 10**8),
        methods: Sequence[str] = METHODS,
        num_leaves: int = 2000,
        num_items: int = 200_000,
        users_per_event: float = 0.1,
        min_users: int = 10**5,
        max_users: int = 10**6,
        repeats: int = 3,
        dense_max_cells: float = 2.5e8,
        bytes_per_event_budget: float = 120.0,
        timeout_s: float = 1800.0,
        seed: int = 0,
        keep_data: bool = False) -> Dict[str, Any]:
  """Benchmarks Eq. (1)–(2) at several log sizes; writes JSON and Markdown.

  Args:
    base_dir: output directory (data are generated under `base_dir/data`).
    sizes: numbers of events.
    methods: a subset of `METHODS`.
    num_leaves: number of leaf categories.
    num_items: number of items.
    users_per_event: users = clip(n · this, min_users, max_users).
    min_users: see `users_per_event`.
    max_users: see `users_per_event`.
    repeats: fits per measurement (1 at 10^8 events and above).
    dense_max_cells: run `pandas_dense` only when users · leaves ≤ this.
    bytes_per_event_budget: skip a size when n · this exceeds the available
      memory (a guard for shared machines).
    timeout_s: per subprocess.
    seed: seed of the generator (logged in the output).
    keep_data: keep the generated .npy files.

  Returns:
    The results dict that is written to `benchmark_similarity.json`.

  Raises:
    ValueError: on an unknown method.
  """
  unknown = sorted(set(methods) - set(METHODS))
  if unknown:
    raise ValueError(f"unknown method(s) {unknown}; expected {METHODS}.")
  os.makedirs(base_dir, exist_ok=True)
  weights = category_cf.default_event_weights()
  results = {
      "config": {"sizes": list(sizes), "methods": list(methods),
                 "num_leaves": num_leaves, "num_items": num_items,
                 "repeats": repeats, "seed": seed, "event_weights": weights},
      "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                  "numpy": np.__version__, "scipy": scipy.__version__,
                  "pandas": pd.__version__, "platform": platform.platform()},
      "memory": "peak RSS (VmHWM) of one subprocess per measurement, reset "
                "after loading the inputs via /proc/self/clear_refs",
      "load_before": [round(x, 2) for x in os.getloadavg()],
      "rows": [],
  }
  for n in sizes:
    users = int(min(max(n * users_per_event, min_users), max_users))
    data_dir = os.path.join(base_dir, "data", f"n{n}")
    base = {"events": int(n), "users": users, "num_leaves": num_leaves}
    available = _mem_available_gb()
    if available is not None and n * bytes_per_event_budget > available * 2**30:
      for method in methods:
        results["rows"].append(dict(base, method=method, skipped=(
            f"needs ~{n * bytes_per_event_budget / 2**30:.0f} GB, "
            f"{available:.0f} GB available")))
      continue
    logging.info("Generating %d events, %d users.", n, users)
    generate(data_dir, n, users, num_leaves, num_items, seed)  # In chunks.
    reference_path = None
    for method in methods:
      row = dict(base, method=method)
      if method == "pandas_dense" and users * num_leaves > dense_max_cells:
        row["skipped"] = (f"dense {users:,}×{num_leaves:,} exceeds "
                          f"{dense_max_cells:.1e} cells")
        results["rows"].append(row)
        continue
      result_path = os.path.join(data_dir, f"result_{method}.npz")
      spec = {"method": method, "data_dir": data_dir,
              "num_leaves": num_leaves, "weights": weights,
              "repeats": 1 if n >= 10**8 else repeats,
              "result_path": result_path}
      logging.info("Measuring %s on %d events.", method, n)
      row.update(_subprocess(spec, timeout_s))
      if "error" not in row:
        if method == "cabb_tf":
          reference_path = result_path
        elif reference_path:
          row["max_abs_diff"] = _max_abs_diff(result_path, reference_path)
      logging.info("%s", row)
      results["rows"].append(row)
    if not keep_data:
      shutil.rmtree(data_dir, ignore_errors=True)
  results["load_after"] = [round(x, 2) for x in os.getloadavg()]
  report_lib.write_json(results,
                        os.path.join(base_dir, "benchmark_similarity.json"))
  _write_text(_markdown(results),
              os.path.join(base_dir, "benchmark_similarity.md"))
  if not keep_data:
    shutil.rmtree(os.path.join(base_dir, "data"), ignore_errors=True)
  return results


def _main(argv: List[str]) -> None:
  """Subprocess entry point: one JSON spec in, one JSON file out."""
  spec = json.loads(argv[0])
  out = _worker(spec)
  with open(spec["output"], "w") as f:
    json.dump(out, f)


if __name__ == "__main__":
  _main(sys.argv[1:])
