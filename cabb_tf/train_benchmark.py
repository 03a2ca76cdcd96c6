"""Benchmark of training throughput: the real input pipeline vs memory.

For each batch size, the default multitask model is trained fed (a) by the
package's pipeline exactly as `train.run` uses it — the TFDS split read
into memory as columns with α attached by the weighting table and the id
strings looked up in the training vocabularies (both once per split), one
`index_batches` epoch per seed, each epoch's rows put in its shuffled order
by the epoch's first train step and then sliced batch by batch
(`input_pipeline.InMemoryRows`) — and (b) by batches already in memory:
one epoch's distinct full batches, gathered before timing and cycled, batch
i taken by a slice that shares memory with them, so the step does no input
work and the iterator hands it one scalar. (b) is the model-bound ceiling;
the ratio (a)/(b) says how much the input pipeline slows training.

Both feed the same model (`factory.build_model`, which takes id features
as the row indices of `factory.id_lookups`) the same kind of inputs, rows
of the same prepared split: (b)'s batches are rows of (a)'s prepared
columns. The string → index lookup is input work that `train.run` does
once per split, before the first step, and is outside both timings alike;
every step of (a) and (b) does the model's whole per-example work
(embedding, normalization, the forward and backward pass).

A timed window of (a) is whole epochs (at least `steps` steps), so that
every window pays for its share of shuffling, loading and the last, smaller
batch; a window of (b) is the same number of full batches. Windows of (a)
and (b) alternate, so that a change in the load of a shared machine hits
both alike. Reported: the ratio of the median rates, the median of the
window pairs' ratios and the median ratio of examples per CPU second of the
process (which a busy machine disturbs less), each after a warm-up epoch.
A third, diagnostic feed repeats one epoch order, so that no epoch after the
first reloads its shuffled copy: its ratio to the ceiling ("no reloads")
separates the cost of the per-epoch reload from that of per-step slicing.

The streaming path (`train.run.in_memory = False`, for splits that do not fit
in memory) is measured against the in-memory pipeline at each size: its feed
shuffles serialized records and parses and prepares a batch at a time
(`streaming_feeds`), and a reference feed decodes and prepares TFDS records
one at a time, as the streaming path did before.
The run also times training the default multitask model to early stopping.
"""

import math
import os
import time
from typing import Any, Callable, Dict, List, Sequence, Tuple

from absl import logging
import gin
import numpy as np
import tensorflow as tf

from cabb_tf import input_pipeline
from cabb_tf import train
from cabb_tf.data import report as report_lib
from cabb_tf.datasets import click_examples
from cabb_tf.inputs import weighting
from cabb_tf.models import factory


def _model(statistics):
  tf.keras.backend.clear_session()
  tf.keras.utils.set_random_seed(0)
  model = factory.build_model(statistics)
  model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
  return model


def pipeline_epochs(num_examples: int, batch_size: int,
                    seeds: Sequence[int]) -> tf.data.Dataset:
  """`train.run`'s input, one `index_batches` epoch per seed, back to back."""
  epochs = [input_pipeline.index_batches(num_examples, batch_size, seed)
            for seed in seeds]
  dataset = epochs[0]
  for epoch in epochs[1:]:
    dataset = dataset.concatenate(epoch)
  return dataset


def in_memory_batches(prepared, batch_size: int, seed: int):
  """One epoch's full batches, gathered now: leaves of shape [k, batch, ...].

  The last, smaller batch is left out.

  Raises:
    ValueError: if the split has fewer rows than one batch.
  """
  n = input_pipeline.num_rows(prepared)
  count = n // batch_size
  if not count:
    raise ValueError(f"batch size {batch_size} exceeds the {n} rows.")
  order = np.random.default_rng(seed).permutation(n)[:count * batch_size]
  rows = input_pipeline.row_gatherer(prepared)(tf.constant(order))
  return tf.nest.map_structure(
      lambda v: tf.reshape(v, [count, batch_size] + v.shape[1:].as_list()),
      rows)


class BatchNumbers:
  """A model's row source: batch number i → the i-th of `in_memory_batches`.

  Batch i is the i-th row of every leaf, a slice that shares the leaf's
  memory: the step does no input work, and the iterator hands it one
  scalar (`ConversionModel.read_rows_from(BatchNumbers(batches))`).
  """

  def __init__(self, batches):
    self._batches = batches

  def __call__(self, i):
    return tf.nest.map_structure(lambda b: b[i], self._batches)

  def dataset(self) -> tf.data.Dataset:
    """The batch numbers, cycled forever."""
    count = int(tf.nest.flatten(self._batches)[0].shape[0])
    return tf.data.Dataset.range(count).repeat().prefetch(2)


def _timer(model, dataset: tf.data.Dataset
           ) -> Callable[[int], Tuple[float, float]]:
  """Returns `time(steps)`: wall and process CPU seconds of the next steps."""
  iterator = iter(dataset)
  train_function = model.make_train_function()

  def run(steps: int) -> Tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
      logs = train_function(iterator)
    float(logs["loss"])  # wait for the last step
    return time.perf_counter() - start, time.process_time() - cpu

  return run


def measure(statistics, prepared, batch_size: int, steps: int,
            windows: int) -> Dict[str, Any]:
  """Examples/s of the pipeline and of the in-memory ceiling at one size.

  Args:
    statistics: the dataset's feature statistics (for the model).
    prepared: the prepared training split (`input_pipeline.prepare_columns`).
    batch_size: the batch size.
    steps: at least this many steps per timed window.
    windows: timed windows of each; the medians are reported.

  Returns:
    The median rates, their ratio, the medians of the ratios of each
    window pair (of wall-time rates and of examples per process CPU
    second), the window shape and every window's rates.
  """
  n = input_pipeline.num_rows(prepared)
  steps_per_epoch = math.ceil(n / batch_size)
  epochs_per_window = math.ceil(steps / steps_per_epoch)
  window_steps = epochs_per_window * steps_per_epoch
  seeds = range(1 + windows * epochs_per_window)  # the first: warm-up
  pipeline_model = _model(statistics)
  pipeline_model.read_rows_from(input_pipeline.InMemoryRows(prepared))
  pipeline = _timer(pipeline_model,
                    pipeline_epochs(n, batch_size, seeds))
  # Diagnostic: the same pipeline with one epoch order repeated, so that no
  # epoch after the first reloads its shuffled copy; its gap to the ceiling
  # is the per-step slicing alone.
  repeated_model = _model(statistics)
  repeated_model.read_rows_from(input_pipeline.InMemoryRows(prepared))
  repeated = _timer(repeated_model,
                    pipeline_epochs(n, batch_size, [1] * len(seeds)))
  memory_model = _model(statistics)
  numbers = BatchNumbers(in_memory_batches(prepared, batch_size, seed=0))
  memory_model.read_rows_from(numbers)
  memory = _timer(memory_model, numbers.dataset())
  pipeline(steps_per_epoch)  # warm-up: tracing, allocations
  repeated(steps_per_epoch)
  memory(steps_per_epoch)
  pipeline_rates, memory_rates, cpu_ratios, repeated_rates = [], [], [], []
  for _ in range(windows):
    wall, cpu = pipeline(window_steps)
    pipeline_rates.append(epochs_per_window * n / wall)
    repeated_wall, _ = repeated(window_steps)
    repeated_rates.append(epochs_per_window * n / repeated_wall)
    memory_wall, memory_cpu = memory(window_steps)
    memory_rates.append(window_steps * batch_size / memory_wall)
    # Examples per CPU second, pipeline over memory.
    cpu_ratios.append(epochs_per_window * n / cpu /
                      (window_steps * batch_size / memory_cpu))
  rate_pipeline = float(np.median(pipeline_rates))
  rate_memory = float(np.median(memory_rates))
  return {"batch_size": batch_size,
          "pipeline_examples_per_s": rate_pipeline,
          "in_memory_examples_per_s": rate_memory,
          "ratio": rate_pipeline / rate_memory,
          "no_reload_ratio": float(np.median(repeated_rates)) / rate_memory,
          "paired_ratio": float(np.median(np.divide(pipeline_rates,
                                                    memory_rates))),
          "cpu_time_ratio": float(np.median(cpu_ratios)),
          "window_steps": window_steps,
          "window_epochs": epochs_per_window,
          "pipeline_window_rates": pipeline_rates,
          "no_reload_window_rates": repeated_rates,
          "in_memory_window_rates": memory_rates}


def streaming_feeds(data, example_fn, alpha_fn, batch_size: int,
                    shuffle_buffer: int,
                    fields: Sequence[str]) -> Dict[str, tf.data.Dataset]:
  """The streaming path's input (`train.run.in_memory = False`), endless.

  `streaming` is `train.run`'s (`input_pipeline.stream_batches`, parsing
  `fields`, `input_pipeline.example_fields`). `per_record` is the earlier
  design, kept as a reference: TFDS records decoded and prepared one at a
  time, then shuffled and batched.
  """
  def prepare(record):
    return example_fn(input_pipeline.with_alpha(record, alpha_fn))

  streaming = input_pipeline.stream_batches(
      click_examples.serialized_records(data.builder, "train").repeat(),
      click_examples.record_parser(data.builder, fields), example_fn,
      alpha_fn, batch_size, shuffle_buffer, seed=0)
  per_record = (data.train.repeat()
                .map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
                .shuffle(shuffle_buffer, seed=0).batch(batch_size)
                .prefetch(tf.data.AUTOTUNE))
  return {"streaming": streaming, "per_record": per_record}


def measure_streaming(statistics, feeds: Dict[str, tf.data.Dataset],
                      steps: int, windows: int,
                      batch_size: int) -> Dict[str, Any]:
  """Examples/s of each streaming feed: the median of `windows` windows of
  `steps` steps each, after a warm-up window (which fills the buffer)."""
  timers = {}
  for name, feed in feeds.items():
    timers[name] = _timer(_model(statistics), feed)
    timers[name](steps)
  rates = {name: [] for name in feeds}
  for _ in range(windows):
    for name, timer in timers.items():
      wall, _ = timer(steps)
      rates[name].append(steps * batch_size / wall)
  out = {}
  for name, values in rates.items():
    out[f"{name}_examples_per_s"] = float(np.median(values))
    out[f"{name}_window_rates"] = values
  return out


@gin.configurable(denylist=["base_dir"])
def run(base_dir: str,
        batch_sizes: Sequence[int] = (1024, 4096, 16384),
        steps: int = 30,
        windows: int = 9,
        weighting_scheme: str = "taxonomy_cf",
        streaming_windows: int = 3,
        shuffle_buffer: int = 200_000,
        time_to_early_stopping: bool = True) -> Dict[str, Any]:
  """Measures training examples/s from the pipeline and from memory.

  Args:
    base_dir: where `benchmark_training.json` / `.md` (and the early-stopping
      run) go.
    batch_sizes: batch sizes to measure.
    steps: at least this many steps per timed window (a pipeline window is
      whole epochs).
    windows: timed windows per measurement (the median is reported).
    weighting_scheme: the scheme whose α lookup is in the pipeline.
    streaming_windows: timed windows of each streaming feed (0: none).
    shuffle_buffer: the streaming feeds' shuffle buffer (`train.run`'s).
    time_to_early_stopping: also train the default multitask model to early
      stopping (gin's `train.run` settings) and report its wall time.

  Returns:
    The measurements.
  """
  data = input_pipeline.load_data()
  statistics = data.feature_statistics
  alpha_fn = weighting.make_alpha_fn(weighting_scheme, data.builder)
  example_fn = input_pipeline.make_example_fn(
      "multitask", factory.input_dtypes(_model(statistics)),
      id_lookups=factory.id_lookups(statistics))
  columns = input_pipeline.prepare_columns(input_pipeline.with_alpha(
      input_pipeline.split_columns(data, "train"), alpha_fn), example_fn)
  fields = input_pipeline.example_fields(
      factory.input_dtypes(_model(statistics)),
      weighting.KEYS[weighting_scheme])
  results: List[Dict[str, Any]] = []
  for batch_size in batch_sizes:
    result = measure(statistics, columns, batch_size, steps, windows)
    if streaming_windows:
      result.update(measure_streaming(
          statistics, streaming_feeds(data, example_fn, alpha_fn, batch_size,
                                      shuffle_buffer, fields),
          steps, streaming_windows, batch_size))
      for name in ("streaming", "per_record"):
        result[f"{name}_ratio"] = (result[f"{name}_examples_per_s"] /
                                   result["pipeline_examples_per_s"])
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
           "pipeline / memory | median of window-pair ratios | "
           "per CPU second | no reloads / memory | steps per window |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for r in out["results"]:
    no_reload = r.get("no_reload_ratio")
    no_reload = "" if no_reload is None else f"{no_reload:.2f}"
    lines.append(f"| {r['batch_size']:,} | {r['pipeline_examples_per_s']:,.0f}"
                 f" | {r['in_memory_examples_per_s']:,.0f} | "
                 f"{r['ratio']:.2f} | {r['paired_ratio']:.2f} | "
                 f"{r['cpu_time_ratio']:.2f} | {no_reload} | "
                 f"{r['window_steps']} |")
  streamed = [r for r in out["results"] if "streaming_ratio" in r]
  if streamed:
    lines += ["", "Streaming (`train.run.in_memory = False`) against the "
              "in-memory pipeline:", "",
              "| batch size | streaming examples/s | streaming / in memory | "
              "per-record decoding examples/s | per-record / in memory |",
              "|---:|---:|---:|---:|---:|"]
    for r in streamed:
      lines.append(f"| {r['batch_size']:,} | "
                   f"{r['streaming_examples_per_s']:,.0f} | "
                   f"{r['streaming_ratio']:.2f} | "
                   f"{r['per_record_examples_per_s']:,.0f} | "
                   f"{r['per_record_ratio']:.2f} |")
  if "early_stopping" in out:
    e = out["early_stopping"]
    lines += ["", f"Default multitask model to early stopping: "
              f"{e['wall_time_s']:.0f} s wall time."]
  return "\n".join(lines) + "\n"
