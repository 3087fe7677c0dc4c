"""Coordinates, pyramid levels, parametric transforms and sampling for the registration.

Every position is in FULL-RESOLUTION PIXELS of the pair, x (column) then y (row), pixel centres
at integers; a pyramid level of size (h, w) of an (H, W) image has its pixel i at full-resolution
coordinate (i + 0.5)·(W/w) - 0.5 (same along y), so positions mean the same at every level.
Parametric transforms act on centred, scaled coordinates u = (p - c) / s with c the image
centre and s = max(H, W) / 2, so their parameters do not depend on the level or on the size.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates

Array = jax.Array

# Number of parameters of each parametric model (see `transform_points`).
NUM_PARAMS = {"affine": 6, "homography": 8}


def level_shape(height: int, width: int, factor: int) -> tuple[int, int]:
    """Size of the pyramid level `factor` (1 = full resolution): each side divided, rounded,
    at least 1 pixel."""
    return max(1, round(height / factor)), max(1, round(width / factor))


def downsample(image: Array, shape: tuple[int, int]) -> Array:
    """(H, W) or (H, W, C) image -> `shape` by antialiased linear resampling (area-like)."""
    return jax.image.resize(image, tuple(shape) + image.shape[2:], "linear", antialias=True)


def level_points(full_shape: tuple[int, int], shape: tuple[int, int]) -> Array:
    """Full-resolution pixel positions (h, w, 2), x then y, of the centres of a level's pixels."""
    (height, width), (h, w) = full_shape, shape
    xs = (jnp.arange(w, dtype=jnp.float32) + 0.5) * (width / w) - 0.5
    ys = (jnp.arange(h, dtype=jnp.float32) + 0.5) * (height / h) - 0.5
    gx, gy = jnp.meshgrid(xs, ys, indexing="xy")
    return jnp.stack([gx, gy], axis=-1)


def centre_and_scale(full_shape: tuple[int, int]) -> tuple[Array, float]:
    """(c, s): the image centre (2,) in pixels and the half-size max(H, W) / 2 of u-space."""
    height, width = full_shape
    return jnp.asarray([(width - 1) / 2, (height - 1) / 2], jnp.float32), max(height, width) / 2


def params_to_matrix(params: Array) -> Array:
    """(6,) affine or (8,) homography parameters -> (3, 3) matrix on homogeneous u.

    Zero parameters are the identity: [[1 + a, b, tx], [c, 1 + d, ty], [g, h, 1]] with
    params (a, b, c, d, tx, ty[, g, h]); translations in units of s (half the longer side).
    """
    a, b, c, d, tx, ty = (params[i] for i in range(6))
    g, h = (params[6], params[7]) if params.shape[0] == 8 else (0.0 * a, 0.0 * a)
    one = jnp.ones_like(a)
    return jnp.stack(
        [jnp.stack([one + a, b, tx]), jnp.stack([c, one + d, ty]), jnp.stack([g, h, one])]
    )


def matrix_to_params(matrix: Array, model: str) -> Array:
    """(3, 3) matrix (normalised so matrix[2, 2] = 1) -> the parameters of `model`."""
    m = matrix / matrix[2, 2]
    params = jnp.stack([m[0, 0] - 1, m[0, 1], m[1, 0], m[1, 1] - 1, m[0, 2], m[1, 2]])
    if model == "homography":
        params = jnp.concatenate([params, jnp.stack([m[2, 0], m[2, 1]])])
    return params


def transform_points(matrix: Array, points: Array, full_shape: tuple[int, int]) -> Array:
    """Map full-resolution pixel positions (..., 2) through a (3, 3) u-space matrix."""
    centre, scale = centre_and_scale(full_shape)
    u = (points - centre) / scale
    mapped = u @ matrix[:2, :2].T + matrix[:2, 2]
    denominator = u @ matrix[2, :2] + matrix[2, 2]
    return mapped / denominator[..., None] * scale + centre


def pixel_jacobian(matrix: Array) -> Array:
    """(2, 2) linear part of a u-space matrix (the Jacobian of an affine map, in px/px)."""
    return matrix[:2, :2] / matrix[2, 2]


def sample(image: Array, positions: Array, full_shape: tuple[int, int]) -> Array:
    """Bilinear samples of a level image (h, w) or (h, w, C) at full-resolution positions
    (..., 2), edge values repeated outside the frame."""
    h, w = image.shape[:2]
    height, width = full_shape
    cols = (positions[..., 0] + 0.5) * (w / width) - 0.5
    rows = (positions[..., 1] + 0.5) * (h / height) - 0.5

    def one(channel: Array) -> Array:
        return map_coordinates(channel, [rows, cols], order=1, mode="nearest")

    if image.ndim == 2:
        return one(image)
    return jax.vmap(one, in_axes=-1, out_axes=-1)(image)


def inside_frame(positions: Array, full_shape: tuple[int, int], margin: float = 0.0) -> Array:
    """1.0 where full-resolution positions (..., 2) lie inside the frame shrunk by `margin`
    pixels on every side, else 0.0."""
    height, width = full_shape
    x, y = positions[..., 0], positions[..., 1]
    ok = (x >= margin - 0.5) & (x <= width - 0.5 - margin)
    ok &= (y >= margin - 0.5) & (y <= height - 0.5 - margin)
    return ok.astype(jnp.float32)


def content_mask(image: Array, block: int = 5, margin: int = 4) -> Array:
    """1.0 where a full-resolution grey image (H, W) holds content, 0.0 on no-data padding.

    Padding is any pixel inside a block x block window of exact zeros (the black borders that
    rectification, cropping or a synthetic warp leave), widened by `margin` pixels so that the
    edge between padding and content does not count as an image edge.
    """

    def window_max(x: Array, size: int) -> Array:
        pad = size // 2
        padded = jnp.pad(x, pad, mode="edge")
        return jax.lax.reduce_window(padded, -jnp.inf, jax.lax.max, (size, size), (1, 1), "VALID")

    zero_block = window_max((image > 0).astype(jnp.float32), block) == 0
    padding = window_max(zero_block.astype(jnp.float32), block + 2 * margin)
    return 1.0 - padding
