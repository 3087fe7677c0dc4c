"""Synthetic misalignment vs the release's `randflow` (utils/utils.py) and `RegData`."""

import jax
import jax.numpy as jnp
import kornia
import kornia.filters as KF
import kornia.geometry.transform as KGT
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from superfusion_jax.data.misalign import (
    MisalignedPair,
    crop_pair,
    elastic_kernel_size,
    flow_from_params,
    misalign_pair,
    randflow,
)
from superfusion_jax.ops.warp import base_grid, grid_sample
from tests.conftest import MSRS, PARITY, require
from tests.helpers import read_rgb

H, W = 32, 40  # > 22: the elastic blur's reflect padding needs it, as in torch
SMALL_SIGMA = 4  # release: 15; a 13-tap instead of a 45-tap blur compiles much faster


def torch_randflow(angle, trans, noise, ratio=1.0, sigma=15, base=500.0):
    """The release's randflow with its random draws passed in (angle already scaled, degrees).

    trans: (2,), noise: (H, W, 2) uniform in [-1, 1]. Returns (grid, disp, mask), (1, H, W, 2).
    """
    h, w = noise.shape[:2]
    base_scale = 1 if base is None else base / torch.FloatTensor([w, h]).view(1, 1, 1, 2)
    matrix = KGT.get_affine_matrix2d(
        translations=torch.tensor(trans, dtype=torch.float32)[None],
        center=torch.zeros(1, 2),
        scale=torch.ones(1, 2),
        angle=torch.tensor([angle], dtype=torch.float32),
    ).inverse()
    grid = kornia.utils.create_meshgrid(h, w)
    warp_grid = kornia.geometry.linalg.transform_points(matrix, grid)
    disp = torch.from_numpy(np.array(noise, np.float32)).permute(2, 0, 1)[None]
    k = (3 * sigma) // 2 * 2 + 1
    for _ in range(6):
        disp = KF.gaussian_blur2d(disp, (k, k), (sigma, sigma))
    disp = (disp.permute(0, 2, 3, 1) * ratio + warp_grid - grid) * base_scale
    trans_grid = grid + disp
    return trans_grid, trans_grid - grid, (trans_grid < -1) | (trans_grid > 1)


def test_kernel_size_is_the_release_formula():
    assert elastic_kernel_size(15) == 45
    assert elastic_kernel_size(4) == 13


@pytest.mark.parametrize("base", [500.0, None])
def test_affine_only_field_equals_numpy_affine(base):
    angle, trans = 7.3, np.array([0.05, -0.08])
    grid, disp, mask = flow_from_params(
        angle, jnp.asarray(trans), jnp.zeros((H, W, 2)), sigma=SMALL_SIGMA, base=base
    )
    # independent restatement: forward map p -> R p + t about the normalised origin (the image
    # centre), R the rotation by +angle in (x, y); the sampling grid is its inverse
    a = np.deg2rad(angle)
    forward = np.array(
        [[np.cos(a), -np.sin(a), trans[0]], [np.sin(a), np.cos(a), trans[1]], [0, 0, 1]]
    )
    xs, ys = np.meshgrid(np.linspace(-1, 1, W), np.linspace(-1, 1, H))
    points = np.stack([xs, ys, np.ones_like(xs)], axis=-1)
    source = (points @ np.linalg.inv(forward).T)[..., :2]
    scale = 1.0 if base is None else base / np.array([W, H])
    expected_disp = (source - points[..., :2]) * scale
    np.testing.assert_allclose(np.asarray(disp), expected_disp, atol=2e-6)
    np.testing.assert_allclose(np.asarray(grid), points[..., :2] + expected_disp, atol=2e-6)
    np.testing.assert_array_equal(np.asarray(mask), np.abs(np.asarray(grid)) > 1)


@pytest.mark.parametrize("sigma", [SMALL_SIGMA, pytest.param(15, marks=pytest.mark.slow)])
def test_field_matches_release_with_elastic_noise(rng, sigma):
    angle, trans = rng.uniform(-12, 12), rng.uniform(-0.1, 0.1, 2)
    noise = rng.uniform(-1, 1, (H, W, 2)).astype(np.float32)
    grid, disp, mask = flow_from_params(
        angle, jnp.asarray(trans), jnp.asarray(noise), ratio=3.0, sigma=sigma
    )
    t_grid, t_disp, t_mask = (
        x[0].numpy() for x in torch_randflow(angle, trans, noise, ratio=3.0, sigma=sigma)
    )
    np.testing.assert_allclose(np.asarray(grid), t_grid, atol=1e-5)
    np.testing.assert_allclose(np.asarray(disp), t_disp, atol=1e-5)
    decided = np.abs(np.abs(t_grid) - 1) > 1e-5
    assert t_mask.any() and not t_mask.all()
    np.testing.assert_array_equal(np.asarray(mask)[decided], t_mask[decided])


@pytest.mark.parametrize("sigma", [SMALL_SIGMA, pytest.param(15, marks=pytest.mark.slow)])
def test_elastic_field_is_small_smooth_and_scales_with_ratio(sigma):
    key = jax.random.PRNGKey(3)
    flow = lambda ratio: np.asarray(
        randflow(key, H, W, angle=0.0, translation=0.0, ratio=ratio, sigma=sigma, base=None)[1]
    )
    elastic = flow(1.0)
    np.testing.assert_allclose(flow(2.0), 2 * elastic, rtol=1e-5, atol=1e-6)  # grid - base rounding
    np.testing.assert_array_equal(flow(0.0), 0.0)
    # six blurs of U(-1, 1) noise: |field| of order 1/sigma (0.005-0.05 seen for sigma 15 on
    # 32x40), varying slowly: neighbour differences far below the field (<4% of it for sigma 15)
    peak = np.abs(elastic).max()
    assert 1e-3 < peak < 1.0 / sigma
    steps = max(np.abs(np.diff(elastic, axis=0)).max(), np.abs(np.diff(elastic, axis=1)).max())
    assert steps < 1.5 / sigma * peak


def test_warp_matches_torch_grid_sample(rng):
    ir = rng.uniform(0, 1, (H, W, 3)).astype(np.float32)
    vi = rng.uniform(0, 1, (H, W, 3)).astype(np.float32)
    pair = misalign_pair(
        jax.random.PRNGKey(rng.integers(2**31)), ir, vi, sigma=SMALL_SIGMA, base=None
    )
    np.testing.assert_array_equal(np.asarray(pair.ir), ir)
    grid = kornia.utils.create_meshgrid(H, W) + torch.from_numpy(np.array(pair.disp))[None]
    for image, warped in ((ir, pair.ir_warp), (vi, pair.vi_warp)):
        t_image = torch.from_numpy(image).permute(2, 0, 1)[None]
        expected = F.grid_sample(t_image, grid, mode="bilinear", align_corners=False)
        np.testing.assert_allclose(np.asarray(warped), expected[0].permute(1, 2, 0), atol=1e-5)
    assert np.abs(np.asarray(pair.ir_warp) - ir).mean() > 0.05  # it did move


def test_crop_is_consistent_with_the_full_frame(rng):
    key = jax.random.PRNGKey(rng.integers(2**31))
    ir = rng.uniform(0, 1, (H, W, 3)).astype(np.float32)
    vi = rng.uniform(0, 1, (H, W, 3)).astype(np.float32)
    full = misalign_pair(key, ir, vi, sigma=SMALL_SIGMA, base=None)
    size = 24
    crop = misalign_pair(key, ir, vi, sigma=SMALL_SIGMA, base=None, crop_size=size)
    offsets = [
        (t, left)
        for t in range(H - size + 1)
        for left in range(W - size + 1)
        if np.array_equal(ir[t : t + size, left : left + size], np.asarray(crop.ir))
    ]
    assert len(offsets) == 1
    (t, left) = offsets[0]
    window = (slice(t, t + size), slice(left, left + size))
    for name in ("vi", "ir_warp", "vi_warp"):
        np.testing.assert_array_equal(
            np.asarray(getattr(crop, name)), np.asarray(getattr(full, name))[window]
        )
    scale = (np.array([W, H]) - 1.0) / (size - 1.0)
    np.testing.assert_allclose(
        np.asarray(crop.disp), np.asarray(full.disp)[window] * scale, rtol=1e-6
    )


def test_keys_make_fields_deterministic_and_vmap_gives_one_per_key(rng):
    ir = jnp.asarray(rng.uniform(0, 1, (H, W, 3)).astype(np.float32))
    vi = jnp.asarray(rng.uniform(0, 1, (H, W, 3)).astype(np.float32))
    keys = jax.random.split(jax.random.PRNGKey(rng.integers(2**31)), 3)
    batch = jax.jit(
        jax.vmap(lambda k, a, b: misalign_pair(k, a, b, sigma=SMALL_SIGMA, crop_size=24))
    )(keys, jnp.stack([ir] * 3), jnp.stack([vi] * 3))
    assert batch.disp.shape == (3, 24, 24, 2) and batch.ir_warp.shape == (3, 24, 24, 3)
    for i in range(3):
        single = misalign_pair(keys[i], ir, vi, sigma=SMALL_SIGMA, crop_size=24)
        again = misalign_pair(keys[i], ir, vi, sigma=SMALL_SIGMA, crop_size=24)
        np.testing.assert_array_equal(np.asarray(single.disp), np.asarray(again.disp))
        np.testing.assert_allclose(np.asarray(batch.disp[i]), np.asarray(single.disp), atol=1e-5)
        np.testing.assert_allclose(
            np.asarray(batch.ir_warp[i]), np.asarray(single.ir_warp), atol=1e-4
        )
    disp = np.asarray(batch.disp)
    assert min(np.abs(disp[i] - disp[j]).max() for i, j in ((0, 1), (0, 2), (1, 2))) > 1e-3


@pytest.mark.parametrize(
    ("index", "name", "top", "left"), [(0, "00024N", 112, 192), (1, "00085D", 125, 175)]
)
def test_crop_reproduces_the_golden_training_batch(index, name, top, left):
    """parity/train_batch_seed0.npz: the release's randflow on the 480x640 pair, then a crop.

    The crop's ground-truth disp, taken back to full-frame units, must re-create the release's
    warped crops, and `crop_pair` must give back the release's crop and disp.
    """
    batch = np.load(require(PARITY / "train_batch_seed0.npz"))
    ir = read_rgb(require(MSRS / "ir" / f"{name}.png"))[0]
    vi = read_rgb(require(MSRS / "vi" / f"{name}.png"))[0]
    h, w, size = ir.shape[0], ir.shape[1], 256
    disp = np.zeros((h, w, 2), np.float32)
    disp[top : top + size, left : left + size] = batch["disp"][index] / (
        (np.array([w, h]) - 1.0) / (size - 1.0)
    )
    grid = base_grid(h, w, True) + disp
    warped = grid_sample(jnp.concatenate([ir, vi], axis=-1)[None], grid[None])[0]
    full = MisalignedPair(ir, vi, warped[..., :3], warped[..., 3:], jnp.asarray(disp))
    crop = crop_pair(full, top, left, size)
    for field in ("ir", "vi", "ir_warp", "vi_warp"):
        expected = batch[field][index].transpose(1, 2, 0)
        np.testing.assert_allclose(np.asarray(getattr(crop, field)), expected, atol=2e-5)
    np.testing.assert_allclose(np.asarray(crop.disp), batch["disp"][index], rtol=1e-5, atol=1e-7)
