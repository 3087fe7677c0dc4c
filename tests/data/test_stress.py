"""data.stress.synthetic_infrared: the stand-in infrared image of the msrs-synthetic benchmark."""

import jax.numpy as jnp
import numpy as np
import pytest

from superfusion_jax.data.stress import synthetic_infrared
from superfusion_jax.ops.filters import gaussian_blur


@pytest.fixture(scope="module")
def visible():
    rng = np.random.default_rng(3)
    return rng.uniform(0.0, 1.0, (24, 32, 3)).astype(np.float32)


def luminance(rgb):
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def test_without_blur_noise_or_bend_it_is_the_inverted_luminance(visible):
    out = synthetic_infrared(visible, seed=0, gamma=1.0, blur_sigma=0.0, noise_std=0.0)
    np.testing.assert_allclose(out[..., 0], 1.0 - luminance(visible), atol=1e-6)


def test_grey_rgb_in_range_and_seeded(visible):
    out = synthetic_infrared(visible, seed=7)
    assert out.shape == visible.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    np.testing.assert_array_equal(out, synthetic_infrared(visible, seed=7))
    assert not np.array_equal(out, synthetic_infrared(visible, seed=8))


def test_contrast_is_inverted_and_softened(visible):
    out = synthetic_infrared(visible, seed=0, noise_std=0.0)[..., 0]
    grey = luminance(visible)
    assert np.corrcoef(out.ravel(), grey.ravel())[0, 1] < -0.3
    # The blur removes most of the pixel-to-pixel variation of uniform noise.
    assert np.std(np.diff(out, axis=1)) < 0.5 * np.std(np.diff(grey, axis=1))


def test_blur_is_the_packages_gaussian_blur_with_replicated_borders(visible):
    sigma = 1.5
    out = synthetic_infrared(visible, seed=0, blur_sigma=sigma, noise_std=0.0)[..., 0]
    sharp = synthetic_infrared(visible, seed=0, blur_sigma=0.0, noise_std=0.0)[..., :1]
    expected = gaussian_blur(jnp.asarray(sharp)[None], 9, sigma, border="replicate")[0, ..., 0]
    np.testing.assert_allclose(out, np.clip(np.asarray(expected), 0.0, 1.0), atol=1e-6)
