"""Tests for cabb_tf.data.loaders: hand-written files and the shared samples."""

import collections
import csv
import datetime
import gzip
import json
import re
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import gin
import hypothesis
from hypothesis import strategies as st
import numpy as np
import pandas as pd
import pyarrow as pa
import zstandard

from cabb_tf.data import loaders
from cabb_tf.data import report as report_lib
from cabb_tf.data import schema
from tests import shared_data

# A generic log. Line numbers (1 = header) and what happens to each row:
#  2 kept            3 kept (unsorted: earlier than line 2)
#  4 duplicate of 2  5 kept (differs from 2 only in `note`)
#  6 missing user    7 dropped type `remove`
#  8 kept (ties line 3 at t=90 and must stay after it)
#  9 kept, item i6 never has a category
# 10 malformed (5 fields, not the last line)   11 blank, not a row
# 12 kept, empty price   13 truncated last line (6 fields, no line break)
_GENERIC_LINES = [
    "time,visitor,product,action,cat,price,note",
    "100,u1,i1,view,home>kitchen,10.5,a",
    "90,u2,i2,view,,5,b",
    "100,u1,i1,view,home>kitchen,10.5,a",
    "100,u1,i1,view,home>kitchen,10.5,z",
    "95,,i3,buy,garden,3,c",
    "110,u2,i2,remove,,5,d",
    "90,u3,i2,basket,home>garden>tools,6,e",
    "101,u2,i6,view,,7,g",
    "120,u1,i4,buy,garden",
    "",
    "105,u3,i4,buy,garden,,f",
    "130,u1,i5,view,,",
]
_GENERIC_CONFIG = dict(
    columns={"timestamp": "time", "user_id": "visitor", "item_id": "product",
             "event_type": "action"},
    event_type_map={"view": "click", "basket": "add_to_cart",
                    "buy": "purchase"},
    drop_event_types=("remove",),
    timestamp_unit="s",
    category_column="cat",
    category_separator=">",
    price_column="price",
)

_TAOBAO_LINES = [
    "1,100,7,pv,1511544070",
    "1,101,7,fav,1511544075",
    "2,100,7,cart,1511544060",
    "2,102,8,buy,1511544080",
    "1,100,7,pv,1511544070",  # Duplicate of the first line.
    "3,103,9,pv",  # Truncated last line.
]

_REES46_HEADER = ("event_time,event_type,product_id,category_id,category_code,"
                  "brand,price,user_id,user_session")
_REES46_LINES = [
    _REES46_HEADER,
    "2019-10-01 00:00:05 UTC,view,10,2053,,acme,1.50,500,s1",
    "2019-10-01 00:00:01 UTC,view,11,2054,electronics.audio.headphone,,20.00,"
    "501,s2",
    "2019-10-01 00:00:07 UTC,cart,10,2053,appliances.kitchen,acme,1.60,500,s1",
    "2019-10-01 00:00:09 UTC,remove_from_cart,10,2053,,acme,1.60,500,s1",
    "2019-10-01 00:00:10 UTC,purchase,12,2055,,,3.00,502,",
    "2019-10-01 00:00:11 UTC,purchase,10,2053,,acme,1.60,500,s1",
    "2019-10-01 00:00:12 UTC,view,13,2056,,sony,99.00,503,s3",
    "2019-10-01 00:00:13 UTC,view,10,2053,applian",
]


def _all_text(cols, names, *unused_args):
  """Stands in for loaders._guess_column_types: every column read as text."""
  del cols, unused_args
  return {n: pa.string() for n in names}


def _assert_same_load(test, fast, slow):
  pd.testing.assert_frame_equal(fast[0], slow[0])
  pd.testing.assert_frame_equal(fast[1], slow[1])
  test.assertEqual(fast[2], slow[2])


def _ms(text: str) -> int:
  """Milliseconds since the epoch of a UTC 'YYYY-mm-dd HH:MM:SS' time."""
  parsed = datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
  return int(parsed.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)


class LoadCsvTest(parameterized.TestCase):

  def write(self, lines, newline="\n", name="events.csv", final_newline=False):
    text = newline.join(lines) + (newline if final_newline else "")
    return self.create_tempfile(name, content=text).full_path

  @parameterized.named_parameters(("lf", "\n"), ("crlf", "\r\n"))
  def test_generic_file_events_catalog_and_report(self, newline):
    path = self.write(_GENERIC_LINES, newline)
    events, catalog, report = loaders.load_csv(path, **_GENERIC_CONFIG)

    # Kept lines 3, 8, 2, 5, 9, 12, in time order (ties in file order).
    self.assertEqual(list(events.columns),
                     ["user_id", "timestamp", "item_id", "event_type", "price"])
    schema.validate_events(events)
    self.assertIsInstance(events.index, pd.RangeIndex)
    self.assertEqual(events["user_id"].tolist(),
                     ["u2", "u3", "u1", "u1", "u2", "u3"])
    self.assertEqual(events["timestamp"].tolist(),
                     [90_000, 90_000, 100_000, 100_000, 101_000, 105_000])
    self.assertEqual(events["item_id"].tolist(),
                     ["i2", "i2", "i1", "i1", "i6", "i4"])
    self.assertEqual(events["event_type"].tolist(),
                     ["click", "add_to_cart", "click", "click", "click",
                      "purchase"])
    np.testing.assert_array_equal(events["price"].to_numpy(),
                                  [5.0, 6.0, 10.5, 10.5, 7.0, np.nan])

    self.assertEqual(catalog["item_id"].tolist(), ["i2", "i1", "i6", "i4"])
    self.assertEqual(catalog["category_path"].tolist(),
                     [("home", "garden", "tools"), ("home", "kitchen"),
                      (schema.UNKNOWN_LEAF,), ("garden",)])
    self.assertEqual(catalog["leaf"].tolist(),
                     ["home/garden/tools", "home/kitchen", schema.UNKNOWN_LEAF,
                      "garden"])
    np.testing.assert_array_equal(catalog["price"].to_numpy(),
                                  [5.0, 10.5, 7.0, np.nan])

    self.assertEqual(report["rows_in"], 11)
    self.assertEqual(report["rows_kept"], 6)
    self.assertEqual(report["dropped"], {
        "truncated_last_line": 1, "malformed": 1, "missing_value": 1,
        "dropped_event_type": 1, "duplicate": 1})
    self.assertEqual(report["malformed_examples"], ["120,u1,i4,buy,garden"])
    self.assertEqual(report["event_counts"], {
        "impression": 0, "click": 4, "add_to_cart": 1, "purchase": 1})
    self.assertEqual(report["items_unknown_category"], 1)
    report_lib.check_report(report)

  def test_lf_and_crlf_give_the_same_result(self):
    lf = loaders.load_csv(self.write(_GENERIC_LINES, "\n", "lf.csv"),
                          **_GENERIC_CONFIG)
    crlf = loaders.load_csv(self.write(_GENERIC_LINES, "\r\n", "crlf.csv"),
                            **_GENERIC_CONFIG)
    pd.testing.assert_frame_equal(lf[0], crlf[0])
    pd.testing.assert_frame_equal(lf[1], crlf[1])
    self.assertEqual(lf[2]["dropped"], crlf[2]["dropped"])

  def test_truncated_last_line_with_final_newline(self):
    path = self.write(_GENERIC_LINES, final_newline=True)
    _, _, report = loaders.load_csv(path, **_GENERIC_CONFIG)
    self.assertEqual(report["dropped"]["truncated_last_line"], 1)
    self.assertEqual(report["dropped"]["malformed"], 1)

  def test_short_line_in_the_middle_is_malformed_not_truncated(self):
    lines = ["t,u,i,e", "1,u,i,view", "2,u", "3,u,i,view", "4,u,i,view,extra",
             "5,u,i,view"]
    config = dict(columns={"timestamp": "t", "user_id": "u", "item_id": "i",
                           "event_type": "e"},
                  event_type_map={"view": "click"}, timestamp_unit="ms")
    events, _, report = loaders.load_csv(self.write(lines), **config,
                                         max_malformed_fraction=0.5)
    self.assertEqual(events["timestamp"].tolist(), [1, 3, 5])
    self.assertEqual(report["dropped"], {"malformed": 2})
    self.assertEqual(report["rows_in"], 5)

  def test_integer_ids_are_int64(self):
    lines = ["t,u,i,e", "1000,7,42,view", "2000,8,43,view"]
    config = dict(columns={"timestamp": "t", "user_id": "u", "item_id": "i",
                           "event_type": "e"},
                  event_type_map={"view": "click"}, timestamp_unit="ms")
    events, catalog, _ = loaders.load_csv(self.write(lines), **config)
    self.assertEqual(events["user_id"].dtype, np.int64)
    self.assertEqual(events["item_id"].tolist(), [42, 43])
    self.assertEqual(catalog["item_id"].dtype, np.int64)

  def test_ids_that_are_not_all_integers_stay_strings(self):
    # Row one has integer ids, so the fast path guesses int64 and must fall
    # back to text when line 4 has a non-integer user.
    lines = ["t,u,i,e", "1000,7,42,view", "2000,8,43,view", "3000,x9,42,view"]
    config = dict(columns={"timestamp": "t", "user_id": "u", "item_id": "i",
                           "event_type": "e"},
                  event_type_map={"view": "click"}, timestamp_unit="ms")
    events, _, _ = loaders.load_csv(self.write(lines), **config)
    self.assertEqual(events["user_id"].tolist(), ["7", "8", "x9"])
    self.assertEqual(events["item_id"].tolist(), [42, 43, 42])
    self.assertEqual(events["item_id"].dtype, np.int64)

  def test_timestamp_units_and_formats(self):
    config = dict(columns={"timestamp": 0, "user_id": 1, "item_id": 2,
                           "event_type": 3},
                  header=False, event_type_map={"v": "click"})
    cases = [
        ({"timestamp_unit": "s"}, ["1.5", "2"], [1500, 2000]),
        ({"timestamp_unit": "ms"}, ["1500", "2000"], [1500, 2000]),
        ({"timestamp_unit": "us"}, ["1500999", "2000000"], [1500, 2000]),
        ({"timestamp_unit": "ns"}, ["1500999999", "2000000000"], [1500, 2000]),
        ({"timestamp_format": "%Y-%m-%d %H:%M:%S UTC"},
         ["2019-10-01 00:00:00 UTC", "2019-10-01 00:00:02 UTC"],
         [_ms("2019-10-01 00:00:00"), _ms("2019-10-01 00:00:02")]),
        ({"timestamp_format": "%Y-%m-%dT%H:%M:%S.%f"},
         ["2019-10-01T00:00:00.250", "2019-10-01T00:00:01.500"],
         [_ms("2019-10-01 00:00:00") + 250, _ms("2019-10-01 00:00:01") + 500]),
    ]
    for i, (option, stamps, expected) in enumerate(cases):
      with self.subTest(option=option):
        path = self.write([f"{t},u,i,v" for t in stamps], name=f"t{i}.csv")
        events, _, _ = loaders.load_csv(path, **config, **option)
        self.assertEqual(events["timestamp"].tolist(), expected)

  def test_time_range_drops_out_of_range(self):
    lines = ["t,u,i,e", "1000,u,i,view", "2000,u,i,view", "3000,u,i,view"]
    config = dict(columns={"timestamp": "t", "user_id": "u", "item_id": "i",
                           "event_type": "e"},
                  event_type_map={"view": "click"}, timestamp_unit="ms",
                  time_range=(1500, 3000))
    events, _, report = loaders.load_csv(self.write(lines), **config)
    self.assertEqual(events["timestamp"].tolist(), [2000])
    self.assertEqual(report["dropped"], {"out_of_range": 2})

  def test_missing_session_drops_row_missing_category_keeps_it(self):
    lines = ["t,u,i,e,s,c", "1,u,i,view,s1,", "2,u,i,view,,c1",
             "3,u,j,view,s1,"]
    config = dict(columns={"timestamp": "t", "user_id": "u", "item_id": "i",
                           "event_type": "e", "session_id": "s"},
                  event_type_map={"view": "click"}, timestamp_unit="ms",
                  category_column="c")
    events, catalog, report = loaders.load_csv(self.write(lines), **config)
    self.assertEqual(events["session_id"].tolist(), ["s1", "s1"])
    self.assertEqual(report["dropped"], {"missing_value": 1})
    self.assertEqual(catalog["leaf"].tolist(), [schema.UNKNOWN_LEAF] * 2)
    self.assertEqual(report["items_unknown_category"], 2)

  def test_unknown_event_type_names_file_line_and_value(self):
    lines = ["time,visitor,product,action,cat,price,note",
             "100,u1,i1,view,,1,a",
             "",
             "101,u1,i1,view,too,many,fields,here",
             "102,u1,i1,wishlist,,1,a",
             "103,u1,i1,wishlist,,1,a"]
    path = self.write(lines, "\r\n")
    with self.assertRaises(ValueError) as cm:
      loaders.load_csv(path, **_GENERIC_CONFIG)
    message = str(cm.exception)
    self.assertIn(path, message)
    self.assertIn("line 5,", message)
    self.assertIn("'wishlist'", message)
    self.assertIn("drop_event_types", message)

  @parameterized.named_parameters(
      ("not_a_number", "s", None, "1511544070", "abc", 4),
      ("not_a_number_on_row_one", "s", None, "1511544070", "x1", 2),
      ("negative", "s", None, "1511544070", "-5", 4),
      ("beyond_2100", "ms", None, "1511544070000", "99999999999999999999", 4),
      ("wrong_format", None, "%Y-%m-%d %H:%M:%S", "2019-10-01 00:00:00",
       "2019-13-01 00:00:00", 4),
      ("format_beyond_2100", None, "%Y-%m-%d %H:%M:%S", "2019-10-01 00:00:00",
       "2150-01-01 00:00:00", 4),
  )
  def test_bad_timestamp_names_file_line_and_value(self, unit, fmt, good, bad,
                                                   line):
    first, later = (bad, good) if line == 2 else (good, bad)
    lines = ["t,u,i,e", f"{first},u,i,view", f"{good},u,i,view",
             f"{later},u,i,view", f"{good},u,i,view"]
    path = self.write(lines)
    with self.assertRaises(ValueError) as cm:
      loaders.load_csv(
          path, columns={"timestamp": "t", "user_id": "u", "item_id": "i",
                         "event_type": "e"},
          event_type_map={"view": "click"}, timestamp_unit=unit,
          timestamp_format=fmt)
    message = str(cm.exception)
    self.assertIn(path, message)
    self.assertIn(f"line {line},", message)
    self.assertIn(repr(bad), message)

  def test_bad_encoding_names_line(self):
    path = self.create_tempfile(
        "latin.csv", content=b"t,u,i,e\n1,u,i,view\n2,caf\xe9,i,view\n",
        mode="wb").full_path
    config = dict(columns={"timestamp": "t", "user_id": "u", "item_id": "i",
                           "event_type": "e"},
                  event_type_map={"view": "click"}, timestamp_unit="s")
    # The offset of \xe9 is len(b"t,u,i,e\n1,u,i,view\n2,caf") = 24.
    with self.assertRaisesRegex(
        ValueError, r"latin.csv: line 3, byte offset 24: byte 0xe9 is not "
        r"valid utf-8 .*encoding='latin-1'"):
      loaders.load_csv(path, **config)
    events, _, _ = loaders.load_csv(path, encoding="latin-1", **config)
    self.assertEqual(events["user_id"].tolist(), ["u", "café"])

  def test_bad_price_names_line_and_value(self):
    lines = list(_GENERIC_LINES[:3]) + ["102,u1,i1,view,,free,x"]
    path = self.write(lines)
    with self.assertRaisesRegex(ValueError, r"line 4, column 'price': price "
                                r"is not a finite number: 'free'"):
      loaders.load_csv(path, **_GENERIC_CONFIG)

  @parameterized.named_parameters(
      ("no_timestamp_option", dict(timestamp_unit=None), "exactly one"),
      ("both_timestamp_options", dict(timestamp_format="%s"), "exactly one"),
      ("bad_unit", dict(timestamp_unit="min"), "timestamp_unit must be"),
      ("unknown_column", dict(columns={"timestamp": "time", "user_id": "who",
                                       "item_id": "product",
                                       "event_type": "action"}),
       "'who'.*not in the header"),
      ("missing_key", dict(columns={"timestamp": "time"}), "must map"),
      ("non_canonical_target", dict(event_type_map={"view": "visit"}),
       "not a canonical type"),
      ("mapped_and_dropped", dict(drop_event_types=("view",)),
       "both mapped and dropped"),
      ("index_with_header", dict(category_column=9), "out of range"),
  )
  def test_bad_arguments(self, override, pattern):
    config = dict(_GENERIC_CONFIG, **override)
    with self.assertRaisesRegex(ValueError, pattern):
      loaders.load_csv(self.write(_GENERIC_LINES), **config)

  def test_category_tree_resolves_flat_ids(self):
    tree = self.create_tempfile(
        "category_tree.csv",
        content="categoryid,parentid\n3,2\n2,1\n1,\n").full_path
    lines = ["t,u,i,e,c", "1,u,10,view,3", "2,u,11,view,1", "3,u,12,view,42",
             "4,u,13,view,"]
    events, catalog, report = loaders.load_csv(
        self.write(lines),
        columns={"timestamp": "t", "user_id": "u", "item_id": "i",
                 "event_type": "e", "category": "c"},
        event_type_map={"view": "click"}, timestamp_unit="ms",
        category_tree_path=tree)
    self.assertLen(events, 4)
    self.assertEqual(catalog["category_path"].tolist(),
                     [("1", "2", "3"), ("1",), ("42",), (schema.UNKNOWN_LEAF,)])
    self.assertEqual(report["categories_not_in_tree"], 1)
    self.assertEqual(report["items_unknown_category"], 1)

  def test_catalog_file(self):
    catalog_file = self.create_tempfile(
        "items.csv", content="itemid,category\n10,a/b\n11,\n10,z\n99,q\n")
    lines = ["t,u,i,e", "1,u,10,view", "2,u,11,view", "3,u,12,view"]
    _, catalog, report = loaders.load_csv(
        self.write(lines),
        columns={"timestamp": "t", "user_id": "u", "item_id": "i",
                 "event_type": "e"},
        event_type_map={"view": "click"}, timestamp_unit="ms",
        catalog_path=catalog_file.full_path, category_separator="/")
    self.assertEqual(catalog["item_id"].tolist(), [10, 11, 12])
    self.assertEqual(catalog["category_path"].tolist(),
                     [("a", "b"), (schema.UNKNOWN_LEAF,),
                      (schema.UNKNOWN_LEAF,)])
    self.assertEqual(report["items_unknown_category"], 2)

  def test_header_only_file_gives_empty_log(self):
    events, catalog, report = loaders.load_csv(
        self.write(["t,u,i,e"], final_newline=True),
        columns={"timestamp": "t", "user_id": "u", "item_id": "i",
                 "event_type": "e"},
        event_type_map={"view": "click"}, timestamp_unit="ms")
    self.assertEmpty(events)
    self.assertEmpty(catalog)
    self.assertEqual(report["rows_in"], 0)
    self.assertEqual(events["event_type"].dtype, schema.EVENT_TYPE_DTYPE)

  @hypothesis.settings(max_examples=40, deadline=None)
  @hypothesis.given(
      st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2),
                         st.sampled_from(["view", "buy"]),
                         st.integers(0, 4)), min_size=1, max_size=30),
      st.booleans(), st.randoms())
  def test_duplicates_match_a_set_of_seen_rows(self, rows, in_order, rnd):
    # Few distinct times, so ties (and repeats inside a tie, not only next
    # to each other) are common; a time-ordered file takes the path that
    # hashes only tied rows, a shuffled one hashes every row.
    rows = list(rows)
    if in_order:
      rows.sort(key=lambda r: r[3])
    else:
      rnd.shuffle(rows)
    lines = ["time,visitor,product,action"] + [
        f"{t},u{u},i{i},{a}" for u, i, a, t in rows]
    path = self.create_tempfile(content="\n".join(lines) + "\n").full_path
    events, _, report = loaders.load_csv(
        path, columns={"timestamp": "time", "user_id": "visitor",
                       "item_id": "product", "event_type": "action"},
        event_type_map={"view": "click", "buy": "purchase"},
        timestamp_unit="s")
    unique = list(dict.fromkeys(rows))
    self.assertEqual(report["dropped"].get("duplicate", 0),
                     len(rows) - len(unique))
    # The first of each repeat is kept, in (time, file order) order.
    expected = sorted(range(len(unique)), key=lambda k: (unique[k][3], k))
    self.assertEqual(
        list(zip(events["user_id"], events["item_id"], events["timestamp"])),
        [(f"u{unique[k][0]}", f"i{unique[k][1]}", unique[k][3] * 1000)
         for k in expected])

  def test_load_csv_is_gin_configurable(self):
    self.addCleanup(gin.clear_config)
    gin.bind_parameter("load_taobao.fav_as", "drop")
    _, _, report = loaders.load_taobao(self.write(_TAOBAO_LINES))
    self.assertEqual(report["dropped"]["dropped_event_type"], 1)
    gin.clear_config()
    gin.bind_parameter("load_csv.delimiter", ";")
    with self.assertRaisesRegex(ValueError, "out of range"):
      loaders.load_taobao(self.write(_TAOBAO_LINES, name="b.csv"))


class SourceLoadersTest(parameterized.TestCase):

  def write(self, lines, name, newline="\n"):
    return self.create_tempfile(name, content=newline.join(lines)).full_path

  @parameterized.named_parameters(
      ("fav_as_cart", "add_to_cart", {"click": 1, "add_to_cart": 2,
                                      "purchase": 1}, {}),
      ("fav_as_click", "click", {"click": 2, "add_to_cart": 1, "purchase": 1},
       {}),
      ("fav_dropped", "drop", {"click": 1, "add_to_cart": 1, "purchase": 1},
       {"dropped_event_type": 1}),
  )
  def test_taobao(self, fav_as, counts, extra_drops):
    events, catalog, report = loaders.load_taobao(
        self.write(_TAOBAO_LINES, "taobao.csv"), fav_as=fav_as)
    self.assertEqual(report["event_counts"], dict(impression=0, **counts))
    self.assertEqual(report["dropped"], dict(
        truncated_last_line=1, duplicate=1, **extra_drops))
    self.assertEqual(report["rows_in"], 6)
    self.assertNotIn("session_id", events.columns)
    self.assertEqual(events["timestamp"].iloc[0], 1511544060_000)
    self.assertEqual(events["user_id"].iloc[0], 2)
    self.assertEqual(dict(zip(catalog["item_id"], catalog["category_path"])),
                     {100: ("7",), 101: ("7",), 102: ("8",)} if fav_as != "drop"
                     else {100: ("7",), 102: ("8",)})

  def test_text_path_matches_typed_path(self):
    files = [
        (lambda p: loaders.load_csv(p, **_GENERIC_CONFIG),
         self.write(_GENERIC_LINES, "generic.csv", "\r\n")),
        (loaders.load_taobao, self.write(_TAOBAO_LINES, "taobao.csv")),
        (loaders.load_rees46, self.write(_REES46_LINES, "rees.csv")),
    ]
    for load, path in files:
      with self.subTest(path=path):
        fast = load(path)
        with mock.patch.object(loaders, "_guess_column_types",
                               side_effect=_all_text) as guess:
          slow = load(path)
        guess.assert_called_once()
        _assert_same_load(self, fast, slow)

  def test_taobao_bad_fav_as(self):
    with self.assertRaisesRegex(ValueError, "fav_as"):
      loaders.load_taobao(self.write(_TAOBAO_LINES, "t.csv"), fav_as="like")

  def test_rees46(self):
    events, catalog, report = loaders.load_rees46(
        self.write(_REES46_LINES, "rees.csv", "\r\n"))
    # Line 6 has no session (missing_value); line 5 is remove_from_cart.
    self.assertEqual(report["dropped"], {"truncated_last_line": 1,
                                         "missing_value": 1,
                                         "dropped_event_type": 1})
    self.assertEqual(report["rows_in"], 8)
    self.assertEqual(events["session_id"].tolist(), ["s2", "s1", "s1", "s1",
                                                     "s3"])
    self.assertEqual(events["event_type"].tolist(),
                     ["click", "click", "add_to_cart", "purchase", "click"])
    self.assertEqual(events["timestamp"].tolist()[0],
                     _ms("2019-10-01 00:00:01"))
    self.assertEqual(events["price"].tolist(), [20.0, 1.5, 1.6, 1.6, 99.0])
    by_item = catalog.set_index("item_id")
    # Item 10's first code (in time order) comes with the cart at 00:00:07.
    self.assertEqual(by_item.loc[10, "category_path"], ("appliances",
                                                         "kitchen"))
    self.assertEqual(by_item.loc[11, "category_path"], ("electronics", "audio",
                                                        "headphone"))
    self.assertEqual(by_item.loc[13, "category_path"], ("2056",))
    self.assertEqual(by_item.loc[10, "brand"], "acme")
    self.assertIsNone(by_item.loc[11, "brand"])
    self.assertEqual(by_item.loc[10, "price"], 1.5)
    self.assertEqual(catalog["item_id"].tolist(), [11, 10, 13])

  def test_otto(self):
    lines = [
        json.dumps({"session": 1, "events": [
            {"aid": 10, "ts": 2000, "type": "clicks"},
            {"aid": 11, "ts": 1000, "type": "orders"}]}),
        json.dumps({"session": 2, "events": [
            {"aid": 10, "ts": 1500, "type": "carts"},
            {"aid": 10, "ts": 1500, "type": "carts"}]}),
        '{"session": 3, "events": [{"aid": 12, "ts": 1500, "typ',
    ]
    events, catalog, report = loaders.load_otto(self.write(lines, "o.jsonl"))
    self.assertEqual(events["session_id"].tolist(), [1, 2, 1])
    self.assertEqual(events["user_id"].tolist(), [1, 2, 1])
    self.assertEqual(events["item_id"].tolist(), [11, 10, 10])
    self.assertEqual(events["timestamp"].tolist(), [1000, 1500, 2000])
    self.assertEqual(events["event_type"].tolist(),
                     ["purchase", "add_to_cart", "click"])
    self.assertEqual(report["rows_in"], 5)
    self.assertEqual(report["dropped"], {"truncated_last_line": 1,
                                         "duplicate": 1})
    self.assertEqual(report["items_unknown_category"], 2)
    self.assertEqual(catalog["leaf"].tolist(), [schema.UNKNOWN_LEAF] * 2)

  def test_otto_malformed_middle_line(self):
    lines = [json.dumps({"session": 1, "events": [
        {"aid": 10, "ts": 2000, "type": "clicks"}]}), "not json",
             json.dumps({"session": 2, "events": [
                 {"aid": 11, "ts": 2500, "type": "clicks"}]})]
    events, _, report = loaders.load_otto(self.write(lines, "o.jsonl"),
                                          max_malformed_fraction=0.5)
    self.assertLen(events, 2)
    self.assertEqual(report["dropped"], {"malformed": 1})
    self.assertEqual(report["malformed_examples"], ["line 2"])

  def test_otto_unknown_type_names_line(self):
    lines = [json.dumps({"session": 1, "events": [
        {"aid": 10, "ts": 2000, "type": "clicks"}]}), "",
             json.dumps({"session": 2, "events": [
                 {"aid": 11, "ts": 2500, "type": "wishlist"}]})]
    path = self.write(lines, "o.jsonl")
    with self.assertRaisesRegex(ValueError, r"line 3: event type 'wishlist'"):
      loaders.load_otto(path)



_SMALL = ["t,u,i,e"] + [f"{k},u{k % 3},i{k},view" for k in range(1, 21)]
_SMALL_CONFIG = dict(columns={"timestamp": "t", "user_id": "u", "item_id": "i",
                              "event_type": "e"},
                     event_type_map={"view": "click"}, timestamp_unit="s")


class FaultsTest(parameterized.TestCase):
  """Faults that must be counted by reason or fail naming file and line."""

  def write(self, content, name="f.csv"):
    data = content if isinstance(content, bytes) else content.encode()
    return self.create_tempfile(name, content=data, mode="wb").full_path

  def test_unclosed_quote_drops_one_line_not_the_rest(self):
    # 20 rows; line 5 opens a quote never closed. Arrow alone would swallow
    # lines 5..21 into one field; here line 5 alone is dropped.
    lines = list(_SMALL)
    lines[4] = '"' + lines[4]
    events, _, report = loaders.load_csv(self.write("\n".join(lines) + "\n"),
                                         **_SMALL_CONFIG)
    self.assertEqual(report["rows_in"], 20)
    self.assertEqual(report["dropped"], {"unclosed_quote": 1})
    self.assertEqual(events["timestamp"].tolist(),
                     [k * 1000 for k in range(1, 21) if k != 4])
    self.assertEqual(report["malformed_examples"], ['line 5: "4,u1,i4,view'])

  def test_quoted_delimiter_is_one_field(self):
    lines = ["t,u,i,e", '1,"u,1",i1,view', "2,u2,i2,view"]
    events, _, report = loaders.load_csv(self.write("\n".join(lines)),
                                         **_SMALL_CONFIG)
    self.assertEqual(events["user_id"].tolist(), ["u,1", "u2"])
    self.assertEqual(report["dropped"], {})

  @parameterized.named_parameters(
      # The last row, one field short, counts as a cut-off last line.
      ("header_one_more", "t,u,i,e,x", "", "19 of 19 data rows .*the header \\(line 1\\) has 5 "
       "columns, line 2 has 4.*one field fewer"),
      ("rows_one_more", "t,u,i,e", ",x", "20 of 20 data rows .*has 4 columns, line 2 has 5.*one "
       "field more"),
      ("trailing_delimiter", "t,u,i,e", ",", "20 of 20 data rows .*line 2 has 5.*ends with the "
       "delimiter ','"),
  )
  def test_systematic_column_mismatch_is_an_error(self, header, suffix,
                                                  pattern):
    lines = [header] + [l + suffix for l in _SMALL[1:]]
    path = self.write("\n".join(lines))
    with self.assertRaisesRegex(ValueError, pattern):
      loaders.load_csv(path, **_SMALL_CONFIG)
    # With the rule relaxed, every row is counted as malformed.
    if header == "t,u,i,e":
      _, _, report = loaders.load_csv(path, **_SMALL_CONFIG,
                                      max_malformed_fraction=1.0)
      self.assertEqual(report["dropped"], {"malformed": 20})

  def test_share_rule_boundary(self):
    # 2 malformed of 20 data rows is 10 %: allowed; 3 of 20 is not.
    for n_bad, fails in ((2, False), (3, True)):
      lines = list(_SMALL)
      for k in range(1, n_bad + 1):
        lines[k * 5] += ",extra"
      path = self.write("\n".join(lines), name=f"b{n_bad}.csv")
      if fails:
        with self.assertRaisesRegex(ValueError, "line 6 has 5"):
          loaders.load_csv(path, **_SMALL_CONFIG)
      else:
        _, _, report = loaders.load_csv(path, **_SMALL_CONFIG)
        self.assertEqual(report["dropped"], {"malformed": n_bad})

  @parameterized.named_parameters(
      ("gzip", lambda b: gzip.compress(b), "gzip"),
      ("zstd", lambda b: zstandard.ZstdCompressor().compress(b), "zstd"),
  )
  def test_compressed_input_by_magic_bytes(self, compress, codec):
    text = "\n".join(_SMALL).encode()
    plain = loaders.load_csv(self.write(text), **_SMALL_CONFIG)
    packed = loaders.load_csv(self.write(compress(text), name="no_suffix"),
                              **_SMALL_CONFIG)
    pd.testing.assert_frame_equal(plain[0], packed[0])
    self.assertEqual(packed[2]["compression"], codec)

  @parameterized.named_parameters(
      ("random_bytes", bytes(range(256)) * 4, "line 1, byte offset 0: a NUL"),
      ("bzip2", b"BZh91AY&SY" + b"x" * 20, "bzip2 data"),
  )
  def test_binary_input_is_an_error(self, data, pattern):
    for load in (lambda p: loaders.load_csv(p, **_SMALL_CONFIG),
                 loaders.load_otto):
      path = self.write(data)
      with self.assertRaisesRegex(ValueError, re.escape(path) + ".*" + pattern):
        load(path)

  @parameterized.named_parameters(
      ("feb_30", "2019-02-30 00:00:00", "day is out of range for month"),
      ("second_60", "2019-10-01 23:59:60", "second must be in 0..59"),
      ("apr_31", "2019-04-31 12:00:00", "day is out of range for month"),
  )
  def test_impossible_dates_are_errors(self, value, reason):
    lines = ["t,u,i,e"] + [f"2019-10-01 00:00:{k:02d},u,i{k},view"
                           for k in range(10)]
    lines[7] = f"{value},u,i7,view"
    with self.assertRaisesRegex(
        ValueError, f"line 8, column 't': not a valid date and time "
        f"\\({reason}\\): '{value}'"):
      loaders.load_csv(self.write("\n".join(lines)),
                       **dict(_SMALL_CONFIG, timestamp_unit=None,
                              timestamp_format="%Y-%m-%d %H:%M:%S"))

  @parameterized.named_parameters(
      ("nan_row_one", 2, "nan"), ("nan_later", 5, "nan"),
      ("inf_row_one", 2, "inf"), ("inf_later", 5, "-inf"),
      ("overflow", 5, "1e999"))
  def test_non_finite_prices_are_errors_on_every_path(self, line, value):
    lines = ["t,u,i,e,p"] + [f"{k},u,i{k},view,1.5" for k in range(1, 8)]
    lines[line - 1] = f"{line - 1},u,i,view,{value}"
    with self.assertRaisesRegex(ValueError, f"line {line}, column 'p': price "
                                f"is not a finite number: '{value}'"):
      loaders.load_csv(self.write("\n".join(lines)), **_SMALL_CONFIG,
                       price_column="p")

  @parameterized.named_parameters(
      ("blank_first_line", b"\n"), ("two_blank_crlf", b"\r\n\r\n"),
      ("bom", b"\xef\xbb\xbf"))
  def test_blank_lines_and_bom_before_the_header(self, prefix):
    text = "\n".join(_SMALL).encode()
    plain = loaders.load_csv(self.write(text), **_SMALL_CONFIG)
    prefixed = loaders.load_csv(self.write(prefix + text, name="p.csv"),
                                **_SMALL_CONFIG)
    pd.testing.assert_frame_equal(plain[0], prefixed[0])
    self.assertEqual(prefixed[2]["rows_in"], 20)

  def test_error_lines_count_blank_lines_and_header_repeats(self):
    lines = list(_SMALL)
    lines.insert(3, "")
    lines.insert(8, "t,u,i,e")  # Line 9: a repeated header.
    with self.assertRaisesRegex(ValueError, "line 9, column 'e': unknown event "
                                "type 'e'.*repeat of the header"):
      loaders.load_csv(self.write("\n".join(lines)), **_SMALL_CONFIG)


class OttoFaultsTest(absltest.TestCase):

  def write(self, data: bytes, name="o.jsonl"):
    return self.create_tempfile(name, content=data, mode="wb").full_path

  def sessions(self, n=12):
    return [json.dumps({"session": s, "events": [
        {"aid": 10 + s, "ts": 1000 * s, "type": "clicks"}]}).encode()
            for s in range(n)]

  def test_json_array_is_an_error(self):
    data = json.dumps([json.loads(l) for l in self.sessions()],
                      indent=2).encode()
    with self.assertRaisesRegex(ValueError, "line 1: the file is a JSON "
                                "array, not JSON lines"):
      loaders.load_otto(self.write(data))

  def test_cr_only_and_gzip_load_like_lf(self):
    lf = loaders.load_otto(self.write(b"\n".join(self.sessions())))
    for data in (b"\r".join(self.sessions()),
                 gzip.compress(b"\n".join(self.sessions()))):
      other = loaders.load_otto(self.write(data, name="x"))
      pd.testing.assert_frame_equal(lf[0], other[0])
      self.assertEqual(other[2]["rows_in"], 12)

  def test_long_line(self):
    big = {"session": 99, "events": [
        {"aid": k, "ts": k, "type": "clicks"} for k in range(60_000)]}
    line = json.dumps(big).encode()
    self.assertGreater(len(line), 2 << 20)
    events, _, report = loaders.load_otto(
        self.write(b"\n".join(self.sessions(3) + [line])))
    self.assertEqual(report["rows_in"], 60_003)
    self.assertLen(events, 60_003)

  def test_schema_error_names_its_line(self):
    lines = self.sessions()
    for k in range(4, 12):
      lines[k] = lines[k].replace(b'"aid": ', b'"aid": "x')
      lines[k] = lines[k].replace(b', "ts"', b'", "ts"')
    with self.assertRaisesRegex(ValueError, "o.jsonl: line 5: an event's "
                                "'aid' is 'x14', not an integer"):
      loaders.load_otto(self.write(b"\n".join(lines)))

  def test_mostly_invalid_lines_are_an_error(self):
    lines = self.sessions()
    lines[2:6] = [b"garbage"] * 4
    with self.assertRaisesRegex(ValueError, "4 of 12 lines are not valid JSON"
                                ".*line 3: 'garbage'"):
      loaders.load_otto(self.write(b"\n".join(lines)))


class SharedSamplesTest(absltest.TestCase):
  """The loaders on the real samples, against counts made here with csv/json."""

  def test_rees46_sample(self):
    path = shared_data.require(shared_data.REES46)
    with open(path, newline="") as f:
      reader = csv.reader(f)
      header = next(reader)
      rows = list(reader)
    complete = [r for r in rows if len(r) == len(header)]
    self.assertLen(rows, 17_435)
    self.assertLen(complete, 17_434)  # SOURCES.md: 17,434 (+1 truncated).
    raw = collections.Counter(r[1] for r in complete)
    self.assertEqual(raw, {"view": 17_055, "cart": 165, "purchase": 214})
    required = [header.index(c) for c in ("event_time", "event_type",
                                          "product_id", "user_id",
                                          "user_session")]
    with_values = [r for r in complete if all(r[i] for i in required)]
    seen, unique = set(), []
    for row in with_values:
      if tuple(row) not in seen:
        seen.add(tuple(row))
        unique.append(row)
    expected = collections.Counter(
        loaders.REES46_EVENT_TYPE_MAP[r[1]] for r in unique)

    events, catalog, report = loaders.load_rees46(path)
    self.assertEqual(report["rows_in"], 17_435)
    self.assertEqual(report["dropped"]["truncated_last_line"], 1)
    self.assertEqual(report["dropped"].get("missing_value", 0),
                     len(complete) - len(with_values))
    self.assertEqual(report["dropped"].get("duplicate", 0),
                     len(with_values) - len(unique))
    self.assertEqual(report["event_counts"],
                     {t: expected.get(t, 0) for t in schema.EVENT_TYPES})
    report_lib.check_report(report)
    self.assertLen(catalog, 6_493)  # SOURCES.md: 6,493 products.
    self.assertEqual(events["user_id"].nunique(), 4_504)
    self.assertTrue((np.diff(events["timestamp"].to_numpy()) >= 0).all())
    self.assertEqual(events["timestamp"].iloc[0], _ms("2019-10-01 00:00:00"))

    # Catalog paths, from the first event (time, then file order) of each item.
    order = sorted(range(len(unique)), key=lambda k: (unique[k][0], k))
    code, category_id = {}, {}
    for k in order:
      row = unique[k]
      if row[4]:
        code.setdefault(int(row[2]), tuple(row[4].split(".")))
      category_id.setdefault(int(row[2]), (row[3],))
    paths = dict(zip(catalog["item_id"], catalog["category_path"]))
    self.assertEqual(paths, {i: code.get(i, c) for i, c in category_id.items()})

    # The same events and catalog through a hand-configured load_csv.
    by_hand = loaders.load_csv(
        path,
        columns={"timestamp": "event_time", "event_type": "event_type",
                 "item_id": "product_id", "user_id": "user_id",
                 "session_id": "user_session", "category": "category_code",
                 "category_fallback": "category_id", "brand": "brand",
                 "price": "price"},
        event_type_map={"view": "click", "cart": "add_to_cart",
                        "purchase": "purchase"},
        drop_event_types=("remove_from_cart",),
        timestamp_format="%Y-%m-%d %H:%M:%S UTC",
        category_separator=".")
    pd.testing.assert_frame_equal(by_hand[0], events)
    pd.testing.assert_frame_equal(by_hand[1], catalog)
    self.assertEqual(by_hand[2], report)

  def test_taobao_sample(self):
    path = shared_data.require(shared_data.TAOBAO)
    with open(path, newline="") as f:
      rows = list(csv.reader(f))
    complete = [r for r in rows if len(r) == 5]
    self.assertLen(rows, 84_476)
    self.assertLen(complete, 84_475)
    self.assertEqual(collections.Counter(r[3] for r in complete),
                     {"pv": 75_872, "cart": 4_497, "fav": 2_356, "buy": 1_750})
    seen, unique = set(), []
    for row in complete:
      if all(row) and tuple(row) not in seen:
        seen.add(tuple(row))
        unique.append(row)
    to_canonical = dict(loaders.TAOBAO_EVENT_TYPE_MAP, fav="add_to_cart")
    expected = collections.Counter(to_canonical[r[3]] for r in unique)

    events, catalog, report = loaders.load_taobao(path)
    self.assertEqual(report["rows_in"], 84_476)
    self.assertEqual(report["dropped"].get("duplicate", 0),
                     sum(all(r) for r in complete) - len(unique))
    self.assertEqual(report["dropped"]["truncated_last_line"], 1)
    self.assertEqual(report["event_counts"],
                     {t: expected.get(t, 0) for t in schema.EVENT_TYPES})
    report_lib.check_report(report)
    self.assertLen(catalog, 55_368)  # SOURCES.md: 55,368 items.
    first_category = {}
    for k in sorted(range(len(unique)), key=lambda k: (int(unique[k][4]), k)):
      first_category.setdefault(int(unique[k][1]), (unique[k][2],))
    self.assertEqual(dict(zip(catalog["item_id"], catalog["category_path"])),
                     first_category)
    self.assertEqual(events["timestamp"].iloc[0],
                     min(int(r[4]) for r in unique) * 1000)

    by_hand = loaders.load_csv(
        path, header=False,
        columns={"user_id": 0, "item_id": 1, "category": 2, "event_type": 3,
                 "timestamp": 4},
        event_type_map={"pv": "click", "cart": "add_to_cart",
                        "fav": "add_to_cart", "buy": "purchase"},
        timestamp_unit="s")
    pd.testing.assert_frame_equal(by_hand[0], events)
    pd.testing.assert_frame_equal(by_hand[1], catalog)
    self.assertEqual(by_hand[2], report)

  def test_text_path_matches_typed_path_on_samples(self):
    for load, sample in ((loaders.load_rees46, shared_data.REES46),
                         (loaders.load_taobao, shared_data.TAOBAO)):
      path = shared_data.require(sample)
      fast = load(path)
      with mock.patch.object(loaders, "_guess_column_types",
                             side_effect=_all_text):
        slow = load(path)
      _assert_same_load(self, fast, slow)

  def test_otto_sample(self):
    path = shared_data.require(shared_data.OTTO)
    with open(path) as f:
      sessions = [json.loads(line) for line in f if line.strip()]
    raw = [(s["session"], e["aid"], e["ts"], e["type"]) for s in sessions
           for e in s["events"]]
    self.assertEqual(collections.Counter(r[3] for r in raw),
                     {"clicks": 800, "carts": 52, "orders": 10})
    unique = list(dict.fromkeys(raw))
    expected = collections.Counter(
        loaders.OTTO_EVENT_TYPE_MAP[r[3]] for r in unique)

    events, catalog, report = loaders.load_otto(path)
    self.assertEqual(report["rows_in"], 862)
    self.assertEqual(report["dropped"].get("duplicate", 0),
                     len(raw) - len(unique))
    self.assertEqual(report["event_counts"],
                     {t: expected.get(t, 0) for t in schema.EVENT_TYPES})
    self.assertEqual(events["session_id"].nunique(), 20)
    self.assertTrue((events["user_id"] == events["session_id"]).all())
    self.assertEqual(report["items_unknown_category"], len(catalog))
    report_lib.check_report(report)


if __name__ == "__main__":
  absltest.main()


class DatesDuplicatesAndGlobsTest(absltest.TestCase):
  """default_year, day stamps, drop_duplicates and glob patterns."""

  _CONFIG = dict(
      columns={"user_id": "user", "item_id": "item", "event_type": "action",
               "timestamp": "day"},
      event_type_map={"view": "click", "buy": "purchase"},
      timestamp_format="%m%d")

  def write(self, lines, name="log.csv"):
    return self.create_tempfile(name, content="\n".join(lines) + "\n"
                                ).full_path

  def test_default_year_reads_month_day_stamps(self):
    path = self.write(["user,item,action,day", "1,10,view,1111",
                       "1,11,buy,1111", "2,10,view,1112"])
    events, _, report = loaders.load_csv(path, default_year=2015,
                                         **self._CONFIG)
    self.assertEqual(events["timestamp"].tolist(),
                     [_ms("2015-11-11 00:00:00")] * 2 +
                     [_ms("2015-11-12 00:00:00")])
    self.assertEqual(report["timestamp_resolution"], "day")
    self.assertIn("user-day", report["session_rule"])

  def test_default_year_needs_a_format_without_year(self):
    path = self.write(["user,item,action,day", "1,10,view,20151111"])
    config = dict(self._CONFIG, timestamp_format="%Y%m%d")
    with self.assertRaisesRegex(ValueError, "default_year=2015 is for a "
                                "timestamp_format without a year"):
      loaders.load_csv(path, default_year=2015, **config)

  def test_february_29_of_a_common_year_is_an_error_naming_the_line(self):
    path = self.write(["user,item,action,day", "1,10,view,0228",
                       "1,10,view,0229"])
    with self.assertRaisesRegex(ValueError, "line 3, column 'day'"):
      loaders.load_csv(path, default_year=2015, **self._CONFIG)
    events, _, _ = loaders.load_csv(path, default_year=2016, **self._CONFIG)
    self.assertEqual(events["timestamp"].tolist()[-1],
                     _ms("2016-02-29 00:00:00"))

  def test_without_default_year_a_month_day_stamp_is_out_of_range(self):
    path = self.write(["user,item,action,day", "1,10,view,1111"])
    with self.assertRaisesRegex(
        ValueError, "line 2.*1970.*has no year.*bind load_csv.default_year"):
      loaders.load_csv(path, **self._CONFIG)

  def test_drop_duplicates_can_be_turned_off(self):
    # Two views of item 10 by user 1 on Nov 11: the same row twice.
    lines = ["user,item,action,day", "1,10,view,1111", "1,10,view,1111",
             "1,11,buy,1111"]
    path = self.write(lines)
    _, _, dropped = loaders.load_csv(path, default_year=2015, **self._CONFIG)
    self.assertEqual(dropped["dropped"], {"duplicate": 1})
    self.assertEqual(dropped["duplicate_key"],
                     ["user", "item", "action", "day"])
    events, _, kept = loaders.load_csv(path, default_year=2015,
                                       drop_duplicates=False, **self._CONFIG)
    self.assertLen(events, 3)
    self.assertEqual(kept["dropped"], {})
    self.assertEqual(kept["duplicate_rows_kept"], 1)
    self.assertEqual(kept["rows_in"], kept["rows_kept"])

  def test_glob_joins_files_in_name_order(self):
    directory = self.create_tempdir()
    header = "user,item,action,day,cat"
    directory.create_file("b.csv", content="\n".join(
        [header, "1,10,buy,1112,x", "2,12,view,1110,"]) + "\n")
    directory.create_file("a.csv", content="\n".join(
        [header, "1,10,view,1111,", "1,11,view,1111,y", "1,11,view,1111,y"])
        + "\n")
    config = dict(self._CONFIG, category_column="cat")
    events, catalog, report = loaders.load_csv(
        f"{directory.full_path}/*.csv", default_year=2015, **config)
    # Time order; the tie at 11-11 keeps a.csv's line order.
    self.assertEqual(list(zip(events["user_id"], events["item_id"])),
                     [(2, 12), (1, 10), (1, 11), (1, 10)])
    self.assertEqual(report["rows_in"], 5)
    self.assertEqual(report["rows_kept"], 4)
    self.assertEqual(report["dropped"], {"duplicate": 1})
    self.assertEqual(sorted(report["files"]),
                     [f"{directory.full_path}/a.csv",
                      f"{directory.full_path}/b.csv"])
    # Item 10 has no category in a.csv, x in b.csv: the known one wins.
    leaves = dict(zip(catalog["item_id"], catalog["leaf"]))
    self.assertEqual(leaves, {12: schema.UNKNOWN_LEAF, 10: "x", 11: "y"})
    self.assertEqual(report["items_unknown_category"], 1)

  def test_glob_without_match_is_an_error(self):
    pattern = self.create_tempdir().full_path + "/*.csv"
    with self.assertRaisesRegex(ValueError, "no file matches"):
      loaders.load_csv(pattern, **self._CONFIG)
