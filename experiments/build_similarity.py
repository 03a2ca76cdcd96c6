r"""Fits and inspects the similarity weights of a dataset.

    python experiments/build_similarity.py --base_dir=runs/similarity \
        --gin_file=gin/similarity.gin

Writes category_similarity.npz, leaves.txt, top_pairs.csv, alpha_heatmap.png
and similarity_report.json (with ground-truth AUCs on the simulator).
"""

from cabb_tf import cli

if __name__ == "__main__":
  cli.similarity()
