"""Similarity weights α for CABB examples (paper §3.3, Eq. 1–3).

* `taxonomy`    — items → leaf categories; dotted / flat / tree ids → paths.
* `category_cf` — the paper's leaf co-engagement cosine S (`taxonomy_cf`).
* `item_cf`     — the same cosine over items (`i2i_cf`).
* `tree`        — α from the shared prefix of two taxonomy paths.
* `i2i_embedding` — item embeddings from a TFRS retrieval model.
* `benchmark`   — speed and memory of Eq. (1)–(2) against references.

Every similarity object has `alpha(a, b)` (vectorized, unknown → fallback)
and `index_of(keys)`; the leaf-based ones also `alpha_for_items(catalog, a,
b)`. The Beam version of Eq. (1)–(2) is `cabb_tf.pipelines.similarity_beam`;
the gin switch between the schemes, and α as the input pipeline reads it,
is `cabb_tf.inputs.weighting`.
"""

from cabb_tf.similarity.category_cf import category_similarity
from cabb_tf.similarity.category_cf import CategorySimilarity
from cabb_tf.similarity.category_cf import default_event_weights
from cabb_tf.similarity.category_cf import fit_category_similarity
from cabb_tf.similarity.category_cf import SparseSimilarity
from cabb_tf.similarity.i2i_embedding import fit_i2i_embeddings
from cabb_tf.similarity.i2i_embedding import ItemEmbeddingSimilarity
from cabb_tf.similarity.item_cf import fit_item_similarity
from cabb_tf.similarity.item_cf import i2i_cf
from cabb_tf.similarity.item_cf import ItemSimilarity
from cabb_tf.similarity.taxonomy import item_leaves
from cabb_tf.similarity.tree import fit_tree_similarity
from cabb_tf.similarity.tree import TreeSimilarity

__all__ = [
    "category_similarity", "CategorySimilarity", "default_event_weights",
    "fit_category_similarity", "SparseSimilarity", "fit_i2i_embeddings",
    "ItemEmbeddingSimilarity", "fit_item_similarity",
    "i2i_cf", "ItemSimilarity", "item_leaves", "fit_tree_similarity",
    "TreeSimilarity",
]
