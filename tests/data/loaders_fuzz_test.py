"""Fuzz tests of the loaders: mutated slices of the real samples.

Each example mutates the first lines of a shared sample (an unclosed quote, a
dropped or added delimiter, a cut line, blank lines, a BOM, random bytes, a
repeated header, CRLF or CR line breaks, gzip, ...) and checks the loaders'
contract (docs/loading.md): either a ValueError naming the file (and the
mutated line, when the fault is on one line), or a load whose rows in equal
rows kept plus the drops by reason and whose kept events equal a reference
parse written here with the csv and json modules.

Each example is tallied by loader, mutation and outcome; a larger run that
prints the tallies:

    CABB_FUZZ_EXAMPLES=300 python -m pytest -s -p no:xdist \
        tests/data/loaders_fuzz_test.py

Any other outcome (an error that names no file or line, a count that does
not add up, kept rows that differ from the reference) fails the test.
"""

import collections
import csv
import datetime
import gzip
import json
import math
import os
import re
from typing import Any, Dict, List, Optional, Tuple

from absl.testing import absltest
import hypothesis
from hypothesis import strategies as st

from cabb_tf.data import loaders
from tests import shared_data

_SLICE_LINES = 200
# Mutated files per loader (60 in the suite).
_EXAMPLES = int(os.environ.get("CABB_FUZZ_EXAMPLES", "60"))
_OTTO_SLICE_LINES = 10
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_MAX_MS = 4_102_444_800_000
# Mutations whose fault sits on one line (the error must name that line).
_LINE_LOCAL = ("unclosed_quote", "drop_delimiter", "add_delimiter",
               "truncate_line", "random_bytes", "duplicate_header",
               "impossible_date", "nan_price")
_CSV_MUTATIONS = _LINE_LOCAL + (
    "blank_line", "bom", "crlf", "cr", "gzip", "trailing_delimiter_all",
    "extra_header_column")
_OTTO_MUTATIONS = ("truncate_line", "random_bytes", "blank_line", "bom", "crlf",
                   "cr", "gzip", "json_array", "unclosed_quote")


class Expected(Exception):
  """The reference parse expects the load to fail."""


def head_lines(path, n: int) -> List[bytes]:
  with open(path, "rb") as f:
    return [next(f).rstrip(b"\r\n") for _ in range(n)]


def mutate(lines: List[bytes], kind: str, index: int, position: int,
           noise: bytes, delimiter: bytes = b","
           ) -> Tuple[bytes, Optional[int]]:
  """Applies a mutation; returns the bytes and the 1-based faulty line."""
  lines = list(lines)
  k = index % len(lines)
  line = lines[k]
  cut = position % (len(line) + 1)
  fields = line.split(delimiter)
  faulty = k + 1
  if kind == "unclosed_quote":
    f = position % len(fields)
    fields[f] = b'"' + fields[f]
    lines[k] = delimiter.join(fields)
  elif kind == "drop_delimiter":
    at = line.find(delimiter)
    lines[k] = line[:at] + line[at + 1:] if at >= 0 else line[:cut]
  elif kind == "add_delimiter":
    lines[k] = line[:cut] + delimiter + line[cut:]
  elif kind == "truncate_line":
    lines[k] = line[:cut]
    faulty = faulty if cut else None  # An empty line is a blank line.
  elif kind == "random_bytes":
    lines[k] = line[:cut] + noise + line[cut:]
  elif kind == "duplicate_header":
    lines.insert(k, lines[0])
    faulty = max(faulty, 2)  # Of two equal first lines, the second repeats.
  elif kind == "impossible_date":
    lines[k] = re.sub(rb"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d",
                      [b"2019-02-30 00:00:00", b"2019-10-01 23:59:60"][
                          position % 2], line)
  elif kind == "nan_price":
    fields[6 % len(fields)] = [b"nan", b"inf", b"1e999"][position % 3]
    lines[k] = delimiter.join(fields)
  elif kind == "blank_line":
    lines.insert(k, b"")
    faulty = None
  elif kind == "trailing_delimiter_all":  # Every line but the first.
    lines = lines[:1] + [l + delimiter for l in lines[1:]]
  elif kind == "extra_header_column":
    lines[0] += delimiter + b"extra"
  elif kind == "json_array":
    data = b"[\n" + b",\n".join(lines) + b"\n]\n"
    return data, None
  if kind not in _LINE_LOCAL or faulty is None:
    faulty = None
  newline = {"crlf": b"\r\n", "cr": b"\r"}.get(kind, b"\n")
  data = newline.join(lines) + newline
  if kind == "bom":
    data = b"\xef\xbb\xbf" + data
  if kind == "gzip":
    data = gzip.compress(data)
  return data, faulty


def _text_lines(data: bytes) -> List[Tuple[int, str]]:
  """(1-based line, text) of the non-blank lines; raises Expected on bad text."""
  if data[:2] == b"\x1f\x8b":
    data = gzip.decompress(data)
  if b"\x00" in data:
    raise Expected("NUL byte")
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError as e:
    raise Expected(f"not UTF-8 at {e.start}") from None
  if text.startswith("\ufeff"):
    text = text[1:]
  pieces = re.split(r"\r\n|\r|\n", text)
  return [(i + 1, t) for i, t in enumerate(pieces) if t]


def _fields(line: str) -> Optional[List[str]]:
  try:
    return next(csv.reader([line], strict=True))
  except csv.Error as e:
    if "unexpected end of data" in str(e):
      return None
    return next(csv.reader([line]))


def _normalize_ids(values: List[str]) -> List[str]:
  if all(re.fullmatch(r"-?\d{1,18}", v) for v in values):
    return [str(int(v)) for v in values]
  return values


def reference_csv(data: bytes, spec: Dict[str, Any]
                  ) -> Tuple[Dict[str, int], List[Tuple[str, str, int, str]]]:
  """Drops by reason and the kept (user, item, ms, type), via csv."""
  lines = _text_lines(data)
  width = spec["width"]
  if not spec["header"]:  # The most common width of the first lines.
    widths = [len(f) for f in map(_fields, [t for _, t in lines[:101]]) if f]
    counts = collections.Counter(widths)
    width = max(counts, key=lambda w: (counts[w], w == widths[0]))
  if spec["header"]:
    if _fields(lines[0][1]) != spec["header"]:
      raise Expected("header changed")
    lines = lines[1:]
  rows, dropped = [], collections.Counter()
  bad = []
  for k, (number, line) in enumerate(lines):
    fields = _fields(line)
    if fields is not None and len(fields) == width:
      rows.append((number, fields))
    elif k == len(lines) - 1 and (fields is None or len(fields) < width):
      dropped["truncated_last_line"] += 1
    else:
      bad.append(number)
      dropped["malformed" if fields is not None else "unclosed_quote"] += 1
  if len(bad) > 0.1 * (len(rows) + len(bad)):
    raise Expected("systematic")
  kept, seen = [], set()
  user, item, etype, ts = spec["user"], spec["item"], spec["type"], spec["ts"]
  for number, fields in rows:
    if fields[etype] and fields[etype] not in spec["map"] and (
        fields[etype] not in spec["drop"]):
      raise Expected(f"type on line {number}")
    if fields[ts]:
      ms = spec["parse_ts"](fields[ts])
      if ms is None or not 0 <= ms < _MAX_MS:
        raise Expected(f"time on line {number}")
    if "price" in spec and fields[spec["price"]]:
      price = fields[spec["price"]]
      if not _NUMBER.fullmatch(price) or not math.isfinite(float(price)):
        raise Expected(f"price on line {number}")
  for number, fields in rows:
    if not all(fields[i] for i in spec["required"]):
      dropped["missing_value"] += 1
    elif fields[etype] in spec["drop"]:
      dropped["dropped_event_type"] += 1
    elif tuple(fields) in seen:
      dropped["duplicate"] += 1
    else:
      seen.add(tuple(fields))
      kept.append(fields)
  users = _normalize_ids([f[user] for f in kept])
  items = _normalize_ids([f[item] for f in kept])
  events = [(u, i, spec["parse_ts"](f[ts]), spec["map"][f[etype]])
            for u, i, f in zip(users, items, kept)]
  order = sorted(range(len(events)), key=lambda j: (events[j][2], j))
  return dict(dropped), [events[j] for j in order]


def _rees46_time(text: str) -> Optional[int]:
  try:
    t = datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S UTC")
  except ValueError:
    return None
  return int(t.replace(tzinfo=datetime.timezone.utc).timestamp()) * 1000


def _seconds(text: str) -> Optional[int]:
  if not _NUMBER.fullmatch(text):
    return None
  return math.floor(float(text) * 1000)


def reference_otto(data: bytes
                   ) -> Tuple[Dict[str, int], List[Tuple[str, str, int, str]]]:
  """Drops by reason and the kept (session, aid, ts, type), via json."""
  lines = _text_lines(data)
  if lines and lines[0][1].lstrip().startswith("["):
    raise Expected("JSON array")
  dropped = collections.Counter()
  sessions, bad = [], 0
  for k, (number, line) in enumerate(lines):
    try:
      value = json.loads(line)
    except ValueError:
      if k == len(lines) - 1:
        dropped["truncated_last_line"] += 1
      else:
        bad += 1
        dropped["malformed"] += 1
      continue
    if not isinstance(value, dict) or not isinstance(value.get("events"),
                                                     list):
      raise Expected(f"schema on line {number}")
    for e in value["events"]:  # A missing or null field is a missing value.
      if not isinstance(e, dict) or not all(
          e.get(key) is None or isinstance(e[key], int)
          for key in ("aid", "ts")):
        raise Expected(f"schema on line {number}")
      if e.get("type") not in (None, *loaders.OTTO_EVENT_TYPE_MAP):
        raise Expected(f"type on line {number}")
    sessions.append(value)
  if bad > 0.1 * (len(lines) - dropped["truncated_last_line"]):
    raise Expected("systematic")
  kept, seen = [], set()
  for s in sessions:
    for e in s["events"]:
      if any(v is None for v in (s.get("session"), e.get("aid"), e.get("ts"),
                                 e.get("type"))):
        dropped["missing_value"] += 1
        continue
      key = (str(s["session"]), str(e["aid"]), e["ts"],
             loaders.OTTO_EVENT_TYPE_MAP[e["type"]])
      if key in seen:
        dropped["duplicate"] += 1
      else:
        seen.add(key)
        kept.append(key)
  order = sorted(range(len(kept)), key=lambda j: (kept[j][2], j))
  return dict(dropped), [kept[j] for j in order]


REES46_SPEC = dict(
    header=("event_time,event_type,product_id,category_id,category_code,brand,"
            "price,user_id,user_session").split(","),
    width=9, user=7, item=2, type=1, ts=0, price=6, required=(0, 1, 2, 7, 8),
    map=loaders.REES46_EVENT_TYPE_MAP, drop=("remove_from_cart",),
    parse_ts=_rees46_time)
TAOBAO_SPEC = dict(
    header=None, width=5, user=0, item=1, type=3, ts=4, required=(0, 1, 3, 4),
    map=dict(loaders.TAOBAO_EVENT_TYPE_MAP, fav="add_to_cart"), drop=(),
    parse_ts=_seconds)


def check_contract(test, load, path: str, data: bytes, reference,
                   faulty_line: Optional[int]) -> str:
  """Asserts the loaders' contract on one mutated file; returns the outcome."""
  try:
    expected = reference(data)
  except Expected as e:
    expected = e
  try:
    events, _, report = load(path)
  except ValueError as e:
    message = str(e)
    test.assertIn(path, message)
    if faulty_line is not None:
      test.assertIn(f"line {faulty_line}", message)
    return "error"
  test.assertNotIsInstance(expected, Expected,
                           f"loaded although the reference expects an error "
                           f"({expected}); report {report}")
  dropped, kept = expected
  test.assertEqual(report["rows_in"],
                   report["rows_kept"] + sum(report["dropped"].values()))
  test.assertEqual(report["dropped"], dropped)
  got = list(zip(events["user_id"].astype(str), events["item_id"].astype(str),
                 events["timestamp"].tolist(),
                 events["event_type"].astype(str)))
  test.assertEqual(got, kept)
  return "loaded"


_TALLY = collections.Counter()


class LoadersFuzzTest(absltest.TestCase):

  @classmethod
  def tearDownClass(cls):
    super().tearDownClass()
    if _TALLY:
      print("\nloader / mutation: loaded with every row accounted for, "
            "clear error")
      for loader, kind in sorted({k[:2] for k in _TALLY}):
        print(f"{loader} / {kind}: {_TALLY[(loader, kind, 'loaded')]}, "
              f"{_TALLY[(loader, kind, 'error')]}")
      for outcome in ("loaded", "error"):
        print(f"total {outcome}: "
              f"{sum(n for k, n in _TALLY.items() if k[2] == outcome)}")

  def _run(self, sample, mutations, load, reference, n_lines, data):
    lines = head_lines(shared_data.require(sample), n_lines)

    @hypothesis.settings(max_examples=_EXAMPLES, deadline=None, derandomize=True,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(kind=st.sampled_from(mutations),
                      index=st.integers(0, n_lines - 1),
                      position=st.integers(0, 400),
                      noise=st.binary(min_size=1, max_size=4))
    def run(kind, index, position, noise):
      content, faulty = mutate(lines, kind, index, position, noise)
      path = self.create_tempfile(content=content, mode="wb").full_path
      outcome = check_contract(self, load, path, content, reference, faulty)
      _TALLY[(load.__name__, kind, outcome)] += 1

    del data
    run()

  def test_rees46_slices(self):
    self._run(shared_data.REES46, _CSV_MUTATIONS, loaders.load_rees46,
              lambda d: reference_csv(d, REES46_SPEC), _SLICE_LINES, None)

  def test_taobao_slices(self):
    self._run(shared_data.TAOBAO,
              tuple(m for m in _CSV_MUTATIONS if m not in (
                  "impossible_date", "nan_price", "duplicate_header")),
              loaders.load_taobao,
              lambda d: reference_csv(d, TAOBAO_SPEC), _SLICE_LINES, None)

  def test_otto_slices(self):
    self._run(shared_data.OTTO, _OTTO_MUTATIONS, loaders.load_otto,
              reference_otto, _OTTO_SLICE_LINES, None)


if __name__ == "__main__":
  absltest.main()
