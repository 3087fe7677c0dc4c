"""Local correlation cost volume of the release's flow estimator (``DispEstimator.localcorr``)."""

import jax
import jax.numpy as jnp
from jax import lax

from superfusion_jax.ops.filters import gaussian_blur


def local_correlation(
    source: jax.Array,
    target: jax.Array,
    kernel_size: int = 7,
    dilation: int = 4,
    blur_size: int = 13,
    blur_sigma: float = 3.0,
) -> jax.Array:
    """Mean squared feature difference between each target pixel and a dilated source window.

    ``source`` is blurred with a ``blur_size`` x ``blur_size`` Gaussian (``blur_sigma`` pixels,
    zero border); around every pixel a ``kernel_size`` x ``kernel_size`` window of it is taken
    with the given dilation and zero padding ``dilation * (kernel_size - 1) / 2`` (torch
    ``F.unfold``); output channel k is the mean over feature channels of
    ``(target - window_k)**2``. Windows are ordered row-major: k = ky * kernel_size + kx, with
    window offset (dilation * (ky - r), dilation * (kx - r)) pixels, r = (kernel_size - 1) / 2.

    Each window position is a shifted slice of the padded, blurred source, reduced over channels
    at once; the (N, H, W, C * kernel_size**2) patch tensor of ``F.unfold`` (or of
    ``lax.conv_general_dilated_patches``, a grouped convolution with an identity kernel) is never
    built: the patch tensor is kernel_size**2 times the features' size, and its backward pass
    dominated training time and memory (measured in docs/performance.md).

    Args:
      source: (N, H, W, C) features whose blurred windows are compared (the release's feat1).
      target: (N, H, W, C) features at the centre (feat2).
      kernel_size: odd window size in taps.
      dilation: spacing of the window taps in pixels.
      blur_size: odd Gaussian kernel size applied to ``source``.
      blur_sigma: Gaussian standard deviation in pixels.

    Returns:
      (N, H, W, kernel_size**2) cost volume (squared feature units).
    """
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd, got {kernel_size}")
    _, h, w, _ = source.shape
    pad = dilation * (kernel_size - 1) // 2
    smooth = gaussian_blur(source, blur_size, blur_sigma, border="constant")
    padded = jnp.pad(smooth, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    costs = []
    for ky in range(kernel_size):  # row-major, as F.unfold orders its patch positions
        for kx in range(kernel_size):
            y, x = ky * dilation, kx * dilation
            window = lax.slice(
                padded, (0, y, x, 0), (padded.shape[0], y + h, x + w, padded.shape[3])
            )
            costs.append(jnp.mean((target - window) ** 2, axis=-1))
    return jnp.stack(costs, axis=-1)
