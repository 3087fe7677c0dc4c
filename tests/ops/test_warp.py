"""superfusion_jax.ops.warp against torch F.grid_sample and kornia create_meshgrid."""

import jax
import jax.numpy as jnp
import kornia
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from jax.test_util import check_grads

from superfusion_jax.ops.warp import base_grid, grid_sample, warp


def torch_grid_sample(image: np.ndarray, grid: np.ndarray) -> torch.Tensor:
    """The release's sampling call on NHWC numpy inputs; returns NCHW."""
    return F.grid_sample(
        torch.from_numpy(image).permute(0, 3, 1, 2),
        torch.from_numpy(grid),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )


@pytest.mark.parametrize("height,width", [(5, 7), (23, 37), (48, 64), (1, 4), (6, 1)])
@pytest.mark.parametrize("align_corners", [True, False])
def test_base_grid_matches_kornia(height, width, align_corners):
    expected = kornia.geometry.create_meshgrid(height, width, align_corners=align_corners)[0]
    got = np.asarray(base_grid(height, width, align_corners))
    assert got.shape == (height, width, 2)
    np.testing.assert_array_equal(got, expected.numpy())


@pytest.mark.parametrize(
    "n,h,w,c,ho,wo",
    [(2, 23, 37, 1, 11, 19), (1, 17, 13, 3, 29, 31), (2, 9, 12, 17, 9, 12)],
)
def test_grid_sample_matches_torch(seed, n, h, w, c, ho, wo):
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((n, h, w, c)).astype(np.float32)
    grid = rng.uniform(-1.6, 1.6, (n, ho, wo, 2)).astype(np.float32)  # well outside [-1, 1]
    expected = torch_grid_sample(image, grid).permute(0, 2, 3, 1).numpy()
    got = np.asarray(jax.jit(grid_sample)(jnp.asarray(image), jnp.asarray(grid)))
    assert got.shape == (n, ho, wo, c)
    assert (expected == 0).any() and (expected != 0).mean() > 0.3  # both regimes exercised
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5, err_msg=f"seed={seed}")


def test_grid_sample_gradients_match_torch(seed):
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((2, 9, 11, 3)).astype(np.float32)
    grid = rng.uniform(-1.3, 1.3, (2, 7, 5, 2)).astype(np.float32)
    cotangent = rng.standard_normal((2, 7, 5, 3)).astype(np.float32)

    image_t = torch.from_numpy(image).requires_grad_()
    grid_t = torch.from_numpy(grid).requires_grad_()
    out = F.grid_sample(
        image_t.permute(0, 3, 1, 2), grid_t, padding_mode="zeros", align_corners=False
    )
    (out.permute(0, 2, 3, 1) * torch.from_numpy(cotangent)).sum().backward()

    loss = lambda im, g: jnp.sum(grid_sample(im, g) * cotangent)
    d_image, d_grid = jax.jit(jax.grad(loss, argnums=(0, 1)))(jnp.asarray(image), jnp.asarray(grid))
    np.testing.assert_allclose(d_image, image_t.grad.numpy(), atol=1e-5, err_msg=f"seed={seed}")
    scale = np.abs(grid_t.grad.numpy()).max()
    np.testing.assert_allclose(
        d_grid, grid_t.grad.numpy(), atol=1e-5 * scale, err_msg=f"seed={seed}"
    )


def test_grid_sample_finite_differences(seed):
    rng = np.random.default_rng(seed)
    height, width = 6, 7
    # Sampling positions away from whole pixels, where the bilinear map has kinks; some fall
    # outside the image, where taps are dropped.
    cols = rng.integers(-2, width + 1, (1, 4, 5)) + rng.uniform(0.05, 0.95, (1, 4, 5))
    rows = rng.integers(-2, height + 1, (1, 4, 5)) + rng.uniform(0.05, 0.95, (1, 4, 5))
    grid = np.stack([(2 * cols + 1) / width - 1, (2 * rows + 1) / height - 1], axis=-1)
    image = rng.standard_normal((1, height, width, 2))
    with jax.enable_x64(True):
        check_grads(
            jax.jit(grid_sample),
            (jnp.asarray(image), jnp.asarray(grid)),
            order=1,
            modes=("rev",),
            eps=1e-6,
        )


def test_warp_with_corrected_grid_and_zero_disp_is_identity(seed):
    rng = np.random.default_rng(seed)
    image = jnp.asarray(rng.standard_normal((2, 13, 21, 4)).astype(np.float32))
    out = warp(image, jnp.zeros((2, 13, 21, 2)), align_corners_grid=False)
    np.testing.assert_allclose(out, image, atol=1e-5, err_msg=f"seed={seed}")


def test_warp_reproduces_the_release_spatial_transformer(seed):
    """create_meshgrid (align_corners=True) + disp, sampled with align_corners=False."""
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((2, 13, 21, 4)).astype(np.float32)
    for disp in (
        np.zeros((2, 13, 21, 2), np.float32),
        rng.uniform(-0.2, 0.2, (2, 13, 21, 2)).astype(np.float32),
    ):
        grid = (kornia.geometry.create_meshgrid(13, 21) + torch.from_numpy(disp)).numpy()
        expected = torch_grid_sample(image, grid).permute(0, 2, 3, 1).numpy()
        got = np.asarray(warp(jnp.asarray(image), jnp.asarray(disp)))
        np.testing.assert_allclose(got, expected, atol=2e-5, err_msg=f"seed={seed}")
    # The quirk: with zero displacement the release's warp is not the identity.
    assert (
        np.abs(np.asarray(warp(jnp.asarray(image), jnp.zeros((2, 13, 21, 2)))) - image).max() > 0.1
    )
