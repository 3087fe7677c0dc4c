"""The release's registration losses and the stage-RF total, NHWC.

Restates modules/losses.py (`l1loss`, `l2loss`, `gradientloss`, `smoothloss`) and model.py
(`imgloss`, `weightfiledloss`, `border_suppression`, `generate_mask`, `backward_RF`) with the
release's constants. Images are RGB or Y in [0, 1], (N, H, W, C); displacements are
(N, H, W, 2), x then y, in normalised units (sampling grid = base grid + disp, see `ops.warp`).
Standard deviations are unbiased (torch's default), means are over every element unless stated.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import flax.struct
import jax
import jax.numpy as jnp

from superfusion_jax.losses.fusion import fusion_loss_rf, second_derivatives
from superfusion_jax.ops.color import rgb_to_ycbcr
from superfusion_jax.ops.filters import gaussian_blur
from superfusion_jax.ops.kinks import torch_abs, torch_clamp
from superfusion_jax.ops.warp import base_grid, warp

Array = jax.Array

IMAGE_WEIGHTS = (0.1, 0.9)
SMOOTH_WINDOWS = (9, 21, 45)
FIELD_BORDER = 10


def _spatial_std(x: Array) -> Array:
    """Unbiased std over H and W of (N, H, W, C) -> (N, 1, 1, C)."""
    return jnp.std(x, axis=(1, 2), keepdims=True, ddof=1)


def _standardise_pair(img1: Array, img2: Array) -> tuple[Array, Array]:
    """Shift and scale both images by the average of their per-(N, C) means and stds (no grad)."""
    mean = jax.lax.stop_gradient(
        (img1.mean(axis=(1, 2), keepdims=True) + img2.mean(axis=(1, 2), keepdims=True)) / 2
    )
    std = jax.lax.stop_gradient((_spatial_std(img1) + _spatial_std(img2)) / 2)
    return (img1 - mean) / std, (img2 - mean) / std


def _blurred_difference(img1: Array, img2: Array) -> Array:
    """Difference of the standardised, 3x3 (sigma 1, reflect) blurred images where both > 0.01."""
    bright = jnp.logical_and(img1 > 1e-2, img2 > 1e-2)
    a, b = _standardise_pair(img1, img2)
    return gaussian_blur(a, 3, 1.0) * bright - gaussian_blur(b, 3, 1.0) * bright


def masked_l1_loss(img1: Array, img2: Array, mask: Array | float = 1.0, eps: float = 1e-2) -> Array:
    """The release's `l1loss`: mean of max(|blurred standardised difference · mask|, eps).

    img1, img2: (N, H, W, C); mask: scalar or (N, H, W, 1). Returns a scalar (standardised units).
    """
    return torch_clamp(torch_abs(_blurred_difference(img1, img2) * mask), eps).mean()


def masked_l2_loss(img1: Array, img2: Array, mask: Array | float = 1.0, eps: float = 1e-2) -> Array:
    """The release's `l2loss`: mean of max(|blurred standardised difference · mask|, eps)².

    img1, img2: (N, H, W, C); mask: scalar or (N, H, W, 1). Returns a scalar.
    """
    return (torch_clamp(torch_abs(_blurred_difference(img1, img2) * mask), eps) ** 2).mean()


def gradient_loss(img1: Array, img2: Array, mask: Array | float = 1.0, eps: float = 1e-2) -> Array:
    """The release's `gradientloss`: second-derivative mismatch of the standardised pair.

    img1, img2: (N, H, W, C); mask: scalar or (N, H, W, 1). With d the difference of the
    `second_derivatives` (xx, xy, yy; the release's signs) of the standardised images, returns
    the mean over (N, H, W, C, 3) of max(|(d + 10·d²) · mask|, eps).
    """
    a, b = _standardise_pair(img1, img2)
    d = second_derivatives(a) - second_derivatives(b)
    mask = mask[..., None] if jnp.ndim(mask) == 4 else mask
    return torch_clamp(torch_abs((d + 10.0 * d * d) * mask), eps).mean()


def image_loss(
    src: Array, tgt: Array, mask: Array | float = 1.0, weights: Sequence[float] = IMAGE_WEIGHTS
) -> Array:
    """The release's `imgloss`: w0·(L1 + L2) + w1·gradient loss, all masked by `mask`.

    src, tgt: (N, H, W, C) in [0, 1]; mask: scalar or (N, H, W, 1). Returns a scalar.
    """
    return weights[0] * (masked_l1_loss(src, tgt, mask) + masked_l2_loss(src, tgt, mask)) + weights[
        1
    ] * gradient_loss(src, tgt, mask)


def _edge_weight(img: Array) -> Array:
    """|xx| + |xy| + |yy| of the channel-mean derivatives of the standardised image, (N, H, W)."""
    mean = img.mean(axis=(1, 2), keepdims=True)
    img = (img - mean) / (_spatial_std(img) + 1e-5)
    return torch_abs(second_derivatives(img).mean(axis=-2)).sum(axis=-1)


def field_loss(
    ref: Array, tgt: Array, disp: Array, disp_gt: Array, border: int = FIELD_BORDER
) -> Array:
    """The release's `weightfiledloss`: edge-weighted supervision of a displacement field.

    ref, tgt: (N, H, W, C) images whose second-derivative magnitudes (no gradient) weight the
    pixels, w = (2·(g_ref + g_tgt) + 1) inside a `border`-pixel frame, 0 on the frame (the release
    hard-codes 10 pixels of a 256x256 crop). disp, disp_gt: (N, H, W, 2) normalised units.
    Returns the mean over (N, H, W, 2) of w · 1000 · max(|disp - disp_gt|, 0.01)².
    """
    h, w = disp.shape[1:3]
    frame = jnp.zeros((h, w, 1), disp.dtype).at[border : h - border, border : w - border].set(1.0)
    g = jax.lax.stop_gradient(_edge_weight(ref) + _edge_weight(tgt))[..., None]
    weight = (g * 2 + 1) * frame
    return (weight * (1000.0 * torch_clamp(torch_abs(disp - disp_gt), 1e-2) ** 2)).mean()


def smooth_loss(disp: Array) -> Array:
    """The release's `smoothloss`: 5000·local variance + 500·second-derivative magnitude.

    disp: (N, H, W, 2) normalised units, H and W > 45. Local variance: for d in (9, 21, 45),
    1/(d + 1) times the mean of (disp - blur_d(disp))² (Gaussian d x d, sigma d // 6, replicate
    border) over the interior rows/columns d // 2 : (-d) // 2 (Python floor division, as the
    release slices). Gradient term: mean over the interior 5:-5 of the summed |xx|+|xy|+|yy|
    `second_derivatives`, clamped at 1e-9. Returns a scalar.
    """
    h, w = disp.shape[1:3]
    if min(h, w) <= max(SMOOTH_WINDOWS):
        raise ValueError(f"smooth_loss needs H, W > {max(SMOOTH_WINDOWS)}, got {(h, w)}")
    grad = torch_abs(second_derivatives(disp)).sum(axis=-1)[:, 5:-5, 5:-5]
    grad = torch_clamp(grad, 1e-9).mean()
    local = 0.0
    for d in SMOOTH_WINDOWS:
        local_mean = gaussian_blur(disp, d, float(d // 6), border="replicate")
        residual = (disp - local_mean)[:, d // 2 : (-d) // 2, d // 2 : (-d) // 2]
        local = local + (residual**2).mean() / (d + 1.0)
    return 5000.0 * local + 500.0 * grad


def border_suppression(img: Array, mask: Array) -> Array:
    """The release's `border_suppression`: mean of img · (1 - mask).

    img: (N, H, W, C); mask: (N, H, W, 1) validity in [0, 1]. Returns a scalar.
    """
    return (img * (1.0 - mask)).mean()


def _avg_pool5(x: Array) -> Array:
    """AvgPool2d(5, stride 1, padding 2) with count_include_pad=True on (N, H, W, C)."""
    pad = ((0, 0), (2, 2), (2, 2), (0, 0))
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 5, 5, 1), (1, 1, 1, 1), pad)
    return total / 25.0


def valid_masks(
    disp_gt: Array,
    threshold: float = 0.3,
    iterations: int = 2,
    align_corners_grid: bool = True,
) -> tuple[Array, Array]:
    """The release's `generate_mask`: where the ground-truth warp samples inside the image.

    disp_gt: (N, H, W, 2) ground-truth displacement, normalised units, relative to the
    align_corners=True base grid in the release (`align_corners_grid`). goodmask: 1 where
    base_grid + disp_gt lies in [-1, 1]² (both coordinates), then `iterations` times
    (5x5 average, zero padding counted) > threshold. goodmask_inverse: goodmask sampled
    (bilinear, zeros, align_corners=False) at base_grid - disp_gt, values in [0, 1].
    Returns (goodmask, goodmask_inverse), each (N, H, W, 1) float32, no gradient.
    """
    h, w = disp_gt.shape[1:3]
    flow = base_grid(h, w, align_corners_grid) + disp_gt
    inside = jnp.all(jnp.logical_and(flow >= -1, flow <= 1), axis=-1, keepdims=True)
    goodmask = inside.astype(jnp.float32)
    for _ in range(iterations):
        goodmask = (_avg_pool5(goodmask) > threshold).astype(jnp.float32)
    goodmask_inverse = warp(goodmask, -disp_gt, align_corners_grid=align_corners_grid)
    return jax.lax.stop_gradient(goodmask), jax.lax.stop_gradient(goodmask_inverse)


def pair_luminance(ir: Array, vi: Array) -> tuple[Array, Array]:
    """The luminance FusionNet fuses: of an infrared image its first channel, of a visible image
    BT.601 Y. ir, vi: (N, H, W, 3) RGB in [0, 1] -> two (N, H, W, 1)."""
    return ir[..., :1], rgb_to_ycbcr(vi)[0]


@flax.struct.dataclass
class RFOutputs:
    """What stage RF's forward (the release's `train_forward_RF`) gives `rf_losses`.

    The network sees two pairs: pair 1 = (ir_warp, vi), pair 2 = (ir, vi_warp).
    RGB images (N, H, W, 3) in [0, 1]: ir_reg: ir_warp warped by pair 1's ir2vis; ir_warp_fake:
    ir warped by pair 2's ir2vis; vi_warp_fake: vi warped by pair 1's vis2ir; vi_reg: vi_warp
    warped by pair 2's vis2ir.
    Luminance (N, H, W, 1) (`pair_luminance`), computed once for FusionNet and the losses: ir_y,
    vi_y of the aligned pair, ir_reg_y, vi_reg_y of the registered images.
    Fused luminance (N, H, W, 1): fused_1 = FN(ir_y, vi_reg_y), fused_2 = FN(ir_reg_y, vi_y).
    Displacements (normalised units): disp_vis2ir_1 (pair 1's vis2ir), disp_ir2vis_2 (pair 2's
    ir2vis), (N, H, W, 2); disp_down2/4/8 (2N, H, W, 2) the stacked multi-scale fields
    upsampled to full size.
    """

    ir_reg: Array
    vi_reg: Array
    ir_warp_fake: Array
    vi_warp_fake: Array
    ir_y: Array
    vi_y: Array
    ir_reg_y: Array
    vi_reg_y: Array
    fused_1: Array
    fused_2: Array
    disp_vis2ir_1: Array
    disp_ir2vis_2: Array
    disp_down2: Array
    disp_down4: Array
    disp_down8: Array


@dataclasses.dataclass(frozen=True)
class RFWeights:
    """Weights of stage RF's six terms in its total; the defaults are the release's
    (`backward_RF`). A term of weight 0 is still computed and reported, not in the total.
    FusionNet is reached only through `fus` and `ncc`: with both 0 it gets no gradient
    (`trains_fusion_net`)."""

    reg_img: float = 10.0
    reg_field: float = 1.0
    smooth: float = 1.0
    fus: float = 10.0
    ncc: float = 1.0
    border: float = 1.0

    @property
    def trains_fusion_net(self) -> bool:
        return self.fus != 0 or self.ncc != 0


def rf_losses(
    out: RFOutputs,
    *,
    ir: Array,
    vi: Array,
    ir_warp: Array,
    vi_warp: Array,
    disp_gt: Array,
    goodmask: Array,
    goodmask_inverse: Array,
    weights: RFWeights = RFWeights(),
) -> dict[str, Array]:
    """Stage-RF loss terms and total of the release's `backward_RF`.

    out: the forward's outputs (`RFOutputs`); ir, vi: (N, H, W, 3) the aligned pair; ir_warp,
    vi_warp: both warped by the ground truth disp_gt (N, H, W, 2, normalised units); masks
    (N, H, W, 1) from `valid_masks(disp_gt)`.

    Returns scalars: loss_reg_img, loss_reg_field, loss_smooth, loss_fus, loss_ncc,
    loss_border and loss_total, their sum weighted by `weights` (the release's:
    10·reg_img + reg_field + smooth + 10·fus + ncc + border; terms of weight 0 left out).
    """
    ir_reg, vi_reg, ir_warp_fake, vi_warp_fake = (
        out.ir_reg,
        out.vi_reg,
        out.ir_warp_fake,
        out.vi_warp_fake,
    )
    both = goodmask * goodmask_inverse
    loss_reg_img = (
        image_loss(ir_warp, ir_warp_fake, goodmask)
        + image_loss(ir_reg, ir, both)
        + image_loss(vi_warp, vi_warp_fake, goodmask)
        + image_loss(vi_reg, vi, both)
    )
    loss_reg_field = field_loss(ir_warp, vi_warp_fake, out.disp_vis2ir_1, disp_gt) + field_loss(
        vi_warp, ir_warp_fake, out.disp_ir2vis_2, disp_gt
    )
    loss_smooth = sum(smooth_loss(d) for d in (out.disp_down2, out.disp_down4, out.disp_down8))
    loss_border = (
        0.1 * border_suppression(ir_reg, goodmask_inverse)
        + 0.1 * border_suppression(vi_reg, goodmask_inverse)
        + border_suppression(ir_warp_fake, goodmask)
        + border_suppression(vi_warp_fake, goodmask)
    )

    ir_y, vi_y, ir_reg_y, vi_reg_y = out.ir_y, out.vi_y, out.ir_reg_y, out.vi_reg_y
    loss_fus = fusion_loss_rf(ir_reg_y, vi_y, out.fused_2, mask=both) + fusion_loss_rf(
        ir_y, vi_reg_y, out.fused_1, mask=both
    )

    positive = (ir_y > 1e-5) & (vi_y > 1e-5) & (ir_reg_y > 1e-5) & (vi_reg_y > 1e-5)
    loss_ncc = image_loss(out.fused_1, out.fused_2, positive * both)

    terms = {
        "reg_img": loss_reg_img,
        "reg_field": loss_reg_field,
        "smooth": loss_smooth,
        "fus": loss_fus,
        "ncc": loss_ncc,
        "border": loss_border,
    }
    weighted = [getattr(weights, k) * v for k, v in terms.items() if getattr(weights, k) != 0]
    total = sum(weighted, jnp.zeros((), loss_reg_img.dtype))
    return {**{f"loss_{k}": v for k, v in terms.items()}, "loss_total": total}
