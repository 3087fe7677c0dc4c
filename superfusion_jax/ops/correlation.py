"""Local correlation cost volume of the release's flow estimator (``DispEstimator.localcorr``)."""

import functools

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
    at once (`_window_costs`); the (N, H, W, C * kernel_size**2) patch tensor of ``F.unfold`` (or
    of ``lax.conv_general_dilated_patches``, a grouped convolution with an identity kernel) is
    never built: it is kernel_size**2 times the features' size, and its backward pass dominated
    training time and memory (measured in docs/performance.md).

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
    pad = dilation * (kernel_size - 1) // 2
    smooth = gaussian_blur(source, blur_size, blur_sigma, border="constant")
    padded = jnp.pad(smooth, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    offsets = tuple(
        (ky * dilation, kx * dilation) for ky in range(kernel_size) for kx in range(kernel_size)
    )
    return _window_costs(offsets, padded, target)


def _window(padded: jax.Array, offset, shape: tuple[int, ...]) -> jax.Array:
    """The (N, H, W, C) slice of `padded` whose top-left corner is `offset` = (y, x)."""
    return lax.dynamic_slice(padded, (0, offset[0], offset[1], 0), shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _window_costs(offsets: tuple, padded: jax.Array, target: jax.Array) -> jax.Array:
    """mean_C (target - window_k)**2 for each window offset k (static (y, x) pairs, in pixels of
    `padded`): padded (N, H + 2p, W + 2p, C), target (N, H, W, C) -> (N, H, W, len(offsets)).

    Forward: a loop over the offsets (`lax.map`), each step one fused pass over the features;
    the same values as one program of all the offsets' slices stacked on the last axis, which
    XLA compiles into a fusion 5x slower on a CPU (130 against 26 ms at (8, 64, 64, 64)).
    Backward (`_window_costs_bwd`): written out, 3x faster than XLA's derivative of the
    stacked form (value and gradient 183 against 57 ms at (8, 64, 64, 64)).
    """

    def cost(offset: jax.Array) -> jax.Array:
        return jnp.mean((target - _window(padded, offset, target.shape)) ** 2, axis=-1)

    costs = lax.map(cost, jnp.asarray(offsets))  # (K, N, H, W)
    return jnp.moveaxis(costs, 0, -1)


def _window_costs_fwd(offsets: tuple, padded: jax.Array, target: jax.Array):
    return _window_costs(offsets, padded, target), (padded, target)


def _window_costs_bwd(offsets: tuple, residuals: tuple, cotangent: jax.Array) -> tuple:
    """With term_k = g_k * (target - window_k) (g the cotangent, C channels):
    d target = (2 / C) sum_k term_k, d padded = -(2 / C) sum_k term_k placed at offset k."""
    padded, target = residuals
    scale = 2.0 / target.shape[-1]
    per_offset = jnp.moveaxis(cotangent, -1, 0)[..., None]  # (K, N, H, W, 1)
    d_target = jnp.zeros_like(target)
    d_padded = jnp.zeros_like(padded)
    for k, offset in enumerate(offsets):
        term = per_offset[k] * (target - _window(padded, offset, target.shape))
        d_target = d_target + term
        placed = _window(d_padded, offset, target.shape) + term
        d_padded = lax.dynamic_update_slice(d_padded, placed, (0, offset[0], offset[1], 0))
    return -scale * d_padded, scale * d_target


_window_costs.defvjp(_window_costs_fwd, _window_costs_bwd)
