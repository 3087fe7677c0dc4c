"""Similarities of the training-free registration: modality independence and their gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superfusion_jax.registration import geometry, parametric
from superfusion_jax.registration.similarity import MIND, NGF, SIMILARITIES, make_similarity


def _texture(rng, shape=(48, 64)):
    """A smooth random grey image in [0, 1] (a sum of random plane waves)."""
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    image = np.zeros(shape, np.float32)
    for _ in range(6):
        kx, ky = rng.uniform(-0.5, 0.5, 2)
        image += np.sin(kx * xs + ky * ys + rng.uniform(0, 2 * np.pi))
    return jnp.asarray((image - image.min()) / np.ptp(image))


@pytest.mark.parametrize("name", sorted(SIMILARITIES))
def test_a_contrast_inversion_costs_nothing(name, rng):
    similarity = make_similarity(name)
    image = _texture(rng)
    inverted = 0.2 + 0.7 * (1.0 - image)  # inverted, with another gain and offset
    same = similarity.score(*(similarity.features(similarity.prepare(image)),) * 2)
    across = similarity.score(
        similarity.features(similarity.prepare(image)),
        similarity.features(similarity.prepare(inverted)),
    )
    np.testing.assert_allclose(np.asarray(across), np.asarray(same), atol=1e-4)


def test_scores_prefer_the_aligned_image(rng):
    image = _texture(rng)
    shifted = jnp.roll(image, 3, axis=1)
    for similarity in (NGF(), MIND()):
        f = similarity.features(similarity.prepare(image))
        aligned = similarity.score(f, f).mean()
        moved = similarity.score(f, similarity.features(similarity.prepare(shifted))).mean()
        assert float(aligned) > float(moved) + 1e-3


@pytest.mark.parametrize("name", sorted(SIMILARITIES))
def test_objective_gradient_matches_finite_differences(name, rng):
    """d(mean score)/d(affine parameters) against central differences (float64)."""
    with jax.enable_x64(True):
        similarity = make_similarity(name)
        fixed = _texture(rng).astype(jnp.float64)
        moving = jnp.roll(fixed, 1, axis=0)
        shape = fixed.shape
        objective = parametric.level_objective(similarity, fixed, moving, shape, margin_px=2.0)
        points = geometry.level_points(shape, shape).astype(jnp.float64)

        def f(params):
            matrix = geometry.params_to_matrix(params)
            where = geometry.transform_points(matrix, points, shape)
            return objective(where, geometry.pixel_jacobian(matrix))

        params = jnp.asarray(rng.normal(0, 0.01, 6))
        grad = jax.grad(f)(params)
        for i in range(6):
            step = jnp.zeros(6).at[i].set(1e-6)
            numeric = (f(params + step) - f(params - step)) / 2e-6
            np.testing.assert_allclose(float(grad[i]), float(numeric), rtol=2e-3, atol=1e-5)


def test_unknown_similarity_is_named():
    with pytest.raises(ValueError, match="unknown similarity 'ssd'"):
        make_similarity("ssd")
