"""Fusion losses vs torch/kornia restatements of the release's `fusloss` and `fusloss_forRF`."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from superfusion_jax.convert.official import load_official
from superfusion_jax.losses.fusion import (
    FUSION_OBJECTIVES,
    fs_losses,
    fusion_loss_rf,
    second_derivatives,
    sobel_gradient_magnitude,
)
from superfusion_jax.models.fusion_net import FusionNet
from superfusion_jax.models.variants import FAITHFUL
from superfusion_jax.ops.color import rgb_to_ycbcr
from tests.conftest import PARITY, require
from tests.losses.test_ssim import images_with_dark_regions, nchw, nhwc, torch_ssim_loss


# --- torch restatement of the release (model.py) ---
def torch_second_derivatives(x):
    """kornia 0.6's `spatial_gradient(x, order=2)` (the release's), from its stencils."""
    xx = torch.tensor([[-1.0, 0, 2, 0, -1], [-4, 0, 8, 0, -4], [-6, 0, 12, 0, -6]])
    xx = torch.cat([xx, xx[:2].flip(0)])
    xy = torch.tensor([[-1.0, -2, 0, 2, 1], [-2, -4, 0, 4, 2], [0, 0, 0, 0, 0]])
    xy = torch.cat([xy, -xy[:2].flip(0)])
    kernels = torch.stack([xx, xy, xx.T])
    kernels = kernels / kernels.abs().sum(dim=(-1, -2), keepdim=True)  # 64, 36, 64
    b, c, h, w = x.shape
    padded = F.pad(x.reshape(b * c, 1, h, w), [2, 2, 2, 2], mode="replicate")
    return F.conv2d(padded, kernels[:, None]).reshape(b, c, 3, h, w)


def torch_grad_magnitude(x):
    return torch_second_derivatives(x).abs().sum(dim=[1, 2])


def torch_fusloss(ir, vi, fu, weights=(1, 0, 0.5, 0)):
    g_ir, g_vi, g_fu = (torch_grad_magnitude(x) for x in (ir, vi, fu))
    loss_grad = 0.5 * F.l1_loss(g_fu, g_ir) + 0.5 * F.l1_loss(g_fu, g_vi)
    loss_ssim = 0.5 * torch_ssim_loss(ir, fu) + 0.5 * torch_ssim_loss(vi, fu)
    loss_intensity = 0.5 * F.l1_loss(fu, ir) + 0.5 * F.l1_loss(fu, vi)
    total = weights[0] * loss_grad + weights[1] * loss_ssim + weights[2] * loss_intensity
    return loss_intensity, loss_ssim, loss_grad, total


def torch_fusloss_rf(ir, vi, fu, mask=1, weights=(0.6, 0.3, 0.1)):
    """Literal restatement, including the (N, H, W) x (N, 1, H, W) broadcast of the grad term."""
    m = (torch.logical_and(ir > 0, vi > 0) * mask).detach()
    if (fu > 2.0 / 255).sum() < 100:
        m = 1
    ir, vi = ir.detach(), vi.detach()
    g_joint = torch.max(torch_grad_magnitude(ir), torch_grad_magnitude(vi))
    loss_grad = ((g_joint - torch_grad_magnitude(fu)).abs().clamp(min=1e-9) * m).mean()
    loss_ssim = torch_ssim_loss(ir, fu) + torch_ssim_loss(vi, fu)
    loss_intensity = F.l1_loss(fu * m, torch.max(vi, ir) * m)
    return weights[0] * loss_grad + weights[1] * loss_ssim + weights[2] * loss_intensity


def test_second_derivatives_are_kornia_06s(rng):
    x = rng.uniform(0, 1, (2, 48, 56, 2)).astype(np.float32)
    ours = np.asarray(second_derivatives(jnp.asarray(x)))
    expected = torch_second_derivatives(nchw(x)).permute(0, 3, 4, 1, 2).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-6)
    # a quadratic 0.5·a·x² + b·x·y + 0.5·c·y²: xx = -a, xy = -(64/36)·b, yy = -c away from borders
    ys, xs = np.mgrid[0:48, 0:56].astype(np.float32)
    q = (0.5 * 0.3 * xs**2 + 0.2 * xs * ys + 0.5 * 0.1 * ys**2) / 100
    inner = np.asarray(second_derivatives(jnp.asarray(q)[None, :, :, None]))[0, 2:-2, 2:-2, 0]
    expected = [-0.003, -0.002 * 64 / 36, -0.001]
    np.testing.assert_allclose(inner.mean(axis=(0, 1)), expected, rtol=1e-4)


def luminance_triplet(rng, shape):
    ir = images_with_dark_regions(rng, shape)
    vi = images_with_dark_regions(rng, shape)
    fu = np.clip(0.5 * (ir + vi) + rng.normal(0, 0.05, shape), 0, 1).astype(np.float32)
    return ir, vi, fu


def test_fs_losses_match_release(rng):
    ir, vi, fu = luminance_triplet(rng, (2, 48, 56, 1))
    ours = fs_losses(jnp.asarray(ir), jnp.asarray(vi), jnp.asarray(fu))
    names = ("loss_intensity", "loss_ssim", "loss_grad", "loss_fus")
    expected = dict(zip(names, torch_fusloss(nchw(ir), nchw(vi), nchw(fu)), strict=True))
    for name in names:
        np.testing.assert_allclose(
            float(ours[name]), float(expected[name]), rtol=1e-5, err_msg=name
        )
    np.testing.assert_allclose(
        float(ours["loss_total"]), 10 * float(expected["loss_fus"]), rtol=1e-5
    )


def test_fs_losses_custom_weights(rng):
    ir, vi, fu = luminance_triplet(rng, (2, 48, 56, 1))
    weights = (0.3, 2.0, 0.7, 5.0)
    ours = fs_losses(jnp.asarray(ir), jnp.asarray(vi), jnp.asarray(fu), weights)
    expected = torch_fusloss(nchw(ir), nchw(vi), nchw(fu), weights)[3]
    np.testing.assert_allclose(float(ours["loss_fus"]), float(expected), rtol=1e-5)


def test_rf_fusion_loss_with_mask_matches_release(rng):
    # masks and errors that differ per example: the release's (N, N, H, W) broadcast of the
    # gradient term then differs from per-example masking, and the test can tell them apart
    ir, vi, fu = luminance_triplet(rng, (2, 48, 56, 1))
    for x in (ir, vi, fu):
        x[1, :, :28] = 0.5  # flat: no gradient error in the left half of example 1 ...
    mask = (rng.uniform(size=(2, 48, 56, 1)) > 0.1).astype(np.float32)
    mask[1, :, :28] = 0.0  # ... which its own mask excludes, but the batch-mean mask does not
    ours = float(
        fusion_loss_rf(jnp.asarray(ir), jnp.asarray(vi), jnp.asarray(fu), jnp.asarray(mask))
    )
    expected = float(torch_fusloss_rf(nchw(ir), nchw(vi), nchw(fu), nchw(mask)))
    np.testing.assert_allclose(ours, expected, rtol=1e-5)
    per_example = np.mean(
        [float(torch_fusloss_rf(nchw(ir[i : i + 1]), nchw(vi[i : i + 1]), nchw(fu[i : i + 1]),
                                nchw(mask[i : i + 1])))
         for i in range(2)]
    )  # fmt: skip
    assert abs(per_example - expected) > 1e-3 * expected


@pytest.mark.parametrize("bright_pixels", [99, 100])
def test_rf_fusion_loss_dark_fallback(rng, bright_pixels):
    # fewer than 100 pixels of `fused` above 2/255 -> the pixel mask becomes 1
    ir, vi, _ = luminance_triplet(rng, (2, 48, 56, 1))
    fu = rng.uniform(0, 2.0 / 255, ir.shape).astype(np.float32)
    flat = fu.reshape(-1)
    flat[rng.choice(flat.size, bright_pixels, replace=False)] = rng.uniform(0.1, 1, bright_pixels)
    mask = (rng.uniform(size=(2, 48, 56, 1)) > 0.5).astype(np.float32)
    ours = float(
        fusion_loss_rf(jnp.asarray(ir), jnp.asarray(vi), jnp.asarray(fu), jnp.asarray(mask))
    )
    expected = float(torch_fusloss_rf(nchw(ir), nchw(vi), nchw(fu), nchw(mask)))
    np.testing.assert_allclose(ours, expected, rtol=1e-5)
    unmasked = float(torch_fusloss_rf(nchw(ir), nchw(vi), nchw(fu), 1))
    assert (abs(ours - unmasked) < 1e-6 * abs(unmasked)) == (bright_pixels < 100)


@pytest.mark.slow
def test_rf_fusion_loss_gradients_match_autograd(rng):
    ir, vi, fu = luminance_triplet(rng, (2, 48, 56, 1))
    mask = (rng.uniform(size=(2, 48, 56, 1)) > 0.3).astype(np.float32)
    loss = lambda a, b, c: fusion_loss_rf(a, b, c, jnp.asarray(mask))
    g_ir, g_fu = jax.grad(loss, argnums=(0, 2))(jnp.asarray(ir), jnp.asarray(vi), jnp.asarray(fu))
    t_ir, t_fu = nchw(ir).requires_grad_(True), nchw(fu).requires_grad_(True)
    torch_fusloss_rf(t_ir, nchw(vi), t_fu, nchw(mask)).backward()
    assert t_ir.grad is None and not np.any(np.asarray(g_ir))  # inputs are detached
    expected = nhwc(t_fu.grad)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(np.asarray(g_fu), expected, rtol=1e-3, atol=1e-5 * scale)


def test_fs_loss_gradient_matches_autograd(rng):
    ir, vi, fu = luminance_triplet(rng, (2, 48, 56, 1))
    total = lambda c: fs_losses(jnp.asarray(ir), jnp.asarray(vi), c)["loss_total"]
    ours = np.asarray(jax.grad(total)(jnp.asarray(fu)))
    t_fu = nchw(fu).requires_grad_(True)
    (10 * torch_fusloss(nchw(ir), nchw(vi), t_fu)[3]).backward()
    expected = nhwc(t_fu.grad)
    np.testing.assert_allclose(ours, expected, rtol=1e-3, atol=1e-5 * np.abs(expected).max())


@pytest.mark.slow
def test_fs_losses_reproduce_the_golden_fs_step():
    """parity/train_losses_seed0.json `fs_step`: FusionNet (weights_seed0.pth, no BatchNorm) on
    (ir, vi) of train_batch_seed0.npz, then the release's `fusloss`; the loss terms only."""
    golden = json.loads(require(PARITY / "train_losses_seed0.json").read_text())["fs_step"]
    batch = np.load(require(PARITY / "train_batch_seed0.npz"))
    variables, _ = load_official(require(PARITY / "weights_seed0.pth"))
    fn_vars = {col: tree["fusion_net"] for col, tree in variables.items() if "fusion_net" in tree}
    ir = jnp.asarray(batch["ir"].transpose(0, 2, 3, 1))
    vi = jnp.asarray(batch["vi"].transpose(0, 2, 3, 1))
    ir_y, vi_y = ir[..., :1], rgb_to_ycbcr(vi)[0]
    fused_y = FusionNet(FAITHFUL).apply(fn_vars, ir_y, vi_y)
    ours = fs_losses(ir_y, vi_y, fused_y)
    for name in ("loss_intensity", "loss_ssim", "loss_grad", "loss_fus", "loss_total"):
        np.testing.assert_allclose(float(ours[name]), golden[name], rtol=1e-4, err_msg=name)


def test_the_fs_step_can_train_with_stage_rfs_objective(rng):
    """fs_loss_fn(objective='rf') is 10 x stage RF's fusion term of the aligned pair, with
    the term weights it is given."""
    from superfusion_jax.models.superfusion import SuperFusion
    from superfusion_jax.training.steps import fs_forward, fs_loss_fn

    batch = {
        "ir": jnp.asarray(np.repeat(rng.random((2, 48, 48, 1), np.float32), 3, -1)),
        "vi": jnp.asarray(rng.random((2, 48, 48, 3), np.float32)),
    }
    params = SuperFusion().init(jax.random.key(0), batch["ir"], batch["vi"])["params"]
    out = fs_forward(params, batch, variant=FAITHFUL)
    for weights in ((), (1.0, 0.0, 0.0)):
        total, terms = fs_loss_fn(
            params, batch, variant=FAITHFUL, objective="rf", objective_weights=weights
        )
        expected = fusion_loss_rf(
            out["ir_y"], out["vi_y"], out["fused_y"], **({"weights": weights} if weights else {})
        )
        np.testing.assert_allclose(float(total), 10.0 * float(expected), rtol=1e-6)
        assert set(terms) == {"loss_fus", "loss_total"}


def test_sobel_gradient_magnitude_is_the_slope_of_a_ramp():
    """|d/dx| + |d/dy| of a plane a·x + b·y is |a| + |b| per pixel inside the replicated border,
    whichever sign the plane has (a contrast inversion costs nothing)."""
    rows, cols = np.mgrid[0:12, 0:16].astype(np.float32)
    plane = jnp.asarray((0.02 * cols - 0.03 * rows)[None, ..., None])
    for image in (plane, 1.0 - plane):
        magnitude = np.asarray(sobel_gradient_magnitude(image))[0]
        assert magnitude.shape == (12, 16)
        np.testing.assert_allclose(magnitude[1:-1, 1:-1], 0.05, rtol=1e-5)
        assert np.all(magnitude[0, 1:-1] < 0.05)  # the replicated row halves d/dy


def test_rf_sobel_objective_targets_the_inputs_first_order_gradients(rng):
    """'rf_sobel' is stage RF's objective with `sobel_gradient_magnitude` in its gradient term:
    equal to 'rf' on the SSIM and intensity terms, its gradient term is the L1 distance of the
    fused image's first-order magnitudes to the inputs' maximum, not the release's."""
    ir, vi, fused = (jnp.asarray(rng.random((2, 32, 32, 1), np.float32)) for _ in range(3))
    for weights in ((0.0, 1.0, 1.0), (1.0, 0.0, 0.0)):
        sobel = FUSION_OBJECTIVES["rf_sobel"](ir, vi, fused, weights=weights)["loss_fus"]
        expected = fusion_loss_rf(ir, vi, fused, weights=weights, gradient=sobel_gradient_magnitude)
        np.testing.assert_allclose(float(sobel), float(expected), rtol=1e-6)
    release = FUSION_OBJECTIVES["rf"](ir, vi, fused, weights=(0.0, 1.0, 1.0))["loss_fus"]
    sobel = FUSION_OBJECTIVES["rf_sobel"](ir, vi, fused, weights=(0.0, 1.0, 1.0))["loss_fus"]
    np.testing.assert_allclose(float(sobel), float(release), rtol=1e-6)
    # Gradient term alone: by hand, |max(|∇ir|, |∇vi|) - |∇fused|| averaged over pixels.
    joint = jnp.maximum(sobel_gradient_magnitude(ir), sobel_gradient_magnitude(vi))
    by_hand = jnp.abs(joint - sobel_gradient_magnitude(fused)).mean()
    term = FUSION_OBJECTIVES["rf_sobel"](ir, vi, fused, weights=(1.0, 0.0, 0.0))["loss_fus"]
    np.testing.assert_allclose(float(term), float(by_hand), rtol=1e-5)
    release_term = FUSION_OBJECTIVES["rf"](ir, vi, fused, weights=(1.0, 0.0, 0.0))["loss_fus"]
    assert abs(float(term) - float(release_term)) > 1e-3
