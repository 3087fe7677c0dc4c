"""SSIM loss vs a torch restatement of the release's `_ssim` / `SSIMLoss` (modules/losses.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F

from superfusion_jax.losses.ssim import (
    ssim_dissimilarity,
    ssim_loss,
    ssim_valid_mask,
)


def nchw(x) -> torch.Tensor:
    """(N, H, W, C) array -> (N, C, H, W) float32 torch tensor."""
    return torch.from_numpy(np.array(x, np.float32)).permute(0, 3, 1, 2).contiguous()


def nhwc(t: torch.Tensor) -> np.ndarray:
    return t.detach().permute(0, 2, 3, 1).numpy()


def images_with_dark_regions(rng, shape):
    """Uniform [0, 1] images with a black rectangle and ~1% black pixels (masks matter)."""
    x = rng.uniform(0.0, 1.0, shape).astype(np.float32)
    n, h, w, _ = shape
    for i in range(n):
        top, left = rng.integers(0, h // 2), rng.integers(0, w // 2)
        x[i, top : top + h // 3, left : left + w // 3] = 0.0
    x[rng.uniform(size=shape) < 0.01] = 0.0
    return x


# --- torch restatement of the release (Gaussian 11x11 window, sigma 1.5, zero padding) ---
def torch_local_mean(x: torch.Tensor, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    t = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = (g / g.sum()).float()
    window = torch.outer(g, g).expand(x.shape[1], 1, size, size).contiguous()
    return F.conv2d(x, window, padding=size // 2, groups=x.shape[1])


def torch_ssim(img1, img2, mask=1.0):
    mu1, mu2 = torch_local_mean(img1), torch_local_mean(img2)
    var1 = torch_local_mean(img1 * img1) - mu1**2
    var2 = torch_local_mean(img2 * img2) - mu2**2
    cov = torch_local_mean(img1 * img2) - mu1 * mu2
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu1 * mu2 + c1) * (2 * cov + c2)) / ((mu1**2 + mu2**2 + c1) * (var1 + var2 + c2))
    return torch.clamp((1.0 - s * mask) / 2, min=0, max=1).mean()


def torch_ssim_mask(img1, img2):
    mask = torch.logical_and(img1 > 0, img2 > 0).float()
    for _ in range(5):
        mask = (torch_local_mean(mask) > 0.8).float()
    return mask


def torch_ssim_loss(img1, img2):
    """The release's `ssimloss(img1, img2)`."""
    return torch_ssim(img1, img2, torch_ssim_mask(img1, img2))


def test_valid_mask_matches_release(rng):
    a = images_with_dark_regions(rng, (2, 48, 56, 1))
    b = images_with_dark_regions(rng, (2, 48, 56, 1))
    ours = np.asarray(ssim_valid_mask(jnp.asarray(a), jnp.asarray(b)))
    expected = nhwc(torch_ssim_mask(nchw(a), nchw(b)))
    assert 0.05 < expected.mean() < 0.95  # the erosion left a non-trivial mask
    np.testing.assert_array_equal(ours, expected)


def test_ssim_loss_matches_release(rng):
    a = images_with_dark_regions(rng, (2, 48, 56, 1))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
    b[:, :4] = 0.0
    ours = float(ssim_loss(jnp.asarray(a), jnp.asarray(b)))
    expected = float(torch_ssim_loss(nchw(a), nchw(b)))
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)


def test_dissimilarity_multichannel_with_mask(rng):
    a = rng.uniform(0, 1, (2, 48, 56, 3)).astype(np.float32)
    b = rng.uniform(0, 1, (2, 48, 56, 3)).astype(np.float32)
    mask = rng.uniform(0, 1, (2, 48, 56, 1)).astype(np.float32)
    ours = float(ssim_dissimilarity(jnp.asarray(a), jnp.asarray(b), jnp.asarray(mask)))
    expected = float(torch_ssim(nchw(a), nchw(b), nchw(mask)))
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)
    plain = float(ssim_dissimilarity(jnp.asarray(a), jnp.asarray(b)))
    np.testing.assert_allclose(plain, float(torch_ssim(nchw(a), nchw(b))), rtol=1e-5, atol=1e-6)


def test_ssim_loss_gradient_matches_autograd(rng):
    a = images_with_dark_regions(rng, (2, 48, 56, 1))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
    ours = np.asarray(jax.grad(lambda y: ssim_loss(jnp.asarray(a), y))(jnp.asarray(b)))
    tb = nchw(b).requires_grad_(True)
    torch_ssim_loss(nchw(a), tb).backward()
    expected = nhwc(tb.grad)
    assert np.abs(expected).max() > 0
    # Entries 1e5 times below the largest are float32 cancellation noise in both frameworks
    # (a seed once gave 6.08e-9 vs 5.72e-9 against a max of 3.6e-4): compare the rest tightly.
    np.testing.assert_allclose(ours, expected, rtol=1e-3, atol=1e-5 * np.abs(expected).max())
