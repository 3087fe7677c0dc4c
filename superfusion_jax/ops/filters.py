"""Separable image filters with kornia's semantics: Gaussian blur and Sobel derivatives.

All arrays are NHWC. Each 1-D pass is a fixed linear map along one axis (its taps are constants,
never differentiated). Along axes of up to `MAX_MATRIX_LENGTH` pixels (every training crop and
common image sizes) it is a product with the filter's (n, n) matrix, border included, whose
gradient is the product with the transpose: on CPUs this is far faster than the autodiff of
sums of shifted slices (chains of pads and adds) or XLA's depthwise convolution for long filters
such as the smoothness loss's 21- and 45-tap blurs (measured in docs/performance.md).
Longer axes, where the matrix (n products per output pixel) would cost more than it saves, use
the sum of shifted slices of the padded array (compiling it takes minutes for very long
filters). Matrix products run at full float32 precision on every backend.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# Longest axis filtered as a matrix product (longer axes: sums of shifted slices).
MAX_MATRIX_LENGTH = 2048

# kornia / torch.nn.functional.pad border names -> numpy.pad modes.
_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _gaussian_taps(size: int, sigma: float, dtype) -> np.ndarray:
    """kornia's ``get_gaussian_kernel1d`` in numpy (even sizes centred between two taps)."""
    if size < 1 or sigma <= 0:
        raise ValueError(f"need size >= 1 and sigma > 0, got size={size}, sigma={sigma}")
    x = np.arange(size, dtype=dtype) - size // 2
    if size % 2 == 0:
        x = x + dtype.type(0.5)
    g = np.exp(-(x**2) / dtype.type(2.0 * sigma**2))
    return g / np.sum(g)


def gaussian_kernel1d(size: int, sigma: float) -> jax.Array:
    """Normalised 1-D Gaussian window, as kornia's ``get_gaussian_kernel1d``.

    Args:
      size: number of taps (kornia's blur accepts odd sizes only; an even size is centred
        between the two middle taps, as kornia does).
      sigma: standard deviation in pixels, > 0.

    Returns:
      (size,) weights summing to one, in JAX's default float dtype.
    """
    return jnp.asarray(_gaussian_taps(size, sigma, np.dtype(jnp.result_type(float))))


def _filter_matrix(taps: tuple[float, ...], n: int, border: str, dtype) -> np.ndarray:
    """(n, n) matrix M of the 'same' correlation with odd-length ``taps`` along an axis of n
    pixels, border padding folded in: output j = sum_i input i * M[i, j]."""
    radius = len(taps) // 2
    if border == "constant":
        source = np.pad(np.arange(n), radius, constant_values=-1)
    else:
        source = np.pad(np.arange(n), radius, mode=_PAD_MODES[border])
    out_index, tap_index = np.meshgrid(np.arange(n), np.arange(len(taps)), indexing="ij")
    in_index = source[out_index + tap_index]  # padded position j + t feeds output j
    keep = in_index >= 0
    matrix = np.zeros((n, n), np.float64)
    np.add.at(
        matrix, (in_index[keep], out_index[keep]), np.asarray(taps, np.float64)[tap_index[keep]]
    )
    return matrix.astype(dtype)


def _matrix_product(x: jax.Array, matrix: np.ndarray, axis: int) -> jax.Array:
    """Contract ``axis`` of x with the rows of an (n, n) matrix; the result keeps x's layout."""
    out = jnp.tensordot(x, jnp.asarray(matrix), axes=([axis], [0]), precision=lax.Precision.HIGHEST)
    return jnp.moveaxis(out, -1, axis)


def _slice_correlate(x: jax.Array, taps: tuple[float, ...], axis: int, border: str) -> jax.Array:
    """'same' correlation as a sum of shifted slices of the padded array; zero taps are skipped."""
    radius = len(taps) // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (radius, radius)
    padded = jnp.pad(x, pad, mode=_PAD_MODES[border])
    n = x.shape[axis]
    terms = [
        tap * lax.slice_in_dim(padded, t, t + n, axis=axis) for t, tap in enumerate(taps) if tap
    ]
    return sum(terms[1:], terms[0])


def _correlate_axis(x: jax.Array, taps: Sequence[float], axis: int, border: str) -> jax.Array:
    """Cross-correlate ``x`` with constant 1-D ``taps`` (odd length) along ``axis``, 'same'
    output size, padding the input as ``border`` says (see `gaussian_blur`)."""
    if border not in _PAD_MODES:
        raise ValueError(f"border must be one of {sorted(_PAD_MODES)}, got {border!r}")
    if len(taps) % 2 == 0:
        raise ValueError(f"kernel length must be odd, got {len(taps)}")
    taps = tuple(float(t) for t in taps)
    n = x.shape[axis]
    if n <= MAX_MATRIX_LENGTH:
        return _matrix_product(x, _filter_matrix(taps, n, border, x.dtype), axis)
    return _slice_correlate(x, taps, axis, border)


def _correlate_separable(
    x: jax.Array, taps_y: Sequence[float], taps_x: Sequence[float], border: str
) -> jax.Array:
    """Correlate an (N, H, W, C) array with ``outer(taps_y, taps_x)``: along W first, then H."""
    return _correlate_axis(_correlate_axis(x, taps_x, 2, border), taps_y, 1, border)


def _pair(value: float | Sequence[float], name: str) -> tuple:
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be a scalar or a (height, width) pair, got {value!r}")
    return pair


def gaussian_blur(
    x: jax.Array,
    kernel_size: int | tuple[int, int],
    sigma: float | tuple[float, float],
    border: str = "reflect",
) -> jax.Array:
    """Separable Gaussian blur matching ``kornia.filters.gaussian_blur2d``.

    Follows kornia's argument order: ``kernel_size = (kH, kW)`` and ``sigma = (sigma_y, sigma_x)``,
    both rows (y) first; a scalar applies to both axes. The release only uses square kernels.

    Args:
      x: (N, H, W, C) array.
      kernel_size: odd number of taps, or (height, width) pair of them.
      sigma: standard deviation in pixels, or (sigma_y, sigma_x).
      border: 'constant' (zeros), 'reflect' (mirror without repeating the edge pixel; kornia's
        default), 'replicate' (repeat the edge pixel) or 'circular' (wrap around). Where kornia
        (torch's pad) raises because a reflect/circular pad exceeds the image, this reflects or
        wraps repeatedly instead.

    Returns:
      (N, H, W, C) blurred array, same dtype as ``x``.
    """
    kh, kw = _pair(kernel_size, "kernel_size")
    sy, sx = _pair(sigma, "sigma")
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"kernel_size must be odd, got {kernel_size!r}")
    taps_y = _gaussian_taps(kh, sy, np.dtype(x.dtype))
    taps_x = _gaussian_taps(kw, sx, np.dtype(x.dtype))
    return _correlate_separable(x, taps_y, taps_x, border)


# Separable factors (taps along y, taps along x) of kornia's Sobel stencils. Normalisation as in
# the installed kornia (0.9), folded into the x taps (powers of two, so exact): order 1 divides by
# 8 (sum of absolute values), order 2 divides every stencil by 64 (its response to x**2/2, x*y,
# y**2/2).
_SOBEL = {
    1: (((1, 2, 1), (-1, 0, 1)), ((-1, 0, 1), (1, 2, 1))),  # d/dx, d/dy
    2: (
        ((1, 4, 6, 4, 1), (1, 0, -2, 0, 1)),  # d2/dx2
        ((1, 2, 0, -2, -1), (1, 2, 0, -2, -1)),  # d2/dxdy
        ((1, 0, -2, 0, 1), (1, 4, 6, 4, 1)),  # d2/dy2
    ),
}
_SOBEL_NORM = {1: 8.0, 2: 64.0}


def spatial_gradient(x: jax.Array, order: int = 1, normalized: bool = True) -> jax.Array:
    """Sobel derivatives, ``kornia.filters.spatial_gradient(x, 'sobel', order, normalized)``.

    The border is replicated, as in kornia. With ``normalized=True`` the outputs estimate the
    derivatives themselves (order 1: stencils / 8; order 2: every stencil / 64), as the kornia
    installed here (0.9) does. Note: kornia 0.6, which the official release pinned, negated the
    order-2 stencils and divided d2/dxdy by 36 instead of 64 (d2/dx2, d2/dy2 by 64); the release's
    losses take ``abs()`` of the outputs, so only the cross term's scale (64/36) differs.

    Args:
      x: (N, H, W, C) array.
      order: 1 or 2.
      normalized: scale the stencils to derivative units (see above); False gives raw responses.

    Returns:
      (N, H, W, C, 2) holding (d/dx, d/dy) for order 1, or (N, H, W, C, 3) holding
      (d2/dx2, d2/dxdy, d2/dy2) for order 2; x is the column (W) axis, y the row (H) axis.
    """
    if order not in _SOBEL:
        raise ValueError(f"order must be 1 or 2, got {order}")
    scale = 1.0 / _SOBEL_NORM[order] if normalized else 1.0
    outputs = [
        _correlate_separable(x, taps_y, tuple(scale * t for t in taps_x), "replicate")
        for taps_y, taps_x in _SOBEL[order]
    ]
    return jnp.stack(outputs, axis=-1)
