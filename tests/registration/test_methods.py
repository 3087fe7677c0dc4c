"""Training-free registration end to end on synthetic pairs with a known transform."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from superfusion_jax.evaluation.registration_metrics import sampling_positions
from superfusion_jax.inference import Pipeline
from superfusion_jax.models.variants import CORRECTED, FAITHFUL
from superfusion_jax.registration import geometry, methods, search

SHAPE = (96, 128)


def _scene(points: np.ndarray, seed: int = 0) -> np.ndarray:
    """An analytic smooth scene (plane waves and a few soft blobs) at pixel positions (..., 2)."""
    rng = np.random.default_rng(seed)
    x, y = points[..., 0], points[..., 1]
    value = np.zeros(points.shape[:-1])
    for _ in range(8):
        kx, ky = rng.uniform(-0.35, 0.35, 2)
        value += np.sin(kx * x + ky * y + rng.uniform(0, 2 * np.pi))
    for _ in range(6):
        cx, cy, r = rng.uniform(0, SHAPE[1]), rng.uniform(0, SHAPE[0]), rng.uniform(4, 10)
        value += 3.0 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
    return ((value - value.min()) / np.ptp(value)).astype(np.float32)


def _pair(matrix: np.ndarray):
    """(fixed, moving) grey images with fixed(p) = 1 - moving(T(p)), T the u-space `matrix`:
    the moving image is the scene drawn at T^-1 and contrast-inverted (another modality)."""
    points = np.asarray(geometry.level_points(SHAPE, SHAPE))
    inverse = np.linalg.inv(matrix)
    back = np.asarray(geometry.transform_points(jnp.asarray(inverse), jnp.asarray(points), SHAPE))
    return _scene(points), 1.0 - _scene(back)


def _rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[None, ..., None], 3, axis=-1)


TRUE = np.array(search.similarity_matrix(jnp.float32(6.0), jnp.float32(1.03)))
TRUE[:2, 2] = [0.09, -0.06]  # (5.8, -3.8) px: s = 64 px


@pytest.fixture(scope="module")
def registered():
    fixed, moving = _pair(TRUE)
    settings = methods.settings_for("global")
    return fixed, moving, methods.register(_rgb(moving), _rgb(fixed), settings)


def test_global_recovers_a_known_similarity_transform(registered):
    fixed, _, out = registered
    points = geometry.level_points(SHAPE, SHAPE)
    truth = np.asarray(geometry.transform_points(jnp.asarray(TRUE), points, SHAPE))
    error = np.linalg.norm(np.asarray(out["positions"][0]) - truth, axis=-1)
    assert bool(out["ok"][0])
    assert error.mean() < 0.1, error.mean()


def test_batched_equals_one_pair_at_a_time(registered):
    fixed, moving, out = registered
    other_fixed, other_moving = _pair(np.asarray(search.similarity_matrix(-3.0, 1.0)))
    both = methods.register(
        np.concatenate([_rgb(other_moving), _rgb(moving)]),
        np.concatenate([_rgb(other_fixed), _rgb(fixed)]),
        methods.settings_for("global"),
    )
    np.testing.assert_allclose(both["positions"][1], out["positions"][0], atol=1e-3)


def test_prominence_counts_standard_deviations_of_the_best_above_the_mean():
    scores = np.random.default_rng(0).normal(-0.1, 0.02, 5000).astype(np.float32)
    moments = jnp.asarray([scores.size, scores.sum(), np.square(scores).sum()])
    expected = (scores.max() - scores.mean()) / scores.std()
    np.testing.assert_allclose(search.prominence(scores.max(), moments), expected, rtol=1e-3)
    assert float(search.prominence(jnp.float32(1.0), jnp.asarray([3.0, 3.0, 3.0]))) == 0.0


def test_a_clear_match_is_confident_and_unrelated_scenes_are_not(registered):
    _, _, out = registered
    assert bool(out["confident"][0]) and float(out["prominence"][0]) > 6.0
    # Two different scenes: no alignment is right, and the best one stands out little.
    points = np.asarray(geometry.level_points(SHAPE, SHAPE))
    for seed in (1, 2):
        found = methods.register(
            _rgb(1.0 - _scene(points, seed)),
            _rgb(_scene(points, 0)),
            methods.settings_for("global"),
        )
        assert bool(found["ok"][0]) and not bool(found["confident"][0])
        assert float(found["prominence"][0]) < 3.5


def test_no_overlap_found_falls_back_to_the_identity_and_says_so():
    fixed, moving = _pair(TRUE)
    strict = methods.settings_for(
        "global", search=dataclasses.replace(search.SearchSettings(), min_overlap=1.01)
    )
    out = methods.register(_rgb(moving), _rgb(fixed), strict)
    assert not bool(out["ok"][0])
    np.testing.assert_array_equal(out["positions"][0], geometry.level_points(SHAPE, SHAPE))


@pytest.mark.parametrize("variant", [FAITHFUL, CORRECTED], ids=lambda v: v.name)
def test_pipeline_disp_follows_the_variants_base_grid(registered, variant):
    fixed, moving, out = registered
    pipe = Pipeline.training_free("global", variant=variant)
    result = pipe.register(_rgb(moving), _rgb(fixed))
    grid_quirk = variant.align_corners_base_grid
    positions = sampling_positions(jnp.asarray(result["disp"]), grid_quirk)
    np.testing.assert_allclose(positions[0], out["positions"][0], atol=2e-3)
    assert result["ir_reg"].shape == (1, *SHAPE, 3) and bool(result["registration_ok"][0])


def test_pairs_it_cannot_register_get_a_message():
    pipe = Pipeline.training_free("global")
    tiny = np.random.default_rng(0).random((1, 20, 40, 3), np.float32)
    with pytest.raises(ValueError, match="20x40 pixels.*at least 32"):
        pipe.register(tiny, tiny)
    flat = np.full((1, 48, 64, 3), 0.5, np.float32)
    textured = np.random.default_rng(1).random((1, 48, 64, 3), np.float32)
    with pytest.raises(ValueError, match="infrared image is uniform"):
        pipe.register(flat, textured)
    with pytest.raises(ValueError, match="no fusion weights"):
        pipe.fuse(textured, textured)


def test_large_images_are_registered_at_a_bounded_working_size():
    settings = methods.settings_for("optimize")
    big = methods.scaled_for(settings, (3000, 4000))
    assert big.search.factor == 4 * 7 and big.dense.spacing == settings.dense.spacing * 7
    assert [lv.factor for lv in big.parametric_levels] == [28, 14]
    small = methods.scaled_for(settings, (240, 320))
    assert small.search.factor == 2 and [lv.factor for lv in small.parametric_levels] == [2, 1]
    assert methods.scaled_for(settings, (480, 640)) is settings


def test_the_homography_model_recovers_a_perspective_transform():
    truth = TRUE.copy()
    truth[2, :2] = [0.03, -0.02]  # perspective: up to about 2 px at the corners
    fixed, moving = _pair(truth)
    out = methods.register(
        _rgb(moving), _rgb(fixed), methods.settings_for("global", model="homography")
    )
    points = geometry.level_points(SHAPE, SHAPE)
    expected = np.asarray(geometry.transform_points(jnp.asarray(truth), points, SHAPE))
    error = np.linalg.norm(np.asarray(out["positions"][0]) - expected, axis=-1)
    assert error.mean() < 0.15, error.mean()


def test_unknown_names_in_the_settings_are_refused():
    with pytest.raises(ValueError, match="unknown registration method 'fast'"):
        methods.settings_for("fast")
    with pytest.raises(ValueError, match="unknown model 'projective'"):
        methods.settings_for("global", model="projective")
    bad = dataclasses.replace(methods.RegistrationSettings().dense, form="bspline")
    with pytest.raises(ValueError, match="unknown dense form 'bspline'"):
        methods.settings_for("optimize", dense=bad)
