"""The data report: what a preparation read, kept, dropped (by reason) and made.

A report is a plain JSON-ready dict, so users can read it without the package:

    {"source": "...", "rows_in": int, "rows_kept": int,
     "dropped": {reason: int, ...}, ...statistics added by later stages...}

The invariant `rows_in == rows_kept + sum(dropped.values())` always holds;
`check_report` enforces it before a report is written.
"""

import json
import os
import tempfile
from typing import Any, Dict, Mapping

Report = Dict[str, Any]


def new_report(source: str) -> Report:
  """Returns an empty report for `source` (a file name or a description)."""
  return {"source": str(source), "rows_in": 0, "rows_kept": 0, "dropped": {}}


def add_dropped(report: Report, reason: str, count: int) -> None:
  """Adds `count` rows dropped for `reason` (no-op for a zero count)."""
  count = int(count)
  if count < 0:
    raise ValueError(f"negative drop count {count} for reason {reason!r}")
  if count:
    report["dropped"][reason] = report["dropped"].get(reason, 0) + count


def merge_reports(source: str, reports: Mapping[str, Report]) -> Report:
  """Sums the row counts of several reports (e.g. one per input file)."""
  merged = new_report(source)
  merged["files"] = {}
  for name, rep in reports.items():
    merged["rows_in"] += rep["rows_in"]
    merged["rows_kept"] += rep["rows_kept"]
    for reason, count in rep["dropped"].items():
      add_dropped(merged, reason, count)
    merged["files"][name] = rep
  return merged


def check_report(report: Report) -> None:
  """Raises ValueError unless rows in = rows kept + rows dropped."""
  dropped = sum(report["dropped"].values())
  if report["rows_in"] != report["rows_kept"] + dropped:
    raise ValueError(
        f"data report for {report.get('source')!r} does not add up: rows_in="
        f"{report['rows_in']} but rows_kept={report['rows_kept']} + dropped="
        f"{dropped} ({report['dropped']}).")


def write_json(obj: Any, path: str) -> None:
  """Writes `obj` as indented JSON to `path` atomically (temp file + rename)."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
  try:
    with os.fdopen(fd, "w") as f:
      json.dump(obj, f, indent=2, sort_keys=False, default=_to_builtin)
      f.write("\n")
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_benchmark(base_dir: str, stem: str, results: Any,
                    table: str) -> None:
  """Writes a benchmark's `stem.json` (results and CPU count) and `stem.md`
  (its table) into `base_dir`, and prints the table."""
  os.makedirs(base_dir, exist_ok=True)
  write_json({"cpu_count": os.cpu_count(), "results": results},
             os.path.join(base_dir, f"{stem}.json"))
  with open(os.path.join(base_dir, f"{stem}.md"), "w") as f:
    f.write(table)
  print(table)


def write_report(report: Report, path: str) -> None:
  """Checks `report` and writes it to `path` (normally `data_report.json`)."""
  check_report(report)
  write_json(report, path)


def _to_builtin(value):
  """JSON fallback for NumPy scalars."""
  if hasattr(value, "item"):
    return value.item()
  raise TypeError(f"not JSON serializable: {type(value)}")
