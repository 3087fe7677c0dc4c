"""Unit conversions of displacement fields.

A displacement `disp` (N, H, W, 2), x then y, is in the release's *normalised* units: the sampling
grid is `base_grid + disp`, sampled with align_corners=False (see `ops.warp`). Which base grid
is used depends on the variant (`align_corners_grid`: True = the release's linspace(-1, 1) grid,
False = pixel centres). A pixel displacement (dx, dy) is the sampling position minus the output
pixel's position, both in pixel units (x = column, y = row).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from superfusion_jax.ops.warp import base_grid

Array = jax.Array


def _sizes(shape: tuple[int, ...]) -> Array:
    return jnp.asarray([shape[-2], shape[-3]], jnp.float32)  # (W, H)


def disp_to_pixels(disp: Array, align_corners_grid: bool) -> Array:
    """Normalised displacement (N, H, W, 2) -> pixel displacement (N, H, W, 2), dx then dy."""
    h, w = disp.shape[-3], disp.shape[-2]
    size = _sizes(disp.shape)
    grid = base_grid(h, w, align_corners_grid) + disp
    source_px = ((grid + 1.0) * size - 1.0) / 2.0
    return source_px - base_grid_pixels(h, w)


def pixels_to_disp(disp_px: Array, align_corners_grid: bool) -> Array:
    """Pixel displacement (N, H, W, 2), dx then dy -> normalised displacement (N, H, W, 2)."""
    h, w = disp_px.shape[-3], disp_px.shape[-2]
    size = _sizes(disp_px.shape)
    source_px = base_grid_pixels(h, w) + disp_px
    return (2.0 * source_px + 1.0) / size - 1.0 - base_grid(h, w, align_corners_grid)


def base_grid_pixels(height: int, width: int) -> Array:
    """Pixel coordinates (H, W, 2) of every pixel, x (column) then y (row)."""
    ys, xs = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing="ij")
    return jnp.stack([xs, ys], axis=-1).astype(jnp.float32)


def crop_disp(disp: Array, height: int, width: int, align_corners_grid: bool) -> Array:
    """Crop a displacement computed on a bottom/right-padded image back to (height, width).

    disp: (N, Hp, Wp, 2) normalised units of the padded frame; returns (N, height, width, 2) in
    the normalised units of the unpadded frame, describing the same pixel displacements.
    """
    px = disp_to_pixels(disp, align_corners_grid)[:, :height, :width]
    return pixels_to_disp(px, align_corners_grid)
