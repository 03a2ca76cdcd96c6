"""Item-level co-engagement similarity: Eq. (1)–(2) over items, not leaves.

An alternative weighting scheme (docs/method.md, "Weights"; "item-level CF"): each item i is
a vector in user space, `(v_i)_u = Σ_e w_e · count(u, i, e)`, and
α(A, B) = cos(v_A, v_B). It skips the taxonomy, so it sees only pairs that
the same users engaged with — much sparser than the leaf-level S. The
computation is `category_cf.weighted_cosine` with item indices as keys
(sparse; cost O(n log n + Σ_u k_u²), k_u = distinct items of user u).
As for `category_cf`, the caller passes training-period events only.
"""

from typing import Mapping, Optional

import gin
import numpy as np
import pandas as pd

from cabb_tf.similarity import category_cf


class ItemSimilarity(category_cf.SparseSimilarity):
  """Item–item cosine similarity; `alpha(item_a, item_b)` takes item ids.

  `items` are sorted. Items without a positive-weight event are unseen and
  get the fallback α.
  """

  key_name = "item"

  @property
  def items(self) -> np.ndarray:
    return self._keys


def i2i_cf(events: pd.DataFrame,
           event_weights: Optional[Mapping[str, float]] = None,
           *,
           top_k: Optional[int] = None,
           fallback: float = 0.0,
           min_similarity: float = 0.0) -> ItemSimilarity:
  """Fits the item-level cosine similarity (Eq. 1–2 over items).

  Args:
    events: canonical training-period events (`user_id`, `item_id`,
      `event_type`).
    event_weights: w_e per canonical type name (absent types weigh 0); None
      for `category_cf.default_event_weights()` (gin).
    top_k: optional per-row pruning, see `SparseSimilarity.prune`. With many
      items the unpruned matrix can be large (nnz up to Σ_u k_u²).
    fallback: α for a pair with an unseen item, in [0, 1].
    min_similarity: drop off-diagonal entries below this.

  Returns:
    An `ItemSimilarity` over the items with a nonzero vector.

  Raises:
    ValueError: on missing columns, bad weights or options.
  """
  category_cf.check_events(events)
  category_cf.check_fallback(fallback)
  category_cf.check_prune_args(top_k, min_similarity)
  if events["item_id"].isna().any():
    raise ValueError("events column 'item_id' has missing values.")
  table = category_cf.event_weight_table(event_weights)
  item_codes, items = pd.factorize(events["item_id"].to_numpy(), sort=True)
  codes = category_cf.event_codes(events["event_type"])
  matrix, used, stats = category_cf.weighted_cosine(
      events["user_id"], item_codes, codes, table, len(items),
      unknown_reason="unknown_item")
  stats["items"] = int(used.sum())
  result = ItemSimilarity(np.asarray(items)[used], matrix, fallback=fallback,
                          stats=stats, validate=False)
  if top_k is not None or min_similarity > 0:
    result = result.prune(top_k=top_k, min_similarity=min_similarity)
  return result


@gin.configurable(denylist=["events"])
def fit_item_similarity(events: pd.DataFrame,
                        event_weights: Optional[Mapping[str, float]] = None,
                        top_k: Optional[int] = None,
                        fallback: float = 0.0,
                        min_similarity: float = 0.0) -> ItemSimilarity:
  """gin-configurable `i2i_cf` (an item-level CF weighting scheme)."""
  return i2i_cf(events, event_weights, top_k=top_k, fallback=fallback,
                min_similarity=min_similarity)
