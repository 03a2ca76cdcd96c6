"""Tests for `cabb_tf.gin_utils`: parsing and the report of unused bindings."""

import logging
import os
import re

import gin
import tensorflow as tf

from cabb_tf import gin_utils
import cabb_tf.data.loaders  # pylint: disable=unused-import  (gin names)
import cabb_tf.data.pipeline  # pylint: disable=unused-import  (gin names)


@gin.configurable
def _entry(x: int = 1, y: int = 2) -> int:
  return x + y


@gin.configurable
def _helper(z: int = 0) -> int:
  return z


class UnusedBindingsTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    gin.clear_config()
    gin_utils.clear_marks()
    self.addCleanup(gin.clear_config)
    self.addCleanup(gin_utils.clear_marks)

  def _user_file(self, text):
    return self.create_tempfile("my.gin", content=text).full_path

  def test_a_binding_nobody_reads_is_a_warning_with_its_line(self):
    path = self._user_file(
        "import cabb_tf.data.loaders\n"
        "_entry.x = 5\n"
        "loaders.load_csv.path = '/data/log.csv'\n"
        "prepare_to_dir.source = @loaders.load_csv\n")
    gin_utils.parse([path], ["_helper.z = 3"])
    self.assertEqual(_entry(), 7)  # Reads _entry.x; nothing calls the rest.
    with self.assertLogs(level="WARNING") as logs:
      warned = gin_utils.report_unused_bindings()
    self.assertEqual(warned, [
        f"cabb_tf.data.loaders.load_csv.path ({path}:3)",
        f"cabb_tf.data.pipeline.prepare_to_dir.source ({path}:4)",
        "tests.gin_utils_test._helper.z (--gin_bindings)",
    ])
    self.assertIn("NEVER READ", logs.output[0])

  def test_an_argument_passed_explicitly_leaves_its_binding_unread(self):
    gin_utils.parse([], ["_entry.x = 5", "_entry.y = 6"])
    self.assertEqual(_entry(x=1), 7)
    self.assertEqual(set(gin_utils.unused_bindings()),
                     {("", "tests.gin_utils_test._entry", "x")})

  def test_scoped_binding_is_read_in_its_scope_only(self):
    gin_utils.parse([], ["outer/_entry.x = 5", "other/_entry.y = 1"])
    with gin.config_scope("outer"):
      self.assertEqual(_entry(), 7)
    self.assertEqual(set(gin_utils.unused_bindings()),
                     {("other", "tests.gin_utils_test._entry", "y")})

  def test_marked_read_bindings_are_not_reported(self):
    gin_utils.parse([], ["loaders.load_csv.path = '/data/log.csv'"])
    self.assertLen(gin_utils.unused_bindings(), 1)
    gin_utils.mark_read(["cabb_tf.data.loaders.load_csv.path"],
                        why="compared with a build")
    self.assertEqual(gin_utils.unused_bindings(), {})

  def test_package_files_serving_other_binaries_are_quiet(self):
    # train.py on the simulator: base.gin includes datasets/synthetic.gin,
    # whose prepare_to_dir bindings are for prepare_data.py.
    gin_utils.parse(["gin/datasets/synthetic.gin"], [])
    unused = gin_utils.unused_bindings()
    self.assertIn(("", "cabb_tf.data.pipeline.prepare_to_dir", "source"),
                  unused)
    self.assertTrue(all(where.startswith(str(gin_utils.GIN_DIR))
                        for where in unused.values()))
    self.assertEqual(gin_utils.report_unused_bindings(), [])

  def test_package_files_are_found_by_name_from_any_directory(self):
    elsewhere = self.create_tempdir().full_path
    old = os.getcwd()
    os.chdir(elsewhere)
    try:
      for name in ("multitask.gin", "gin/multitask.gin",
                   "datasets/taobao.gin", "gin/datasets/taobao.gin"):
        self.assertEqual(gin_utils.find_gin_file(name),
                         gin_utils.GIN_DIR / name.removeprefix("gin/"))
      self.assertIsNone(gin_utils.find_gin_file("gin/nothing.gin"))
      self.assertIsNone(gin_utils.find_gin_file("/gin/multitask.gin"))
      # A file of the directory comes before the package's.
      with open("multitask.gin", "w") as f:
        f.write("")
      self.assertEqual(str(gin_utils.find_gin_file("multitask.gin")),
                       "multitask.gin")
      gin_utils.parse(["gin/multitask.gin"], [])
    finally:
      os.chdir(old)

  def test_shipped_files_bind_no_path_outside_the_package(self):
    # An installed package's user has no checkout around it: a path bound by
    # a shipped gin file would point at nothing (docs/loading.md, "Public
    # logs"). Paths are quoted strings holding a slash.
    paths = []
    for gin_file in sorted(gin_utils.GIN_DIR.rglob("*.gin")):
      for number, line in enumerate(gin_file.read_text().splitlines(), 1):
        if line.startswith(("#", "include")):
          continue
        for quoted in re.findall(r"'([^']*)'", line):
          if "/" in quoted and not re.fullmatch(r"[\w]+/[\w]+", quoted):
            paths.append(f"{gin_file.name}:{number}: {quoted}")
    self.assertEqual(paths, [])

  def test_public_log_files_ask_for_the_raw_file(self):
    for gin_file, loader, dataset in (
        ("datasets/taobao.gin", cabb_tf.data.loaders.load_taobao,
         "taobao_user_behavior/head_sample"),
        ("datasets/rees46.gin", cabb_tf.data.loaders.load_rees46,
         "rees46/oct_2019_head")):
      gin.clear_config()
      gin_utils.parse([gin_file], [])
      self.assertEqual(gin.query_parameter("load_data.name"), dataset)
      with self.assertRaisesRegex(TypeError, "'path'"):
        loader()
      gin.clear_config()
      gin_utils.parse([gin_file], [f"{loader.__name__}.path = '/data/x.csv'"])
      with self.assertRaisesRegex(ValueError, "/data/x.csv: no such file"):
        loader()

  def test_includes_found_in_the_package_log_no_errors(self):
    with self.assertLogs(level="INFO") as logs:  # the root logger
      logging.info("parsing")  # assertLogs needs a record
      gin_utils.parse(["multitask.gin"], [])
    self.assertEqual([r.getMessage() for r in logs.records
                      if r.levelname == "ERROR"], [])
    # A file that is nowhere still fails the parse.
    path = self._user_file("include 'no_such_file.gin'\n")
    with self.assertRaisesRegex(IOError, "no_such_file.gin"):
      gin_utils.parse([path], [])

  def test_record_writes_the_config_and_logs_only_its_path(self):
    gin_utils.parse([], ["_entry.x = 5"])
    _entry()
    base_dir = self.create_tempdir().full_path
    # On absl's own logger: another test in the process may have set its
    # level (absl.logging.set_verbosity), which the root's would not undo.
    with self.assertLogs(logger="absl", level="DEBUG") as logs:
      path = gin_utils.record(base_dir)
    with open(path) as f:
      self.assertIn("_entry.x = 5", f.read())
    info = [r.getMessage() for r in logs.records if r.levelname == "INFO"]
    self.assertEqual(info, [f"Operative gin config written to {path}"])
    debug = [r.getMessage() for r in logs.records if r.levelname == "DEBUG"]
    self.assertTrue(any("_entry.x = 5" in m for m in debug), debug)

  def test_macros_are_not_bindings(self):
    path = self._user_file("N = 4\n_entry.x = %N\n")
    gin_utils.parse([path], [])
    self.assertEqual(_entry(), 6)
    self.assertEqual(gin_utils.unused_bindings(), {})


class WriteTextAtomicTest(tf.test.TestCase):

  def test_another_writers_temporary_file_is_left_alone(self):
    directory = self.create_tempdir().full_path
    path = os.path.join(directory, "config.gin")
    # Another process (another worker of a cluster) is writing the same file.
    theirs = path + ".tmp"
    with open(theirs, "w") as f:
      f.write("theirs")
    gin_utils.write_text_atomic(path, "ours")
    with open(path) as f:
      self.assertEqual(f.read(), "ours")
    with open(theirs) as f:
      self.assertEqual(f.read(), "theirs")
    self.assertCountEqual(os.listdir(directory), ["config.gin",
                                                  "config.gin.tmp"])


class BoundTest(tf.test.TestCase):

  def tearDown(self):
    gin.clear_config()
    super().tearDown()

  def test_macros_resolve_and_references_stay(self):
    gin.parse_config(["import cabb_tf.data.simulator",
                      "import cabb_tf.data.sources",
                      "SCALE = 4.0",
                      "simulate.signal_scale = %SCALE",
                      "simulate.seed = 3"])
    self.assertEqual(gin_utils.bound("simulate.signal_scale"), 4.0)
    self.assertEqual(gin_utils.bound("simulate.seed"), 3)
    self.assertEqual(gin_utils.bound("simulate.num_days", "unset"), "unset")


if __name__ == "__main__":
  tf.test.main()
