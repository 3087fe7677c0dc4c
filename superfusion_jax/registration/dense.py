"""The dense stage: a smooth residual field behind a parametric transform, by Adam.

The field d (full-resolution pixels) lives on a control grid of spacing `spacing` pixels (control
point (i, j) at pixel (j, i)·spacing) and is interpolated bilinearly in between, as products with
constant interpolation matrices along each axis. The registration is p -> A(p + d(p)), A the
parametric transform. Two forms:
- 'grid': the control grid holds d;
- 'svf': it holds a stationary velocity field v, and d = exp(v) - id is integrated on the
  control grid by scaling and squaring (`integrate_velocity`; VoxelMorph's VecInt), so each
  control cell keeps its orientation; a bilinear map whose four corners of every cell have a
  positive Jacobian has one everywhere in the cell, so the whole field is diffeomorphic.
The objective is minus the similarity's mean score over the overlap plus `smoothness` x the
diffusion energy of the control grid (mean squared difference of neighbouring control values,
px^2), optimised with Adam at each pyramid level of `levels` in turn.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from superfusion_jax.registration import geometry
from superfusion_jax.registration.parametric import LevelSchedule, level_objective, minimise

Array = jax.Array

FORMS = ("grid", "svf")


@dataclasses.dataclass(frozen=True)
class DenseSettings:
    """form: 'grid' or 'svf'; spacing: control-grid spacing (full-res px); smoothness: weight
    of the diffusion energy; squarings: scaling-and-squaring steps ('svf'); levels: the
    optimisation (learning rates in px per update).

    The defaults were chosen on three sets (benchmarks/registration.py): with a synthetic
    infrared (`data.stress.synthetic_infrared`, exact ground truth) the elastic part is
    recovered (1.75 -> 1.48 px mean EPE against smoothness 0.1 at 1/4 resolution only); on the
    real MSRS and stress pairs it does not follow modality differences (4.51 -> 4.50 px, and
    8.48 -> 8.36 px over the covered pixels); a freer field (0.003) reached 1.01 px on the
    synthetic set but 4.85 and 8.71 px on the real ones. The iterations (20 + 15, with 30 + 20
    of the affine stage) were then halved from 40 + 40 (and 60 + 40): the same on the synthetic
    sets, better on the real ones (4.50 -> 4.24 px), 1.20 -> 0.91 s per pair on 2 cores."""

    form: str = "svf"
    spacing: int = 32
    smoothness: float = 0.03
    squarings: int = 6
    levels: tuple[LevelSchedule, ...] = (LevelSchedule(4, 20, 0.5), LevelSchedule(2, 15, 0.25))


def control_shape(full_shape: tuple[int, int], spacing: int) -> tuple[int, int]:
    """Control points covering the frame: ceil((side - 1) / spacing) + 1 per axis."""
    return tuple(-(-(side - 1) // spacing) + 1 for side in full_shape)


def _interpolation_matrix(coordinates: np.ndarray, count: int, spacing: int) -> np.ndarray:
    """(n, count) linear-interpolation weights of control values at `coordinates` (px)."""
    u = np.clip(coordinates / spacing, 0.0, count - 1.0)
    low = np.minimum(np.floor(u).astype(int), count - 1)
    high = np.minimum(low + 1, count - 1)
    frac = u - low
    matrix = np.zeros((coordinates.shape[0], count), np.float32)
    rows = np.arange(coordinates.shape[0])
    np.add.at(matrix, (rows, low), 1.0 - frac)
    np.add.at(matrix, (rows, high), frac)
    return matrix


def interpolate(control: Array, full_shape, shape, spacing: int) -> Array:
    """The control grid (gh, gw, 2) at every pixel of a level of size `shape` (h, w, 2)."""
    (height, width), (h, w) = full_shape, shape
    ys = (np.arange(h) + 0.5) * (height / h) - 0.5
    xs = (np.arange(w) + 0.5) * (width / w) - 0.5
    rows = _interpolation_matrix(ys, control.shape[0], spacing)
    cols = _interpolation_matrix(xs, control.shape[1], spacing)
    return jnp.einsum("yi,ijc,xj->yxc", rows, control, cols)


def integrate_velocity(velocity: Array, spacing: int, squarings: int) -> Array:
    """exp(v) - id on the control grid by scaling and squaring: velocity (gh, gw, 2) in
    full-res px at the control points; returns the displacement there (gh, gw, 2), px."""
    gh, gw = velocity.shape[:2]
    rows, cols = jnp.meshgrid(
        jnp.arange(gh, dtype=jnp.float32), jnp.arange(gw, dtype=jnp.float32), indexing="ij"
    )

    def at(field: Array, disp: Array) -> Array:
        r, c = rows + disp[..., 1] / spacing, cols + disp[..., 0] / spacing
        one = lambda ch: jax.scipy.ndimage.map_coordinates(ch, [r, c], order=1, mode="nearest")
        return jnp.stack([one(field[..., 0]), one(field[..., 1])], axis=-1)

    disp = velocity / (2.0**squarings)
    for _ in range(squarings):
        disp = disp + at(disp, disp)
    return disp


def control_displacement(control: Array, settings: DenseSettings) -> Array:
    """The residual at the control points (gh, gw, 2), px: the grid itself, or exp of it."""
    if settings.form == "svf":
        return integrate_velocity(control, settings.spacing, settings.squarings)
    return control


def diffusion(control: Array) -> Array:
    """Mean squared difference of neighbouring control values (px^2)."""
    dy = jnp.diff(control, axis=0)
    dx = jnp.diff(control, axis=1)
    return 0.5 * (jnp.mean(dy**2) + jnp.mean(dx**2))


def positions(matrix: Array, control: Array, full_shape, shape, settings: DenseSettings) -> Array:
    """Sampling positions A(p + d(p)) (h, w, 2) in the moving image for every pixel p of a level
    of size `shape`, full-res px."""
    residual = interpolate(
        control_displacement(control, settings), full_shape, shape, settings.spacing
    )
    points = geometry.level_points(full_shape, shape)
    return geometry.transform_points(matrix, points + residual, full_shape)


def refine_dense(
    similarity, fixed: Array, moving: Array, matrix: Array, settings: DenseSettings
) -> Array:
    """Optimise the control grid behind `matrix` (3, 3). fixed, moving: (H, W) grey images.
    Returns the control grid (gh, gw, 2), full-res px."""
    full_shape = fixed.shape
    control = jnp.zeros(control_shape(full_shape, settings.spacing) + (2,), jnp.float32)
    jacobian = geometry.pixel_jacobian(matrix)
    for level in settings.levels:
        shape = geometry.level_shape(*full_shape, level.factor)
        objective = level_objective(similarity, fixed, moving, shape, margin_px=2.0 * level.factor)

        def loss(c: Array, shape=shape, objective=objective) -> Array:
            where = positions(matrix, c, full_shape, shape, settings)
            return -objective(where, jacobian) + settings.smoothness * diffusion(c)

        control = minimise(loss, control, level.iterations, level.learning_rate)
    return control
