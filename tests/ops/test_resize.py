"""superfusion_jax.ops.resize against torch F.interpolate(mode='bilinear'), both align_corners."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from superfusion_jax.ops.resize import resize_bilinear


def torch_resize(
    x: torch.Tensor, height: int, width: int, align_corners: bool = False
) -> torch.Tensor:
    """The release's resize on an NHWC tensor; returns NHWC."""
    out = F.interpolate(
        x.permute(0, 3, 1, 2), (height, width), mode="bilinear", align_corners=align_corners
    )
    return out.permute(0, 2, 3, 1)


@pytest.mark.parametrize(
    "size_in,size_out",
    [
        ((30, 40), (61, 79)),
        ((61, 79), (30, 40)),
        ((481, 643), (61, 81)),  # 1/8-scale pyramid level
        ((61, 81), (481, 643)),
        ((60, 80), (120, 160)),
        ((7, 5), (7, 13)),
        ((5, 6), (1, 1)),
        ((8, 10), (256, 320)),  # BiSeNet's 1/32 -> full-size output (align_corners=True)
        ((13, 17), (100, 130)),
    ],
)
@pytest.mark.parametrize("align_corners", [False, True])
def test_resize_matches_torch(seed, size_in, size_out, align_corners):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2,) + size_in + (2,)).astype(np.float32)
    expected = torch_resize(torch.from_numpy(x), *size_out, align_corners).numpy()
    got = jax.jit(resize_bilinear, static_argnums=(1, 2, 3))(
        jnp.asarray(x), *size_out, align_corners
    )
    assert got.shape == (2,) + size_out + (2,)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6, err_msg=f"seed={seed}")


@pytest.mark.parametrize("size_in,size_out", [((9, 7), (4, 11)), ((5, 6), (13, 3))])
@pytest.mark.parametrize("align_corners", [False, True])
def test_resize_gradient_matches_torch(seed, size_in, size_out, align_corners):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1,) + size_in + (3,)).astype(np.float32)
    cotangent = rng.standard_normal((1,) + size_out + (3,)).astype(np.float32)
    x_t = torch.from_numpy(x).requires_grad_()
    (torch_resize(x_t, *size_out, align_corners) * torch.from_numpy(cotangent)).sum().backward()
    loss = lambda v: jnp.sum(resize_bilinear(v, *size_out, align_corners) * cotangent)
    grad = jax.jit(jax.grad(loss))(jnp.asarray(x))
    np.testing.assert_allclose(grad, x_t.grad.numpy(), atol=1e-5, err_msg=f"seed={seed}")
