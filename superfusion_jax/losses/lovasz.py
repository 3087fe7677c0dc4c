"""Lovasz-Softmax loss (Berman, Rannen Triki, Blaschko, CVPR 2018), NHWC, jit-friendly.

The release's semantic loss (model.py `Seg_loss`) is, for BiSeNet logits `out`, `aux` and labels,
`lovasz_softmax(softmax(out)) + 0.25 * lovasz_softmax(softmax(aux))` with Berman's defaults:
classes='present', per_image=False (all pixels of the batch pooled), no ignored label.

For each class c, with foreground fg_i = [label_i == c] and errors m_i = |fg_i - p_i(c)| over the
valid pixels, the loss is the Lovasz extension of the Jaccard loss evaluated at m:
sum_k m_(k) * (J(S_k) - J(S_{k-1})), where m_(1) >= m_(2) >= ... and S_k holds the k pixels
with the largest errors, J(S) = |S| / |F u S| (F: the foreground pixels). The class losses are
averaged over the selected classes.

Static shapes: ignored pixels are not removed but sorted behind every valid pixel with zero error,
where they add nothing to the loss or its gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from superfusion_jax.ops.kinks import torch_abs

Array = jax.Array


def lovasz_grad(fg_sorted: Array, dtype=jnp.float32) -> Array:
    """Gradient of the Lovasz extension of the Jaccard loss w.r.t. the sorted errors.

    fg_sorted: (P, C) 0/1 foreground indicators of each class, each column ordered by that class's
    decreasing error. Returns (P, C) `dtype`: J(S_k) - J(S_{k-1}) with J(S_0) = 0. Counts are
    accumulated in int32, so they stay exact for any number of pixels.
    """
    fg = fg_sorted.astype(jnp.int32)
    total = jnp.sum(fg, axis=0)
    intersection = (total - jnp.cumsum(fg, axis=0)).astype(dtype)
    union = (total + jnp.cumsum(1 - fg, axis=0)).astype(dtype)
    jaccard = 1.0 - intersection / union  # union >= 1 from the first pixel on
    return jnp.concatenate([jaccard[:1], jaccard[1:] - jaccard[:-1]], axis=0)


def _class_weights(classes: str | Sequence[int], present: Array, num_classes: int) -> Array:
    """(C,) weights of the per-class losses in the mean: 'present', 'all' or a list of classes."""
    if isinstance(classes, str):
        if classes == "present":
            return present.astype(jnp.float32)
        if classes == "all":
            return jnp.ones((num_classes,), jnp.float32)
        raise ValueError(
            f"classes must be 'present', 'all' or a list of class ids, not {classes!r}"
        )
    counts = np.bincount(np.asarray(list(classes), np.int64), minlength=num_classes)
    if counts.size != num_classes:
        raise ValueError(f"class ids {list(classes)} outside [0, {num_classes})")
    return jnp.asarray(counts, jnp.float32)


def lovasz_softmax_flat(
    probas: Array, labels: Array, valid: Array, classes: str | Sequence[int] = "present"
) -> Array:
    """Lovasz-Softmax over a flat set of pixels.

    Args:
      probas: (P, C) class probabilities.
      labels: (P,) int class ids (any value where `valid` is False).
      valid: (P,) bool, False for ignored pixels.
      classes: 'present' (classes with a valid pixel; none present gives 0), 'all', or a list of
        class ids (repeats count repeatedly), as in Berman's code.

    Returns:
      Scalar loss (dtype of `probas`): the mean over the selected classes of their Lovasz losses.
    """
    num_classes = probas.shape[-1]
    fg = (labels[:, None] == jnp.arange(num_classes)) & valid[:, None]
    errors = jnp.where(valid[:, None], torch_abs(fg.astype(probas.dtype) - probas), 0.0)
    order_key = jnp.where(valid[:, None], errors, -1.0)  # ignored pixels after every valid one
    perm = jnp.argsort(-jax.lax.stop_gradient(order_key), axis=0)
    errors_sorted = jnp.take_along_axis(errors, perm, axis=0)
    fg_sorted = jnp.take_along_axis(fg, perm, axis=0)
    grad = jax.lax.stop_gradient(lovasz_grad(fg_sorted, errors.dtype))
    per_class = jnp.sum(errors_sorted * grad, axis=0)
    weights = _class_weights(classes, jnp.any(fg, axis=0), num_classes)
    weights = weights.astype(per_class.dtype)
    return jnp.sum(weights * per_class) / jnp.maximum(jnp.sum(weights), 1.0)


def lovasz_softmax_probas(
    probas: Array,
    labels: Array,
    classes: str | Sequence[int] = "present",
    per_image: bool = False,
    ignore_index: int | None = None,
) -> Array:
    """Lovasz-Softmax on probabilities (Berman's `lovasz_softmax`), NHWC.

    Args:
      probas: (N, H, W, C) class probabilities.
      labels: (N, H, W) int class ids.
      classes: 'present', 'all' or a list of class ids (see `lovasz_softmax_flat`).
      per_image: False pools every pixel of the batch (the release); True averages the per-image
        losses over the N images (an image with nothing to score counts as 0). Berman's per_image
        path crashes in the release's copy (it passes an unknown `weight` argument).
      ignore_index: label value of pixels left out, or None.

    Returns:
      Scalar loss, dtype of `probas`.
    """
    valid = jnp.ones(labels.shape, bool) if ignore_index is None else labels != ignore_index
    c = probas.shape[-1]
    if per_image:
        flat = jax.vmap(lambda p, y, v: lovasz_softmax_flat(p, y, v, classes))
        n = probas.shape[0]
        return jnp.mean(flat(probas.reshape(n, -1, c), labels.reshape(n, -1), valid.reshape(n, -1)))
    return lovasz_softmax_flat(
        probas.reshape(-1, c), labels.reshape(-1), valid.reshape(-1), classes
    )


def lovasz_softmax(
    logits: Array,
    labels: Array,
    classes: str | Sequence[int] = "present",
    per_image: bool = False,
    ignore_index: int | None = None,
) -> Array:
    """Lovasz-Softmax on logits: softmax over the last axis, then `lovasz_softmax_probas`.

    Args:
      logits: (N, H, W, C) unnormalised class scores (BiSeNet's outputs).
      labels: (N, H, W) int class ids.
      classes, per_image, ignore_index: as in `lovasz_softmax_probas`; the release uses the
        defaults ('present', batch-pooled, nothing ignored).

    Returns:
      Scalar loss in [0, 1], dtype of `logits`.
    """
    probas = jax.nn.softmax(logits, axis=-1)
    return lovasz_softmax_probas(probas, labels, classes, per_image, ignore_index)
