"""Small random canonical event logs and catalogs for the similarity tests."""

import numpy as np
import pandas as pd

from cabb_tf.data import schema


def random_log(num_events: int = 3000, num_users: int = 60,
               num_items: int = 80, num_leaves: int = 12, seed: int = 0):
  """Returns (events, catalog): a random log over a two-level taxonomy.

  Leaf popularity is skewed (Zipf-like), every event type occurs, a few
  items have no category and a few events name items outside the catalog.
  """
  rng = np.random.default_rng(seed)
  leaf_p = 1.0 / np.arange(1, num_leaves + 1)
  leaf_p /= leaf_p.sum()
  item_leaf = rng.choice(num_leaves, size=num_items, p=leaf_p)
  paths = [(f"root{leaf % 3}", f"leaf{leaf}") for leaf in item_leaf]
  paths[0] = None  # An item without a category.
  catalog = schema.make_catalog(np.arange(num_items, dtype=np.int64) + 100,
                                paths)
  items = rng.integers(0, num_items + 3, size=num_events) + 100  # 3 unknown.
  types = rng.choice(4, size=num_events, p=[0.3, 0.45, 0.15, 0.1])
  events = pd.DataFrame({
      "user_id": rng.integers(0, num_users, size=num_events).astype(np.int64)
                 * 13 + 5,
      "timestamp": np.arange(num_events, dtype=np.int64) * 1000,
      "item_id": items.astype(np.int64),
      "event_type": pd.Categorical.from_codes(
          types, dtype=schema.EVENT_TYPE_DTYPE),
  })
  return events, catalog
