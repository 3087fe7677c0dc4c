"""The release's colour conversion (``utils.RGB2YCrCb`` / ``YCbCr2RGB``): fusion runs on Y only.

The coefficients are the release's, which are not an exact inverse pair: a round trip changes
in-gamut colours by up to ~5e-4.
"""

import jax
import jax.numpy as jnp

from superfusion_jax.ops.kinks import torch_clamp

# Y = 0.299 R + 0.587 G + 0.114 B (the release's luma, ITU-R BT.601).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def rgb_to_ycbcr(rgb: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Split an RGB image into luma and chroma, each clamped to [0, 1] (torch clamp derivatives).

    Y = 0.299 R + 0.587 G + 0.114 B, Cb = 0.564 (B - Y) + 0.5, Cr = 0.713 (R - Y) + 0.5.
    Cb and Cr carry ``stop_gradient`` (the release detaches them).

    Args:
      rgb: (N, H, W, 3) image in [0, 1], channels R, G, B.

    Returns:
      (y, cb, cr), each (N, H, W, 1) in [0, 1].
    """
    r, g, b = rgb[..., 0:1], rgb[..., 1:2], rgb[..., 2:3]
    y = LUMA_WEIGHTS[0] * r + LUMA_WEIGHTS[1] * g + LUMA_WEIGHTS[2] * b
    cr = (r - y) * 0.713 + 0.5
    cb = (b - y) * 0.564 + 0.5
    y = torch_clamp(y, 0.0, 1.0)
    cb = jax.lax.stop_gradient(jnp.clip(cb, 0.0, 1.0))
    cr = jax.lax.stop_gradient(jnp.clip(cr, 0.0, 1.0))
    return y, cb, cr


def ycbcr_to_rgb(y: jax.Array, cb: jax.Array, cr: jax.Array) -> jax.Array:
    """Recombine luma and chroma into RGB, clamped to [0, 1].

    R = Y + 1.403 (Cr - 0.5), G = Y - 0.714 (Cr - 0.5) - 0.344 (Cb - 0.5),
    B = Y + 1.773 (Cb - 0.5).

    Args:
      y: (N, H, W, 1) luma in [0, 1].
      cb: (N, H, W, 1) blue-difference chroma in [0, 1].
      cr: (N, H, W, 1) red-difference chroma in [0, 1].

    Returns:
      (N, H, W, 3) RGB image in [0, 1].
    """
    cb = cb - 0.5
    cr = cr - 0.5
    r = y + 1.403 * cr
    g = y - 0.714 * cr - 0.344 * cb
    b = y + 1.773 * cb
    return torch_clamp(jnp.concatenate([r, g, b], axis=-1), 0.0, 1.0)
