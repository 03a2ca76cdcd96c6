"""The package's layers (docs/architecture.md): no import goes upward.

Every module of `cabb_tf` is put in a layer by its path, and every
`cabb_tf` import found in its source (at any depth: function-level imports
count) must name a module of the same or a lower layer. No module assigns
another object's `train_step`: the conversion model's is the only step.
"""

import ast
import os
import unittest

import cabb_tf

PACKAGE_DIR = os.path.dirname(cabb_tf.__file__)

# Lowest first. A module's layer is the first rule its dotted name matches:
# an exact name, or a package prefix ending in '.'.
LAYERS = (
    ("base", ("cabb_tf", "cabb_tf._keras_check", "cabb_tf.version",
              "cabb_tf.files", "cabb_tf.gin_utils", "cabb_tf.logs",
              "cabb_tf.metrics", "cabb_tf.calibration", "cabb_tf.figures")),
    ("data", ("cabb_tf.data.",)),
    ("similarity", ("cabb_tf.similarity.",)),
    ("pipelines", ("cabb_tf.pipelines.",)),
    ("datasets", ("cabb_tf.datasets.",)),
    ("inputs", ("cabb_tf.inputs.", "cabb_tf.input_pipeline")),
    ("models", ("cabb_tf.models.",)),
    ("training", ("cabb_tf.train", "cabb_tf.train_benchmark",
                  "cabb_tf.distribute", "cabb_tf.calibrate_signal",
                  "cabb_tf.summaries")),
    ("analysis", ("cabb_tf.analysis.",)),
    ("experiments", ("cabb_tf.parallel", "cabb_tf.reproduce", "cabb_tf.cli")),
)


def layer_of(module: str) -> int:
  """The index in `LAYERS` of a dotted module name."""
  for index, (_, rules) in enumerate(LAYERS):
    for rule in rules:
      if module == rule or (rule.endswith(".") and (
          module.startswith(rule) or module == rule[:-1])):
        return index
  raise KeyError(f"{module} is in no layer: add it to LAYERS "
                 "(and to docs/architecture.md).")


def _modules():
  """(dotted name, path) of every module of the package."""
  root = os.path.dirname(PACKAGE_DIR)
  for directory, _, names in os.walk(PACKAGE_DIR):
    for name in sorted(names):
      if name.endswith(".py"):
        path = os.path.join(directory, name)
        dotted = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
        yield dotted.removesuffix(".__init__"), path


def _imported(tree: ast.AST, importer: str):
  """The `cabb_tf` modules (or module.attribute names) a module imports."""
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name.startswith("cabb_tf"):
          yield node.lineno, alias.name
    elif isinstance(node, ast.ImportFrom):
      module = node.module or ""
      if node.level:  # relative: resolve against the importer's package
        base = importer.split(".")[:-node.level]
        module = ".".join(base + ([module] if module else []))
      if module.startswith("cabb_tf"):
        for alias in node.names:
          yield node.lineno, f"{module}.{alias.name}"


def _target_layer(name: str) -> int:
  """The layer of an imported name: the module itself or its parent."""
  try:
    return layer_of(name)
  except KeyError:
    return layer_of(name.rpartition(".")[0])


class ImportLayersTest(unittest.TestCase):

  def test_layer_of_by_hand(self):
    self.assertEqual(LAYERS[layer_of("cabb_tf.metrics")][0], "base")
    self.assertEqual(LAYERS[layer_of("cabb_tf.inputs.weighting")][0],
                     "inputs")
    self.assertEqual(LAYERS[layer_of("cabb_tf.analysis")][0], "analysis")
    # The online features are the data layer's: below everything that
    # trains or serves a model, so a serving system needs none of it.
    self.assertEqual(LAYERS[layer_of("cabb_tf.data.online")][0], "data")
    self.assertEqual(_target_layer("cabb_tf.models.factory.build_model"),
                     layer_of("cabb_tf.models.factory"))
    # An upward import is caught: analysis is above similarity.
    self.assertGreater(layer_of("cabb_tf.analysis.plots"),
                       layer_of("cabb_tf.similarity.category_cf"))
    with self.assertRaises(KeyError):
      layer_of("cabb_tf.somewhere_new")

  def test_no_import_goes_to_a_higher_layer(self):
    upward = []
    count = 0
    for module, path in _modules():
      with open(path) as f:
        tree = ast.parse(f.read(), path)
      own = layer_of(module)
      for line, name in _imported(tree, module):
        count += 1
        target = _target_layer(name)
        if target > own:
          upward.append(f"{path}:{line}: {module} ({LAYERS[own][0]}) "
                        f"imports {name} ({LAYERS[target][0]})")
    self.assertGreater(count, 100)  # the walk saw the package's imports
    self.assertEqual(upward, [])

  def test_no_module_replaces_a_train_step(self):
    found = []
    for _, path in _modules():
      with open(path) as f:
        tree = ast.parse(f.read(), path)
      for node in ast.walk(tree):
        targets = (node.targets if isinstance(node, ast.Assign) else
                   [node.target] if isinstance(node, (ast.AnnAssign,
                                                      ast.AugAssign)) else [])
        for target in targets:
          if isinstance(target, ast.Attribute) and target.attr in (
              "train_step", "test_step", "predict_step"):
            found.append(f"{path}:{node.lineno}")
    self.assertEqual(found, [])


if __name__ == "__main__":
  unittest.main()
