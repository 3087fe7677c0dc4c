"""superfusion_jax.ops.correlation against a torch restatement of DispEstimator.localcorr."""

import jax
import jax.numpy as jnp
import kornia
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from superfusion_jax.ops.correlation import local_correlation


def torch_local_correlation(source, target, kernel_size, dilation, blur_size, blur_sigma):
    """kornia blur (zero border) + F.unfold, as the release; NHWC tensors in and out."""
    src = source.permute(0, 3, 1, 2)
    tgt = target.permute(0, 3, 1, 2)
    b, c, h, w = tgt.shape
    smooth = kornia.filters.gaussian_blur2d(
        src, (blur_size, blur_size), (blur_sigma, blur_sigma), border_type="constant"
    )
    padding = dilation * (kernel_size - 1) // 2
    blocks = F.unfold(smooth, kernel_size, dilation=dilation, padding=padding, stride=1)
    blocks = blocks.reshape(b, c, -1, h, w)
    corr = (tgt.unsqueeze(2) - blocks).pow(2).mean(dim=1)
    return corr.permute(0, 2, 3, 1)


@pytest.mark.parametrize(
    "shape,kernel_size,dilation,blur_size,blur_sigma",
    [
        ((2, 20, 26, 6), 7, 4, 13, 3.0),  # the release's settings
        ((1, 13, 17, 3), 3, 2, 5, 1.0),
        ((1, 9, 11, 16), 5, 1, 3, 0.8),
    ],
)
def test_local_correlation_matches_torch(seed, shape, kernel_size, dilation, blur_size, blur_sigma):
    rng = np.random.default_rng(seed)
    source = rng.standard_normal(shape).astype(np.float32)
    target = rng.standard_normal(shape).astype(np.float32)
    args = (kernel_size, dilation, blur_size, blur_sigma)
    expected = torch_local_correlation(torch.from_numpy(source), torch.from_numpy(target), *args)
    expected = expected.numpy()
    got = jax.jit(local_correlation, static_argnums=(2, 3, 4, 5))(
        jnp.asarray(source), jnp.asarray(target), *args
    )
    assert got.shape == shape[:3] + (kernel_size**2,)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=f"seed={seed}")


def test_local_correlation_gradients_match_torch(seed):
    rng = np.random.default_rng(seed)
    source, target = (rng.standard_normal((1, 14, 18, 4)).astype(np.float32) for _ in range(2))
    cotangent = rng.standard_normal((1, 14, 18, 49)).astype(np.float32)
    src_t = torch.from_numpy(source).requires_grad_()
    tgt_t = torch.from_numpy(target).requires_grad_()
    corr = torch_local_correlation(src_t, tgt_t, 7, 4, 13, 3.0)
    (corr * torch.from_numpy(cotangent)).sum().backward()

    loss = lambda s, t: jnp.sum(local_correlation(s, t) * cotangent)
    grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(jnp.asarray(source), jnp.asarray(target))
    for name, g, t in zip(("source", "target"), grads, (src_t, tgt_t), strict=True):
        np.testing.assert_allclose(g, t.grad.numpy(), atol=1e-4, err_msg=f"{name}, seed={seed}")
