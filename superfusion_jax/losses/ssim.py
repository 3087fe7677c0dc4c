"""The release's SSIM loss (modules/losses.py `_ssim`, `ssim`, `SSIMLoss`), NHWC.

Local statistics use an 11x11 Gaussian window (sigma 1.5), applied per channel with zero padding
(the release's grouped `F.conv2d(..., padding=5)`, i.e. a Gaussian blur with a 'constant' border).
The clamp keeps torch's derivative at its bounds (`ops.kinks`), as all the losses do.
The loss is a *dissimilarity*: mean of clamp((1 - SSIM·mask) / 2, 0, 1), so masked-out pixels
contribute 0.5 each, as in the release.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from superfusion_jax.ops.filters import gaussian_blur
from superfusion_jax.ops.kinks import torch_clamp

Array = jax.Array

WINDOW_SIZE = 11
WINDOW_SIGMA = 1.5
C1 = 0.01**2
C2 = 0.03**2


def _window(x: Array, window_size: int) -> Array:
    return gaussian_blur(x, window_size, WINDOW_SIGMA, border="constant")


def ssim_dissimilarity(
    img1: Array, img2: Array, mask: Array | float = 1.0, window_size: int = WINDOW_SIZE
) -> Array:
    """Mean of clamp((1 - ssim_map · mask) / 2, 0, 1) (the release's `_ssim`, size_average=True).

    img1, img2: (N, H, W, C) intensities in [0, 1]. mask: scalar or an array broadcastable to
    (N, H, W, C), multiplied into the SSIM map before the clamp. Returns a scalar in [0, 1].
    With mask = 1 this is the release's plain `ssim(img1, img2)`.
    """
    # one blur of the five maps stacked along channels (the blur is per channel)
    moments = jnp.concatenate([img1, img2, img1 * img1, img2 * img2, img1 * img2], axis=-1)
    mu1, mu2, m11, m22, m12 = jnp.split(_window(moments, window_size), 5, axis=-1)
    mu1_sq, mu2_sq, mu1_mu2 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq = m11 - mu1_sq
    sigma2_sq = m22 - mu2_sq
    sigma12 = m12 - mu1_mu2
    ssim_map = ((2 * mu1_mu2 + C1) * (2 * sigma12 + C2)) / (
        (mu1_sq + mu2_sq + C1) * (sigma1_sq + sigma2_sq + C2)
    )
    return torch_clamp((1.0 - ssim_map * mask) / 2.0, 0.0, 1.0).mean()


def ssim_valid_mask(
    img1: Array, img2: Array, window_size: int = WINDOW_SIZE, threshold: float = 0.8
) -> Array:
    """Where both images are positive, eroded as `SSIMLoss.forward` does.

    img1, img2: (N, H, W, C). Starts from (img1 > 0) & (img2 > 0) and window_size // 2 times
    replaces it by (Gaussian-window average > threshold), zero padded. Returns (N, H, W, C)
    float32 of 0/1 (carries no gradient).
    """
    mask = jnp.logical_and(img1 > 0, img2 > 0).astype(jnp.float32)
    for _ in range(window_size // 2):
        mask = (_window(mask, window_size) > threshold).astype(jnp.float32)
    return jax.lax.stop_gradient(mask)


def ssim_loss(img1: Array, img2: Array, window_size: int = WINDOW_SIZE) -> Array:
    """The release's `ssimloss = SSIMLoss(window_size=11)` applied to (img1, img2).

    img1, img2: (N, H, W, C) intensities in [0, 1]. The SSIM map is multiplied by
    `ssim_valid_mask(img1, img2)` (the release ignores any mask passed in). Returns a scalar.
    """
    mask = ssim_valid_mask(img1, img2, window_size)
    return ssim_dissimilarity(img1, img2, mask, window_size)
