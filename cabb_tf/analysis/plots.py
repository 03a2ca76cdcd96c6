"""PNG plots of a reproduction: NE vs λ, schemes, importance, calibration, α."""

import os
from typing import Any, Dict, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from cabb_tf import datasets as datasets_lib  # pylint: disable=g-import-not-at-top
from cabb_tf import figures  # pylint: disable=g-import-not-at-top
from cabb_tf.analysis import beyond  # pylint: disable=g-import-not-at-top
from cabb_tf.similarity import category_cf  # pylint: disable=g-import-not-at-top


def _save(fig, path: str) -> None:
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def ne_vs_lambda(results: Dict[str, Any], path: str) -> None:
  """Table 2 as lines with 95 % bands, Baseline 1 dashed."""
  rows = sorted((float(k), k) for k in results["table2"] if k != "single_task")
  x = [v for v, _ in rows]
  fig, ax = plt.subplots(figsize=(6, 4))
  for metric, color in (("caba_ne", "tab:blue"), ("cabb_ne", "tab:orange")):
    cells = [results["table2"][k][metric] for _, k in rows]
    mean = [c["mean"] for c in cells]
    ax.plot(x, mean, "o-", color=color, label=metric.replace("_", " ").upper())
    ax.fill_between(x, [c["ci95"][0] for c in cells],
                    [c["ci95"][1] for c in cells], color=color, alpha=0.2)
    single = results["table2"].get("single_task")
    if single:
      ax.axhline(single[metric]["mean"], color=color, linestyle="--",
                 linewidth=1, label=f"{metric.split('_')[0].upper()} NE, "
                 "last click")
  ax.set_xlabel("λ (CABB loss weight; 0 = CABA only)")
  ax.set_ylabel("normalized entropy (lower is better)")
  ax.legend(fontsize=8)
  ax.set_title("Table 2: task NE vs λ")
  _save(fig, path)


def scheme_bars(results: Dict[str, Any], path: str) -> None:
  """Table 3 as grouped bars with 95 % error bars."""
  schemes = list(results["table3"])
  fig, ax = plt.subplots(figsize=(6, 4))
  width = 0.38
  for i, metric in enumerate(("caba_ne", "cabb_ne")):
    cells = [results["table3"][s][metric] for s in schemes]
    mean = np.array([c["mean"] for c in cells])
    err = np.array([[m - c["ci95"][0] for m, c in zip(mean, cells)],
                    [c["ci95"][1] - m for m, c in zip(mean, cells)]])
    ax.bar(np.arange(len(schemes)) + (i - 0.5) * width, mean, width,
           yerr=err, capsize=3, label=metric.replace("_", " ").upper())
  ax.set_xticks(np.arange(len(schemes)))
  ax.set_xticklabels(schemes, rotation=15)
  ax.set_ylabel("normalized entropy")
  ax.legend(fontsize=8)
  ax.set_title("Table 3: weighting schemes at λ = 0.75")
  _save(fig, path)


def importance_bars(results: Dict[str, Any], path: str, n: int = 10) -> None:
  """RQ-4: top features per head."""
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for ax, head in zip(axes, ("caba", "cabb")):
    top = results["rq4"][head][:n][::-1]
    ax.barh([name for name, _ in top], [value for _, value in top])
    ax.set_title(f"{head.upper()} head")
    ax.set_xlabel("rise in NE when shuffled")
  _save(fig, path)


def calibration_curves(base_dir: str, variants: Dict[str, Any], seed: int,
                       path: str, bins: int = 10) -> None:
  """Reliability curves (mean label vs mean prediction per prediction decile,
  `figures.reliability_curve`)."""
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for name, variant in variants.items():
    run_dir = os.path.join(base_dir, "runs", variant.key, f"seed_{seed}")
    with np.load(os.path.join(run_dir, "predictions.npz")) as f:
      arrays = dict(f)
    # p_caba / p_cabb: a baseline's one head stands for both tasks.
    for ax, head, label, weight in ((axes[0], "caba", "y_caba", "w_caba"),
                                    (axes[1], "cabb", "y_cabb", None)):
      figures.reliability_curve(ax, arrays[label], arrays[f"p_{head}"],
                                arrays[weight] if weight else None, bins,
                                label=name)
  for ax, head in zip(axes, ("CABA", "CABB")):
    figures.finish_reliability(ax, f"{head} calibration (seed {seed})")
  _save(fig, path)


def alpha_heatmap(similarity, events, catalog, path: str, n: int = 30) -> None:
  """α between the `n` most engaged leaves."""
  leaf_of_item = dict(zip(catalog["item_id"], catalog["leaf"]))
  counts = events["item_id"].map(leaf_of_item).value_counts()
  leaves = [leaf for leaf in counts.index if leaf in set(similarity.leaves)][:n]
  a, b = np.meshgrid(np.array(leaves, dtype=object),
                     np.array(leaves, dtype=object), indexing="ij")
  alpha = np.asarray(similarity.alpha(a.ravel(), b.ravel())).reshape(a.shape)
  fig, ax = plt.subplots(figsize=(9, 8))
  image = ax.imshow(alpha, cmap="viridis", vmin=0, vmax=1)
  ax.set_xticks(range(len(leaves)))
  ax.set_yticks(range(len(leaves)))
  ax.set_xticklabels(leaves, rotation=90, fontsize=6)
  ax.set_yticklabels(leaves, fontsize=6)
  fig.colorbar(image, ax=ax, label="α = S(leaf, leaf')")
  ax.set_title(f"taxonomy + CF α of the {len(leaves)} most engaged leaves")
  _save(fig, path)


def write_all(base_dir: str, results: Dict[str, Any], tables: Dict[str, Any],
              seeds: Sequence[int], data, raw_importance: Optional[list]
              ) -> None:
  """Writes every plot of a reproduction into `base_dir`."""
  del raw_importance
  ne_vs_lambda(results, os.path.join(base_dir, "ne_vs_lambda.png"))
  scheme_bars(results, os.path.join(base_dir, "schemes.png"))
  if "rq4" in results:
    importance_bars(results, os.path.join(base_dir, "importance.png"))
  calibration_curves(base_dir, tables["table1"], seeds[0],
                     os.path.join(base_dir, "calibration.png"))
  events, catalog = datasets_lib.load_training_events(data.builder)
  similarity = category_cf.fit_category_similarity(events, catalog)
  alpha_heatmap(similarity, events, catalog,
                os.path.join(base_dir, "alpha_heatmap.png"))


def signal_sweep(results: Dict[str, Any], path: str) -> None:
  """NE against the simulator's signal scale, with 95 % bands and the
  oracle floor: the Table 1 variants (overall NE, raw and recalibrated) and
  the weighting schemes (CABA and CABB NE)."""
  scales = results["signal_sweep"]["scales"]
  keys = [f"signal_{s:g}" for s in scales]
  present = [(s, k) for s, k in zip(scales, keys) if k in results]
  if not present:
    return
  x = [s for s, _ in present]
  oracles = results["signal_sweep"].get("oracle", {})
  fig, axes = plt.subplots(2, 2, figsize=(11, 8), sharex=True)
  panels = (
      (axes[0, 0], "overall_ne", ("last_click", "caba_only", "multitask"),
       "Table 1 variants: overall NE"),
      (axes[0, 1], "overall_ne_recalibrated",
       ("last_click", "caba_only", "multitask"),
       "Table 1 variants: overall NE, recalibrated"),
      (axes[1, 0], "caba_ne", None, "schemes at the selected λ: CABA NE"),
      (axes[1, 1], "cabb_ne", None, "schemes at the selected λ: CABB NE"),
  )
  for ax, metric, rows, title in panels:
    names = rows or [r for r in results[present[0][1]]
                     if r not in ("last_click", "caba_only")]
    for name in names:
      cells = [results[k].get(name, {}).get(metric) for _, k in present]
      if any(c is None for c in cells):
        continue
      label = {"multitask": f"multitask ({beyond.selected_label(results)})"
              }.get(name, name)
      ax.plot(x, [c["mean"] for c in cells], "o-", label=label)
      ax.fill_between(x, [c["ci95"][0] for c in cells],
                      [c["ci95"][1] for c in cells], alpha=0.2)
    floor_key = metric.replace("_recalibrated", "")
    floors = [oracles.get(k, {}).get(floor_key) for _, k in present]
    if all(f is not None for f in floors):
      ax.plot(x, floors, "k--", label="oracle floor")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel("normalized entropy")
    ax.legend(fontsize=7)
  for ax in axes[1]:
    ax.set_xlabel("simulator signal_scale")
  _save(fig, path)
