"""Bilinear sampling in normalised coordinates: torch ``grid_sample`` and the release's warp.

Normalised coordinates put the image in [-1, 1] along x (columns, W) and y (rows, H). As in
torch ``F.grid_sample(..., align_corners=False)``, -1 and +1 are the outer edges of the border
pixels, so pixel centre j sits at x = (2j + 1) / W - 1.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.ndimage import map_coordinates


def base_grid(height: int, width: int, align_corners: bool) -> jax.Array:
    """Identity sampling grid in normalised units.

    Args:
      height: H, number of rows.
      width: W, number of columns.
      align_corners: True gives kornia's ``create_meshgrid``: x = linspace(-1, 1, W),
        y = linspace(-1, 1, H), so -1 and +1 are the centres of the border pixels (a size of 1
        gives 0). False gives the pixel centres of torch's align_corners=False convention,
        x = (2j + 1) / W - 1, y = (2i + 1) / H - 1.

    Returns:
      (H, W, 2) grid, normalised units, x then y; JAX's default float dtype.
    """
    dtype = np.dtype(jnp.result_type(float))

    # kornia's formulas, evaluated in numpy (IEEE division, as torch) so the rounding matches too;
    # XLA's division may differ from it by one ulp.
    def axis(size: int) -> np.ndarray:
        index = np.arange(size, dtype=dtype)
        if align_corners:
            if size == 1:
                return np.zeros(1, dtype)
            return (index / dtype.type(size - 1) - dtype.type(0.5)) * dtype.type(2)
        return (dtype.type(2) * index + dtype.type(1)) / dtype.type(size) - dtype.type(1)

    gx, gy = np.meshgrid(axis(width), axis(height), indexing="xy")
    return jnp.asarray(np.stack([gx, gy], axis=-1))


def _sample_channels(image: jax.Array, rows: jax.Array, cols: jax.Array) -> jax.Array:
    """Bilinear taps with zero padding of one (H, W, C) image at (Ho, Wo) pixel positions."""
    sample = lambda channel: map_coordinates(
        channel, [rows, cols], order=1, mode="constant", cval=0
    )
    return jax.vmap(sample, in_axes=-1, out_axes=-1)(image)


def _pixel_positions(image: jax.Array, grid: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(rows, cols), each (N, Ho, Wo): the grid's normalised positions (align_corners=False)
    in pixels of `image` (N, H, W, C)."""
    _, height, width, _ = image.shape
    grid = grid.astype(image.dtype)
    cols = ((grid[..., 0] + 1.0) * width - 1.0) / 2.0
    rows = ((grid[..., 1] + 1.0) * height - 1.0) / 2.0
    return rows, cols


@jax.custom_vjp
def grid_sample(image: jax.Array, grid: jax.Array) -> jax.Array:
    """Bilinear sampling as torch ``F.grid_sample`` (bilinear, zeros padding, align_corners=False).

    Each of the four bilinear taps that falls outside the image contributes zero, so the output
    fades to zero across the border pixel. Differentiable w.r.t. ``image`` and ``grid``: the
    forward is ``map_coordinates``, the VJP is written out (`_grid_sample_bwd`).

    Args:
      image: (N, H, W, C) array.
      grid: (N, Ho, Wo, 2) sampling positions, normalised units (align_corners=False), x then y;
        values outside [-1, 1] are allowed.

    Returns:
      (N, Ho, Wo, C) samples, dtype of ``image``.
    """
    rows, cols = _pixel_positions(image, grid)
    return jax.vmap(_sample_channels)(image, rows, cols)


def _grid_sample_fwd(image: jax.Array, grid: jax.Array):
    return grid_sample(image, grid), (image, grid)


def _grid_sample_bwd(residuals: tuple, cotangent: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The VJP of `grid_sample`, tap by tap on the image's rows of C channels.

    The derivative of ``map_coordinates`` (order 1, zero outside) that JAX would trace scatters
    each channel's taps separately, (N, C, H, W) scalar by scalar; here each of the four taps
    is one gather and one scatter-add of whole C-channel rows of the (N * H * W, C) image:
    3-5x faster (8 x 128 x 128 x 32: 151 -> 49 ms), same values. For the tap at pixel (r, c)
    with weight w_r * w_c (w = 1 - f or f, f the position's fraction) and image value v
    (0 outside the image): d image[r, c] += w_r w_c g, and d rows / d cols gain
    -+ w_c (g . v) / -+ w_r (g . v) (minus for the lower tap).
    """
    image, grid = residuals
    n, height, width, channels = image.shape
    rows, cols = _pixel_positions(image, grid)
    table = image.reshape(-1, channels)
    g = cotangent.reshape(-1, channels)
    row0, col0 = jnp.floor(rows), jnp.floor(cols)
    frac_r, frac_c = rows - row0, cols - col0
    row0, col0 = row0.astype(jnp.int32), col0.astype(jnp.int32)
    first_row = jnp.arange(n, dtype=jnp.int32).reshape(n, 1, 1) * (height * width)
    d_table = jnp.zeros_like(table)
    d_rows = jnp.zeros_like(rows)
    d_cols = jnp.zeros_like(cols)
    for dr, w_r in ((0, 1.0 - frac_r), (1, frac_r)):
        for dc, w_c in ((0, 1.0 - frac_c), (1, frac_c)):
            r, c = row0 + dr, col0 + dc
            inside = ((r >= 0) & (r < height) & (c >= 0) & (c < width)).astype(image.dtype)
            index = first_row + jnp.clip(r, 0, height - 1) * width + jnp.clip(c, 0, width - 1)
            index = index.reshape(-1)
            d_table = d_table.at[index].add((w_r * w_c * inside).reshape(-1, 1) * g)
            g_dot_v = jnp.sum(table[index] * g, axis=-1).reshape(rows.shape) * inside
            d_rows = d_rows + (1.0 if dr else -1.0) * w_c * g_dot_v
            d_cols = d_cols + (1.0 if dc else -1.0) * w_r * g_dot_v
    d_grid = jnp.stack([d_cols * (width / 2.0), d_rows * (height / 2.0)], axis=-1)
    return d_table.reshape(image.shape), d_grid.astype(grid.dtype)


grid_sample.defvjp(_grid_sample_fwd, _grid_sample_bwd)


def warp(image: jax.Array, disp: jax.Array, align_corners_grid: bool = True) -> jax.Array:
    """Sample ``image`` at ``base_grid(H, W, align_corners_grid) + disp`` with :func:`grid_sample`.

    ``align_corners_grid=True`` is the official release's ``SpatialTransformer``: kornia's
    align_corners=True grid sampled with align_corners=False, so with ``disp = 0`` the output is
    NOT the input (output pixel j reads source position j * W / (W - 1) - 0.5, a stretch by up to
    half a pixel at the borders). A faithful port needs it (quirk 3 in models/variants.py).
    ``align_corners_grid=False`` is the corrected, consistent grid: ``disp = 0`` is the identity.

    Args:
      image: (N, Hi, Wi, C) array to sample (usually Hi, Wi = H, W).
      disp: (N, H, W, 2) displacement, normalised units, x then y; fixes the output size.
      align_corners_grid: which base grid to add ``disp`` to (see above).

    Returns:
      (N, H, W, C) warped image.
    """
    _, height, width, _ = disp.shape
    grid = base_grid(height, width, align_corners_grid).astype(disp.dtype)
    return grid_sample(image, grid + disp)
