r"""Fits and inspects the similarity weights of a dataset.

    python experiments/build_similarity.py --base_dir=runs/similarity \
        --gin_file=gin/similarity.gin

Writes category_similarity.npz, leaves.txt, top_pairs.csv, alpha_heatmap.png
and similarity_report.json (with ground-truth AUCs on the simulator).
"""

from absl import app
from absl import flags

import cabb_tf  # pylint: disable=unused-import  (selects Keras 2 first)
from cabb_tf import gin_utils
from cabb_tf.similarity import report

_BASE_DIR = flags.DEFINE_string("base_dir", None, "Output directory.",
                                required=True)
_GIN_FILE = flags.DEFINE_multi_string("gin_file", [], "Gin config files.")
_GIN_BINDINGS = flags.DEFINE_multi_string("gin_bindings", [],
                                          "Gin bindings.")


def main(argv):
  del argv
  gin_utils.parse(_GIN_FILE.value, _GIN_BINDINGS.value)
  report.build(_BASE_DIR.value)
  gin_utils.record(_BASE_DIR.value)


if __name__ == "__main__":
  app.run(main)
