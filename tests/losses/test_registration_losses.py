"""Registration losses and the stage-RF total vs torch/kornia restatements of the release.

Restated from modules/losses.py (`l1loss`, `l2loss`, `gradientloss`, `smoothloss`) and model.py
(`imgloss`, `weightfiledloss`, `border_suppression`, `generate_mask`, `backward_RF`).
"""

import jax
import jax.numpy as jnp
import kornia
import kornia.filters as KF
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from superfusion_jax.losses.registration import (
    RFOutputs,
    RFWeights,
    border_suppression,
    field_loss,
    gradient_loss,
    image_loss,
    masked_l1_loss,
    masked_l2_loss,
    pair_luminance,
    rf_losses,
    smooth_loss,
    valid_masks,
)
from tests.losses.test_fusion_losses import torch_fusloss_rf, torch_second_derivatives
from tests.losses.test_ssim import images_with_dark_regions, nchw, nhwc

N, H, W = 2, 48, 56  # H, W > 45 for the smoothness windows


# --- torch restatement of the release ---
def t_standardise_pair(a, b):
    mean = (a.mean(dim=[-1, -2], keepdim=True) + b.mean(dim=[-1, -2], keepdim=True)).detach() / 2
    std = (a.std(dim=[-1, -2], keepdim=True) + b.std(dim=[-1, -2], keepdim=True)).detach() / 2
    return (a - mean) / std, (b - mean) / std


def t_blurred_masked(a, b):
    bright = torch.logical_and(a > 1e-2, b > 1e-2)
    a, b = t_standardise_pair(a, b)
    return KF.gaussian_blur2d(a, (3, 3), (1.0, 1.0)) * bright, KF.gaussian_blur2d(
        b, (3, 3), (1.0, 1.0)
    ) * bright


def t_l1(a, b, mask=1, eps=1e-2):
    a, b = t_blurred_masked(a, b)
    return ((a - b) * mask).abs().clamp(min=eps).mean()


def t_l2(a, b, mask=1, eps=1e-2):
    a, b = t_blurred_masked(a, b)
    return ((a - b) * mask).abs().clamp(min=eps).pow(2).mean()


def t_gradloss(a, b, mask, eps=1e-2):
    a, b = t_standardise_pair(a, b)
    d = torch_second_derivatives(a) - torch_second_derivatives(b)
    return ((d + d.pow(2) * 10) * mask.unsqueeze(1)).abs().clamp(min=eps).mean()


def t_imgloss(src, tgt, mask):
    return 0.1 * (t_l1(src, tgt, mask) + t_l2(src, tgt, mask)) + 0.9 * t_gradloss(src, tgt, mask)


def t_fieldloss(ref, tgt, disp, disp_gt):
    """disp, disp_gt: NCHW as the release passes them."""

    def edges(x):
        x = (x - x.mean(dim=[-1, -2], keepdim=True)) / (x.std(dim=[-1, -2], keepdim=True) + 1e-5)
        return torch_second_derivatives(x).mean(dim=1).abs().sum(dim=1).detach().unsqueeze(1)

    border = torch.zeros(1, 1, *disp.shape[-2:])
    border[:, :, 10:-10, 10:-10] = 1
    w = ((edges(ref) + edges(tgt)) * 2 + 1) * border
    return (w * (1000 * (disp - disp_gt).abs().clamp(min=1e-2).pow(2))).mean()


def t_smooth(disp):
    grad = torch_second_derivatives(disp).abs().sum(dim=2)[:, :, 5:-5, 5:-5]
    grad = grad.clamp(min=1e-9).mean()
    local = 0
    for d in (9, 21, 45):
        mean = KF.gaussian_blur2d(disp, (d, d), (d // 6, d // 6), border_type="replicate")
        local += (
            1
            / (d * 1.0 + 1)
            * (disp - mean)[:, :, d // 2 : -d // 2, d // 2 : -d // 2].pow(2).mean()
        )
    return 5000 * local + 500 * grad


def t_masks(disp):
    """disp: (N, H, W, 2) as the release stores it."""
    grid = kornia.utils.create_meshgrid(disp.shape[1], disp.shape[2])
    flow = grid + disp
    good = torch.logical_and(flow >= -1, flow <= 1)
    good = torch.logical_and(good[..., 0], good[..., 1]).unsqueeze(1) * 1.0
    for _ in range(2):
        good = (F.avg_pool2d(good, 5, stride=1, padding=2) > 0.3).float()
    return good, F.grid_sample(good, grid - disp, align_corners=False)


def t_border(img, mask):
    return (img * (1 - mask)).mean()


def t_luma(rgb):
    return (0.299 * rgb[:, 0:1] + 0.587 * rgb[:, 1:2] + 0.114 * rgb[:, 2:3]).clamp(0.0, 1.0)


def t_rf_losses(t):
    """`backward_RF` on a dict of NCHW tensors (disp_* NCHW, disp_gt NHWC, masks NCHW)."""
    gm, gmi = t["goodmask"], t["goodmask_inverse"]
    both = gm * gmi
    reg_img = (
        t_imgloss(t["ir_warp"], t["ir_warp_fake"], gm)
        + t_imgloss(t["ir_reg"], t["ir"], both)
        + t_imgloss(t["vi_warp"], t["vi_warp_fake"], gm)
        + t_imgloss(t["vi_reg"], t["vi"], both)
    )
    gt = t["disp_gt"].permute(0, 3, 1, 2)
    reg_field = t_fieldloss(t["ir_warp"], t["vi_warp_fake"], t["disp_vis2ir_1"], gt) + t_fieldloss(
        t["vi_warp"], t["ir_warp_fake"], t["disp_ir2vis_2"], gt
    )
    smooth = sum(t_smooth(t[k]) for k in ("disp_down2", "disp_down4", "disp_down8"))
    border = (
        0.1 * t_border(t["ir_reg"], gmi)
        + 0.1 * t_border(t["vi_reg"], gmi)
        + t_border(t["ir_warp_fake"], gm)
        + t_border(t["vi_warp_fake"], gm)
    )
    ir_y, ir_reg_y = t["ir"][:, 0:1], t["ir_reg"][:, 0:1]
    vi_y, vi_reg_y = t_luma(t["vi"]), t_luma(t["vi_reg"])
    fus = torch_fusloss_rf(ir_reg_y, vi_y, t["fused_2"], mask=both) + torch_fusloss_rf(
        ir_y, vi_reg_y, t["fused_1"], mask=both
    )
    positive = (ir_y > 1e-5) & (vi_y > 1e-5) & (ir_reg_y > 1e-5) & (vi_reg_y > 1e-5)
    ncc = t_imgloss(t["fused_1"], t["fused_2"], positive * both)
    total = reg_img * 10 + reg_field + smooth + 10 * fus + ncc + border
    return {
        "loss_reg_img": reg_img,
        "loss_reg_field": reg_field,
        "loss_smooth": smooth,
        "loss_fus": fus,
        "loss_ncc": ncc,
        "loss_border": border,
        "loss_total": total,
    }


# --- inputs ---
def smooth_field(rng, n, scale=0.05, offset=0.0):
    """A smooth random (n, H, W, 2) displacement: a few low-frequency cosines plus an offset."""
    ys, xs = np.meshgrid(np.linspace(0, 1, H), np.linspace(0, 1, W), indexing="ij")
    field = np.zeros((n, H, W, 2), np.float32)
    for _ in range(3):
        fx, fy, phase = rng.uniform(0.5, 2.0), rng.uniform(0.5, 2.0), rng.uniform(0, 2 * np.pi)
        amp = rng.normal(0, scale, (n, 1, 1, 2))
        field += amp * np.cos(2 * np.pi * (fx * xs + fy * ys) + phase)[None, :, :, None]
    return (field + offset).astype(np.float32)


def binary_mask(rng, shape, p=0.7):
    return (rng.uniform(size=shape) < p).astype(np.float32)


def as_jnp(d):
    return {k: jnp.asarray(v) for k, v in d.items()}


# --- tests ---
def test_image_terms_match_release(rng):
    a = images_with_dark_regions(rng, (N, H, W, 3))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
    mask = binary_mask(rng, (N, H, W, 1))
    ja, jb, jm = jnp.asarray(a), jnp.asarray(b), jnp.asarray(mask)
    ta, tb, tm = nchw(a), nchw(b), nchw(mask)
    pairs = [
        (masked_l1_loss(ja, jb, jm), t_l1(ta, tb, tm)),
        (masked_l1_loss(ja, jb), t_l1(ta, tb)),
        (masked_l2_loss(ja, jb, jm), t_l2(ta, tb, tm)),
        (gradient_loss(ja, jb, jm), t_gradloss(ta, tb, tm)),
        (image_loss(ja, jb, jm), t_imgloss(ta, tb, tm)),
    ]
    for i, (ours, expected) in enumerate(pairs):
        np.testing.assert_allclose(float(ours), float(expected), rtol=1e-5, err_msg=str(i))


def test_image_loss_gradient_matches_autograd(rng):
    a = images_with_dark_regions(rng, (N, H, W, 3))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
    mask = binary_mask(rng, (N, H, W, 1))
    ga, gb = jax.grad(lambda x, y: image_loss(x, y, jnp.asarray(mask)), argnums=(0, 1))(
        jnp.asarray(a), jnp.asarray(b)
    )
    ta, tb = nchw(a).requires_grad_(True), nchw(b).requires_grad_(True)
    t_imgloss(ta, tb, nchw(mask)).backward()
    for ours, t in ((ga, ta), (gb, tb)):
        expected = nhwc(t.grad)
        scale = np.abs(expected).max()
        np.testing.assert_allclose(np.asarray(ours), expected, rtol=1e-3, atol=1e-5 * scale)


def test_field_loss_matches_release_with_gradient(rng):
    ref = images_with_dark_regions(rng, (N, H, W, 3))
    tgt = images_with_dark_regions(rng, (N, H, W, 3))
    gt = 0.05 * rng.normal(size=(N, H, W, 2)).astype(np.float32)
    disp = gt + 0.02 * rng.normal(size=gt.shape).astype(np.float32)
    ours, grad = jax.value_and_grad(field_loss, argnums=2)(
        jnp.asarray(ref), jnp.asarray(tgt), jnp.asarray(disp), jnp.asarray(gt)
    )
    t_disp = nchw(disp).requires_grad_(True)
    expected = t_fieldloss(nchw(ref), nchw(tgt), t_disp, nchw(gt))
    expected.backward()
    np.testing.assert_allclose(float(ours), expected.item(), rtol=1e-5)
    t_grad = nhwc(t_disp.grad)
    np.testing.assert_allclose(
        np.asarray(grad), t_grad, rtol=1e-4, atol=1e-6 * np.abs(t_grad).max()
    )


def test_smooth_loss_matches_release(rng):
    # (2N, H, W, 2): the shape of the stacked multi-scale fields in `rf_losses`
    disp = smooth_field(rng, 2 * N) + 1e-3 * rng.normal(size=(2 * N, H, W, 2)).astype(np.float32)
    ours = float(jax.jit(smooth_loss)(jnp.asarray(disp)))  # jit: 45-tap blurs compile faster
    np.testing.assert_allclose(ours, float(t_smooth(nchw(disp))), rtol=1e-5)


@pytest.mark.slow
def test_smooth_loss_gradient_matches_autograd(rng):
    disp = smooth_field(rng, N) + 1e-3 * rng.normal(size=(N, H, W, 2)).astype(np.float32)
    grad = jax.grad(smooth_loss)(jnp.asarray(disp))
    t_disp = nchw(disp).requires_grad_(True)
    t_smooth(t_disp).backward()
    t_grad = nhwc(t_disp.grad)
    np.testing.assert_allclose(
        np.asarray(grad), t_grad, rtol=1e-3, atol=1e-5 * np.abs(t_grad).max()
    )


def test_smooth_loss_rejects_small_fields():
    with pytest.raises(ValueError, match="H, W > 45"):
        smooth_loss(jnp.zeros((1, 45, 64, 2)))


def test_valid_masks_match_release(rng):
    # a shift of ~0.3 (normalised) plus wiggles: part of the grid leaves [-1, 1]
    disp = smooth_field(rng, N, scale=0.05, offset=rng.uniform(-0.3, 0.3, (N, 1, 1, 2)))
    goodmask, inverse = valid_masks(jnp.asarray(disp))
    t_good, t_inverse = t_masks(torch.from_numpy(disp))
    assert 0.3 < t_good.mean() < 0.97
    np.testing.assert_array_equal(np.asarray(goodmask), nhwc(t_good))
    np.testing.assert_allclose(np.asarray(inverse), nhwc(t_inverse), atol=1e-5)


@pytest.mark.slow
def test_rf_losses_match_release(rng):
    img = lambda: images_with_dark_regions(rng, (N, H, W, 3))
    noisy = lambda x: np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1).astype(np.float32)
    ir, vi = img(), img()
    ir[..., 1:] = ir[..., :1]  # grey infrared read as RGB
    disp_gt = smooth_field(rng, N, scale=0.05, offset=rng.uniform(-0.2, 0.2, (N, 1, 1, 2)))
    goodmask, inverse = (np.asarray(m) for m in valid_masks(jnp.asarray(disp_gt)))
    fused_1 = noisy(0.5 * (ir[..., :1] + vi[..., :1]))
    tensors = {
        "ir": ir,
        "vi": vi,
        "ir_warp": noisy(ir),
        "vi_warp": noisy(vi),
        "ir_reg": noisy(ir),
        "vi_reg": noisy(vi),
        "ir_warp_fake": noisy(ir),
        "vi_warp_fake": noisy(vi),
        "fused_1": fused_1,
        "fused_2": noisy(fused_1),
        "disp_vis2ir_1": disp_gt + smooth_field(rng, N, 0.01),
        "disp_ir2vis_2": disp_gt + smooth_field(rng, N, 0.01),
        "disp_down2": smooth_field(rng, 2 * N, 0.05),
        "disp_down4": smooth_field(rng, 2 * N, 0.05),
        "disp_down8": smooth_field(rng, 2 * N, 0.05),
        "disp_gt": disp_gt,
        "goodmask": goodmask,
        "goodmask_inverse": inverse,
    }
    inputs = as_jnp(tensors)
    images = {k: inputs.pop(k) for k in ("ir", "vi", "ir_warp", "vi_warp")}
    masks = {k: inputs.pop(k) for k in ("disp_gt", "goodmask", "goodmask_inverse")}
    ir_y, vi_reg_y = pair_luminance(images["ir"], inputs["vi_reg"])
    ir_reg_y, vi_y = pair_luminance(inputs["ir_reg"], images["vi"])
    luminance = {"ir_y": ir_y, "vi_y": vi_y, "ir_reg_y": ir_reg_y, "vi_reg_y": vi_reg_y}
    ours = rf_losses(RFOutputs(**inputs, **luminance), **images, **masks)
    torch_in = {k: torch.from_numpy(v) if k == "disp_gt" else nchw(v) for k, v in tensors.items()}
    expected = t_rf_losses(torch_in)
    assert set(ours) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(float(ours[name]), float(value), rtol=2e-5, err_msg=name)
    np.testing.assert_allclose(
        float(border_suppression(jnp.asarray(ir), jnp.asarray(goodmask))),
        float(t_border(nchw(ir), nchw(goodmask))),
        rtol=1e-6,
    )


def test_rf_weights_weigh_the_total_and_leave_zero_terms_out(rng):
    img = lambda: jnp.asarray(images_with_dark_regions(rng, (N, H, W, 3)))
    disp_gt = jnp.asarray(smooth_field(rng, N, scale=0.05))
    goodmask, inverse = valid_masks(disp_gt)
    y = lambda: img()[..., :1]
    field = lambda n: jnp.asarray(smooth_field(rng, n, 0.05))
    out = RFOutputs(
        **{k: img() for k in ("ir_reg", "vi_reg", "ir_warp_fake", "vi_warp_fake")},
        **{k: y() for k in ("ir_y", "vi_y", "ir_reg_y", "vi_reg_y", "fused_1", "fused_2")},
        disp_vis2ir_1=field(N),
        disp_ir2vis_2=field(N),
        **{f"disp_down{f}": field(2 * N) for f in (2, 4, 8)},
    )
    images = {k: img() for k in ("ir", "vi", "ir_warp", "vi_warp")}
    kwargs = dict(**images, disp_gt=disp_gt, goodmask=goodmask, goodmask_inverse=inverse)
    release = rf_losses(out, **kwargs)
    terms = {k[5:]: float(v) for k, v in release.items() if k != "loss_total"}
    want = sum(getattr(RFWeights(), k) * v for k, v in terms.items())
    np.testing.assert_allclose(float(release["loss_total"]), want, rtol=1e-6)
    matcher_only = RFWeights(reg_field=10.0, fus=0.0, ncc=0.0)
    assert not matcher_only.trains_fusion_net and RFWeights().trains_fusion_net
    custom = rf_losses(out, **kwargs, weights=matcher_only)
    want = 10 * terms["reg_img"] + 10 * terms["reg_field"] + terms["smooth"] + terms["border"]
    np.testing.assert_allclose(float(custom["loss_total"]), want, rtol=1e-6)
    grad = jax.grad(
        lambda f: rf_losses(out.replace(fused_1=f), **kwargs, weights=matcher_only)["loss_total"]
    )(out.fused_1)
    assert not np.any(np.asarray(grad))
