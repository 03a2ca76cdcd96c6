"""Gin helpers shared by the experiment binaries: parse, log and record.

`run_binary` also reports the bindings a run never read (`unused_bindings`):
a binding of your own gin file or `--gin_bindings` that no function read is
a warning naming it, its file and line. Read means: the function was called
with the parameter taken from gin (gin's operative config), or the binding
was checked against a prepared dataset that the run reused instead of
calling the function (`mark_read`). The package's own gin files (under
`gin/`) are written for several binaries (`gin/datasets/taobao.gin` binds
both the TFDS dataset train.py reads and the loader prepare_data.py calls),
so what they bind and a run does not read is logged at INFO only.
"""

import collections
import logging as std_logging
import os
import pathlib
import pickle
import threading
from typing import (Any, Callable, Dict, Iterable, List, Mapping, Optional,
                    Sequence, Tuple)

from absl import app
from absl import flags
from absl import logging
import gin
from gin import config_parser

from cabb_tf import logs
from cabb_tf import version


# The directory of the cabb_tf package that runs (`run_binary` logs it).
PACKAGE_DIR = pathlib.Path(__file__).resolve().parent
# The package's gin files; they include each other relative to this
# directory (`include 'datasets/synthetic.gin'`). They ship inside the
# package, so an installed cabb_tf finds them by name from any directory;
# `gin/` of a checkout links here.
GIN_DIR = PACKAGE_DIR / "configs"


class _GinLookupNoise(std_logging.Filter):
  """Drops gin's "Path not found" errors.

  For an `include`, gin tries each search path in turn, and its reader of
  files inside Python packages logs an ERROR for each place where a file is
  not; the package's own includes are found in `GIN_DIR` right after. A file
  found nowhere still fails the parse, with gin's exception.
  """

  def filter(self, record: std_logging.LogRecord) -> bool:
    return not (record.pathname.endswith(os.path.join("gin",
                                                      "resource_reader.py"))
                and str(record.msg).startswith("Path not found"))


_NOISE_FILTER = _GinLookupNoise()


def find_gin_file(name: str) -> Optional[pathlib.Path]:
  """A gin file named as given, else one of the package's: `multitask.gin`,
  `datasets/taobao.gin`, or the checkout's spelling `gin/multitask.gin`
  from any directory. None if there is none."""
  path = pathlib.Path(name)
  if path.exists():
    return path
  parts = path.parts
  for relative in (path, pathlib.Path(*parts[1:]) if len(parts) > 1 and
                   parts[0] == "gin" else None):
    if relative is not None and not relative.is_absolute() and (
        GIN_DIR / relative).exists():
      return GIN_DIR / relative
  return None


def parse(gin_files: Optional[Sequence[str]],
          gin_bindings: Optional[Sequence[str]]) -> None:
  """Parses gin files and bindings, failing on unknown configurables.

  Files are looked up as given, then among the package's (`find_gin_file`).

  Args:
    gin_files: paths of gin files.
    gin_bindings: extra bindings, applied after the files.

  Raises:
    ValueError: naming a gin file that does not exist.
  """
  gin.add_config_file_search_path(str(GIN_DIR))
  # gin's reader logs through the root logger.
  std_logging.getLogger().addFilter(_NOISE_FILTER)  # once: a set
  files = []
  for name in gin_files or ():
    path = find_gin_file(name)
    if path is None:
      raise ValueError(f"gin file {name!r} does not exist (looked in the "
                       f"current directory and {GIN_DIR}).")
    files.append(str(path))
  gin.parse_config_files_and_bindings(files, gin_bindings or (),
                                      skip_unknown=False)
  _PARSED.clear()
  _PARSED.extend([("file", f) for f in files] +
                 [("binding", b) for b in gin_bindings or ()])


# What the last `parse` read, for `unused_bindings`: ("file", path) or
# ("binding", text), in order.
_PARSED: List[Tuple[str, str]] = []
# Bindings checked against a reused dataset build: {(selector, parameter):
# why}, filled by `mark_read`.
_MARKED_READ: Dict[Tuple[str, str], str] = {}
_MARKED_READ_LOCK = threading.Lock()

# A binding: (scope, complete selector, parameter).
BindingKey = Tuple[str, str, str]


def mark_read(keys: Iterable[str], why: str) -> None:
  """Records bindings as read although no function read them in this run.

  A dataset build that is reused does not call the loader and preparation
  functions whose bindings shaped it; once those bindings are checked
  against the build's record, they count as read.

  Args:
    keys: "module.function.parameter" of unscoped bindings.
    why: what checked them (for the log), e.g. the dataset directory.
  """
  with _MARKED_READ_LOCK:
    for key in keys:
      selector, _, parameter = str(key).rpartition(".")
      try:
        selector = gin.config.ParsedBindingKey.parse(
            ("", selector, parameter)).complete_selector
      except ValueError:
        pass
      _MARKED_READ[(selector, parameter)] = why


def clear_marks() -> None:
  """Forgets `mark_read` records (for tests and repeated runs)."""
  with _MARKED_READ_LOCK:
    _MARKED_READ.clear()


def _binding_locations(parsed: Sequence[Tuple[str, str]]
                       ) -> Dict[BindingKey, str]:
  """Where each binding was last set: "file:line" or "--gin_bindings".

  Follows `include`s the way gin does (as given, then in `gin/`); macros
  (`NAME = value`) are left out.
  """
  locations: Dict[BindingKey, str] = {}
  delegate = gin.config.ParserDelegate(skip_unknown=True)

  def statements(text, filename):
    parser = config_parser.ConfigParser(text, delegate)
    parser._filename = filename  # pylint: disable=protected-access
    for statement in parser:
      yield statement

  def visit(text, filename, where):
    for statement in statements(text, filename):
      if isinstance(statement, config_parser.IncludeStatement):
        visit_file(statement.filename)
      elif isinstance(statement, config_parser.BindingStatement):
        if statement.selector.endswith("macro") or not statement.arg_name:
          continue
        try:
          key = gin.config.ParsedBindingKey.parse(
              (statement.scope, statement.selector, statement.arg_name))
        except ValueError:
          continue
        line = statement.location.line_num
        locations[(key.scope, key.complete_selector, key.arg_name)] = (
            f"{where}:{line}" if where != "--gin_bindings" else where)

  def visit_file(name):
    path = find_gin_file(name)
    if path is None:
      return
    visit(path.read_text(), str(path), str(path.resolve()))

  for kind, value in parsed:
    if kind == "file":
      visit_file(value)
    else:
      visit(value, "--gin_bindings", "--gin_bindings")
  return locations


def _read_in_run() -> Dict[str, List[Tuple[str, set]]]:
  """{selector: [(call scope, parameters gin supplied)]}: gin's record."""
  read = collections.defaultdict(list)
  # pylint: disable=protected-access
  with gin.config._OPERATIVE_CONFIG_LOCK:
    for (scope, selector), values in gin.config._OPERATIVE_CONFIG.items():
      read[selector].append((scope, set(values)))
  # pylint: enable=protected-access
  return read


def operative_records() -> Dict[Tuple[str, str], Dict[str, Any]]:
  """What this process's calls read from gin, to send to another process.

  {(scope, selector): {parameter: value}}, gin's own record, with the
  values that cannot be pickled left out (their names still count as read).
  """
  out = {}
  # pylint: disable=protected-access
  with gin.config._OPERATIVE_CONFIG_LOCK:
    items = [(key, dict(values))
             for key, values in gin.config._OPERATIVE_CONFIG.items()]
  # pylint: enable=protected-access
  for key, values in items:
    kept = {}
    for name, value in values.items():
      try:
        pickle.dumps(value)
      except Exception:  # pylint: disable=broad-except
        value = repr(value)
      kept[name] = value
    out[key] = kept
  return out


def merge_operative(records: Mapping[Tuple[str, str], Mapping[str, Any]]
                    ) -> None:
  """Adds another process's `operative_records` to this one's, so that
  `record` writes and `unused_bindings` sees what the workers read."""
  # pylint: disable=protected-access
  with gin.config._OPERATIVE_CONFIG_LOCK:
    for key, values in records.items():
      gin.config._OPERATIVE_CONFIG.setdefault(key, {}).update(values)
  # pylint: enable=protected-access


def _scope_applies(binding_scope: str, call_scope: str) -> bool:
  """Whether a binding in `binding_scope` applies to a call in `call_scope`."""
  if not binding_scope:
    return True
  outer, inner = binding_scope.split("/"), call_scope.split("/")
  return inner[:len(outer)] == outer


def unused_bindings(parsed: Optional[Sequence[Tuple[str, str]]] = None
                    ) -> Dict[BindingKey, str]:
  """The bindings of the parsed gin config that nothing read.

  Args:
    parsed: what was parsed, as `parse` records it (default: the last
      `parse`).

  Returns:
    {(scope, selector, parameter): "file:line" or "--gin_bindings"} of each
    binding that no call read (gin's operative config) and `mark_read` did
    not record.
  """
  locations = _binding_locations(_PARSED if parsed is None else parsed)
  read = _read_in_run()
  with _MARKED_READ_LOCK:
    marked = dict(_MARKED_READ)
  out = {}
  for key, where in locations.items():
    scope, selector, parameter = key
    if any(parameter in names and _scope_applies(scope, call_scope)
           for call_scope, names in read.get(selector, ())):
      continue
    if not scope and (selector, parameter) in marked:
      continue
    out[key] = where
  return out


def _is_package_file(where: str) -> bool:
  path = where.rpartition(":")[0]
  try:
    return pathlib.Path(path).resolve().is_relative_to(GIN_DIR)
  except (OSError, ValueError):
    return False


def report_unused_bindings() -> List[str]:
  """Logs the bindings nothing read; returns the warned ones as text.

  Bindings from your own files and `--gin_bindings` are a warning; those of
  the package's `gin/` files (written for several binaries) an INFO line.
  """
  unused = unused_bindings()
  warned, quiet = [], []
  for (scope, selector, parameter), where in sorted(unused.items()):
    text = (f"{scope + '/' if scope else ''}{selector}.{parameter} "
            f"({where})")
    (quiet if _is_package_file(where) else warned).append(text)
  if quiet:
    logging.info("Bindings of the package's gin files that this binary does "
                 "not read (they serve other binaries): %s", "; ".join(quiet))
  if warned:
    logging.warning(
        "%d gin binding(s) were NEVER READ by this run, so they had no "
        "effect: %s. Check that the functions they configure are part of "
        "this binary (e.g. load_csv is read by the session_log dataset, "
        "gin/datasets/session_log.gin, or by prepare_data.py, not by "
        "train.py on another dataset).", len(warned), "; ".join(warned))
  return warned


def bound(name: str, default: Any = None) -> Any:
  """The gin binding of parameter `name`, or `default` when it is unbound.

  A macro (`simulate.signal_scale = %PAPER_SIGNAL_SCALE`) is resolved to its
  value; other references (`@fn`) are returned as they are.
  """
  try:
    value = gin.query_parameter(name)
  except ValueError:
    return default
  if (isinstance(value, gin.config.ConfigurableReference)
      and getattr(value.configurable, "name", None) == "macro"):
    return value.scoped_configurable_fn()
  return value


def record(base_dir: str) -> str:
  """Writes the operative gin config to `base_dir/config.gin`.

  The log names the file; the config itself is logged only at debug
  verbosity (`--verbosity=1`): it is in the file, and a reproduction of
  many runs would otherwise print it once or twice per run.
  """
  config = gin.operative_config_str()
  path = os.path.join(base_dir, "config.gin")
  write_text_atomic(path, config)
  logging.info("Operative gin config written to %s", path)
  logging.debug("Operative gin config:\n%s", config)
  return path


def write_text_atomic(path: str, text: str) -> None:
  """Writes `text` to `path` through a temporary file and a rename.

  The temporary file is the process's own, so that processes writing the
  same path at once do not take each other's.
  """
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp.{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def run_binary(entry: Callable[[str], Any], record_config: bool = True,
               default_verbosity: Optional[int] = None,
               report_unused: bool = True) -> None:
  """The `main` of every experiment binary.

  Defines the only three flags a binary has (`--base_dir`, `--gin_file`,
  `--gin_bindings`), logs which cabb_tf runs (its version and directory),
  parses gin with unknown names as errors, calls `entry(base_dir)` — one
  gin-configurable library function — writes the operative config to
  `base_dir/config.gin` (`record`) and warns about the bindings the run
  never read (`report_unused_bindings`).

  Other libraries' log lines below ERROR, TensorFlow's C++ log and TFDS'
  progress bars are shown from `--verbosity=1` only (`logs`).

  Args:
    entry: the library function to call with the base directory.
    record_config: write `config.gin`; False for an entry that records it
      itself (`train.run`, whose chief alone writes `base_dir`) or that
      reads another run's directory and must leave it as it is
      (`analysis.export_check.run`).
    default_verbosity: absl's `--verbosity` when the command line gives none
      (None: absl's INFO).
    report_unused: warn about bindings never read; False for an entry that
      is given another run's whole `config.gin` and reads only part of it
      (`analysis.export_check.run`: the model and the data, not training).
  """
  base_dir = flags.DEFINE_string("base_dir", None, "Output directory.",
                                 required=True)
  gin_files = flags.DEFINE_multi_string(
      "gin_file", [], "Gin config files, looked up as given and in gin/.")
  gin_bindings = flags.DEFINE_multi_string("gin_bindings", [],
                                           "Gin bindings, applied last.")

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if default_verbosity is not None and not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(default_verbosity)
    logs.quiet_libraries(logging.get_verbosity())
    logging.info("cabb_tf %s from %s", version.__version__, PACKAGE_DIR)
    parse(gin_files.value, gin_bindings.value)
    entry(base_dir.value)
    if record_config:
      record(base_dir.value)
    if not report_unused:
      return
    try:
      report_unused_bindings()
    except Exception as e:  # pylint: disable=broad-except
      # The run is done and recorded; a failed check must not undo that.
      logging.warning("Could not check for unused gin bindings: %r", e)

  app.run(main)
