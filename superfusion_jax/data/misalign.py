"""The release's synthetic misalignment (utils/utils.py `randflow`, dataset.py `RegData`), in JAX.

Conventions (the release's):
- A field is (H, W, 2), x then y, in *normalised* units. The base grid is the align_corners=True
  grid, x = linspace(-1, 1, W), y = linspace(-1, 1, H) (kornia `create_meshgrid`); the sampling
  grid is base_grid + disp, sampled with bilinear `grid_sample(..., align_corners=False)` and
  zero padding. One pixel is therefore 2 / (W - 1) in x and 2 / (H - 1) in y.
- The affine part is kornia's `get_affine_matrix2d(t, center=0, scale=1, angle)`, inverted and
  applied to the *normalised* base grid. center = 0 is the image centre; because the rotation
  acts on normalised coordinates, on a non-square image it is a rotation of the [-1, 1]² square
  (in pixels: a rotation combined with the anisotropic W/H stretch). The forward map is
  p -> R(a) p + t with R(a) = [[cos a, -sin a], [sin a, cos a]], a in degrees; the grid is
  R(a)^T (p - t).
- The whole displacement (elastic + affine) is then multiplied by base / (W, H) per axis, and the
  angle range by max(H, W) / base (base = 500), so the misalignment grows with the image size.

Everything here is a pure function of a PRNG key and arrays of static shape: jit it, and vmap it
over a batch of keys for per-example fields.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from superfusion_jax.ops.filters import gaussian_blur
from superfusion_jax.ops.warp import base_grid, grid_sample

Array = jax.Array

ELASTIC_BLURS = 6


class MisalignedPair(NamedTuple):
    """A training example as the release's `RegData` returns it (one example, no batch axis).

    ir, vi: (H, W, C) aligned images in [0, 1]; ir_warp, vi_warp: (H, W, C) both warped by the
    same ground-truth grid; disp: (H, W, 2) ground-truth displacement in this frame's normalised
    units (align_corners=True base grid): ir_warp = grid_sample(ir, base_grid + disp).
    """

    ir: Array
    vi: Array
    ir_warp: Array
    vi_warp: Array
    disp: Array


def elastic_kernel_size(sigma: int) -> int:
    """The release's odd kernel size for the elastic blur: (3·sigma) // 2 · 2 + 1 (45 for 15)."""
    return (3 * sigma) // 2 * 2 + 1


def elastic_field(noise: Array, sigma: int = 15) -> Array:
    """Blur `noise` six times with a Gaussian (sigma, kernel `elastic_kernel_size`, reflect border).

    noise: (H, W, 2) uniform noise in [-1, 1] (H, W > kernel // 2 for the reflect padding).
    Returns the (H, W, 2) elastic displacement before scaling, normalised units.
    """
    size = elastic_kernel_size(sigma)
    field = noise[None]
    for _ in range(ELASTIC_BLURS):
        field = gaussian_blur(field, size, float(sigma), border="reflect")
    return field[0]


def inverse_affine_grid(grid: Array, angle: Array | float, translation: Array) -> Array:
    """Apply the inverse of p -> R(angle) p + translation to grid points.

    grid: (..., 2) normalised points, x then y; angle: scalar, degrees (kornia's
    `get_affine_matrix2d` sign: R = [[cos, -sin], [sin, cos]]); translation: (2,) normalised
    units. Returns R^T (grid - translation), same shape as `grid`.
    """
    a = jnp.deg2rad(angle)
    c, s = jnp.cos(a), jnp.sin(a)
    q = grid - translation
    return jnp.stack([c * q[..., 0] + s * q[..., 1], -s * q[..., 0] + c * q[..., 1]], axis=-1)


def flow_from_params(
    angle: Array | float,
    translation: Array,
    noise: Array,
    ratio: float = 1.0,
    sigma: int = 15,
    base: float | None = 500.0,
) -> tuple[Array, Array, Array]:
    """The deterministic part of `randflow`: a field from drawn parameters.

    angle: scalar, degrees (already drawn); translation: (2,) normalised units (already drawn);
    noise: (H, W, 2) uniform noise in [-1, 1] (zeros for a purely affine field); ratio scales the
    elastic part; base (None: no scaling) scales the whole displacement by base / (W, H).
    Returns (grid, disp, mask), each (H, W, 2): the sampling grid, grid - base_grid (normalised
    units, align_corners=True base grid) and, per coordinate, whether the grid leaves [-1, 1].
    """
    h, w = noise.shape[:2]
    grid = base_grid(h, w, True)
    affine = inverse_affine_grid(grid, angle, translation)
    scale = 1.0 if base is None else base / jnp.asarray([w, h], jnp.float32)
    disp = (elastic_field(noise, sigma) * ratio + affine - grid) * scale
    warp_grid = grid + disp
    mask = jnp.logical_or(warp_grid > 1, warp_grid < -1)
    return warp_grid, warp_grid - grid, mask


def randflow(
    key: Array,
    height: int,
    width: int,
    angle: float = 7.0,
    translation: float = 0.07,
    ratio: float = 1.0,
    sigma: int = 15,
    base: float | None = 500.0,
) -> tuple[Array, Array, Array]:
    """The release's `randflow` (defaults as in utils.py; RegData uses angle=10, trans=0.1;
    `translation` is its `trans`).

    Draws angle ~ U(-1, 1)·angle·max(H, W)/base degrees, translation ~ U(-1, 1)²·translation
    (normalised units) and elastic noise ~ U(-1, 1)^(H, W, 2), then calls `flow_from_params`.
    key: one PRNG key (vmap over keys for a batch). Returns (grid, disp, mask), each (H, W, 2).
    """
    k_angle, k_trans, k_noise = jax.random.split(key, 3)
    max_angle = angle if base is None else max(width, height) / base * angle
    rand_angle = jax.random.uniform(k_angle, (), minval=-1.0, maxval=1.0) * max_angle
    rand_trans = jax.random.uniform(k_trans, (2,), minval=-1.0, maxval=1.0) * translation
    noise = jax.random.uniform(k_noise, (height, width, 2), minval=-1.0, maxval=1.0)
    return flow_from_params(rand_angle, rand_trans, noise, ratio, sigma, base)


def crop_pair(
    pair: MisalignedPair, top: Array | int, left: Array | int, size: int
) -> MisalignedPair:
    """Crop every image of `pair` to size x size at (top, left), as `RegData`'s RandomCrop does.

    top, left may be traced integers. The displacement is rescaled from the full frame's
    normalised units to the crop's: x by (W - 1) / (size - 1), y by (H - 1) / (size - 1).
    """
    h, w = pair.disp.shape[:2]

    def cut(x: Array) -> Array:
        return jax.lax.dynamic_slice(x, (top, left, 0), (size, size, x.shape[-1]))

    scale = (jnp.asarray([w, h], jnp.float32) - 1.0) / (size - 1.0)
    cropped = [cut(x) for x in pair]
    return MisalignedPair(*cropped[:-1], cropped[-1] * scale)


def misalign_pair(
    key: Array,
    ir: Array,
    vi: Array,
    angle: float = 10.0,
    translation: float = 0.1,
    ratio: float = 1.0,
    sigma: int = 15,
    base: float | None = 500.0,
    crop_size: int | None = None,
) -> MisalignedPair:
    """One stage-RF training example made the way `RegData.__getitem__` makes it.

    key: one PRNG key; ir, vi: (H, W, C) aligned images in [0, 1] (flips, rotations and the
    resize of small images are augmentation, not done here). Draws one `randflow` field for the
    full frame, warps ir and vi with the same grid (bilinear, zeros, align_corners=False), then,
    if crop_size is given, crops all five arrays at a uniformly drawn position (`crop_pair`).
    Returns a `MisalignedPair`; vmap over (key, ir, vi) for a batch.
    """
    k_flow, k_top, k_left = jax.random.split(key, 3)
    h, w = ir.shape[:2]
    grid, disp, _ = randflow(k_flow, h, w, angle, translation, ratio, sigma, base)
    warped = grid_sample(jnp.concatenate([ir, vi], axis=-1)[None], grid[None])[0]
    pair = MisalignedPair(ir, vi, warped[..., : ir.shape[-1]], warped[..., ir.shape[-1] :], disp)
    if crop_size is None:
        return pair
    top = jax.random.randint(k_top, (), 0, h - crop_size + 1)
    left = jax.random.randint(k_left, (), 0, w - crop_size + 1)
    return crop_pair(pair, top, left, crop_size)


@dataclasses.dataclass(frozen=True)
class MisalignConfig:
    """Synthetic misalignment of stage RF (the release's `RegData`: randflow(img, 10, 0.1, 1)).

    angle: maximum rotation in degrees, scaled by max(H, W) / 500; translation: maximum shift in
    normalised units; ratio: weight of the elastic part; crop_size: None misaligns the batch as
    given; an int misaligns the full frames and then crops crop_size x crop_size at a random
    position, as the release does (so the warp's black borders mostly fall outside the crop).
    """

    angle: float = 10.0
    translation: float = 0.1
    ratio: float = 1.0
    crop_size: int | None = None


def misalign_batch(rng: Array, batch: dict, config: MisalignConfig = MisalignConfig()) -> dict:
    """Add the release's synthetic misalignment to a batch of aligned pairs (`misalign_pair`).

    rng: a typed PRNG key; example i uses fold_in(rng, i) (i = index in the global batch, so the
    result does not depend on how the batch is sharded). batch: `ir`, `vi` (B, H, W, 3) aligned;
    other entries are passed through unchanged (never cropped). Returns the batch with
    `ir_warp`, `vi_warp` (B, h, w, 3) and the ground truth `disp` (B, h, w, 2) (normalised units,
    align_corners=True base grid) added, where (h, w) = (H, W), or (crop_size, crop_size) when
    config.crop_size is given: then `ir` and `vi` are replaced by their crops too.
    """
    keys = jax.vmap(lambda i: jax.random.fold_in(rng, i))(jnp.arange(batch["ir"].shape[0]))

    def one(key: Array, ir: Array, vi: Array) -> MisalignedPair:
        return misalign_pair(
            key,
            ir,
            vi,
            config.angle,
            config.translation,
            config.ratio,
            crop_size=config.crop_size,
        )

    pair = jax.vmap(one)(keys, batch["ir"], batch["vi"])
    return {**batch, **pair._asdict()}
