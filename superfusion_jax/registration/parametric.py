"""Gradient refinement of a parametric transform (affine or homography), coarse to fine.

At each pyramid level the similarity's mean score over the pixels whose transformed position
falls inside the moving frame is maximised with Adam (optax) over the transform's parameters.
A change of e in any parameter (`geometry.params_to_matrix`) moves a point at the frame's edge
by about e·max(H, W)/2 px, so the learning rate is given in those pixels and divided by
max(H, W)/2: the same schedule converges alike at every image size.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from superfusion_jax.registration import geometry

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class LevelSchedule:
    """One pyramid level of an optimisation: downsampling factor, Adam iterations and
    learning rate (full-resolution pixels per update; cosine-decayed to 10 % over the
    iterations)."""

    factor: int
    iterations: int
    learning_rate: float


def masked_mean_score(similarity, fixed_features: Array, moving_features: Array, mask: Array):
    """Mean of the per-pixel score over `mask` (h, w) (at least one pixel's weight)."""
    score = similarity.score(fixed_features, moving_features)
    return jnp.sum(score * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def level_objective(
    similarity, fixed: Array, moving: Array, shape: tuple[int, int], margin_px: float
):
    """A function (positions (h, w, 2), jacobian (2, 2)) -> mean score at one pyramid level.

    fixed, moving: full-resolution grey images (H, W); shape: the level's (h, w); positions:
    full-res pixel positions in the moving image of each fixed level pixel. The mean is over
    pixels whose position lies inside the moving frame (shrunk by margin_px) and on content of
    both images (`geometry.content_mask`: no-data padding is ignored), higher is better.
    """
    full_shape = fixed.shape
    fixed_prep = similarity.prepare(geometry.downsample(fixed, shape))
    moving_prep = similarity.prepare(geometry.downsample(moving, shape))
    fixed_features = similarity.features(fixed_prep)
    fixed_content = geometry.downsample(geometry.content_mask(fixed), shape)
    moving_content = geometry.downsample(geometry.content_mask(moving), shape)

    def objective(positions: Array, jacobian: Array) -> Array:
        sampler = lambda field: geometry.sample(field, positions, full_shape)
        moving_features = similarity.warped(moving_prep, sampler, jacobian)
        mask = geometry.inside_frame(positions, full_shape, margin_px)
        mask = mask * fixed_content * sampler(moving_content)
        return masked_mean_score(similarity, fixed_features, moving_features, mask)

    return objective


def refine_level(
    similarity,
    fixed: Array,
    moving: Array,
    full_shape: tuple[int, int],
    params: Array,
    level: LevelSchedule,
) -> tuple[Array, Array]:
    """Adam on the transform's parameters at one level.

    fixed, moving: full-resolution grey images (H, W); params: (6,) or (8,) start.
    Returns (params, final mean score).
    """
    shape = geometry.level_shape(*full_shape, level.factor)
    points = geometry.level_points(full_shape, shape)
    objective = level_objective(similarity, fixed, moving, shape, margin_px=2.0 * level.factor)

    def loss(p: Array) -> Array:
        matrix = geometry.params_to_matrix(p)
        positions = geometry.transform_points(matrix, points, full_shape)
        return -objective(positions, geometry.pixel_jacobian(matrix))

    _, half_size = geometry.centre_and_scale(full_shape)
    params = minimise(loss, params, level.iterations, level.learning_rate / half_size)
    return params, -loss(params)


def minimise(loss, start: Array, iterations: int, learning_rate: float) -> Array:
    """`iterations` Adam updates of `loss` from `start`, the learning rate cosine-decayed to
    10 % (the optimiser of every level, parametric and dense). Returns the last parameters."""
    optimizer = optax.adam(optax.cosine_decay_schedule(learning_rate, iterations, alpha=0.1))

    def step(carry, _):
        x, opt_state = carry
        updates, opt_state = optimizer.update(jax.grad(loss)(x), opt_state, x)
        return (optax.apply_updates(x, updates), opt_state), None

    (found, _), _ = jax.lax.scan(step, (start, optimizer.init(start)), None, iterations)
    return found


def refine(
    similarity,
    fixed: Array,
    moving: Array,
    params: Array,
    levels: tuple[LevelSchedule, ...],
) -> tuple[Array, Array]:
    """`refine_level` at each level in order (coarse to fine). Returns (params, final score)."""
    score = jnp.zeros(())
    for level in levels:
        params, score = refine_level(similarity, fixed, moving, fixed.shape, params, level)
    return params, score
