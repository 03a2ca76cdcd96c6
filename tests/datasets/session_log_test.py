"""Tests for the `session_log` TFDS builder (the log bound to `load_csv`).

`cabb_tf/datasets/session_log/dummy_data/log.csv` (header `user,item,
category,action,time`, times in unix seconds from T0 = 1700000000) holds 13
events over T0 .. T0 + 10 h; sessions are split at gaps of more than 30
minutes, validation starts at T0 + 7 h and test at T0 + 8 h:

* u1 at T0: view 1, view 2, buy 2. Click 1: B = 2 → 1 row; click 2: A bought
  → 1 row.
* u2 at T0 + 1 h: view 3, view 4, cart 4, buy 4, buy 5. Click 3: B = 4, 5 →
  2 rows; click 4: A bought, B = 5 → 1 row. Train: 5 rows.
* u3 at T0 + 7.5 h: view 1, buy 1 → 1 row (validation).
* u4 at T0 + 9 h: view 2, view 3 → 2 rows; u5 at T0 + 10 h: view 5 → 1 row
  (test).

The worked examples in `gin/datasets/` are built from slices of the public
samples and their counts compared with `reference_counts`, a plain-Python
reading of the labeling rules (docs/loading.md and `cabb_tf.data.labels`).
"""

import collections
import csv
import datetime
import hashlib
import os

import gin
import tensorflow as tf

from cabb_tf import gin_utils
from cabb_tf.datasets import click_examples
from cabb_tf.datasets import provenance
from cabb_tf.datasets import session_log
from tests import shared_data
from tests.datasets import builder_testing

_DUMMY = builder_testing.DATASETS_DIR / "session_log" / "dummy_data" / "log.csv"
_DUMMY_BINDINGS = [
    "import cabb_tf.data.loaders",
    f"loaders.load_csv.path = '{_DUMMY}'",
    "loaders.load_csv.columns = {'user_id': 'user', 'item_id': 'item', "
    "'event_type': 'action', 'timestamp': 'time'}",
    "loaders.load_csv.category_column = 'category'",
    "loaders.load_csv.event_type_map = {'view': 'click', "
    "'cart': 'add_to_cart', 'buy': 'purchase'}",
    "loaders.load_csv.timestamp_unit = 's'",
]
_rows = builder_testing.rows


def _bind(bindings, files=()):
  gin.clear_config()
  gin_utils.clear_marks()
  gin_utils.parse(list(files), list(bindings))


class SessionLogBuilderTest(builder_testing.DatasetBuilderTestCase):
  """TFDS's checks of `session_log` on the dummy CSV."""

  DATASET_CLASS = session_log.Builder
  SPLITS = {"train": 5, "validation": 1, "test": 3}

  def setUp(self):
    super().setUp()
    _bind(_DUMMY_BINDINGS)
    self.addCleanup(gin.clear_config)


class SessionLogExamplesTest(tf.test.TestCase):
  """The dummy log's examples, reuse checks and errors."""

  def setUp(self):
    super().setUp()
    _bind(_DUMMY_BINDINGS)
    self.addCleanup(gin.clear_config)
    self.addCleanup(gin_utils.clear_marks)

  def _prepare(self, data_dir=None):
    return builder_testing.prepare(
        session_log.Builder, "default",
        data_dir or self.create_tempdir().full_path)

  def test_labels_derived_by_hand(self):
    builder = self._prepare()
    got = set()
    for split in click_examples.SPLITS:
      for ex in _rows(builder, split):
        got.add((split, ex["user_id"].decode(), ex["item_a"].decode(),
                 ex["item_b"].decode(), int(ex["y_caba"]),
                 int(ex["y_cabb"]), ex["leaf_a"].decode()))
    self.assertEqual(got, {
        ("train", "u1", "1", "2", 0, 1, "a"),
        ("train", "u1", "2", "", 1, 0, "a"),
        ("train", "u2", "3", "4", 0, 1, "b"),
        ("train", "u2", "3", "5", 0, 1, "b"),
        ("train", "u2", "4", "5", 1, 1, "c"),
        ("validation", "u3", "1", "", 1, 0, "a"),
        ("test", "u4", "2", "", 0, 0, "a"),
        ("test", "u4", "3", "", 0, 0, "b"),
        ("test", "u5", "5", "", 0, 0, "c"),
    })

  def test_metadata_records_bindings_and_source_fingerprint(self):
    builder = self._prepare()
    metadata = builder.info.metadata
    self.assertEqual(metadata["gin_bindings"][
        "cabb_tf.data.loaders.load_csv.path"], repr(str(_DUMMY)))
    record = metadata["source_files"][os.path.abspath(_DUMMY)]
    data = _DUMMY.read_bytes()
    self.assertEqual(record["size"], len(data))
    self.assertEqual(record["head_tail_sha256"],
                     hashlib.sha256(data).hexdigest())

  def test_fingerprint_hashes_the_first_and_last_mib(self):
    mib = provenance.HASHED_BYTES
    data = bytes(range(256)) * (3 * mib // 256)
    path = self.create_tempfile("big.csv", content=data, mode="wb").full_path
    record = provenance.source_fingerprints(path)[os.path.abspath(path)]
    self.assertEqual(record["size"], 3 * mib)
    self.assertEqual(record["head_tail_sha256"],
                     hashlib.sha256(data[:mib] + data[-mib:]).hexdigest())

  def test_reuse_with_same_files_marks_the_bindings_read(self):
    data_dir = self.create_tempdir().full_path
    self._prepare(data_dir)
    gin_utils.clear_marks()
    builder = self._prepare(data_dir)  # Reused: load_csv is not called.
    self.assertEqual(click_examples.binding_mismatches(builder), {})
    self.assertEqual(provenance.source_mismatches(builder), {})
    # Every load_csv binding counts as read although load_csv never ran.
    parsed = [("binding", b) for b in _DUMMY_BINDINGS]
    self.assertEqual(gin_utils.unused_bindings(parsed), {})

  def test_changed_source_file_is_refused(self):
    data_dir = self.create_tempdir().full_path
    log = self.create_tempfile("log.csv", content=_DUMMY.read_text())
    with gin.unlock_config():
      gin.bind_parameter("cabb_tf.data.loaders.load_csv.path", log.full_path)
    self._prepare(data_dir)
    text = _DUMMY.read_text().replace("u5,5,c,view", "u5,4,c,view")
    log.write_text(text)  # Same size, other content.
    with self.assertRaisesRegex(ValueError, "other source files.*log.csv"):
      self._prepare(data_dir)

  def test_other_binding_is_a_mismatch(self):
    data_dir = self.create_tempdir().full_path
    self._prepare(data_dir)
    with gin.unlock_config():
      gin.bind_parameter("cabb_tf.data.loaders.load_csv.drop_duplicates",
                         False)
    builder = session_log.Builder(data_dir=data_dir, config="default")
    self.assertIn("cabb_tf.data.loaders.load_csv.drop_duplicates",
                  click_examples.binding_mismatches(builder))

  def test_unbound_load_csv_names_what_to_bind(self):
    _bind([])
    with self.assertRaisesRegex(ValueError, "load_csv.path.*is not bound"):
      self._prepare()


def _taobao_rows(path):
  with open(path, newline="") as f:
    for number, fields in enumerate(csv.reader(f), start=1):
      yield number, fields


def reference_counts(events, sessions_of):
  """Counts of the labeled examples by the rules, in plain Python.

  Args:
    events: [(user, item, type, ts_ms)] kept events in file order.
    sessions_of: f(events) -> session key per event.

  Returns:
    A dict of counts comparable with the data report.
  """
  keys = sessions_of(events)
  by_session = collections.defaultdict(list)
  for position, (event, key) in enumerate(zip(events, keys)):
    by_session[key].append((event[3], position, event))
  out = collections.Counter()
  out["sessions"] = len(by_session)
  for session in by_session.values():
    session.sort(key=lambda x: (x[0], x[1]))
    seen = set()
    for i, (_, _, (_, item, kind, _)) in enumerate(session):
      if kind != "click" or item in seen:
        continue
      seen.add(item)
      later = {e[2][1] for e in session[i + 1:] if e[2][2] == "purchase"}
      others = later - {item}
      out["click_examples"] += 1
      out["caba_positives"] += item in later
      out["cabb_positive_rows"] += len(others)
      out["examples"] += max(1, len(others))
  out["clicks"] = sum(e[2] == "click" for e in events)
  out["purchases"] = sum(e[2] == "purchase" for e in events)
  out["events"] = len(events)
  return dict(out)


def gap_sessions(events, gap_ms=30 * 60_000):
  """Sessions split at gaps longer than `gap_ms` per user (time order)."""
  order = sorted(range(len(events)), key=lambda i: (events[i][3], i))
  last, number, keys = {}, collections.Counter(), [None] * len(events)
  for i in order:
    user, ts = events[i][0], events[i][3]
    if user in last and ts - last[user] > gap_ms:
      number[user] += 1
    last[user] = ts
    keys[i] = (user, number[user])
  return keys


class WorkedExamplesTest(tf.test.TestCase):
  """The two example gin files, built from slices of the public samples."""

  def setUp(self):
    super().setUp()
    self.addCleanup(gin.clear_config)
    self.addCleanup(gin_utils.clear_marks)

  def _build(self, gin_file, slice_path):
    _bind([f"loaders.load_csv.path = '{slice_path}'"],
          files=[gin_file])
    self.assertEqual(gin.query_parameter("load_data.name"), "session_log")
    return builder_testing.prepare(session_log.Builder, "default",
                                   self.create_tempdir().full_path)

  def _check(self, builder, expected, rows_in, dropped):
    report = builder.info.metadata["data_report"]
    self.assertEqual(report["rows_in"], rows_in)
    self.assertEqual(report["dropped"], dropped)
    for key, value in expected.items():
      self.assertEqual(report[key], value, key)
    self.assertEqual(sum(builder.info.splits[s].num_examples
                         for s in click_examples.SPLITS),
                     expected["examples"])

  def test_flat_category_example_on_a_taobao_slice(self):
    source = shared_data.require(shared_data.TAOBAO)
    lines = source.read_text().splitlines()[:4000]
    path = self.create_tempfile("slice.csv",
                                content="\n".join(lines) + "\n").full_path
    kinds = {"pv": "click", "cart": "add_to_cart", "fav": "add_to_cart",
             "buy": "purchase"}
    start, end = 1511539200, 1512316800
    seen, events, dropped = set(), [], collections.Counter()
    for _, (user, item, category, kind, ts) in _taobao_rows(path):
      if not start <= int(ts) < end:
        dropped["out_of_range"] += 1
      elif (user, item, category, kind, ts) in seen:
        dropped["duplicate"] += 1
      else:
        seen.add((user, item, category, kind, ts))
        events.append((int(user), int(item), kinds[kind], int(ts) * 1000))
    expected = reference_counts(events, gap_sessions)
    builder = self._build("datasets/session_log_example_flat.gin", path)
    self._check(builder, expected, len(lines), dict(dropped))
    report = builder.info.metadata["data_report"]
    self.assertEqual(report["items_unknown_category"], 0)
    self.assertEqual(report["timestamp_resolution"], "sub-day")

  def test_uncategorized_example_on_a_rees46_slice(self):
    source = shared_data.require(shared_data.REES46)
    lines = source.read_text().splitlines()[:3001]  # Header + 3,000 rows.
    path = self.create_tempfile("slice.csv",
                                content="\n".join(lines) + "\n").full_path
    kinds = {"view": "click", "cart": "add_to_cart", "purchase": "purchase"}
    seen, events, dropped = set(), [], collections.Counter()
    sessions = []
    with open(path, newline="") as f:
      for row in csv.DictReader(f):
        if not all(row[k] for k in ("user_id", "product_id", "event_type",
                                    "event_time", "user_session")):
          dropped["missing_value"] += 1
          continue
        if row["event_type"] == "remove_from_cart":
          dropped["dropped_event_type"] += 1
          continue
        key = tuple(row.values())
        if key in seen:
          dropped["duplicate"] += 1
          continue
        seen.add(key)
        ts = datetime.datetime.strptime(
            row["event_time"], "%Y-%m-%d %H:%M:%S UTC").replace(
                tzinfo=datetime.timezone.utc)
        events.append((int(row["user_id"]), int(row["product_id"]),
                       kinds[row["event_type"]], int(ts.timestamp() * 1000)))
        sessions.append(row["user_session"])
    expected = reference_counts(events, lambda _: sessions)
    builder = self._build("datasets/session_log_example_uncategorized.gin",
                          path)
    self._check(builder, expected, 3000, dict(dropped))
    report = builder.info.metadata["data_report"]
    items = {e[1] for e in events}
    self.assertEqual(report["items_unknown_category"], len(items))
    stats = report["purchase_attribution"]
    # Every leaf is unknown: no CABB purchase may count as a leaf match.
    self.assertEqual(stats["cabb_leaf_match"], 0)
    self.assertEqual(stats["cabb_leaf_match_unknown_excluded"],
                     stats["click_a_buy_b"])


if __name__ == "__main__":
  tf.test.main()
