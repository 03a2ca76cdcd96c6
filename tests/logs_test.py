"""Tests of what a run prints (cabb_tf/logs.py)."""

import contextlib
import io
import logging as std_logging
import os
import subprocess
import sys

from absl.testing import absltest

from cabb_tf import logs


class VerbosityTest(absltest.TestCase):

  def test_verbosity_in_a_command_line(self):
    self.assertEqual(logs.verbosity_in(["x", "--verbosity=1"]), 1)
    self.assertEqual(logs.verbosity_in(["x", "-v=2"]), 2)
    self.assertEqual(logs.verbosity_in(["x", "--verbosity", "-1"]), -1)
    self.assertIsNone(logs.verbosity_in(["x", "--base_dir=/v=1"]))
    self.assertIsNone(logs.verbosity_in(["x", "--verbosity"]))

  def test_native_level(self):
    self.assertEqual(logs.native_level(["x"], {}), logs.QUIET_NATIVE_LEVEL)
    self.assertEqual(logs.native_level(["x", "--verbosity=0"], {}),
                     logs.QUIET_NATIVE_LEVEL)
    # Asked for, or set by the user: TensorFlow's own level is kept.
    self.assertIsNone(logs.native_level(["x", "--verbosity=1"], {}))
    self.assertIsNone(logs.native_level(["x"], {"TF_CPP_MIN_LOG_LEVEL": "0"}))


class LibraryFilterTest(absltest.TestCase):

  def _record(self, path, level):
    return std_logging.LogRecord("absl", level, path, 1, "m", None, None)

  def test_package_lines_and_other_errors_pass(self):
    package = os.path.join(os.path.dirname(logs.__file__), "train.py")
    other = os.path.join(os.path.dirname(std_logging.__file__), "x.py")
    keep = logs._LIBRARY_FILTER.filter  # pylint: disable=protected-access
    self.assertTrue(keep(self._record(package, std_logging.INFO)))
    self.assertTrue(keep(self._record(other, std_logging.ERROR)))
    self.assertFalse(keep(self._record(other, std_logging.WARNING)))
    self.assertFalse(keep(self._record(other, std_logging.INFO)))

  def test_quiet_then_loud(self):
    from absl import logging  # pylint: disable=g-import-not-at-top
    handler = logging.get_absl_handler()
    logs.quiet_libraries(0)
    self.assertIn(logs._LIBRARY_FILTER, handler.filters)  # pylint: disable=protected-access
    logs.quiet_libraries(logs.LOUD)
    self.assertNotIn(logs._LIBRARY_FILTER, handler.filters)  # pylint: disable=protected-access


class QuietStdoutTest(absltest.TestCase):

  def test_prints_kept_out_unless_loud(self):
    from absl import logging  # pylint: disable=g-import-not-at-top
    # Restores the logger's own level (NOTSET under pytest: it follows the
    # root's), which set_verbosity(get_verbosity()) would pin instead.
    absl_logger = std_logging.getLogger("absl")
    self.addCleanup(absl_logger.setLevel, absl_logger.level)
    for verbosity, expected in ((logging.WARNING, ""), (0, ""),
                                (logs.LOUD, "shown\n")):
      logging.set_verbosity(verbosity)
      out = io.StringIO()
      with contextlib.redirect_stdout(out):
        with logs.quiet_stdout():
          print("shown")
      self.assertEqual(out.getvalue(), expected, verbosity)


class NativeStderrTest(absltest.TestCase):

  def test_descriptor_2_is_muted_only_inside(self):
    # A child process writes to descriptor 2 inside and outside the block.
    code = (
        "import os, sys\n"
        "from cabb_tf import logs\n"
        "with logs.native_stderr_muted(True):\n"
        "  os.write(2, b'inside\\n')\n"
        "os.write(2, b'after\\n')\n"
        "with logs.native_stderr_muted(False):\n"
        "  os.write(2, b'unmuted\\n')\n"
        "try:\n"
        "  with logs.native_stderr_muted(True):\n"
        "    raise KeyError('raised')\n"
        "except KeyError:\n"
        "  os.write(2, b'restored\\n')\n")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          env=env, check=True)
    self.assertEqual(done.stderr.decode().split(), ["after", "unmuted",
                                                    "restored"])

  def test_importing_the_package_prints_nothing(self):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    quiet = subprocess.run(
        [sys.executable, "-c", "import cabb_tf, tensorflow as tf; "
         "tf.constant(1).numpy()"], capture_output=True, env=env, check=True)
    self.assertEqual(quiet.stderr.decode(), "")
    loud = subprocess.run(
        [sys.executable, "-c", "import sys; sys.argv += ['--verbosity=1']; "
         "import cabb_tf, os; print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'))"],
        capture_output=True, env=env, check=True, text=True)
    self.assertEqual(loud.stdout.strip(), "None")


if __name__ == "__main__":
  absltest.main()
