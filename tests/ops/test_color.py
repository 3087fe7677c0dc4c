"""superfusion_jax.ops.color against a numpy restatement of the release's RGB2YCrCb / YCbCr2RGB."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superfusion_jax.ops.color import rgb_to_ycbcr, ycbcr_to_rgb


def numpy_rgb_to_ycbcr(rgb):
    r, g, b = rgb[..., 0:1], rgb[..., 1:2], rgb[..., 2:3]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cr = (r - y) * 0.713 + 0.5
    cb = (b - y) * 0.564 + 0.5
    return tuple(np.clip(v, 0.0, 1.0) for v in (y, cb, cr))


def numpy_ycbcr_to_rgb(y, cb, cr):
    """The release's matrix form: ([Y, Cr, Cb] + bias) @ mat."""
    ycrcb = np.concatenate([y, cr, cb], axis=-1)
    mat = np.array([[1.0, 1.0, 1.0], [1.403, -0.714, 0.0], [0.0, -0.344, 1.773]])
    bias = np.array([0.0, -0.5, -0.5])
    return np.clip((ycrcb + bias) @ mat, 0.0, 1.0)


@pytest.mark.parametrize("shape", [(2, 7, 9, 3), (1, 16, 5, 3)])
def test_rgb_to_ycbcr_matches_release(seed, shape):
    rng = np.random.default_rng(seed)
    rgb = rng.uniform(-0.2, 1.2, shape).astype(np.float32)  # also exercise the clamps
    got = rgb_to_ycbcr(jnp.asarray(rgb))
    for name, g, e in zip(
        ("y", "cb", "cr"), got, numpy_rgb_to_ycbcr(rgb.astype(np.float64)), strict=True
    ):
        assert g.shape == shape[:3] + (1,)
        np.testing.assert_allclose(g, e, atol=1e-6, err_msg=f"{name}, seed={seed}")


@pytest.mark.parametrize("shape", [(2, 7, 9, 1), (1, 16, 5, 1)])
def test_ycbcr_to_rgb_matches_release(seed, shape):
    rng = np.random.default_rng(seed)
    y, cb, cr = (rng.uniform(0.0, 1.0, shape).astype(np.float32) for _ in range(3))
    got = ycbcr_to_rgb(jnp.asarray(y), jnp.asarray(cb), jnp.asarray(cr))
    expected = numpy_ycbcr_to_rgb(*(v.astype(np.float64) for v in (y, cb, cr)))
    assert got.shape == shape[:3] + (3,)
    assert (expected == 0).any() and (expected == 1).any()  # clamps exercised
    np.testing.assert_allclose(got, expected, atol=1e-6, err_msg=f"seed={seed}")


def test_round_trip(seed):
    rgb = np.random.default_rng(seed).uniform(0.0, 1.0, (2, 11, 13, 3)).astype(np.float32)
    back = ycbcr_to_rgb(*rgb_to_ycbcr(jnp.asarray(rgb)))
    # The release's coefficients are not an exact inverse pair (error ~5e-4 at most).
    np.testing.assert_allclose(back, rgb, atol=1e-3, err_msg=f"seed={seed}")


def test_chroma_is_detached(seed):
    rgb = jnp.asarray(np.random.default_rng(seed).uniform(0.1, 0.9, (1, 4, 5, 3)))

    def chroma(x):
        _, cb, cr = rgb_to_ycbcr(x)
        return jnp.sum(cb + cr)

    def luma(x):
        return jnp.sum(rgb_to_ycbcr(x)[0])

    np.testing.assert_array_equal(jax.grad(chroma)(rgb), 0.0)
    coefficients = np.broadcast_to([0.299, 0.587, 0.114], rgb.shape)
    np.testing.assert_allclose(jax.grad(luma)(rgb), coefficients, rtol=1e-6)
