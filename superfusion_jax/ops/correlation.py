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
    n, h, w, c = source.shape
    pad = dilation * (kernel_size - 1) // 2
    smooth = gaussian_blur(source, blur_size, blur_sigma, border="constant")
    # Feature axis of the patches is ordered (channel, ky, kx), channel major.
    patches = lax.conv_general_dilated_patches(
        smooth,
        filter_shape=(kernel_size, kernel_size),
        window_strides=(1, 1),
        padding=((pad, pad), (pad, pad)),
        rhs_dilation=(dilation, dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=lax.Precision.HIGHEST,
    )
    patches = patches.reshape(n, h, w, c, kernel_size * kernel_size)
    return jnp.mean((target[..., None] - patches) ** 2, axis=3)
