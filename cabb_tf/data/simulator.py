"""A seeded generative model of shopping sessions: the package's embedded data.

The simulator (docs/simulator.md) draws a world and then users who shop in
it:

* **Taxonomy.** A tree with `branching` children per level (default
  8 departments × 6 aisles × 6 shelves = 288 leaves), named like
  `dept03/aisle03_2/shelf03_2_5`. Each leaf has a log-normal number of items
  with Zipf popularity inside the leaf, a Zipf leaf popularity, a brand per
  item (Zipf within the department) and log-normal prices around a leaf mean.
* **Latent leaf relations.** Items of one leaf are substitutes. Each leaf has
  about `complements_per_leaf` complement leaves (random pairings, one round
  in three inside the department, the others anywhere: by default 57 % of
  the pairs cross departments, 94 % cross aisles); every other pair is
  unrelated. They are exposed as
  `SimulatedLog.leaf_relations` and through `pair_relation`.
* **Users** have a heavy-tailed (log-normal) activity that sets their number
  of sessions over `num_days`, a purchase propensity, two favourite
  departments, six favourite leaves (half drawn from the favourite
  departments, half often complements of those) and one wish-list item per
  favourite leaf. Preferences do not change over time, so history predicts.
* **Sessions** start in 3-hour slots weighted by hour of day and weekday (a
  user never has two sessions in one slot, so sessions are > 30 minutes apart
  and a 30-minute gap split recovers `session_id`). A session has an intent
  leaf (usually a favourite leaf) and a geometric number of clicks; each click
  stays in the intent leaf, moves to a complement leaf, to another favourite
  leaf or to a popular leaf. Clicks land on wish-list items more often.
  Impressions of items of the same leaf precede clicks; each click has a
  log-normal dwell.
* **Purchases.** After a click on A the user buys

  - A itself (`same`) with a probability that rises with the user's
    propensity, wish-list membership, the user's earlier clicks on A and on
    A's leaf (the real click history, counted point in time), a recent click
    on A, favourite leaf, item quality, a low price within the leaf, the
    click's position in the session, evening / weekend, and falls after a
    short dwell ("bounce");
  - otherwise maybe a `substitute` (another item of A's leaf, by popularity),
    more likely after a bounce, for a low-quality or expensive A and in
    "commodity" leaves;
  - maybe a `complement` (an item of a complement leaf of A), more likely when
    A or a substitute was bought and in leaves with a latent complement bias;
  - and once per session maybe an item drawn by global popularity (`noise`,
    never the source item itself, though by chance it may share its leaf),
    attached to a random click of the session.

  A purchase follows its source click: right after it, or at a checkout at
  the end of the session; most purchases are preceded by an add-to-cart, and
  some clicks lead to abandoned carts. A (session, item) is bought at most once.

Every purchase carries its ground truth in `SimulatedLog.purchases`: the
relation to its source click and the source item.

**Signal strength** (`simulate(signal_scale=s)`, gin
`simulate.signal_scale`, default 1). Every term of the purchase and cart
logits except the intercepts (the coefficients `_SAME_COEF` ... `_CART_COEF`,
the per-leaf biases, the hour / weekday context) is multiplied by s, and the
five intercepts are re-solved on the drawn population (Newton steps on the
log of the expected count) so that the expected numbers of same (a (session,
item) counted once), substitute, complement and noise purchases and of
abandoned carts stay those of s = 1: the relation mix and the leaf relations
do not move, only how predictable each decision is. For s > 1 the latent
part of a click's `same` logit (propensity, wish list, quality, leaf bias)
is also logged before the click, as an add-to-cart of A with odds
(s − 1) · exp(intent − 5) (`_intent_carts`): point-in-time features
(`u_item_carts`, `u_leaf_carts`, `u_events`) see it; purchase probabilities
do not depend on it. The intent carts use a random stream of their own, so
clicks and impressions are the same at every s. s = 1 is the calibrated
world, draw for draw. The oracle NE floor (`cabb_tf.data.oracle`) of the
test split (last 20 % of the time range) of `simulate_events(500_000,
seed=0)`, from `python -m cabb_tf.data.oracle --signal_scale=0.5
--signal_scale=1 ...` (3,200 redraws; Monte-Carlo error at most 0.0022;
docs/simulator.md has the full table):

| signal_scale | CABA NE | CABB NE | last-click NE | overall NE | MC error |
| --- | --- | --- | --- | --- | --- |
| 0.5 | 0.907 | 0.871 | 0.837 | 0.879 | 0.0016 |
| 1.0 | 0.746 | 0.783 | 0.768 | 0.775 | 0.0019 |
| 1.5 | 0.567 | 0.691 | 0.682 | 0.666 | 0.0014 |
| 2.0 | 0.448 | 0.593 | 0.611 | 0.564 | 0.0017 |
| 3.0 | 0.317 | 0.446 | 0.499 | 0.420 | 0.0022 |
| 4.0 | 0.243 | 0.363 | 0.407 | 0.339 | 0.0013 |

Calibration: `python -m cabb_tf.data.simulator` prints these figures for the
default configuration (seed 0; in brackets mean ± sd over seeds 0-5), beside
the Taobao UserBehavior sample (see docs/simulator.md, Calibration) with
the definitions of click_a_buy_b_stats.py (`calibration_stats`):

| statistic                                  | simulator             | Taobao |
|--------------------------------------------|-----------------------|--------|
| Click A, Buy B share of purchases          | 0.400 (0.398 ± 0.009) | 0.396  |
| CABB purchases in an earlier clicked leaf  | 0.538 (0.508 ± 0.024) | 0.522  |
| purchases with another item clicked before | 0.930                 | 0.834  |
| purchase share of events                   | 0.019                 | 0.021  |
| add-to-cart share of events                | 0.047                 | 0.053  |
| events per session                         | 6.4                   | 6.0    |

Taobao's add-to-cart share is 0.081 if its `fav` events are mapped to
add_to_cart (the loaders' default). The simulator has impressions (31 % of its
events; Taobao has none) and no purchase without an earlier click in its
session (Taobao: 15 %). Ground truth of the default log: same 0.575,
substitute 0.222, complement 0.091, noise 0.112 of purchases.

Speed (one core): about 1 s per 10^6 events, 11-16 s and 2.3 GB for 10^7;
`simulate_chunks` streams 10^8 in blocks.
"""

import argparse
import inspect
import json
import math
import sys
import time
from typing import Any, Dict, Iterator, NamedTuple, Optional, Sequence, Tuple

import gin
import numpy as np
import pandas as pd

from cabb_tf.data import labels
from cabb_tf.data import schema

RELATIONS = ("same", "substitute", "complement", "noise")
RELATION_DTYPE = pd.CategoricalDtype(list(RELATIONS), ordered=False)
SAME, SUBSTITUTE, COMPLEMENT, NOISE = range(4)
LEAF_RELATIONS = ("substitute", "complement")
LEAF_RELATION_DTYPE = pd.CategoricalDtype(list(LEAF_RELATIONS), ordered=False)
PAIR_RELATIONS = ("substitute", "complement", "unrelated")

# 2024-01-01 00:00:00 UTC, a Monday.
DEFAULT_START_MS = 1_704_067_200_000

# The Taobao figures the defaults are calibrated to (SOURCES.md §2).
TAOBAO_REFERENCE = {
    "click_a_buy_b_share": 0.396,
    "leaf_match_share": 0.522,
    "other_item_clicked_before_share": 0.834,
    "purchase_share_of_events": 1750 / 84476,
    # Taobao `cart` only; with `fav` mapped to add_to_cart it is 0.081.
    "add_to_cart_share_of_events": 4497 / 84476,
    "events_per_session": 84476 / 14122,
}

_MS_PER_S = 1000
_MS_PER_HOUR = 3_600_000
_MS_PER_DAY = 86_400_000
_SLOT_HOURS = 3
_SLOT_MS = _SLOT_HOURS * _MS_PER_HOUR
_MAX_START_OFFSET_MS = 30 * 60 * _MS_PER_S
# Session length cap: the next slot starts > 30 minutes after a session ends.
_MAX_SESSION_MS = _SLOT_MS - _MAX_START_OFFSET_MS - 33 * 60 * _MS_PER_S
_CHECKOUT_STEP_MS = 1500
# Order key of purchases at the checkout: after every step of the session.
_CHECKOUT_ORDER = 1 << 20
_NUM_FAVORITES = 6
_MAX_IMPRESSIONS_PER_CLICK = 8
_LEVEL_PREFIXES = ("dept", "aisle", "shelf")
# Relative session starts by hour of day (UTC) and on Saturday / Sunday.
_HOUR_ACTIVITY = np.array([
    0.30, 0.20, 0.15, 0.10, 0.10, 0.15, 0.30, 0.50, 0.70, 0.80, 0.90, 1.00,
    1.00, 0.90, 0.90, 0.90, 1.00, 1.10, 1.20, 1.40, 1.50, 1.40, 1.00, 0.60])
_WEEKEND_ACTIVITY = 1.25

# Coefficients of the purchase logits (see `simulate`). Signs follow the
# module docstring; sizes were set so that every feature family matters.
_SAME_COEF = dict(propensity=0.7, wishlist=1.0, favorite=0.4, item_history=0.5,
                  leaf_history=0.2, recent=0.4, quality=0.6, price=-0.4,
                  position=0.6, bounce=-1.5)
_SUB_COEF = dict(propensity=0.5, leaf_history=0.2, quality=-0.5, price=0.4,
                 bounce=1.2)
_COMP_COEF = dict(propensity=0.4, bought=1.5)
_NOISE_COEF = dict(propensity=0.5, log_clicks=0.4)
_CART_COEF = dict(propensity=0.4, wishlist=0.8, quality=0.3, item_history=0.3)
_EVENING_LOGIT = 0.25
_NIGHT_LOGIT = -0.2
_WEEKEND_LOGIT = 0.15
_BOUNCE_MS = 8 * _MS_PER_S
# Offset of the intent-cart logit (signal_scale > 1; see `_intent_carts`).
_INTENT_CART_LOGIT = -5.0


class SimulatedLog(NamedTuple):
  """What `simulate` returns.

  Attributes:
    events: the canonical event log (`schema.EVENT_COLUMNS`; int64 ids and
      milliseconds), sorted by timestamp (ties by session, then session order).
    catalog: the canonical catalog (`schema.make_catalog`) with brand and price.
    purchases: the ground truth, one row per purchase event, in event order:
      `session_id, user_id, timestamp, item_id`, `relation` (`RELATION_DTYPE`:
      same, substitute, complement, noise) and `source_item_id`, the clicked
      item the purchase was generated from (clicked earlier in the session).
    leaf_relations: `leaf_a, leaf_b, relation` (`LEAF_RELATION_DTYPE`): one
      `substitute` row per leaf (leaf_a == leaf_b) and both directions of
      every complement pair; pairs not listed are unrelated.
  """
  events: pd.DataFrame
  catalog: pd.DataFrame
  purchases: pd.DataFrame
  leaf_relations: pd.DataFrame


class _World(NamedTuple):
  """The catalog side of a simulation, as arrays indexed by leaf / item."""
  leaf_paths: list
  leaf_names: np.ndarray        # (L,) object
  leaf_dept: np.ndarray         # (L,) department index
  leaf_pop: np.ndarray          # (L,) sums to 1
  leaf_cdf: np.ndarray          # (L,)
  dept_cdf_shift: np.ndarray    # (L,) department + cumulative share within it
  comp_ptr: np.ndarray          # (L + 1,) CSR pointers into comp_idx
  comp_idx: np.ndarray          # complement leaves
  leaf_same_bias: np.ndarray    # (L,) dearer leaves convert less
  leaf_sub_bias: np.ndarray     # (L,) "commodity" leaves
  leaf_comp_bias: np.ndarray    # (L,)
  leaf_start: np.ndarray        # (L,) first item index of the leaf
  leaf_count: np.ndarray        # (L,) items in the leaf
  item_leaf: np.ndarray         # (N,) items are ordered by leaf
  item_cdf_shift: np.ndarray    # (N,) leaf + cumulative share within the leaf
  item_cdf: np.ndarray          # (N,) global popularity
  item_quality: np.ndarray      # (N,)
  item_price_z: np.ndarray      # (N,) standardized log price within the leaf
  item_ids: np.ndarray          # (N,) int64, a permutation of 0..N-1
  item_brand: list
  item_price: np.ndarray


def _sigmoid(x: np.ndarray) -> np.ndarray:
  return 1.0 / (1.0 + np.exp(-x))


def _segment_starts(counts: np.ndarray) -> np.ndarray:
  return np.cumsum(counts) - counts


def _sample_cdf(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
  """Indices drawn from a normalized cumulative distribution."""
  return np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)


def _shifted_cdf(group: np.ndarray, weight: np.ndarray) -> np.ndarray:
  """`group + cumulative share of weight within the group` (groups sorted).

  Sampling `searchsorted(result, g + u)` with u uniform in [0, 1) then draws
  a member of group g in proportion to its weight, for many groups at once.
  """
  counts = np.bincount(group, minlength=group.max() + 1)
  totals = np.bincount(group, weights=weight, minlength=len(counts))
  share = weight / totals[group]
  cum = np.cumsum(share)
  starts = _segment_starts(counts)
  within = cum - np.repeat(cum[starts] - share[starts], counts)
  within[np.cumsum(counts)[counts > 0] - 1] = 1.0
  return group + within


def _draw_in_groups(shifted: np.ndarray, group: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
  """Draws one member of each given group (see `_shifted_cdf`)."""
  u = rng.random(len(group))
  return np.minimum(np.searchsorted(shifted, group + u, side="right"),
                    len(shifted) - 1)


def _build_world(branching, items_per_leaf, item_zipf_exponent,
                 leaf_zipf_exponent, brands_per_department,
                 complements_per_leaf, rng) -> _World:
  """Draws the taxonomy, items and latent leaf relations."""
  num_leaves = int(np.prod(branching))
  digits = np.stack(np.unravel_index(np.arange(num_leaves), branching), axis=1)
  prefixes = [_LEVEL_PREFIXES[i] if i < len(_LEVEL_PREFIXES) else f"level{i}"
              for i in range(len(branching))]
  leaf_paths = []
  for row in digits.tolist():
    parts = [f"{row[0]:02d}"] + [str(d) for d in row[1:]]
    leaf_paths.append(tuple(prefixes[level] + "_".join(parts[:level + 1])
                            for level in range(len(branching))))
  leaf_names = np.array([schema.leaf_of(p) for p in leaf_paths], dtype=object)
  leaf_dept = digits[:, 0].astype(np.int64)

  leaf_pop = np.arange(1, num_leaves + 1, dtype=np.float64)**-leaf_zipf_exponent
  leaf_pop = rng.permutation(leaf_pop)
  leaf_pop /= leaf_pop.sum()
  leaf_cdf = np.cumsum(leaf_pop)
  leaf_cdf[-1] = 1.0
  dept_cdf_shift = _shifted_cdf(leaf_dept, leaf_pop)

  # Complements: random pairings; a third of the rounds pair leaves of one
  # department, the others pair any leaves (so most land in other branches).
  pairs = []
  same_branch_rounds = int(round(complements_per_leaf / 3.0))
  for r in range(complements_per_leaf):
    if r < same_branch_rounds and len(branching) > 1:
      order = np.lexsort((rng.random(num_leaves), leaf_dept))
      dept_sorted = leaf_dept[order]
      rank = np.arange(num_leaves) - np.searchsorted(dept_sorted, dept_sorted)
      first = np.flatnonzero((rank[:-1] % 2 == 0)
                             & (dept_sorted[:-1] == dept_sorted[1:]))
      pairs.append(np.stack([order[first], order[first + 1]], axis=1))
    else:
      order = rng.permutation(num_leaves)
      half = num_leaves // 2
      pairs.append(np.stack([order[:2 * half:2], order[1:2 * half:2]], axis=1))
  if pairs:
    pairs = np.concatenate(pairs)
    codes = np.unique(pairs.min(axis=1) * num_leaves + pairs.max(axis=1))
    low, high = codes // num_leaves, codes % num_leaves
    src = np.concatenate([low, high])
    dst = np.concatenate([high, low])
    order = np.lexsort((dst, src))
    src, comp_idx = src[order], dst[order]
  else:
    src = comp_idx = np.zeros(0, np.int64)
  comp_ptr = np.concatenate(
      [[0], np.cumsum(np.bincount(src, minlength=num_leaves))]).astype(np.int64)

  sigma = 0.5
  leaf_count = np.maximum(2, np.round(rng.lognormal(
      math.log(items_per_leaf) - sigma**2 / 2, sigma, num_leaves))).astype(
          np.int64)
  num_items = int(leaf_count.sum())
  leaf_start = _segment_starts(leaf_count)
  item_leaf = np.repeat(np.arange(num_leaves), leaf_count)
  rank = np.arange(num_items) - leaf_start[item_leaf]
  weight = (rank + 1.0)**-item_zipf_exponent
  item_cdf_shift = _shifted_cdf(item_leaf, weight)
  share = weight / np.bincount(item_leaf, weights=weight)[item_leaf]
  item_cdf = np.cumsum(leaf_pop[item_leaf] * share)
  item_cdf /= item_cdf[-1]
  log_share = np.log(share)
  item_quality = (0.3 * (log_share - log_share.mean())
                  / max(log_share.std(), 1e-9)
                  + rng.normal(0.0, 0.5, num_items))
  leaf_mu = math.log(25.0) + rng.normal(0.0, 0.9, num_leaves)
  item_price_z = rng.normal(0.0, 1.0, num_items)
  item_price = np.maximum(
      0.5, np.round(np.exp(leaf_mu[item_leaf] + 0.35 * item_price_z), 2))
  brand_w = np.arange(1, brands_per_department + 1, dtype=np.float64)**-1.0
  brand_cdf = np.cumsum(brand_w / brand_w.sum())
  brand = _sample_cdf(brand_cdf, rng.random(num_items))
  item_dept = leaf_dept[item_leaf]
  item_brand = [f"brand{d:02d}_{b:02d}" for d, b in
                zip(item_dept.tolist(), brand.tolist())]
  return _World(
      leaf_paths=leaf_paths, leaf_names=leaf_names, leaf_dept=leaf_dept,
      leaf_pop=leaf_pop, leaf_cdf=leaf_cdf, dept_cdf_shift=dept_cdf_shift,
      comp_ptr=comp_ptr, comp_idx=comp_idx,
      leaf_same_bias=(-0.3 * (leaf_mu - leaf_mu.mean())
                      / max(leaf_mu.std(), 1e-9)
                      + rng.normal(0.0, 0.3, num_leaves)),
      leaf_sub_bias=rng.normal(0.0, 0.5, num_leaves),
      leaf_comp_bias=rng.normal(0.0, 0.5, num_leaves),
      leaf_start=leaf_start, leaf_count=leaf_count, item_leaf=item_leaf,
      item_cdf_shift=item_cdf_shift, item_cdf=item_cdf,
      item_quality=item_quality, item_price_z=item_price_z,
      item_ids=rng.permutation(num_items).astype(np.int64),
      item_brand=item_brand, item_price=item_price)


def _complement_leaf(world: _World, leaf: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
  """A random complement of each leaf, or -1 where the leaf has none."""
  degree = world.comp_ptr[leaf + 1] - world.comp_ptr[leaf]
  pick = world.comp_ptr[leaf] + np.floor(
      rng.random(len(leaf)) * degree).astype(np.int64)
  has = degree > 0
  out = np.full(len(leaf), -1, np.int64)
  out[has] = world.comp_idx[pick[has]]
  return out


def _substitute(world: _World, item: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
  """Another item of each item's leaf, by popularity."""
  leaf = world.item_leaf[item]
  out = _draw_in_groups(world.item_cdf_shift, leaf, rng)
  for _ in range(4):  # Rejection; the fallback below rarely triggers.
    clash = np.flatnonzero(out == item)
    if not len(clash):
      break
    out[clash] = _draw_in_groups(world.item_cdf_shift, leaf[clash], rng)
  clash = out == item
  start, count = world.leaf_start[leaf[clash]], world.leaf_count[leaf[clash]]
  out[clash] = start + (item[clash] - start + 1) % count
  return out


def _unrelated_popular(world: _World, item: np.ndarray,
                       rng: np.random.Generator) -> np.ndarray:
  """Items by global popularity, each different from the given item."""
  out = _sample_cdf(world.item_cdf, rng.random(len(item)))
  for _ in range(8):  # Rejection; a clash left after 8 rounds is ~impossible.
    clash = np.flatnonzero(out == item)
    if not len(clash):
      break
    out[clash] = _sample_cdf(world.item_cdf, rng.random(len(clash)))
  clash = out == item
  out[clash] = (item[clash] + 1) % len(world.item_cdf)
  return out


def _check(condition: bool, message: str) -> None:
  if not condition:
    raise ValueError(message)


def _validate(num_users, num_days, branching, items_per_leaf,
              item_zipf_exponent, leaf_zipf_exponent, brands_per_department,
              complements_per_leaf, sessions_per_user, activity_sigma,
              clicks_per_session, max_clicks_per_session, impressions_per_click,
              favorite_leaf_prob, browse_probs,
              wishlist_click_prob, dwell_median_s, cart_before_purchase_prob,
              checkout_at_end_prob, first_user_id, seed, signal_scale):
  """Raises ValueError for arguments `simulate` cannot use."""
  _check(num_users >= 1, f"num_users must be >= 1, got {num_users}.")
  _check(num_days >= 1, f"num_days must be >= 1, got {num_days}.")
  _check(len(branching) >= 1 and all(int(b) >= 1 for b in branching),
         f"branching must be a non-empty sequence of positive ints (children "
         f"per taxonomy level), got {branching!r}.")
  _check(items_per_leaf >= 2, f"items_per_leaf must be >= 2 (a leaf needs a "
         f"substitute), got {items_per_leaf}.")
  for name, value in (("item_zipf_exponent", item_zipf_exponent),
                      ("leaf_zipf_exponent", leaf_zipf_exponent)):
    _check(value >= 0, f"{name} must be >= 0, got {value}.")
  _check(brands_per_department >= 1,
         f"brands_per_department must be >= 1, got {brands_per_department}.")
  _check(complements_per_leaf >= 0,
         f"complements_per_leaf must be >= 0, got {complements_per_leaf}.")
  _check(sessions_per_user >= 1,
         f"sessions_per_user must be >= 1, got {sessions_per_user}.")
  _check(activity_sigma >= 0,
         f"activity_sigma must be >= 0, got {activity_sigma}.")
  _check(1 <= clicks_per_session <= max_clicks_per_session,
         f"need 1 <= clicks_per_session <= max_clicks_per_session, got "
         f"{clicks_per_session} and {max_clicks_per_session}.")
  _check(max_clicks_per_session <= 200, f"max_clicks_per_session must be <= "
         f"200, got {max_clicks_per_session}.")
  _check(impressions_per_click >= 0,
         f"impressions_per_click must be >= 0, got {impressions_per_click}.")
  for name, p in (("favorite_leaf_prob", favorite_leaf_prob),
                  ("wishlist_click_prob", wishlist_click_prob),
                  ("cart_before_purchase_prob", cart_before_purchase_prob),
                  ("checkout_at_end_prob", checkout_at_end_prob)):
    _check(0.0 <= p <= 1.0, f"{name} must be a probability in [0, 1], got {p}.")
  _check(len(browse_probs) == 4 and all(p >= 0 for p in browse_probs)
         and sum(browse_probs) > 0,
         f"browse_probs must be 4 non-negative weights (stay in the intent "
         f"leaf, complement leaf, other favourite leaf, popular leaf), got "
         f"{browse_probs!r}.")
  _check(dwell_median_s > 0,
         f"dwell_median_s must be > 0, got {dwell_median_s}.")
  _check(first_user_id >= 0,
         f"first_user_id must be >= 0, got {first_user_id}.")
  _check(seed >= 0, f"seed must be >= 0, got {seed}.")
  try:
    scale = float(signal_scale)
  except (TypeError, ValueError):
    scale = math.nan
  _check(math.isfinite(scale) and scale > 0,
         f"signal_scale must be a finite number > 0 (1 is the calibrated "
         f"world, larger makes purchases more predictable), got "
         f"{signal_scale!r}.")


class _Users(NamedTuple):
  """Per-user latent traits."""
  activity: np.ndarray     # (U,) mean-1 log-normal
  propensity: np.ndarray   # (U,) standard normal
  favorite: np.ndarray     # (U, _NUM_FAVORITES) leaves
  wishlist: np.ndarray     # (U, _NUM_FAVORITES) one item per favourite leaf


class _Sessions(NamedTuple):
  """Per-session values, sessions in start order."""
  user: np.ndarray
  start: np.ndarray        # int64 ms
  context: np.ndarray      # evening / night / weekend logit
  clicks: np.ndarray       # number of clicks
  intent: np.ndarray       # intent leaf


class _Clicks(NamedTuple):
  """Per-click values, flat over sessions in session order."""
  session: np.ndarray
  position: np.ndarray     # 0-based position in the session
  first: np.ndarray        # (S,) index of the session's first click
  last: np.ndarray         # (S,) index of the session's last click
  leaf: np.ndarray
  item: np.ndarray
  favorite: np.ndarray     # bool: the leaf is a favourite of the user
  wishlist: np.ndarray     # bool: the item is the user's wish-list item
  dwell: np.ndarray        # float ms, as drawn (drives behaviour)
  dwell_scaled: np.ndarray  # float ms, after the session length cap
  transit_scaled: np.ndarray  # float ms from the previous step to the click
  scale: np.ndarray        # the session's time scale
  time: np.ndarray         # float ms


class _Purchases(NamedTuple):
  """Per-purchase values, one per (session, item)."""
  source: np.ndarray       # click index
  item: np.ndarray
  relation: np.ndarray     # int8 code of RELATIONS
  slot: np.ndarray         # 0 same / substitute, 1 complement, 2 noise
  at_end: np.ndarray       # bought at the checkout at the end of the session
  with_cart: np.ndarray    # preceded by an add-to-cart
  session: np.ndarray
  order: np.ndarray        # order key at checkout
  time: np.ndarray         # float ms


def _draw_users(world: _World, num_users: int, activity_sigma: float,
                rng: np.random.Generator) -> _Users:
  """Draws activity, propensity, favourite leaves and wish lists."""
  activity = rng.lognormal(-activity_sigma**2 / 2, activity_sigma, num_users)
  propensity = rng.normal(0.0, 1.0, num_users)
  dept_cdf = np.cumsum(np.bincount(world.leaf_dept, weights=world.leaf_pop))
  fav_dept = _sample_cdf(dept_cdf, rng.random((num_users, 2)) * dept_cdf[-1])
  favorite = np.empty((num_users, _NUM_FAVORITES), np.int64)
  for k, dept in enumerate((fav_dept[:, 0], fav_dept[:, 0], fav_dept[:, 1])):
    favorite[:, k] = _draw_in_groups(world.dept_cdf_shift, dept, rng)
  for k in range(3, _NUM_FAVORITES):
    comp = _complement_leaf(world, favorite[:, k - 3], rng)
    popular = _sample_cdf(world.leaf_cdf, rng.random(num_users))
    favorite[:, k] = np.where((rng.random(num_users) < 0.5) & (comp >= 0),
                              comp, popular)
  wishlist = _draw_in_groups(world.item_cdf_shift, favorite.ravel(),
                             rng).reshape(favorite.shape)
  return _Users(activity, propensity, favorite, wishlist)


def _draw_sessions(world: _World, users: _Users, num_slots: int,
                   start_ms: int, sessions_per_user: float,
                   clicks_per_session: float, max_clicks_per_session: int,
                   favorite_leaf_prob: float,
                   rng: np.random.Generator) -> _Sessions:
  """Draws sessions: distinct 3-hour slots per user, intent and length."""
  slot_start = start_ms + np.arange(num_slots, dtype=np.int64) * _SLOT_MS
  hour = (slot_start // _MS_PER_HOUR) % 24
  weekday = (slot_start // _MS_PER_DAY + 3) % 7  # 1970-01-01 was a Thursday.
  slot_w = _HOUR_ACTIVITY[hour] * np.where(weekday >= 5, _WEEKEND_ACTIVITY, 1.0)
  slot_cdf = np.cumsum(slot_w / slot_w.sum())
  num_users = len(users.activity)
  wanted = np.minimum(
      1 + rng.poisson((sessions_per_user - 1) * users.activity), num_slots)
  user = np.repeat(np.arange(num_users, dtype=np.int64), wanted)
  key = np.sort(user * num_slots
                + _sample_cdf(slot_cdf, rng.random(len(user))))
  key = key[np.concatenate([[True], key[1:] != key[:-1]])]
  user, slot = key // num_slots, key % num_slots
  start = slot_start[slot] + rng.integers(0, _MAX_START_OFFSET_MS, len(key))
  order = np.lexsort((user, start))
  user, slot, start = user[order], slot[order], start[order]
  num_sessions = len(user)
  context = (_EVENING_LOGIT * (hour[slot] >= 18)
             + _NIGHT_LOGIT * (hour[slot] < 6)
             + _WEEKEND_LOGIT * (weekday[slot] >= 5))
  clicks = np.minimum(rng.geometric(1.0 / clicks_per_session, num_sessions),
                      max_clicks_per_session).astype(np.int64)
  fav_w = 1.0 / np.arange(1, _NUM_FAVORITES + 1)
  fav_slot = _sample_cdf(np.cumsum(fav_w / fav_w.sum()),
                         rng.random(num_sessions))
  intent = np.where(rng.random(num_sessions) < favorite_leaf_prob,
                    users.favorite[user, fav_slot],
                    _sample_cdf(world.leaf_cdf, rng.random(num_sessions)))
  return _Sessions(user, start, context, clicks, intent)


def _draw_clicks(world: _World, users: _Users, sessions: _Sessions,
                 browse_probs: Sequence[float], wishlist_click_prob: float,
                 dwell_median_s: float, rng: np.random.Generator) -> _Clicks:
  """Draws each click's leaf, item, dwell and time."""
  counts = sessions.clicks
  num_clicks = int(counts.sum())
  session = np.repeat(np.arange(len(counts)), counts)
  first = _segment_starts(counts)
  last = first + counts - 1
  position = np.arange(num_clicks) - first[session]
  user = sessions.user[session]
  browse_cdf = np.cumsum(np.asarray(browse_probs, np.float64))
  browse = _sample_cdf(browse_cdf / browse_cdf[-1], rng.random(num_clicks))
  browse[first] = 0
  leaf = sessions.intent[session]
  to_comp = np.flatnonzero(browse == 1)
  comp = _complement_leaf(world, leaf[to_comp], rng)
  leaf[to_comp[comp >= 0]] = comp[comp >= 0]
  to_fav = np.flatnonzero(browse == 2)
  leaf[to_fav] = users.favorite[user[to_fav],
                                rng.integers(0, _NUM_FAVORITES, len(to_fav))]
  to_pop = np.flatnonzero(browse == 3)
  leaf[to_pop] = _sample_cdf(world.leaf_cdf, rng.random(len(to_pop)))
  item = _draw_in_groups(world.item_cdf_shift, leaf, rng)
  fav_match = users.favorite[user] == leaf[:, None]
  favorite = fav_match.any(axis=1)
  wish_item = users.wishlist[user, fav_match.argmax(axis=1)]
  to_wish = favorite & (rng.random(num_clicks) < wishlist_click_prob)
  item[to_wish] = wish_item[to_wish]
  wishlist = favorite & (item == wish_item)

  # Step j: a transit (impressions), the click, then the dwell on the item.
  dwell = np.clip(rng.lognormal(math.log(dwell_median_s * _MS_PER_S), 1.0,
                                num_clicks), 1000.0, 15 * 60 * 1000.0)
  transit = rng.uniform(2000.0, 12000.0, num_clicks)
  prev_dwell = np.concatenate([[0.0], dwell[:-1]])
  prev_dwell[first] = 0.0
  offset = np.cumsum(transit + prev_dwell)
  offset -= np.repeat(offset[first] - transit[first], counts)
  length = offset[last] + dwell[last] + _CHECKOUT_STEP_MS * (4 * counts + 2)
  scale = np.minimum(1.0, _MAX_SESSION_MS / length)[session]
  return _Clicks(
      session=session, position=position, first=first, last=last, leaf=leaf,
      item=item, favorite=favorite, wishlist=wishlist, dwell=dwell,
      dwell_scaled=dwell * scale, transit_scaled=transit * scale,
      scale=scale, time=sessions.start[session] + offset * scale)


def _click_history(key: np.ndarray, click_time: np.ndarray):
  """Earlier clicks with the same key and the time since the last of them.

  Sessions are in start order and a user's sessions never overlap, so clicks
  of one user are in time order already: a stable sort by key suffices.

  Args:
    key: (C,) int64, e.g. user * num_items + item.
    click_time: (C,) click times.

  Returns:
    (count, gap): (C,) earlier clicks with the key, and (C,) ms since the
    previous one (inf when there is none).
  """
  num_clicks = len(key)
  order = np.argsort(key, kind="stable")
  sorted_key = key[order]
  has_prev = np.concatenate([[False], sorted_key[1:] == sorted_key[:-1]])
  index = np.arange(num_clicks)
  start = np.maximum.accumulate(np.where(has_prev, 0, index))
  count = np.empty(num_clicks, np.int64)
  count[order] = index - start
  gap = np.full(num_clicks, np.inf)
  gap[order[has_prev]] = np.diff(click_time[order])[has_prev[1:]]
  return count, gap


class _PurchaseProbs(NamedTuple):
  """Purchase and cart probabilities of every click, and noise per session.

  Everything `_draw_purchases` needs besides uniform draws: the logits of
  `_purchase_logits` through the sigmoid.
  """
  same: np.ndarray          # (C,) buy A
  substitute: np.ndarray    # (C,) buy a substitute when A is not bought
  complement: np.ndarray    # (C,) buy a complement when neither was bought
  complement_bought: np.ndarray  # (C,) ... when A or a substitute was bought
  has_complement: np.ndarray  # (C,) bool: A's leaf has complement leaves
  cart: np.ndarray          # (C,) abandoned add-to-cart when A is not bought
  noise: np.ndarray         # (S,) one unrelated purchase in the session


class _Logits(NamedTuple):
  """The logits of `_purchase_logits` (complement without its bought term)."""
  same: np.ndarray
  substitute: np.ndarray
  complement: np.ndarray
  complement_bought: float  # added to `complement` when A or a sub is bought
  cart: np.ndarray
  noise: np.ndarray


def _purchase_logits(world: _World, users: _Users, sessions: _Sessions,
                     clicks: _Clicks, biases: Dict[str, float],
                     scale: float = 1.0) -> _Logits:
  """The purchase and cart logits of every click (see the module docstring).

  Args:
    world, users, sessions, clicks: the pre-purchase state.
    biases: the intercepts (`same`, `substitute`, `complement`, `noise`,
      `cart`).
    scale: the signal scale s; every term but the intercepts is multiplied
      by it (at s = 1 the arithmetic is exactly that of s-free code).

  Returns:
    A `_Logits`.
  """
  s = float(scale)
  num_items = len(world.item_ids)
  user = sessions.user[clicks.session]
  item_clicks, item_gap = _click_history(user * num_items + clicks.item,
                                         clicks.time)
  leaf_clicks, _ = _click_history(user * len(world.leaf_names) + clicks.leaf,
                                  clicks.time)
  item_history = np.log1p(item_clicks)
  leaf_history = np.log1p(leaf_clicks)
  propensity = users.propensity[user]
  quality = world.item_quality[clicks.item]
  price_z = world.item_price_z[clicks.item]
  bounce = clicks.dwell < _BOUNCE_MS
  context = s * sessions.context[clicks.session]
  same_coef = {k: s * v for k, v in _SAME_COEF.items()}
  sub_coef = {k: s * v for k, v in _SUB_COEF.items()}
  comp_coef = {k: s * v for k, v in _COMP_COEF.items()}
  noise_coef = {k: s * v for k, v in _NOISE_COEF.items()}
  cart_coef = {k: s * v for k, v in _CART_COEF.items()}
  z_same = (biases["same"] + context + s * world.leaf_same_bias[clicks.leaf]
            + same_coef["propensity"] * propensity
            + same_coef["wishlist"] * clicks.wishlist
            + same_coef["favorite"] * clicks.favorite
            + same_coef["item_history"] * item_history
            + same_coef["leaf_history"] * leaf_history
            + same_coef["recent"] * (item_gap < _MS_PER_DAY)
            + same_coef["quality"] * quality
            + same_coef["price"] * price_z
            + same_coef["position"] * np.minimum(clicks.position, 4) / 4.0
            + same_coef["bounce"] * bounce)
  z_sub = (biases["substitute"] + context
           + s * world.leaf_sub_bias[clicks.leaf]
           + sub_coef["propensity"] * propensity
           + sub_coef["leaf_history"] * leaf_history
           + sub_coef["quality"] * quality
           + sub_coef["price"] * price_z
           + sub_coef["bounce"] * bounce)
  z_comp = (biases["complement"] + context
            + s * world.leaf_comp_bias[clicks.leaf]
            + comp_coef["propensity"] * propensity)
  z_cart = (biases["cart"] + context
            + cart_coef["propensity"] * propensity
            + cart_coef["wishlist"] * clicks.wishlist
            + cart_coef["quality"] * quality
            + cart_coef["item_history"] * item_history)
  z_noise = (biases["noise"] + s * sessions.context
             + noise_coef["propensity"] * users.propensity[sessions.user]
             + noise_coef["log_clicks"] * np.log(sessions.clicks))
  return _Logits(same=z_same, substitute=z_sub, complement=z_comp,
                 complement_bought=comp_coef["bought"], cart=z_cart,
                 noise=z_noise)


def _probabilities(logits: _Logits,
                   has_complement: np.ndarray) -> _PurchaseProbs:
  return _PurchaseProbs(
      same=_sigmoid(logits.same), substitute=_sigmoid(logits.substitute),
      complement=_sigmoid(logits.complement + 0.0),
      complement_bought=_sigmoid(logits.complement
                                 + logits.complement_bought),
      has_complement=has_complement, cart=_sigmoid(logits.cart),
      noise=_sigmoid(logits.noise))


def _solve_intercept(expected, target: float, start: float) -> float:
  """The b with expected(b)[0] == target, for an expected count that rises
  strictly with b.

  Expected counts of rare events are nearly exponential in the intercept,
  so Newton steps are taken on log expected(b) - log target; a step that
  leaves the bracket of the earlier steps bisects it instead.

  Args:
    expected: b -> (expected count, its derivative in b).
    target: a count the function reaches (> 0).
    start: the first guess.

  Returns:
    The intercept, to a relative error of about 1e-12 of the target.
  """
  lo, hi, b = -math.inf, math.inf, float(start)
  for _ in range(100):
    value, slope = expected(b)
    gap = math.log(value) - math.log(target) if value > 0 else -math.inf
    if abs(gap) < 1e-12:
      break
    if gap > 0:
      hi = b
    else:
      lo = b
    step = b - gap * value / slope if slope > 0 and value > 0 else math.nan
    if not lo < step < hi:
      step = (0.5 * (lo + hi) if math.isfinite(lo) and math.isfinite(hi)
              else b + (2.0 if gap < 0 else -2.0))
    b = step
  return b


def _weighted(terms):
  """b -> (sum of w * sigmoid(b + offset) over terms, derivative)."""
  def expected(b):
    value = slope = 0.0
    for w, offset in terms:
      p = _sigmoid(b + offset)
      value += float(np.dot(w, p))
      slope += float(np.dot(w, p * (1.0 - p)))
    return value, slope
  return expected


def _distinct(group: np.ndarray, offset: np.ndarray):
  """b -> (expected groups with at least one success, derivative), for
  independent successes with probability sigmoid(b + offset), by group."""
  num_groups = int(group.max()) + 1 if len(group) else 0
  def expected(b):
    p = _sigmoid(b + offset)
    log_none = np.bincount(group, weights=np.log1p(-p), minlength=num_groups)
    p_sum = np.bincount(group, weights=p, minlength=num_groups)
    none = np.exp(log_none)
    return float((1.0 - none).sum()), float(np.dot(none, p_sum))
  return expected


def _same_groups(clicks: _Clicks, num_items: int) -> np.ndarray:
  """Dense group of each click: its (session, item)."""
  _, group = np.unique(clicks.session * num_items + clicks.item,
                       return_inverse=True)
  return group.reshape(-1)


def _expected_counts(probs: _PurchaseProbs,
                     same_group: np.ndarray) -> Dict[str, float]:
  """Expected purchases by relation and abandoned carts.

  `same` counts a (session, item) once however often it is clicked (as the
  log does); the others count per source click or session.
  """
  not_same = 1.0 - probs.same
  bought = probs.same + not_same * probs.substitute
  comp = np.where(probs.has_complement,
                  bought * probs.complement_bought
                  + (1.0 - bought) * probs.complement, 0.0)
  logit = np.log(probs.same) - np.log1p(-probs.same)
  return {"same": _distinct(same_group, logit)(0.0)[0],
          "substitute": float(np.dot(not_same, probs.substitute)),
          "complement": float(comp.sum()),
          "noise": float(probs.noise.sum()),
          "cart": float(np.dot(not_same, probs.cart))}


def _rescale(logits: _Logits, biases: Dict[str, float],
             probs: _PurchaseProbs, same_group: np.ndarray, scale: float
             ) -> Tuple[_Logits, Dict[str, float]]:
  """Multiplies every logit term but the intercepts by `scale`, then solves
  the intercepts so that `_expected_counts` stay those of `probs` (s = 1),
  in turn: same, substitute (given same), complement (given both), noise,
  abandoned carts (given same)."""
  target = _expected_counts(probs, same_group)
  has = probs.has_complement.astype(np.float64)
  s = float(scale)
  terms = {name: s * (getattr(logits, name) - biases[name])
           for name in ("same", "substitute", "complement", "cart", "noise")}
  solved = {}
  solved["same"] = _solve_intercept(
      _distinct(same_group, terms["same"]), target["same"], biases["same"])
  p_same = _sigmoid(solved["same"] + terms["same"])
  not_same = 1.0 - p_same
  solved["substitute"] = _solve_intercept(
      _weighted([(not_same, terms["substitute"])]), target["substitute"],
      biases["substitute"])
  bought = p_same + not_same * _sigmoid(solved["substitute"]
                                        + terms["substitute"])
  comp_bought = s * logits.complement_bought
  solved["complement"] = _solve_intercept(
      _weighted([(has * bought, terms["complement"] + comp_bought),
                 (has * (1.0 - bought), terms["complement"])]),
      target["complement"], biases["complement"])
  solved["noise"] = _solve_intercept(
      _weighted([(np.ones(len(logits.noise)), terms["noise"])]),
      target["noise"], biases["noise"])
  solved["cart"] = _solve_intercept(
      _weighted([(not_same, terms["cart"])]), target["cart"], biases["cart"])
  scaled = _Logits(
      same=solved["same"] + terms["same"],
      substitute=solved["substitute"] + terms["substitute"],
      complement=solved["complement"] + terms["complement"],
      complement_bought=comp_bought,
      cart=solved["cart"] + terms["cart"],
      noise=solved["noise"] + terms["noise"])
  return scaled, solved


def _purchase_probs(world: _World, users: _Users, sessions: _Sessions,
                    clicks: _Clicks, biases: Dict[str, float],
                    scale: float) -> Tuple[_PurchaseProbs, Dict[str, float]]:
  """The purchase probabilities at signal scale `scale` and the intercepts.

  At scale 1 the intercepts are `biases`; otherwise they are re-solved on
  this population (`_rescale`).
  """
  logits = _purchase_logits(world, users, sessions, clicks, biases)
  has_comp = world.comp_ptr[clicks.leaf + 1] > world.comp_ptr[clicks.leaf]
  probs = _probabilities(logits, has_comp)
  if scale == 1.0:
    return probs, dict(biases)
  logits, solved = _rescale(logits, biases, probs,
                            _same_groups(clicks, len(world.item_ids)), scale)
  return _probabilities(logits, has_comp), solved


def _draw_purchases(world: _World, sessions: _Sessions, clicks: _Clicks,
                    probs: _PurchaseProbs, cart_before_purchase_prob: float,
                    checkout_at_end_prob: float, rng: np.random.Generator,
                    carts: bool = True):
  """Draws the purchases generated by each click and the abandoned carts.

  Args:
    world, sessions, clicks: the pre-purchase state.
    probs: the probabilities of `_purchase_probs`.
    cart_before_purchase_prob: see `simulate`.
    checkout_at_end_prob: see `simulate`.
    rng: the random stream (consumed in a fixed order: `simulate` stays
      reproducible).
    carts: False skips the draws of abandoned carts and of the carts before
      purchases (labels do not depend on carts; `redraw_events`).

  Returns:
    (purchases, abandoned, buy_same): a `_Purchases`, a (C,) bool mask of
    clicks followed by an add-to-cart of the clicked item that is not bought
    (None without `carts`; `with_cart` is then all False) and the (C,) bool
    mask of clicks that drew a purchase of their own item (before a
    (session, item) bought twice is kept once).
  """
  num_items = len(world.item_ids)
  num_clicks = len(clicks.item)
  # One buffer takes each uniform draw in turn (the same numbers as fresh
  # arrays; the oracle redraws thousands of times).
  uniform = rng.random(num_clicks)
  buy_same = uniform < probs.same
  buy_sub = rng.random(out=uniform) < probs.substitute
  buy_sub &= ~buy_same
  # The complement's probability is higher where A or a substitute was
  # bought: those few clicks are compared again.
  bought = np.flatnonzero(buy_same | buy_sub)
  buy_comp = rng.random(out=uniform) < probs.complement
  buy_comp[bought] = uniform[bought] < probs.complement_bought[bought]
  buy_comp &= probs.has_complement
  abandoned = None
  if carts:
    abandoned = ~buy_same & (rng.random(out=uniform) < probs.cart)
  noisy = np.flatnonzero(rng.random(len(sessions.user)) < probs.noise)

  same_src = np.flatnonzero(buy_same)
  sub_src = np.flatnonzero(buy_sub)
  comp_src = np.flatnonzero(buy_comp)
  noise_src = clicks.first[noisy] + np.floor(
      rng.random(len(noisy)) * sessions.clicks[noisy]).astype(np.int64)
  sizes = [len(same_src), len(sub_src), len(comp_src), len(noise_src)]
  source = np.concatenate([same_src, sub_src, comp_src, noise_src])
  item = np.concatenate([
      clicks.item[same_src],
      _substitute(world, clicks.item[sub_src], rng),
      _draw_in_groups(world.item_cdf_shift,
                      _complement_leaf(world, clicks.leaf[comp_src], rng),
                      rng),
      _unrelated_popular(world, clicks.item[noise_src], rng)])
  relation = np.repeat(np.arange(4, dtype=np.int8), sizes)
  slot = np.repeat(np.array([0, 0, 1, 2]), sizes)
  at_end = rng.random(len(source)) < checkout_at_end_prob
  if carts:
    with_cart = rng.random(len(source)) < cart_before_purchase_prob
  else:
    with_cart = np.zeros(len(source), bool)
  session = clicks.session[source]
  order = (np.where(at_end, _CHECKOUT_ORDER, 0) + clicks.position[source] * 4
           + slot)
  # A (session, item) is bought once: keep its first purchase.
  key = session * num_items + item
  by_key = np.lexsort((order, key))
  sorted_key = key[by_key]
  keep = np.sort(by_key[np.concatenate([np.ones(min(1, len(key)), bool),
                                        sorted_key[1:] != sorted_key[:-1]])])
  source, item, relation, slot, at_end, with_cart, session, order = (
      a[keep] for a in (source, item, relation, slot, at_end, with_cart,
                        session, order))
  last = clicks.last[session]
  session_end = clicks.time[last] + clicks.dwell_scaled[last]
  time_ = np.where(
      at_end,
      session_end + clicks.scale[source] * _CHECKOUT_STEP_MS
      * (1 + 4 * clicks.position[source] + slot),
      clicks.time[source] + (0.7 + 0.1 * slot) * clicks.dwell_scaled[source])
  return _Purchases(source, item, relation, slot, at_end, with_cart, session,
                    order, time_), abandoned, buy_same


def _purchase_order(clicks: _Clicks, purchases: _Purchases) -> np.ndarray:
  """Order keys of purchase events in their session (see `_records`)."""
  p = purchases
  return np.where(p.at_end, p.order, clicks.position[p.source] * 32 + 24
                  + p.slot)


def _intent_carts(world: _World, users: _Users, sessions: _Sessions,
                  clicks: _Clicks, scale: float,
                  rng: np.random.Generator) -> np.ndarray:
  """Which clicks are preceded by an intent add-to-cart (signal_scale > 1).

  The latent intent of a click on A is the part of its `same` logit that no
  event shows directly: s · (user propensity, A on the wish list, A's
  quality, A's leaf bias) with the `_SAME_COEF` weights. With odds
  (s − 1) · exp(intent + `_INTENT_CART_LOGIT`) the user adds A to the cart
  from the listing just before clicking it (as Taobao's `fav`, which the
  loaders map to add_to_cart). The cart is logged before the click, so the
  click's own point-in-time features (`u_item_carts`, `u_leaf_carts`,
  `u_events`, `session_events_before`) and every later click of the user see
  it; it does not change any purchase probability.

  Returns:
    (C,) bool.
  """
  user = sessions.user[clicks.session]
  intent = scale * (_SAME_COEF["propensity"] * users.propensity[user]
                    + _SAME_COEF["wishlist"] * clicks.wishlist
                    + _SAME_COEF["quality"] * world.item_quality[clicks.item]
                    + world.leaf_same_bias[clicks.leaf])
  logit = intent + _INTENT_CART_LOGIT + math.log(scale - 1.0)
  return rng.random(len(clicks.item)) < _sigmoid(logit)


def _records(world: _World, clicks: _Clicks, purchases: _Purchases,
             abandoned: np.ndarray, impressions_per_click: float,
             rng: np.random.Generator,
             intent_cart: Optional[np.ndarray] = None):
  """All events as (session, order in session, time, item, type) arrays.

  The purchases come last, in `purchases` order.
  """
  num_clicks = len(clicks.item)
  num_imp = np.minimum(rng.poisson(impressions_per_click, num_clicks),
                       _MAX_IMPRESSIONS_PER_CLICK)
  i_click = np.repeat(np.arange(num_clicks), num_imp)
  i_rank = np.arange(len(i_click)) - _segment_starts(num_imp)[i_click]
  i_item = _draw_in_groups(world.item_cdf_shift, clicks.leaf[i_click], rng)
  transit = clicks.transit_scaled[i_click]
  i_time = (clicks.time[i_click] - transit
            + transit * (i_rank + 1) / (num_imp[i_click] + 1))
  # Order keys within step j: impressions j*32 + rank, an intent cart +15,
  # the click +16, an abandoned cart +17, carts of purchases +18.., inline
  # purchases +24..; checkout purchases _CHECKOUT_ORDER + 4j + slot.
  step = clicks.position * 32
  dwell = clicks.dwell_scaled
  p = purchases
  cart_src = p.source[p.with_cart]
  cart_slot = p.slot[p.with_cart]
  parts = [
      (clicks.session[i_click], step[i_click] + i_rank, i_time, i_item,
       schema.IMPRESSION),
      (clicks.session, step + 16, clicks.time, clicks.item, schema.CLICK),
      (clicks.session[abandoned], step[abandoned] + 17,
       clicks.time[abandoned] + 0.3 * dwell[abandoned],
       clicks.item[abandoned], schema.ADD_TO_CART),
      (clicks.session[cart_src], step[cart_src] + 18 + cart_slot,
       clicks.time[cart_src] + (0.4 + 0.1 * cart_slot) * dwell[cart_src],
       p.item[p.with_cart], schema.ADD_TO_CART),
  ]
  if intent_cart is not None:
    # After the last impression (at most transit / 2 before the click).
    parts.append((clicks.session[intent_cart], step[intent_cart] + 15,
                  clicks.time[intent_cart]
                  - 0.1 * clicks.transit_scaled[intent_cart],
                  clicks.item[intent_cart], schema.ADD_TO_CART))
  parts.append((p.session, _purchase_order(clicks, p), p.time, p.item,
                schema.PURCHASE))
  session = np.concatenate([part[0] for part in parts])
  order = np.concatenate([part[1] for part in parts])
  time_ = np.floor(np.concatenate([part[2] for part in parts])).astype(
      np.int64)
  item = np.concatenate([part[3] for part in parts])
  kind = np.concatenate(
      [np.full(len(part[0]), part[4], np.int8) for part in parts])
  return session, order, time_, item, kind


class PrePurchaseState(NamedTuple):
  """What `simulate` has drawn before the purchases.

  Everything but the purchases (and the carts): the world, the users, the
  sessions, the clicks with their dwell and times, and each click's purchase
  probabilities. `redraw_events` draws purchases again from it, as
  `simulate` does.

  Attributes:
    click_user_id: (C,) int64 user id of every click, clicks in session
      order (by session, then position in the session).
    click_session_id: (C,) int64 session id of every click.
    click_item_id: (C,) int64 clicked item id.
    click_position: (C,) int64 0-based position of the click in its session.
    intercepts: the intercepts in force (`same`, `substitute`, `complement`,
      `noise`, `cart`): the `*_bias` arguments at signal_scale 1, else the
      re-solved ones.
    signal_scale: the signal scale.
    session_ids: (S,) int64 id of each session of the state.
    world, users, sessions, clicks, probs, cart_before_purchase_prob,
    checkout_at_end_prob, user_offset: internal state of the draws.
  """
  click_user_id: np.ndarray
  click_session_id: np.ndarray
  click_item_id: np.ndarray
  click_position: np.ndarray
  intercepts: Dict[str, float]
  signal_scale: float
  session_ids: np.ndarray
  world: _World
  users: _Users
  sessions: _Sessions
  clicks: _Clicks
  probs: _PurchaseProbs
  cart_before_purchase_prob: float
  checkout_at_end_prob: float
  user_offset: int


class RedrawnEvents(NamedTuple):
  """Click and purchase events of one draw of the purchases.

  Rows are grouped by session and in session order (by time; ties as in the
  simulated log), or with `redraw_events(..., order="user")` grouped by
  user, each user's sessions in turn. Labels (`labels.label_clicks`) depend
  only on clicks and purchases, and order events by (session or user,
  timestamp, input position); both orders list a session's events, and a
  user's events at one timestamp, in the same relative order, so both give
  the labels the draw would have given (and as a user's sessions do not
  overlap in time, the user order is already sorted by time).

  Attributes:
    user_id, session_id, timestamp, item_id: int64 columns of the canonical
      event log.
    event_type: int8 codes of `schema.EVENT_TYPES` (click or purchase).
    click: index into the state's clicks for click rows, -1 for purchases.
    same_clicks: indices into the state's clicks of the clicks that drew a
      purchase of their own item (before the one-purchase-per-item rule),
      whether or not they are among the rows.
  """
  user_id: np.ndarray
  session_id: np.ndarray
  timestamp: np.ndarray
  item_id: np.ndarray
  event_type: np.ndarray
  click: np.ndarray
  same_clicks: np.ndarray


def subset_state(state: PrePurchaseState,
                 sessions: np.ndarray) -> PrePurchaseState:
  """The state of some sessions only (for redrawing just what one needs).

  Purchases of a session depend only on its own clicks, so redrawing the
  subset draws the kept sessions' purchases from the same model.

  Args:
    state: from `simulate_with_state`.
    sessions: (S,) bool, the sessions to keep, in the order of
      `state.session_ids`.

  Returns:
    A `PrePurchaseState` with the kept sessions, in their order.

  Raises:
    ValueError: if the mask does not have one value per session.
  """
  keep = np.asarray(sessions, bool)
  old = state.sessions
  if keep.shape != old.user.shape:
    raise ValueError(f"sessions must be a bool mask of the state's "
                     f"{len(old.user)} sessions, got shape {keep.shape}.")
  kept = np.flatnonzero(keep)
  new_index = np.cumsum(keep) - 1
  c = state.clicks
  rows = np.flatnonzero(keep[c.session])
  counts = old.clicks[kept]
  first = _segment_starts(counts)
  clicks = c._replace(
      session=new_index[c.session[rows]], position=c.position[rows],
      first=first, last=first + counts - 1, leaf=c.leaf[rows],
      item=c.item[rows], favorite=c.favorite[rows],
      wishlist=c.wishlist[rows], dwell=c.dwell[rows],
      dwell_scaled=c.dwell_scaled[rows],
      transit_scaled=c.transit_scaled[rows], scale=c.scale[rows],
      time=c.time[rows])
  p = state.probs
  probs = _PurchaseProbs(*(a[rows] for a in p[:-1]), noise=p.noise[kept])
  return state._replace(
      click_user_id=state.click_user_id[rows],
      click_session_id=state.session_ids[kept][clicks.session],
      click_item_id=state.click_item_id[rows],
      click_position=state.click_position[rows],
      sessions=_Sessions(*(a[kept] for a in old)), clicks=clicks,
      probs=probs, session_ids=state.session_ids[kept])


_KEEP = ("all", "sessions", "users", "window")


def _window_sessions(state: PrePurchaseState, purchases: _Purchases,
                     window_ms: int) -> np.ndarray:
  """(S,) bool: sessions with a purchase of their user in [first click, last
  click + `window_ms`] (integer ms, as the events' timestamps)."""
  sessions, clicks = state.sessions, state.clicks
  has = np.zeros(len(sessions.user), bool)
  if not len(purchases.item):
    return has
  user = sessions.user[purchases.session]
  time_ = np.floor(purchases.time).astype(np.int64)
  first, last = time_.min(), time_.max()
  span = np.int64(last - first + 2)
  if int(span) * (int(sessions.user.max()) + 1) >= 2**62:
    return _user_sessions(state, purchases)  # A superset.
  # Sessions of users with a purchase; a session's clicks are in time order,
  # so its first and last clicks bound its click times.
  num_users = len(state.users.propensity)
  count = np.bincount(user, minlength=num_users)
  candidates = np.flatnonzero(count[sessions.user] > 0)
  begin = np.floor(clicks.time[clicks.first[candidates]]).astype(np.int64)
  end = np.floor(clicks.time[clicks.last[candidates]]).astype(np.int64)
  end = np.minimum(end, last - window_ms) + window_ms  # No overflow.
  # The user's purchases span [earliest, latest]: a session whose bounds
  # miss that span has none, one that meets it has one if it is the user's
  # only purchase.
  earliest = np.full(num_users, last + 1)
  np.minimum.at(earliest, user, time_)
  latest = np.full(num_users, first - 1)
  np.maximum.at(latest, user, time_)
  candidate_user = sessions.user[candidates]
  meets = ((latest[candidate_user] >= begin)
           & (earliest[candidate_user] <= end))
  search = meets & (count[candidate_user] > 1)
  has[candidates[meets & ~search]] = True
  candidates, begin, end = candidates[search], begin[search], end[search]
  # The others: the user's first purchase at or after `begin`, then whether
  # it is by `end`. Purchases keyed by (user, time), times relative to the
  # first in [0, span - 2]; clipped bounds keep a query in its user's keys.
  keys = np.sort(user * span + (time_ - first))
  base = sessions.user[candidates] * span
  after = np.searchsorted(
      keys, base + (np.clip(begin, first, last + 1) - first), side="left")
  found = after < len(keys)
  after = np.minimum(after, len(keys) - 1)
  found &= keys[after] <= base + (np.clip(end, first - 1, last) - first)
  has[candidates[found]] = True
  return has


def _user_sessions(state: PrePurchaseState,
                   purchases: _Purchases) -> np.ndarray:
  """(S,) bool: the sessions of the users with a purchase."""
  users = state.sessions.user
  buyer = np.zeros(len(state.users.propensity), bool)
  buyer[users[purchases.session]] = True
  return buyer[users]


def redraw_events(state: PrePurchaseState, rng: np.random.Generator,
                  keep: str = "all", window_ms: Optional[int] = None,
                  order: str = "session") -> RedrawnEvents:
  """Draws the purchases again from a pre-purchase state.

  The purchases follow the same generative model as in `simulate` (same
  probabilities, same item choices, checkout and one-purchase-per-item
  rules), with the random numbers of `rng`. Carts are not drawn. The random
  numbers and the purchases do not depend on `keep` or `order`.

  Args:
    state: from `simulate_with_state`.
    rng: the random stream of this draw.
    keep: which clicks to return (every purchase is returned): "all",
      "sessions" (only the sessions with a purchase in this draw: the others
      have all-zero session labels), "users" (only the users with a
      purchase: for attribution windows, which cross sessions) or "window"
      (only the sessions with a purchase of their user at or after their
      first click and at most `window_ms` after their last click: under an
      attribution window of `window_ms`, the others' clicks have all-zero
      labels and no purchase is credited to them, so leaving them out
      changes no other label).
    window_ms: the window of `keep="window"`, in ms (`labels.
      window_milliseconds`).
    order: "session" (session by session, in the state's order) or "user"
      (user by user, each user's sessions in the state's order): with ids
      recoded to dense codes, `label_clicks` then finds its user and
      session orders without a sort.

  Returns:
    A `RedrawnEvents`.

  Raises:
    ValueError: for an unknown `keep` or `order`, or `keep="window"`
      without a window >= 0.
  """
  if keep not in _KEEP:
    raise ValueError(f"keep must be one of {_KEEP}, got {keep!r}.")
  if order not in ("session", "user"):
    raise ValueError(f'order must be "session" or "user", got {order!r}.')
  if keep == "window" and (window_ms is None or window_ms < 0):
    raise ValueError(f'keep="window" needs window_ms >= 0, got '
                     f"{window_ms!r}.")
  clicks, sessions = state.clicks, state.sessions
  purchases, _, buy_same = _draw_purchases(
      state.world, sessions, clicks, state.probs,
      state.cart_before_purchase_prob, state.checkout_at_end_prob, rng,
      carts=False)
  if keep == "all":
    selected = np.arange(len(clicks.item))
  elif keep == "sessions":
    has = np.zeros(len(sessions.user), bool)
    has[purchases.session] = True
    selected = np.flatnonzero(has[clicks.session])
  elif keep == "users":
    selected = np.flatnonzero(_user_sessions(state, purchases)[
        clicks.session])
  else:
    selected = np.flatnonzero(_window_sessions(state, purchases, window_ms)[
        clicks.session])
  num_selected, num_purchases = len(selected), len(purchases.item)
  session = np.concatenate([clicks.session[selected], purchases.session])
  step = np.concatenate([clicks.position[selected] * 32 + 16,
                         _purchase_order(clicks, purchases)])
  if order == "session":
    perm = np.argsort(session * (1 << 22) + step)
  else:
    # The sessions with rows, by user; rows by (that rank, step): one value
    # sort of the key and the row when they fit in an int64 (the keys are
    # distinct, so any sort gives the same order).
    present = np.zeros(len(sessions.user), bool)
    present[session] = True
    ranked = np.flatnonzero(present)
    ranked = ranked[np.argsort(sessions.user[ranked], kind="stable")]
    rank = np.zeros(len(sessions.user), np.int64)
    rank[ranked] = np.arange(len(ranked))
    key = rank[session] * (1 << 22) + step
    size = len(key)
    if (len(ranked) << 22) * size < 2**62:
      key *= size
      key += np.arange(size, dtype=np.int64)
      key.sort()
      perm = key % size
    else:
      perm = np.argsort(key)
  session = session[perm]
  time_ = np.floor(np.concatenate([clicks.time[selected],
                                   purchases.time])).astype(np.int64)[perm]
  item = np.concatenate([clicks.item[selected], purchases.item])[perm]
  kind = np.concatenate([np.full(num_selected, schema.CLICK, np.int8),
                         np.full(num_purchases, schema.PURCHASE, np.int8)])
  click = np.concatenate([selected, np.full(num_purchases, -1)])[perm]
  return RedrawnEvents(
      user_id=sessions.user[session] + state.user_offset,
      session_id=state.session_ids[session], timestamp=time_,
      item_id=state.world.item_ids[item], event_type=kind[perm],
      click=click.astype(np.int64), same_clicks=np.flatnonzero(buy_same))


@gin.configurable
def simulate(num_users: int = 10_000,
             num_days: int = 30,
             branching: Sequence[int] = (8, 6, 6),
             items_per_leaf: float = 40.0,
             item_zipf_exponent: float = 1.0,
             leaf_zipf_exponent: float = 0.8,
             brands_per_department: int = 25,
             complements_per_leaf: int = 3,
             sessions_per_user: float = 5.0,
             activity_sigma: float = 1.0,
             clicks_per_session: float = 4.0,
             max_clicks_per_session: int = 20,
             impressions_per_click: float = 0.5,
             favorite_leaf_prob: float = 0.7,
             browse_probs: Sequence[float] = (0.55, 0.15, 0.10, 0.20),
             wishlist_click_prob: float = 0.3,
             dwell_median_s: float = 30.0,
             same_bias: float = -6.3,
             substitute_bias: float = -5.7,
             complement_bias: float = -6.3,
             noise_bias: float = -5.0,
             cart_bias: float = -3.5,
             cart_before_purchase_prob: float = 0.7,
             checkout_at_end_prob: float = 0.6,
             start_ms: int = DEFAULT_START_MS,
             first_user_id: int = 0,
             seed: int = 0,
             signal_scale: float = 1.0) -> SimulatedLog:
  """Simulates a shopping log (see the module docstring for the model).

  The world (taxonomy, items, leaf relations) depends only on `seed` and the
  world arguments (`branching` … `complements_per_leaf`); users and sessions
  depend on `seed`, `first_user_id` and everything else. So calls that differ
  only in `first_user_id` / `num_users` share one catalog and give disjoint
  user blocks (see `simulate_chunks`).

  Args:
    num_users: users to simulate (ids `first_user_id ...`).
    num_days: length of the time range, starting at `start_ms`.
    branching: children per taxonomy level, root first; the number of leaves
      is their product.
    items_per_leaf: mean items per leaf (log-normal, at least 2).
    item_zipf_exponent: Zipf exponent of item popularity within a leaf.
    leaf_zipf_exponent: Zipf exponent of leaf popularity.
    brands_per_department: brands per top-level category (Zipf shares).
    complements_per_leaf: pairing rounds that give each leaf about this many
      complement leaves.
    sessions_per_user: mean sessions per user (1 + Poisson, scaled by the
      user's log-normal activity; at most one per 3-hour slot).
    activity_sigma: log-normal sigma of user activity (the heavy tail).
    clicks_per_session: mean clicks per session (geometric).
    max_clicks_per_session: cap on clicks per session.
    impressions_per_click: mean impressions (Poisson) before each click.
    favorite_leaf_prob: probability that a session's intent is a favourite
      leaf of the user rather than a leaf drawn by global popularity.
    browse_probs: weights of where each click after the first goes: the intent
      leaf, a complement of it, another favourite leaf, a popular leaf.
    wishlist_click_prob: probability that a click in a favourite leaf lands on
      the user's wish-list item of that leaf.
    dwell_median_s: median dwell after a click, seconds (log-normal).
    same_bias: intercept of the logit of buying the clicked item.
    substitute_bias: intercept of the logit of buying a substitute instead.
    complement_bias: intercept of the logit of also buying a complement.
    noise_bias: intercept of the per-session logit of an unrelated purchase.
    cart_bias: intercept of the logit of an abandoned add-to-cart per click.
    cart_before_purchase_prob: probability that an add-to-cart of the item
      precedes a purchase.
    checkout_at_end_prob: probability that a purchase happens at a checkout at
      the end of the session rather than right after its source click.
    start_ms: start of the time range, ms since the epoch (UTC hours drive the
      daily pattern).
    first_user_id: id of the first user; session ids start at
      `first_user_id * slots`, with `slots = 8 * num_days`, so blocks of users
      simulated separately have disjoint user and session ids.
    seed: the seed of every random draw.
    signal_scale: s > 0, how strongly the latent and observed drivers move
      purchase decisions: every term of the purchase and cart logits but the
      intercepts is multiplied by s, and the intercepts are re-solved on the
      drawn population so that the expected numbers of same, substitute,
      complement and noise purchases and of abandoned carts stay those of
      s = 1 (the `*_bias` arguments then give those targets). For s > 1 a
      click's latent intent is also logged before it, as an add-to-cart with
      odds proportional to s - 1 (see the module docstring). s = 1 is
      exactly the calibrated world, draw for draw.

  Returns:
    A `SimulatedLog`.

  Raises:
    ValueError: if an argument is out of range.
  """
  arguments = dict(locals())  # Only the arguments: keep this line first.
  return _simulate(**arguments)[0]


def _simulate(num_users, num_days, branching, items_per_leaf,
              item_zipf_exponent, leaf_zipf_exponent, brands_per_department,
              complements_per_leaf, sessions_per_user, activity_sigma,
              clicks_per_session, max_clicks_per_session,
              impressions_per_click, favorite_leaf_prob, browse_probs,
              wishlist_click_prob, dwell_median_s, same_bias,
              substitute_bias, complement_bias, noise_bias, cart_bias,
              cart_before_purchase_prob, checkout_at_end_prob, start_ms,
              first_user_id, seed, signal_scale
              ) -> Tuple[SimulatedLog, PrePurchaseState]:
  """`simulate` and the state it had before drawing the purchases."""
  branching = tuple(int(b) for b in branching)
  _validate(num_users, num_days, branching, items_per_leaf,
            item_zipf_exponent, leaf_zipf_exponent, brands_per_department,
            complements_per_leaf, sessions_per_user, activity_sigma,
            clicks_per_session, max_clicks_per_session, impressions_per_click,
            favorite_leaf_prob, browse_probs,
            wishlist_click_prob, dwell_median_s, cart_before_purchase_prob,
            checkout_at_end_prob, first_user_id, seed, signal_scale)
  signal_scale = float(signal_scale)
  world = _build_world(
      branching, float(items_per_leaf), float(item_zipf_exponent),
      float(leaf_zipf_exponent), int(brands_per_department),
      int(complements_per_leaf),
      np.random.default_rng(np.random.SeedSequence([seed, 0])))
  rng = np.random.default_rng(
      np.random.SeedSequence([seed, 1, int(first_user_id)]))
  num_slots = num_days * (24 // _SLOT_HOURS)
  users = _draw_users(world, int(num_users), float(activity_sigma), rng)
  sessions = _draw_sessions(world, users, num_slots, int(start_ms),
                            float(sessions_per_user),
                            float(clicks_per_session),
                            int(max_clicks_per_session),
                            float(favorite_leaf_prob), rng)
  clicks = _draw_clicks(world, users, sessions, browse_probs,
                        float(wishlist_click_prob), float(dwell_median_s), rng)
  biases = dict(same=same_bias, substitute=substitute_bias,
                complement=complement_bias, noise=noise_bias, cart=cart_bias)
  probs, intercepts = _purchase_probs(world, users, sessions, clicks, biases,
                                      signal_scale)
  intent_cart = None
  if signal_scale > 1.0:
    # A stream of its own: the main stream, and so the clicks, impressions
    # and uniform draws of the purchases, stay those of other scales.
    intent_cart = _intent_carts(
        world, users, sessions, clicks, signal_scale, np.random.default_rng(
            np.random.SeedSequence([seed, 2, int(first_user_id)])))
  user_offset = int(first_user_id)
  session_offset = user_offset * num_slots
  click_user = sessions.user[clicks.session]
  state = PrePurchaseState(
      click_user_id=click_user + user_offset,
      click_session_id=clicks.session + session_offset,
      click_item_id=world.item_ids[clicks.item],
      click_position=clicks.position, intercepts=intercepts,
      signal_scale=signal_scale,
      session_ids=np.arange(len(sessions.user), dtype=np.int64)
      + session_offset, world=world, users=users, sessions=sessions,
      clicks=clicks, probs=probs,
      cart_before_purchase_prob=float(cart_before_purchase_prob),
      checkout_at_end_prob=float(checkout_at_end_prob),
      user_offset=user_offset)
  purchases, abandoned, _ = _draw_purchases(
      world, sessions, clicks, probs, float(cart_before_purchase_prob),
      float(checkout_at_end_prob), rng)
  session, order, time_, item, kind = _records(
      world, clicks, purchases, abandoned, float(impressions_per_click), rng,
      intent_cart)
  source_item = clicks.item[purchases.source]
  del abandoned, intent_cart

  # Sort by (time, session, order in session): by the last two first (they
  # are unique together), then stably by time.
  perm = np.argsort(session * (1 << 22) + order)
  perm = perm[np.argsort(time_[perm], kind="stable")]
  del order
  session, time_, item, kind = (session[perm], time_[perm], item[perm],
                                kind[perm])
  events = pd.DataFrame({
      "user_id": sessions.user[session] + user_offset,
      "session_id": session + session_offset,
      "timestamp": time_,
      "item_id": world.item_ids[item],
      "event_type": pd.Categorical.from_codes(
          kind, dtype=schema.EVENT_TYPE_DTYPE),
  })
  # Ground truth in event order (purchase records are the last ones).
  num_purchases = len(purchases.item)
  is_purchase = perm >= len(perm) - num_purchases
  rows = perm[is_purchase] - (len(perm) - num_purchases)
  truth = pd.DataFrame({
      "session_id": purchases.session[rows] + session_offset,
      "user_id": sessions.user[purchases.session[rows]] + user_offset,
      "timestamp": time_[is_purchase],
      "item_id": world.item_ids[purchases.item[rows]],
      "relation": pd.Categorical.from_codes(purchases.relation[rows],
                                            dtype=RELATION_DTYPE),
      "source_item_id": world.item_ids[source_item[rows]],
  })
  log = SimulatedLog(events=events, catalog=_catalog(world),
                     purchases=truth, leaf_relations=_leaf_relations(world))
  return log, state


def simulate_arguments(**simulate_kwargs) -> Dict[str, Any]:
  """Every argument `simulate(**simulate_kwargs)` runs with.

  Arguments not given take their (unscoped) gin binding of `simulate`, else
  their default.

  Args:
    **simulate_kwargs: arguments of `simulate`.

  Returns:
    {argument name: value} for all of `simulate`'s arguments.

  Raises:
    ValueError: for a name that is not an argument of `simulate`.
  """
  parameters = inspect.signature(simulate).parameters
  unknown = sorted(set(simulate_kwargs) - set(parameters))
  if unknown:
    raise ValueError(f"{unknown} are not arguments of simulate; it takes "
                     f"{sorted(parameters)}.")
  arguments = {}
  for name, parameter in parameters.items():
    if name in simulate_kwargs:
      arguments[name] = simulate_kwargs[name]
      continue
    try:
      arguments[name] = gin.query_parameter(
          f"cabb_tf.data.simulator.simulate.{name}")
    except ValueError:
      arguments[name] = parameter.default
  return arguments


def simulate_with_state(**simulate_kwargs
                        ) -> Tuple[SimulatedLog, PrePurchaseState]:
  """`simulate(**simulate_kwargs)` and its `PrePurchaseState`.

  The log is the one `simulate` returns for the same arguments (gin
  bindings of `simulate` apply as there, see `simulate_arguments`); the
  state lets `redraw_events` draw its purchases again.

  Args:
    **simulate_kwargs: arguments of `simulate`.

  Returns:
    (log, state).

  Raises:
    ValueError: if an argument is unknown or out of range.
  """
  return _simulate(**simulate_arguments(**simulate_kwargs))


def _catalog(world: _World) -> pd.DataFrame:
  paths = [world.leaf_paths[i] for i in world.item_leaf.tolist()]
  catalog = schema.make_catalog(world.item_ids, paths, world.item_brand,
                                world.item_price)
  return catalog.sort_values("item_id", kind="stable").reset_index(drop=True)


def _leaf_relations(world: _World) -> pd.DataFrame:
  num_leaves = len(world.leaf_names)
  src = np.repeat(np.arange(num_leaves), np.diff(world.comp_ptr))
  leaf_a = np.concatenate([np.arange(num_leaves), src])
  leaf_b = np.concatenate([np.arange(num_leaves), world.comp_idx])
  relation = np.concatenate([np.zeros(num_leaves, np.int8),
                             np.ones(len(src), np.int8)])
  order = np.lexsort((leaf_b, leaf_a))
  return pd.DataFrame({
      "leaf_a": world.leaf_names[leaf_a[order]],
      "leaf_b": world.leaf_names[leaf_b[order]],
      "relation": pd.Categorical.from_codes(relation[order],
                                            dtype=LEAF_RELATION_DTYPE),
  })


def pair_relation(log: SimulatedLog, leaf_a, leaf_b) -> np.ndarray:
  """The latent relation of leaf pairs, vectorized.

  Args:
    log: a simulated log (its `leaf_relations` and `catalog` are used).
    leaf_a: a leaf name or an array-like of leaf names.
    leaf_b: the same, broadcastable against `leaf_a`.

  Returns:
    An array of str with the broadcast shape: 'substitute' where the leaves
    are equal, 'complement' for a complement pair, else 'unrelated'.

  Raises:
    ValueError: if a name is not a leaf of `log.catalog`.
  """
  relations = log.leaf_relations
  leaves = pd.Index(
      relations.loc[relations["relation"] == "substitute", "leaf_a"])
  a, b = np.broadcast_arrays(np.asarray(leaf_a, dtype=object),
                             np.asarray(leaf_b, dtype=object))
  ia = leaves.get_indexer(a.ravel())
  ib = leaves.get_indexer(b.ravel())
  for name, values, idx in (("leaf_a", a.ravel(), ia), ("leaf_b", b.ravel(),
                                                        ib)):
    if (idx < 0).any():
      raise ValueError(
          f"pair_relation: {name} has {(idx < 0).sum()} name(s) that are not "
          f"leaves of this simulated catalog, e.g. {values[idx < 0][0]!r}; "
          f"leaves are full paths such as {leaves[0]!r}.")
  comp = relations[relations["relation"] == "complement"]
  codes = np.sort(leaves.get_indexer(comp["leaf_a"]).astype(np.int64)
                  * len(leaves) + leaves.get_indexer(comp["leaf_b"]))
  query = ia.astype(np.int64) * len(leaves) + ib
  pos = np.minimum(np.searchsorted(codes, query), max(len(codes) - 1, 0))
  is_comp = (codes[pos] == query) if len(codes) else np.zeros(len(query), bool)
  out = np.where(ia == ib, "substitute",
                 np.where(is_comp, "complement", "unrelated"))
  return out.reshape(a.shape)


_PILOT_USERS = 4000
_RESERVED = ("num_users", "first_user_id", "seed")


def _events_per_user(seed: int, simulate_kwargs) -> float:
  """Events per user under the current configuration (a pilot run)."""
  reserved = sorted(set(_RESERVED) & set(simulate_kwargs))
  if reserved:
    raise ValueError(f"{reserved} are set from the event counts and `seed`; "
                     f"do not pass them as simulate arguments.")
  pilot = simulate(num_users=_PILOT_USERS, seed=seed, first_user_id=1 << 40,
                   **simulate_kwargs)
  return len(pilot.events) / _PILOT_USERS


def simulate_events(num_events: int, seed: int = 0,
                    **simulate_kwargs) -> SimulatedLog:
  """Simulates about `num_events` events (within a few %).

  The number of users comes from a pilot run of 4,000 users under the same
  configuration (gin bindings and `simulate_kwargs`).

  Args:
    num_events: the wanted number of events, >= 1.
    seed: the seed.
    **simulate_kwargs: further arguments of `simulate` (not `num_users`,
      `first_user_id` or `seed`).

  Returns:
    A `SimulatedLog`.

  Raises:
    ValueError: if `num_events` < 1 or an argument is reserved or invalid.
  """
  return simulate(num_users=users_for_events(num_events, seed,
                                             **simulate_kwargs),
                  seed=seed, **simulate_kwargs)


def users_for_events(num_events: int, seed: int = 0,
                     **simulate_kwargs) -> int:
  """The `num_users` that `simulate_events` simulates (a pilot run).

  Args:
    num_events: the wanted number of events, >= 1.
    seed: the seed.
    **simulate_kwargs: further arguments of `simulate` (not `num_users`,
      `first_user_id` or `seed`).

  Returns:
    The number of users.

  Raises:
    ValueError: if `num_events` < 1 or an argument is reserved or invalid.
  """
  if num_events < 1:
    raise ValueError(f"num_events must be >= 1, got {num_events}.")
  per_user = _events_per_user(seed, simulate_kwargs)
  return max(1, int(round(num_events / per_user)))


def simulate_chunks(total_events: int, chunk_events: int, seed: int = 0,
                    **simulate_kwargs) -> Iterator[SimulatedLog]:
  """Yields logs of disjoint user blocks, about `total_events` in all.

  The users needed for `total_events` (from a pilot run, as in
  `simulate_events`) are cut into `round(total_events / chunk_events)` equal
  blocks; block k is `simulate(num_users=n_k, first_user_id=f_k, seed=seed)`.
  So all chunks share one catalog, user and session ids never repeat across
  chunks, and workers can make blocks in parallel by calling `simulate` with
  the same blocks. Each chunk is sorted by time on its own; chunks overlap in
  time.

  Args:
    total_events: the wanted number of events over all chunks, >= 1.
    chunk_events: the wanted events per chunk, >= 1.
    seed: the seed.
    **simulate_kwargs: further arguments of `simulate` (not `num_users`,
      `first_user_id` or `seed`).

  Returns:
    An iterator of `SimulatedLog`s, about `chunk_events` events each, made
    one at a time as it is consumed.

  Raises:
    ValueError: if a size is < 1 or an argument is reserved or invalid.
  """
  if total_events < 1 or chunk_events < 1:
    raise ValueError(f"total_events and chunk_events must be >= 1, got "
                     f"{total_events} and {chunk_events}.")
  per_user = _events_per_user(seed, simulate_kwargs)
  total_users = max(1, int(round(total_events / per_user)))
  num_chunks = max(1, int(round(total_events / chunk_events)))
  bounds = np.linspace(0, total_users, num_chunks + 1).round().astype(int)
  blocks = [(first, end - first) for first, end in
            zip(bounds[:-1].tolist(), bounds[1:].tolist()) if end > first]
  # A generator of its own, so that the checks above run at the call.
  return (simulate(num_users=num_users, first_user_id=first, seed=seed,
                   **simulate_kwargs) for first, num_users in blocks)


def calibration_stats(log: SimulatedLog) -> Dict[str, float]:
  """The Click A, Buy B statistics of click_a_buy_b_stats.py, and shares.

  The purchase statistics are `labels.purchase_stats` (sessions are
  `session_id`; a purchase counts once per (session, item), at its first
  purchase event; `leaf_match_share` is the share of Click A, Buy B
  purchases whose leaf is the leaf of an earlier click in the session),
  plus event-type shares and, for a simulated log, ground-truth shares.

  Args:
    log: a simulated log (or any log with canonical events and a catalog).

  Returns:
    A dict of counts and shares; see `TAOBAO_REFERENCE` for the targets.
  """
  events = log.events
  codes = schema.event_type_codes(events)
  purchases = labels.purchase_stats(events, log.catalog)
  total = purchases["purchases_in_sessions_with_click"]
  num_events = len(events)
  sessions = events["session_id"].nunique()
  stats = {
      "events": num_events,
      "users": int(events["user_id"].nunique()),
      "sessions": int(sessions),
      "events_per_session": num_events / max(sessions, 1),
      "purchases_in_click_sessions": total,
      "same_item": purchases["same_item"],
      "click_a_buy_b": purchases["click_a_buy_b"],
      "no_prior_click": purchases["no_prior_click"],
      "click_a_buy_b_share": purchases["cabb_share"],
      "leaf_match_share": purchases["cabb_leaf_match_share"],
      "other_item_clicked_before_share": (
          purchases["other_item_clicked_before"] / total if total
          else math.nan),
      "purchases_in_sessions_without_click": purchases[
          "purchases_in_sessions_without_click"],
  }
  for code, name in enumerate(schema.EVENT_TYPES):
    stats[f"{name}_share_of_events"] = float(
        (codes == code).sum() / max(num_events, 1))
  truth = getattr(log, "purchases", None)
  if truth is not None and "relation" in truth.columns:
    shares = truth["relation"].value_counts(normalize=True)
    for name in RELATIONS:
      stats[f"ground_truth_{name}_share"] = float(shares.get(name, 0.0))
  return {k: (float(v) if isinstance(v, (float, np.floating)) else int(v))
          for k, v in stats.items()}


def _format_stats(stats: Dict[str, float]) -> str:
  lines = ["| statistic | simulator | Taobao |", "|---|---|---|"]
  for name, value in stats.items():
    ref = TAOBAO_REFERENCE.get(name)
    ref = "" if ref is None else f"{ref:.3f}"
    shown = f"{value:.3f}" if isinstance(value, float) else f"{value}"
    lines.append(f"| {name} | {shown} | {ref} |")
  return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> None:
  """Simulates a log and prints its calibration statistics (and the time)."""
  parser = argparse.ArgumentParser(
      prog="python -m cabb_tf.data.simulator", description=main.__doc__)
  parser.add_argument("--gin_file", action="append", default=[],
                      help="gin files configuring `simulate` (repeatable).")
  parser.add_argument("--gin_bindings", action="append", default=[],
                      help="gin bindings, e.g. 'simulate.num_users = 2000'.")
  parser.add_argument("--num_events", type=int, default=None,
                      help="simulate about this many events "
                      "(simulate_events) instead of the configured users.")
  parser.add_argument("--seed", type=int, default=None,
                      help="the seed (default: gin's simulate.seed, else 0).")
  parser.add_argument("--json", action="store_true",
                      help="print JSON instead of a markdown table.")
  args = parser.parse_args(argv)
  gin.parse_config_files_and_bindings(args.gin_file, args.gin_bindings,
                                      skip_unknown=False)
  begin = time.perf_counter()
  seed = {} if args.seed is None else {"seed": args.seed}
  if args.num_events is None:
    log = simulate(**seed)
  else:
    log = simulate_events(args.num_events, **seed)
  seconds = time.perf_counter() - begin
  stats = calibration_stats(log)
  stats["seconds"] = seconds
  if args.json:
    print(json.dumps(stats, indent=1))
  else:
    print(_format_stats(stats))


if __name__ == "__main__":
  main(sys.argv[1:])
