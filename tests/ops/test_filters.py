"""superfusion_jax.ops.filters against kornia.filters (gaussian_blur2d, spatial_gradient)."""

import jax
import jax.numpy as jnp
import kornia
import numpy as np
import pytest
import torch

from superfusion_jax.ops import filters
from superfusion_jax.ops.filters import gaussian_blur, gaussian_kernel1d, spatial_gradient


def nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2)


@pytest.fixture(params=["matrix", "per-tap"])
def filter_path(request, monkeypatch):
    """Run a test through the matrix products (axes up to MAX_MATRIX_LENGTH) and through the
    sums of shifted slices used for longer axes. Tests jit fresh lambdas, so no trace is shared
    between the two."""
    if request.param == "per-tap":
        monkeypatch.setattr(filters, "MAX_MATRIX_LENGTH", 0)
    return request.param


@pytest.mark.parametrize("size,sigma", [(3, 1.0), (13, 3.0), (17, 5.0), (5, 0.7), (4, 1.5)])
def test_gaussian_kernel1d_matches_kornia(size, sigma):
    expected = kornia.filters.get_gaussian_kernel1d(size, sigma, force_even=True)[0].numpy()
    np.testing.assert_allclose(gaussian_kernel1d(size, sigma), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("border", ["constant", "reflect", "replicate", "circular"])
@pytest.mark.parametrize(
    "kernel_size,sigma",
    [
        (13, 3.0),
        (17, 5.0),
        (3, 1.0),
        ((5, 9), (1.5, 2.5)),
        ((11, 3), (4.0, 0.8)),
        (21, 3.0),
        ((45, 19), (7.0, 3.0)),
    ],
)
def test_gaussian_blur_matches_kornia(seed, filter_path, border, kernel_size, sigma):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 23, 37, 3)).astype(np.float32)
    ks = kernel_size if isinstance(kernel_size, tuple) else (kernel_size, kernel_size)
    sg = sigma if isinstance(sigma, tuple) else (sigma, sigma)
    expected = kornia.filters.gaussian_blur2d(nchw(x), ks, sg, border_type=border)
    got = jax.jit(lambda x: gaussian_blur(x, kernel_size, sigma, border))(jnp.asarray(x))
    np.testing.assert_allclose(
        got, expected.permute(0, 2, 3, 1).numpy(), atol=2e-6, err_msg=f"seed={seed}"
    )


@pytest.mark.parametrize("border", ["constant", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("kernel_size,sigma", [(5, 1.0), (21, 3.0)])
def test_gaussian_blur_gradient_matches_torch_autograd(
    seed, filter_path, border, kernel_size, sigma
):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 23, 37, 3)).astype(np.float32)
    w = rng.standard_normal(x.shape).astype(np.float32)
    loss = lambda x: jnp.sum(gaussian_blur(x, kernel_size, sigma, border) * w)
    got = jax.jit(jax.grad(loss))(jnp.asarray(x))
    xt = nchw(x).requires_grad_(True)
    blurred = kornia.filters.gaussian_blur2d(
        xt, (kernel_size, kernel_size), (sigma, sigma), border_type=border
    )
    (blurred * nchw(w)).sum().backward()
    np.testing.assert_allclose(
        got, xt.grad.permute(0, 2, 3, 1).numpy(), atol=1e-5, err_msg=f"seed={seed}"
    )


def test_gaussian_blur_rejects_unknown_border():
    with pytest.raises(ValueError, match="border"):
        gaussian_blur(jnp.zeros((1, 8, 8, 1)), 3, 1.0, border="mirror")


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("normalized", [True, False])
@pytest.mark.parametrize("shape", [(2, 23, 37, 3), (1, 6, 5, 2)])
def test_spatial_gradient_matches_kornia(seed, filter_path, order, normalized, shape):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    expected = kornia.filters.spatial_gradient(
        nchw(x), mode="sobel", order=order, normalized=normalized
    )
    got = jax.jit(lambda x: spatial_gradient(x, order, normalized))(jnp.asarray(x))
    assert got.shape == shape + (order + 1,)
    scale = 1.0 if normalized else 64.0
    np.testing.assert_allclose(
        got, expected.permute(0, 3, 4, 1, 2).numpy(), atol=2e-6 * scale, err_msg=f"seed={seed}"
    )
