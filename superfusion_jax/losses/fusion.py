"""The release's fusion losses (model.py `fusloss`, `fusloss_forRF`, `backward_FS`), NHWC.

Images are luminance (Y) in [0, 1], shape (N, H, W, 1); `fusion_loss` also takes more channels
(gradient magnitudes sum over them), `fusion_loss_rf` needs one. Second derivatives follow the
kornia 0.6 the release ran (`second_derivatives`), checked against parity/train_losses_seed0.json.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from superfusion_jax.losses.ssim import ssim_loss
from superfusion_jax.ops.filters import spatial_gradient
from superfusion_jax.ops.kinks import torch_abs, torch_clamp

Array = jax.Array

FS_WEIGHTS = (1.0, 0.0, 0.5, 0.0)
RF_WEIGHTS = (0.6, 0.3, 0.1)
FALLBACK_LEVEL = 2.0 / 255.0
FALLBACK_MIN_PIXELS = 100
# kornia 0.6 (the release's) order-2 Sobel stencils are the negatives of kornia 0.9's (which
# `ops.filters.spatial_gradient` follows) and its xy stencil is normalised by 36, not 64.
RELEASE_SECOND_DERIVATIVE_SCALE = (-1.0, -64.0 / 36.0, -1.0)


def second_derivatives(x: Array) -> Array:
    """Normalised 5x5 Sobel second derivatives exactly as the release's losses get them.

    The release calls kornia 0.6 `spatial_gradient(x, order=2)` (normalised, replicate border):
    stencils divided by their absolute sums (64 for xx and yy, 36 for xy) and negated relative to
    kornia 0.9. The sign matters in `gradient_loss` (d + 10·d²), the xy scale wherever the xy term
    enters. x: (N, H, W, C) -> (N, H, W, C, 3) holding (xx, xy, yy).
    """
    scale = jnp.asarray(RELEASE_SECOND_DERIVATIVE_SCALE, x.dtype)
    return spatial_gradient(x, order=2) * scale


def gradient_magnitude(x: Array) -> Array:
    """Sum of |xx|, |xy|, |yy| (`second_derivatives`) over channels and the three derivatives.

    x: (N, H, W, C) -> (N, H, W), intensity per pixel² (the release's
    `spatial_gradient(x, order=2).abs().sum(dim=[1, 2])`).
    """
    return torch_abs(second_derivatives(x)).sum(axis=(-2, -1))


def sobel_gradient_magnitude(x: Array) -> Array:
    """Sum of |d/dx|, |d/dy| (normalised first-order Sobel, replicate border) over channels.

    x: (N, H, W, C) -> (N, H, W), intensity per pixel. The first-derivative texture measure of
    SeAFusion's loss and of the SF and AG metrics, where `gradient_magnitude` (the release's) sums
    second derivatives.
    """
    return torch_abs(spatial_gradient(x, order=1)).sum(axis=(-2, -1))


def _mean_abs(a: Array, b: Array) -> Array:
    return torch_abs(a - b).mean()


def fusion_loss(
    ir: Array, vi: Array, fused: Array, weights: Sequence[float] = FS_WEIGHTS
) -> dict[str, Array]:
    """Stage-FS fusion loss (the release's `fusloss`).

    ir, vi, fused: (N, H, W, C) in [0, 1]. Each term averages the fused image's distance to both
    inputs with weight 0.5: gradient (L1 between `gradient_magnitude`s), SSIM (`ssim_loss`) and
    intensity (L1). Returns scalars `loss_intensity`, `loss_ssim`, `loss_grad` and
    `loss_fus` = w0·grad + w1·ssim + w2·intensity (w3, the semantic weight, is unused here).
    """
    grad_ir, grad_vi, grad_fu = (gradient_magnitude(x) for x in (ir, vi, fused))
    loss_grad = 0.5 * _mean_abs(grad_fu, grad_ir) + 0.5 * _mean_abs(grad_fu, grad_vi)
    loss_ssim = 0.5 * ssim_loss(ir, fused) + 0.5 * ssim_loss(vi, fused)
    loss_intensity = 0.5 * _mean_abs(fused, ir) + 0.5 * _mean_abs(fused, vi)
    loss_fus = weights[0] * loss_grad + weights[1] * loss_ssim + weights[2] * loss_intensity
    return {
        "loss_intensity": loss_intensity,
        "loss_ssim": loss_ssim,
        "loss_grad": loss_grad,
        "loss_fus": loss_fus,
    }


def fs_losses(
    ir_y: Array, vi_y: Array, fused_y: Array, weights: Sequence[float] = FS_WEIGHTS
) -> dict[str, Array]:
    """Stage-FS loss terms of `backward_FS` without the semantic term (released weight 0).

    ir_y, vi_y, fused_y: (N, H, W, 1) luminance in [0, 1]. Returns the scalars of
    `fusion_loss` plus `loss_total` = 10·loss_fus.
    """
    terms = fusion_loss(ir_y, vi_y, fused_y, weights)
    return {**terms, "loss_total": 10.0 * terms["loss_fus"]}


def fusion_loss_rf(
    ir: Array,
    vi: Array,
    fused: Array,
    mask: Array | float = 1.0,
    weights: Sequence[float] = RF_WEIGHTS,
    gradient: Callable[[Array], Array] = gradient_magnitude,
) -> Array:
    """Stage-RF fusion loss (the release's `fusloss_forRF`); gradients flow only into `fused`.

    ir, vi, fused: (N, H, W, 1) luminance in [0, 1]; mask: scalar or (N, H, W, 1) validity (0/1).
    The pixel mask is (ir > 0) & (vi > 0) · mask, replaced by 1 when fewer than 100 pixels of
    the whole `fused` batch exceed 2/255. Terms: gradient (|max(grad_ir, grad_vi) - grad_fu|,
    clamped at 1e-9), SSIM of each input with `fused` (summed), intensity
    (L1 between fused·m and max(ir, vi)·m). Returns the scalar w0·grad + w1·ssim + w2·intensity.
    gradient: the per-pixel texture measure, (N, H, W, 1) -> (N, H, W); the release's is
    `gradient_magnitude` (second derivatives).

    Release quirk kept: the gradient term multiplies a (N, H, W) map by an (N, 1, H, W) mask, which
    torch broadcasts to (N, N, H, W); its mean equals the mean over pixels of
    (batch-mean mask) · (batch-mean difference), computed here without the N² array.
    """
    ir = jax.lax.stop_gradient(ir)
    vi = jax.lax.stop_gradient(vi)
    pixel_mask = jnp.logical_and(ir > 0, vi > 0) * mask
    few_bright = (fused > FALLBACK_LEVEL).sum() < FALLBACK_MIN_PIXELS
    pixel_mask = jax.lax.stop_gradient(jnp.where(few_bright, 1.0, pixel_mask))

    grad_joint = jnp.maximum(gradient(ir), gradient(vi))
    grad_diff = torch_clamp(torch_abs(grad_joint - gradient(fused)), 1e-9)
    batch_mask = pixel_mask[..., 0].mean(axis=0)
    loss_grad = (grad_diff.mean(axis=0) * batch_mask).mean()

    loss_ssim = ssim_loss(ir, fused) + ssim_loss(vi, fused)
    loss_intensity = _mean_abs(fused * pixel_mask, jnp.maximum(vi, ir) * pixel_mask)
    return weights[0] * loss_grad + weights[1] * loss_ssim + weights[2] * loss_intensity


def aligned_rf_losses(
    ir_y: Array,
    vi_y: Array,
    fused_y: Array,
    weights: Sequence[float] = RF_WEIGHTS,
    gradient: Callable[[Array], Array] = gradient_magnitude,
) -> dict[str, Array]:
    """Stage RF's fusion objective on an aligned pair, as the stage-FS step's alternative.

    Stage RF scores each fused image with `fusion_loss_rf` (targets: the per-pixel maximum of the
    inputs' intensities and gradient magnitudes, plus SSIM to both) and weighs it by 10 in its
    total. On an aligned pair there is no registration: one fused image, no validity mask.
    ir_y, vi_y, fused_y: (N, H, W, 1) luminance in [0, 1]; weights: of the gradient, SSIM and
    intensity terms (the release's RF_WEIGHTS by default); gradient: the texture measure
    (`fusion_loss_rf`). Returns scalars `loss_fus` and `loss_total` = 10·loss_fus.
    """
    loss_fus = fusion_loss_rf(ir_y, vi_y, fused_y, weights=weights, gradient=gradient)
    return {"loss_fus": loss_fus, "loss_total": 10.0 * loss_fus}


# Fusion objectives of the FusionNet-only step, by name (config.fusion_objective):
# 'fs' is the release's stage-FS loss (mean targets), 'rf' stage RF's (max targets), 'rf_sobel'
# stage RF's with first-order Sobel gradients in its gradient term (SeAFusion's texture target).
FUSION_OBJECTIVES = {
    "fs": fs_losses,
    "rf": aligned_rf_losses,
    "rf_sobel": functools.partial(aligned_rf_losses, gradient=sobel_gradient_magnitude),
}
