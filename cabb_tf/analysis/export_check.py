"""How far a run's export serves from the trained model: training/serving skew.

    python experiments/check_export.py --base_dir=runs/multitask \
        --gin_file=runs/multitask/config.gin

Loads the run's best weights as training scores them (`train.load_best_model`,
ids looked up by `factory.id_lookups`) and its SavedModel (`export/`), feeds
every row of a split to both signatures (docs/serving.md) — `serving_default`
with the record columns as stored, `from_examples` with the split's serialized
records — and writes the largest absolute difference of each head's
probability to `base_dir/export_check.json`. The run's own files are left as
they are (its `config.gin` is not rewritten).
"""

import json
import os
from typing import Any, Dict

from absl import logging
import gin
import numpy as np
import tensorflow as tf

from cabb_tf import input_pipeline
from cabb_tf import train
from cabb_tf.data import report as report_lib
from cabb_tf.datasets import click_examples
from cabb_tf.models import conversion
from cabb_tf.models import factory

RESULT_FILE = "export_check.json"
# What the check reads of a run, and why a run may lack it.
_RUN_FILES = {
    "metrics.json": "a training run writes it when it has finished",
    os.path.join("best", "ckpt.index"): "the best weights",
    os.path.join("export", "saved_model.pb"): "the export; a run with "
                                              "train.run.export = False has "
                                              "none",
}


def check_run_dir(base_dir: str) -> None:
  """Raises a ValueError naming `base_dir` and what of a finished training
  run it lacks (`_RUN_FILES`)."""
  missing = [f"{name} ({why})" for name, why in _RUN_FILES.items()
             if not tf.io.gfile.exists(os.path.join(base_dir, name))]
  if missing:
    raise ValueError(f"{base_dir} is not a run whose export can be checked: "
                     f"it has no {'; no '.join(missing)}.")


@gin.configurable(denylist=["base_dir"])
def run(base_dir: str, split: str = "test",
        batch_size: int = 8192) -> Dict[str, Any]:
  """Compares the export of the run in `base_dir` with its trained model.

  Args:
    base_dir: a training run's directory (with `metrics.json`, `best/` and
      `export/`); parse its `config.gin` first, so that the model and the
      dataset are the run's.
    split: the split whose rows are served.
    batch_size: rows per call of a signature.

  Returns:
    {"rows", "split", "max_abs_diff": {signature: {head: value}}}, also
    written to `base_dir/export_check.json`.

  Raises:
    ValueError: naming `base_dir` and the files it lacks, when it is not a
      finished training run with an export (`check_run_dir`).
  """
  check_run_dir(base_dir)
  with open(os.path.join(base_dir, "metrics.json")) as f:
    task = json.load(f)["task"]
  data = input_pipeline.load_data()
  statistics = data.feature_statistics
  model = train.load_best_model(base_dir, statistics, task)
  columns = input_pipeline.split_columns(data, split)
  trained = conversion.task_outputs(model.predict(
      input_pipeline.model_inputs(columns, factory.input_dtypes(model),
                                  factory.id_lookups(statistics)),
      batch_size=batch_size, verbose=0))
  loaded = tf.saved_model.load(os.path.join(base_dir, "export"))
  serve = loaded.signatures["serving_default"]
  names = list(serve.structured_input_signature[1])
  rows = tf.data.Dataset.from_tensor_slices(
      {name: columns[name] for name in names}).batch(batch_size)
  records = click_examples.serialized_records(data.builder, split).batch(
      batch_size)
  served = {
      "serving_default": [serve(**batch) for batch in rows],
      "from_examples": [loaded.signatures["from_examples"](examples=batch)
                        for batch in records],
  }
  result = {"rows": int(len(next(iter(trained.values())))), "split": split,
            "max_abs_diff": {}}
  for signature, outputs in served.items():
    result["max_abs_diff"][signature] = {
        head: float(np.max(np.abs(
            np.concatenate([out[head].numpy() for out in outputs]) -
            np.asarray(trained[head]).reshape(-1))))
        for head in ("caba", "cabb")}
  report_lib.write_json(result, os.path.join(base_dir, RESULT_FILE))
  logging.info("Export check of %s: %s", base_dir, json.dumps(result))
  print(json.dumps(result, indent=1))
  return result
