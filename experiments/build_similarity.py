r"""Fits and inspects the similarity weights of a dataset.

    python experiments/build_similarity.py --base_dir=runs/similarity \
        --gin_file=gin/similarity.gin

Writes category_similarity.npz, leaves.txt, top_pairs.csv, alpha_heatmap.png
and similarity_report.json (with ground-truth AUCs on the simulator).
"""

import cabb_tf  # pylint: disable=unused-import  (selects Keras 2 first)
from cabb_tf import gin_utils
from cabb_tf.analysis import similarity_report

if __name__ == "__main__":
  gin_utils.run_binary(similarity_report.build)
