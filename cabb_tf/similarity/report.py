"""Inspection of the similarity weights: matrix, top pairs, heatmap, ground truth.

`build(base_dir)` (the `experiments/build_similarity.py` entry point) fits
the paper's taxonomy + CF matrix on a dataset's training-period events and
writes

* `category_similarity.npz` and `leaves.txt` — the sparse matrix and its
  leaf names (row order);
* `top_pairs.csv` — the most similar distinct leaf pairs, with names;
* `alpha_heatmap.png` — α between the most engaged leaves;
* `similarity_report.json` — for every scheme, α's mean per ground-truth
  relation and its AUC at telling genuine CABB rows from noise, when the
  dataset has ground truth (the simulator's `relation` field).

Ground truth: a CABB row (click A, bought B) is *genuine* when B's leaf is
A's leaf (substitute) or a complement of it in the simulated world, and
*noise* when the two leaves are unrelated. The AUC is the probability that a
genuine row gets a higher α than a noise row (ties count half). The report
covers every scheme of `weighting.SCHEMES` by default, so the paper's
taxonomy + CF (`taxonomy_cf`) and its popularity-debiased variant
(`taxonomy_cf_debiased`) are compared on the same rows.
"""

import os
from typing import Any, Dict, Sequence

from absl import logging
import gin
import numpy as np

from cabb_tf import datasets as datasets_lib
from cabb_tf import input_pipeline
from cabb_tf import metrics
from cabb_tf.analysis import plots
from cabb_tf.data import report as report_lib
from cabb_tf.similarity import category_cf
from cabb_tf.similarity import weighting

GENUINE = ("substitute", "complement")


def ground_truth_report(builder, schemes: Sequence[str]) -> Dict[str, Any]:
  """α's separation of genuine from noise CABB rows, per scheme."""
  rows = weighting.cabb_rows(builder, ("item_a", "item_b", "leaf_a",
                                       "leaf_b", "relation"))
  genuine = rows["relation"].isin(GENUINE).to_numpy().astype(np.float64)
  events, catalog = datasets_lib.load_training_events(builder)
  out: Dict[str, Any] = {
      "rows": int(len(rows)),
      "relation_counts": {k: int(v) for k, v in
                          rows["relation"].value_counts().items()},
      "schemes": {},
  }
  for scheme in schemes:
    similarity = weighting.fit_scheme(scheme, events, catalog)
    field_a, field_b = weighting.KEYS[scheme]
    alpha = weighting.score_pairs(similarity, rows[field_a].to_numpy(),
                                  rows[field_b].to_numpy())
    out["schemes"][scheme] = {
        "auc_genuine_vs_noise": metrics.auc(genuine, alpha),
        "mean_alpha": {relation: float(alpha[(rows["relation"] ==
                                              relation).to_numpy()].mean())
                       for relation in out["relation_counts"]},
    }
    logging.info("%s: AUC %.4f", scheme,
                 out["schemes"][scheme]["auc_genuine_vs_noise"])
  return out


@gin.configurable(denylist=["base_dir"])
def build(base_dir: str,
          schemes: Sequence[str] = weighting.SCHEMES,
          num_top_pairs: int = 50,
          heatmap_leaves: int = 30) -> Dict[str, Any]:
  """Fits and writes the similarity artifacts of the gin-selected dataset.

  Args:
    base_dir: output directory.
    schemes: schemes to score against the ground truth.
    num_top_pairs: rows of `top_pairs.csv`.
    heatmap_leaves: leaves in the heatmap.

  Returns:
    The similarity report.
  """
  data = input_pipeline.load_data()
  events, catalog = datasets_lib.load_training_events(data.builder)
  similarity = category_cf.fit_category_similarity(events, catalog)
  os.makedirs(base_dir, exist_ok=True)
  similarity.save(os.path.join(base_dir, "category_similarity.npz"))
  with open(os.path.join(base_dir, "leaves.txt"), "w") as f:
    f.write("\n".join(str(leaf) for leaf in similarity.leaves) + "\n")
  similarity.top_pairs(num_top_pairs).to_csv(
      os.path.join(base_dir, "top_pairs.csv"), index=False)
  plots.alpha_heatmap(similarity, events, catalog,
                      os.path.join(base_dir, "alpha_heatmap.png"),
                      n=heatmap_leaves)
  report: Dict[str, Any] = {"dataset": data.builder.info.full_name,
                            "matrix": similarity.stats}
  if "relation" in data.builder.info.features:
    report["ground_truth"] = ground_truth_report(data.builder, schemes)
  report_lib.write_json(report, os.path.join(base_dir,
                                             "similarity_report.json"))
  return report
