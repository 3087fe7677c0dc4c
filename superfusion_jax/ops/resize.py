"""Bilinear resizing, torch ``F.interpolate(mode='bilinear')`` with either ``align_corners``."""

import jax
import jax.numpy as jnp
import numpy as np


def _taps(
    size_in: int, size_out: int, dtype: np.dtype, align_corners: bool = False
) -> tuple[np.ndarray, ...]:
    """Source indices and weights of torch's linear interpolation along one axis.

    torch's formulas and rounding. align_corners=False: source position (j + 0.5) * scale - 0.5
    evaluated in float64 with scale = in / out rounded to ``dtype``, the position then rounded to
    ``dtype`` and clamped below at 0. align_corners=True: position j * scale in ``dtype`` with
    scale = (in - 1) / (out - 1) in ``dtype`` (0 when out == 1). The lower neighbour is clamped
    to the last pixel, and so is the upper one.
    """
    if align_corners:
        scale = dtype.type(size_in - 1) / dtype.type(size_out - 1) if size_out > 1 else 0
        src = (dtype.type(scale) * np.arange(size_out).astype(dtype)).astype(dtype)
    else:
        scale = np.float64(dtype.type(size_in) / dtype.type(size_out))
        src = (scale * (np.arange(size_out, dtype=np.float64) + 0.5) - 0.5).astype(dtype)
        src = np.maximum(src, dtype.type(0))
    lower = np.minimum(np.floor(src).astype(np.int32), size_in - 1)
    frac = np.clip(src - lower.astype(dtype), 0, 1).astype(dtype)
    upper = np.minimum(lower + 1, size_in - 1)
    return lower, upper, dtype.type(1) - frac, frac


def _resize_axis(x: jax.Array, size: int, axis: int, align_corners: bool) -> jax.Array:
    if x.shape[axis] == size:
        return x
    lower, upper, w_lower, w_upper = _taps(x.shape[axis], size, np.dtype(x.dtype), align_corners)
    shape = [1] * x.ndim
    shape[axis] = size
    w_lower, w_upper = w_lower.reshape(shape), w_upper.reshape(shape)
    return jnp.take(x, lower, axis=axis) * w_lower + jnp.take(x, upper, axis=axis) * w_upper


def resize_bilinear(
    x: jax.Array, height: int, width: int, align_corners: bool = False
) -> jax.Array:
    """Bilinear resize without antialiasing, up or down.

    torch ``F.interpolate(x, (height, width), mode='bilinear', align_corners=align_corners)``.
    With align_corners=False (half-pixel centres, the release's default everywhere except
    BiSeNet's output) output pixel j reads source position (j + 0.5) * in / out - 0.5 (clamped to
    the image); with align_corners=True (corner pixels aligned) it reads j * (in - 1) / (out - 1).
    Either way it interpolates between the two nearest source pixels, also when shrinking.
    Interpolates along W, then along H, with torch's rounding of positions and weights, so it
    agrees with torch on CPU to a few float32 ulps.
    (``jax.image.resize(..., antialias=False)`` computes the same function but rounds positions
    differently: 1.5e-4 apart on unit-variance noise for 481x643 -> 61x81.) Values are resampled
    as they are: resizing a displacement field does not rescale it.

    Args:
      x: (N, H, W, C) floating array.
      height: output rows.
      width: output columns.
      align_corners: torch's flag of the same name.

    Returns:
      (N, height, width, C) array, dtype of ``x``.
    """
    return _resize_axis(_resize_axis(x, width, 2, align_corners), height, 1, align_corners)
