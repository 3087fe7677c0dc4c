"""The dense stage: smooth fields, the diffeomorphic form and its optimisation."""

import jax.numpy as jnp
import numpy as np

from superfusion_jax.evaluation.registration_metrics import jacobian_determinant
from superfusion_jax.registration import dense, geometry
from superfusion_jax.registration.parametric import LevelSchedule
from superfusion_jax.registration.similarity import MIND

SHAPE = (64, 80)


def _large_velocity(rng, spacing):
    grid = dense.control_shape(SHAPE, spacing)
    return jnp.asarray(rng.normal(0.0, 4.0, grid + (2,)), jnp.float32)


def _det(control, settings):
    where = dense.positions(jnp.eye(3), control, SHAPE, SHAPE, settings)
    return jacobian_determinant(where[None])


def test_the_diffeomorphic_form_never_folds_where_the_plain_grid_does(rng):
    control = _large_velocity(rng, spacing=8)
    det_plain = _det(control, dense.DenseSettings(form="grid", spacing=8))
    det_svf = _det(control, dense.DenseSettings(form="svf", spacing=8, squarings=7))
    assert float(jnp.mean(det_plain <= 0)) > 0.01  # the same control values fold as a plain grid
    assert float(jnp.min(det_svf)) > 0.0


def test_a_zero_velocity_is_the_identity():
    control = jnp.zeros(dense.control_shape(SHAPE, 16) + (2,))
    where = dense.positions(jnp.eye(3), control, SHAPE, SHAPE, dense.DenseSettings())
    np.testing.assert_allclose(where, geometry.level_points(SHAPE, SHAPE), atol=1e-4)


def test_dense_refinement_recovers_a_smooth_shift():
    """Same scene, shifted by a smooth field of up to 1.5 px: the residual is found."""
    ys, xs = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]].astype(np.float32)
    shift = 1.5 * np.sin(xs / SHAPE[1] * np.pi)  # x displacement, 0 to 1.5 px

    def scene(x, y):
        return 0.5 + 0.25 * (np.sin(0.31 * x + 0.2 * y) + np.sin(0.17 * x - 0.27 * y + 1.0))

    fixed = jnp.asarray(scene(xs + shift, ys), jnp.float32)
    moving = jnp.asarray(scene(xs, ys), jnp.float32)
    settings = dense.DenseSettings(spacing=8, smoothness=0.01, levels=(LevelSchedule(1, 60, 0.5),))
    control = dense.refine_dense(MIND(), fixed, moving, jnp.eye(3), settings)
    found = dense.positions(jnp.eye(3), control, SHAPE, SHAPE, settings)
    points = geometry.level_points(SHAPE, SHAPE)
    error = np.abs(np.asarray(found[..., 0] - points[..., 0]) - shift)[8:-8, 8:-8]
    assert error.mean() < 0.3, error.mean()
