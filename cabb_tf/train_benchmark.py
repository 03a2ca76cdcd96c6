"""Benchmark of training throughput: the real input pipeline vs memory.

For each batch size, the default multitask model is trained for a fixed
number of steps fed (a) by the package's pipeline — the TFDS split read into
memory as columns with α attached by the weighting table, shuffled index
batches from tf.data, the rows gathered inside the train step (what
`train.run` uses) — and (b) by one batch of tensors already in memory,
repeated, which costs no input work at all: the model-bound ceiling. The
ratio (a)/(b) says how much the input pipeline slows training. Each
measurement is the median of several timed windows after a warm-up. The
run also times training the default multitask model to early stopping.
"""

import os
import time
from typing import Any, Dict, List, Sequence

from absl import logging
import gin
import numpy as np
import tensorflow as tf

from cabb_tf import input_pipeline
from cabb_tf import losses
from cabb_tf import train
from cabb_tf.data import report as report_lib
from cabb_tf.models import factory
from cabb_tf.similarity import weighting


def _model(statistics):
  tf.keras.backend.clear_session()
  tf.keras.utils.set_random_seed(0)
  model = factory.build_model(statistics)
  config = losses.multitask_losses()
  model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), **config)
  return model


def _steps_per_second(model, dataset: tf.data.Dataset, steps: int,
                      windows: int) -> float:
  """Median steps/s of `windows` timed windows of `steps` steps each."""
  iterator = iter(dataset)
  train_function = model.make_train_function()
  for _ in range(max(5, steps // 5)):  # warm-up: tracing, cache, buffers
    train_function(iterator)
  rates = []
  for _ in range(windows):
    start = time.perf_counter()
    for _ in range(steps):
      logs = train_function(iterator)
    float(logs["loss"])  # wait for the last step
    rates.append(steps / (time.perf_counter() - start))
  return float(np.median(rates))


@gin.configurable(denylist=["base_dir"])
def run(base_dir: str,
        batch_sizes: Sequence[int] = (1024, 4096, 16384),
        steps: int = 30,
        windows: int = 3,
        weighting_scheme: str = "taxonomy_cf",
        time_to_early_stopping: bool = True) -> Dict[str, Any]:
  """Measures training examples/s from the pipeline and from memory.

  Args:
    base_dir: where `benchmark_training.json` / `.md` (and the early-stopping
      run) go.
    batch_sizes: batch sizes to measure.
    steps: steps per timed window.
    windows: timed windows per measurement (the median is reported).
    weighting_scheme: the scheme whose α lookup is in the pipeline.
    time_to_early_stopping: also train the default multitask model to early
      stopping (gin's `train.run` settings) and report its wall time.

  Returns:
    The measurements.
  """
  data = input_pipeline.load_data()
  statistics = data.feature_statistics
  alpha_fn = weighting.make_alpha_fn(weighting_scheme, data.builder)
  example_fn = input_pipeline.make_example_fn(
      "multitask", factory.input_dtypes(_model(statistics)), alpha_fn)
  columns = input_pipeline.prepare_columns(
      input_pipeline.to_columns(data.train), example_fn)
  results: List[Dict[str, Any]] = []
  for batch_size in batch_sizes:
    indices = input_pipeline.index_batches(
        input_pipeline.num_rows(columns), batch_size, 0,
        drop_remainder=True).repeat()
    one_batch = input_pipeline.row_gatherer(columns)(next(iter(indices)))
    in_memory = tf.data.Dataset.from_tensors(one_batch).repeat()
    model = _model(statistics)
    input_pipeline.train_on_indices(model, columns)
    rate_pipeline = _steps_per_second(model, indices, steps,
                                      windows) * batch_size
    rate_memory = _steps_per_second(_model(statistics), in_memory, steps,
                                    windows) * batch_size
    result = {"batch_size": batch_size,
              "pipeline_examples_per_s": rate_pipeline,
              "in_memory_examples_per_s": rate_memory,
              "ratio": rate_pipeline / rate_memory}
    logging.info("%s", result)
    results.append(result)
  out: Dict[str, Any] = {"dataset": data.builder.info.full_name,
                         "train_rows": data.num_examples["train"],
                         "cpu_count": os.cpu_count(), "results": results}
  if time_to_early_stopping:
    start = time.perf_counter()
    metrics = train.run(os.path.join(base_dir, "early_stopping_run"),
                        export=False)
    out["early_stopping"] = {"wall_time_s": time.perf_counter() - start,
                             "test_metrics": metrics}
  report_lib.write_json(out, os.path.join(base_dir,
                                          "benchmark_training.json"))
  table = markdown_table(out)
  with open(os.path.join(base_dir, "benchmark_training.md"), "w") as f:
    f.write(table)
  print(table)
  return out


def markdown_table(out: Dict[str, Any]) -> str:
  """The measurements as a markdown table."""
  lines = [f"Dataset {out['dataset']} ({out['train_rows']:,} training rows), "
           f"{out['cpu_count']} CPUs.", "",
           "| batch size | pipeline examples/s | in-memory examples/s | "
           "pipeline / memory |", "|---:|---:|---:|---:|"]
  for r in out["results"]:
    lines.append(f"| {r['batch_size']:,} | {r['pipeline_examples_per_s']:,.0f}"
                 f" | {r['in_memory_examples_per_s']:,.0f} | "
                 f"{r['ratio']:.2f} |")
  if "early_stopping" in out:
    e = out["early_stopping"]
    lines += ["", f"Default multitask model to early stopping: "
              f"{e['wall_time_s']:.0f} s wall time."]
  return "\n".join(lines) + "\n"
