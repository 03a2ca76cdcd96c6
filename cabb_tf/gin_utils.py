"""Gin helpers shared by the experiment binaries: parse, log and record."""

import os
import pathlib
from typing import Any, Callable, Optional, Sequence

from absl import app
from absl import flags
from absl import logging
import gin


# The repository's gin/ directory; gin files include each other relative to
# it (`include 'datasets/synthetic.gin'`).
GIN_DIR = pathlib.Path(__file__).resolve().parents[1] / "gin"


def parse(gin_files: Optional[Sequence[str]],
          gin_bindings: Optional[Sequence[str]]) -> None:
  """Parses gin files and bindings, failing on unknown configurables.

  Files are looked up as given, then relative to the repository's `gin/`.

  Args:
    gin_files: paths of gin files.
    gin_bindings: extra bindings, applied after the files.

  Raises:
    ValueError: naming a gin file that does not exist.
  """
  gin.add_config_file_search_path(str(GIN_DIR))
  files = []
  for name in gin_files or ():
    path = pathlib.Path(name)
    if not path.exists() and (GIN_DIR / name).exists():
      path = GIN_DIR / name
    if not path.exists():
      raise ValueError(f"gin file {name!r} does not exist (looked in the "
                       f"current directory and {GIN_DIR}).")
    files.append(str(path))
  gin.parse_config_files_and_bindings(files, gin_bindings or (),
                                      skip_unknown=False)


def bound(name: str, default: Any = None) -> Any:
  """The gin binding of parameter `name`, or `default` when it is unbound."""
  try:
    return gin.query_parameter(name)
  except ValueError:
    return default


def record(base_dir: str) -> str:
  """Logs the operative gin config and writes it to `base_dir/config.gin`."""
  config = gin.operative_config_str()
  logging.info("Operative gin config:\n%s", config)
  path = os.path.join(base_dir, "config.gin")
  write_text_atomic(path, config)
  return path


def write_text_atomic(path: str, text: str) -> None:
  """Writes `text` to `path` through a temporary file and a rename."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)




def run_binary(entry: Callable[[str], Any]) -> None:
  """The `main` of every experiment binary.

  Defines the only three flags a binary has (`--base_dir`, `--gin_file`,
  `--gin_bindings`), parses gin with unknown names as errors, calls
  `entry(base_dir)` — one gin-configurable library function — and writes
  the operative config to `base_dir/config.gin`.

  Args:
    entry: the library function to call with the base directory.
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
    parse(gin_files.value, gin_bindings.value)
    entry(base_dir.value)
    record(base_dir.value)

  app.run(main)
