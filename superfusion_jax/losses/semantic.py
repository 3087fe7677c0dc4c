"""Losses on the two logit maps of the segmentation network (BiSeNet's main and auxiliary heads).

- `semantic_loss`: SuperFusion's semantic term of stage FS (model.py `Seg_loss`):
  Lovasz-Softmax(main) + 0.25 · Lovasz-Softmax(aux), Berman's defaults (batch-pooled, classes
  present, nothing ignored).
- `segmentation_loss`: how SeAFusion trains the network itself (train.py `train_seg`):
  OHEM cross-entropy(main) + 0.75 · OHEM cross-entropy(aux), each with a probability threshold
  of 0.7 and at least 1/16 of the batch's pixels kept, label 255 ignored.
- `ohem_cross_entropy`: SeAFusion's `OhemCELoss` (online hard example mining): the pixels whose
  cross-entropy exceeds -log(threshold), or the `min_kept` largest if fewer exceed it.

Logits are (N, H, W, C) unnormalised scores, labels (N, H, W) integer class ids.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from superfusion_jax.losses.lovasz import lovasz_softmax

Array = jax.Array

IGNORE_INDEX = 255


def pixel_cross_entropy(logits: Array, labels: Array, ignore_index: int | None = None) -> Array:
    """Cross-entropy of every pixel, -log softmax(logits)[label], natural log.

    logits: (N, H, W, C); labels: (N, H, W) int. Returns (N, H, W), 0 where the label is
    `ignore_index` (as torch's CrossEntropyLoss(reduction='none') does).
    """
    valid = jnp.ones(labels.shape, bool) if ignore_index is None else labels != ignore_index
    safe = jnp.where(valid, labels, 0).astype(jnp.int32)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_probs, safe[..., None], axis=-1)[..., 0]
    return jnp.where(valid, -picked, 0.0)


def ohem_cross_entropy(
    logits: Array,
    labels: Array,
    *,
    min_kept: int,
    threshold: float = 0.7,
    ignore_index: int | None = IGNORE_INDEX,
) -> Array:
    """Online-hard-example-mined cross-entropy (SeAFusion's `OhemCELoss`), a scalar.

    The per-pixel losses (`pixel_cross_entropy`, ignored pixels counting as 0) of the whole batch
    are ranked; when more than `min_kept` of them exceed -log(threshold) (the pixels whose label
    probability is below `threshold`), the loss is the mean of those; otherwise the mean of the
    `min_kept` largest. Equivalently: the mean of the k largest, k = max(min_kept, #hard).

    Args:
      logits: (N, H, W, C); labels: (N, H, W) int.
      min_kept: at least this many pixels are averaged, 1 <= min_kept < N·H·W.
      threshold: probability below which a pixel is hard.
      ignore_index: label of pixels that count as loss 0, or None.
    """
    losses = pixel_cross_entropy(logits, labels, ignore_index).reshape(-1)
    if not 1 <= min_kept < losses.size:
        raise ValueError(f"min_kept must be in [1, {losses.size}), got {min_kept}")
    hard = losses > -math.log(threshold)
    num_hard = jnp.sum(hard)
    hard_mean = jnp.sum(jnp.where(hard, losses, 0.0)) / jnp.maximum(num_hard, 1)
    top_mean = jnp.mean(jax.lax.top_k(losses, min_kept)[0])
    return jnp.where(num_hard > min_kept, hard_mean, top_mean)


def segmentation_loss(
    main: Array,
    aux: Array,
    labels: Array,
    *,
    aux_weight: float = 0.75,
    threshold: float = 0.7,
    min_kept_fraction: float = 1 / 16,
    ignore_index: int | None = IGNORE_INDEX,
) -> tuple[Array, dict[str, Array]]:
    """SeAFusion's segmentation training loss: OHEM-CE(main) + aux_weight · OHEM-CE(aux).

    main, aux: (N, H, W, C) logits of the two heads; labels: (N, H, W) int. Each term keeps at
    least int(N·H·W · min_kept_fraction) pixels (SeAFusion: batch · 640 · 480 // 16).
    Returns (loss_total, {'loss_main', 'loss_aux', 'loss_total'}).
    """
    min_kept = max(1, int(labels.size * min_kept_fraction))
    ohem = lambda logits: ohem_cross_entropy(  # noqa: E731
        logits, labels, min_kept=min_kept, threshold=threshold, ignore_index=ignore_index
    )
    loss_main, loss_aux = ohem(main), ohem(aux)
    total = loss_main + aux_weight * loss_aux
    return total, {"loss_main": loss_main, "loss_aux": loss_aux, "loss_total": total}


def semantic_loss(main: Array, aux: Array, labels: Array, *, aux_weight: float = 0.25) -> Array:
    """SuperFusion's semantic loss: lovasz_softmax(main) + aux_weight · lovasz_softmax(aux).

    main, aux: (N, H, W, C) logits of the frozen segmentation network on the fused RGB image;
    labels: (N, H, W) int class ids. Returns a scalar (each Lovasz term is in [0, 1]).
    """
    return lovasz_softmax(main, labels) + aux_weight * lovasz_softmax(aux, labels)
