"""The α-weighted two-task loss (paper §3.4, Eq. 4–6; docs/method.md, "Model and loss").

Eq. (4)  L_CABA = −Σ [y₁ log ŷ₁ + (1 − y₁) log(1 − ŷ₁)]
Eq. (5)  L_CABB = −Σ α_AB [y₂ log ŷ₂ + (1 − y₂) log(1 − ŷ₂)]
Eq. (6)  L = L_CABA + λ · L_CABB

In Keras the per-example weights arrive as sample weights,
`sample_weight={'caba': w_caba, 'cabb': w_cabb}`: `w_caba` counts each click
once across its rows and `w_cabb` is α(A, B) on CABB-positive rows and the
negative weight (default 1) elsewhere. λ is the Keras `loss_weights` of the
`cabb` output; the conversion model (`models.conversion.ConversionModel`)
compiles these with its own λ.

Reduction: Keras' default `SUM_OVER_BATCH_SIZE` divides the weighted sum by
the batch size, not by Σα. That is Eq. (5) up to the constant 1/|B| (the same
for both heads), so λ keeps the meaning it has in Eq. (6).
"""

from typing import Dict

import tensorflow as tf


def weighted_binary_crossentropy(name: str) -> tf.keras.losses.Loss:
  """Binary cross-entropy on probabilities; sample weights scale each term.

  Args:
    name: the loss name (the head it belongs to).

  Returns:
    A `tf.keras.losses.BinaryCrossentropy` with the default
    `SUM_OVER_BATCH_SIZE` reduction: Σ_b w_b·CE_b / |B|.
  """
  return tf.keras.losses.BinaryCrossentropy(from_logits=False, name=name)


def multitask_losses(cabb_weight: float = 0.75,
                     heads=("caba", "cabb")) -> Dict[str, Dict]:
  """Per-head losses and loss weights for `model.compile`, Eq. (6).

  Args:
    cabb_weight: λ of Eq. (6), the weight of the CABB loss.
    heads: the model's output names.

  Returns:
    {"loss": {head: loss}, "loss_weights": {head: weight}}; the `caba` head
    has weight 1 and `cabb` has λ. A single-head model gets weight 1.
  """
  if cabb_weight < 0:
    raise ValueError(f"cabb_weight (λ) must be >= 0, got {cabb_weight}.")
  losses = {head: weighted_binary_crossentropy(f"{head}_loss")
            for head in heads}
  weights = {head: (cabb_weight if head == "cabb" else 1.0) for head in heads}
  return {"loss": losses, "loss_weights": weights}
