"""Registration metrics: hand-checkable fields, numpy/scipy transcriptions, and the MSRS ground
truth (shared/data/msrs_test/flow/*.png.mat read by `io.ground_truth.read_flow_mat`)."""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.io
from scipy.ndimage import map_coordinates

from superfusion_jax.evaluation import registration_metrics as rm
from superfusion_jax.io.ground_truth import GroundTruthReadError, read_flow_mat
from superfusion_jax.io.images import read_image
from superfusion_jax.ops.displacement import pixels_to_disp
from tests.conftest import MSRS, require


def _grid(h, w):
    """Pixel positions (H, W, 2), x then y, in numpy."""
    ys, xs = np.mgrid[:h, :w].astype(np.float32)
    return np.stack([xs, ys], axis=-1)


def _numpy_epe(positions, source):
    """|src(g(p)) - p| with scipy's bilinear interpolation and clamping: (H, W, 2) -> (H, W)."""
    h, w = source.shape[:2]
    rows = np.clip(positions[..., 1], 0, h - 1)
    cols = np.clip(positions[..., 0], 0, w - 1)
    composed = np.stack(
        [map_coordinates(source[..., c].astype(np.float64), [rows, cols], order=1) for c in (0, 1)],
        axis=-1,
    )
    return np.linalg.norm(composed - _grid(*positions.shape[:2]), axis=-1)


def _smooth_field(rng, h, w, amplitude):
    """A smooth random displacement (H, W, 2): a few low-frequency sines, pixels."""
    ys, xs = np.mgrid[:h, :w]
    out = np.zeros((h, w, 2))
    for c in range(2):
        for _ in range(3):
            fx, fy, phase = rng.uniform(0.02, 0.15), rng.uniform(0.02, 0.15), rng.uniform(0, 6)
            out[..., c] += amplitude * np.sin(fx * xs + fy * ys + phase) / 3
    return out.astype(np.float32)


# --- end-point error --------------------------------------------------------------------------


def test_epe_of_a_translation_and_its_inverse():
    h, w, t = 20, 24, np.array([3.0, -2.0], np.float32)
    source = _grid(h, w) + t  # ir_warp(q) = ir(q + t)
    identity = rm.composition_error(jnp.asarray(_grid(h, w))[None], jnp.asarray(source)[None])
    np.testing.assert_allclose(identity, np.hypot(3.0, 2.0), rtol=1e-6)
    undo = _grid(h, w) - t  # g(p) = p - t: src(g(p)) = p wherever g(p) lies in the frame
    epe = np.asarray(rm.composition_error(jnp.asarray(undo)[None], jnp.asarray(source)[None]))[0]
    inside = (undo[..., 0] >= 0) & (undo[..., 0] <= w - 1) & (undo[..., 1] >= 0)
    inside &= undo[..., 1] <= h - 1
    assert inside.mean() > 0.7
    np.testing.assert_allclose(epe[inside], 0.0, atol=1e-5)
    # outside, g is clamped to the frame's edge: e.g. g(0, 0) = (-3, 2) -> (0, 2), src = (3, 0)
    assert epe[0, 0] == pytest.approx(3.0)


def test_composition_error_matches_scipy_on_random_fields():
    rng = np.random.default_rng(0)
    h, w = 18, 22
    source = _grid(h, w) + _smooth_field(rng, h, w, 6.0)
    positions = _grid(h, w) + _smooth_field(rng, h, w, 8.0)  # partly outside the frame
    epe = rm.composition_error(jnp.asarray(positions)[None], jnp.asarray(source)[None])
    np.testing.assert_allclose(epe[0], _numpy_epe(positions, source), atol=2e-4)


@pytest.mark.parametrize("align_corners_grid", [True, False])
def test_end_point_error_converts_the_variant_displacement(align_corners_grid):
    h, w, t = 16, 20, np.array([1.5, 2.25], np.float32)
    source = jnp.asarray(_grid(h, w) + t)[None]
    undo = pixels_to_disp(jnp.broadcast_to(-t, (1, h, w, 2)), align_corners_grid)
    np.testing.assert_allclose(
        rm.sampling_positions(undo, align_corners_grid)[0], _grid(h, w) - t, atol=1e-5
    )
    epe = np.asarray(rm.end_point_error(undo, source, (0, 0), align_corners_grid))[0]
    np.testing.assert_allclose(epe[3:, 2:], 0.0, atol=1e-4)  # g inside the frame there
    assert epe[0, 0] > 1.0  # g = (-1.5, -2.25) clamped to (0, 0)


def test_summarise_epe_by_hand():
    epe = jnp.asarray([[[0.5, 2.0], [4.0, 6.0]], [[1.0, 1.0], [1.0, 1.0]]])
    s = rm.summarise_epe(epe)
    np.testing.assert_allclose(s["epe_mean_px"], [3.125, 1.0])
    np.testing.assert_allclose(s["epe_median_px"], [3.0, 1.0])
    np.testing.assert_allclose(s["epe_under_1px_pct"], [25.0, 0.0])  # strict: 1.0 is not < 1
    np.testing.assert_allclose(s["epe_under_3px_pct"], [50.0, 100.0])
    np.testing.assert_allclose(s["epe_under_5px_pct"], [75.0, 100.0])


# --- photometric error ------------------------------------------------------------------------


def _numpy_mi_bits(x, y):
    """MI in bits from 256-level joint histograms of round(255 x), round(255 y)."""
    a, b = np.round(255 * x).astype(int).ravel(), np.round(255 * y).astype(int).ravel()
    joint = np.histogram2d(a, b, bins=256, range=[[0, 256], [0, 256]])[0] / a.size
    pa, pb = joint.sum(1), joint.sum(0)
    nz = joint > 0
    return float(np.sum(joint[nz] * np.log2(joint[nz] / np.outer(pa, pb)[nz])))


def test_photometric_errors_of_identical_inverted_and_constant_images():
    rng = np.random.default_rng(1)
    x = np.round(rng.uniform(size=(1, 12, 16)) * 255) / 255
    entropy = -sum(p * np.log2(p) for p in np.unique(x, return_counts=True)[1] / x.size)
    same = rm.photometric_errors(jnp.asarray(x), jnp.asarray(x))
    assert float(same["mse"][0]) == 0.0
    assert float(same["ncc"][0]) == pytest.approx(1.0, abs=1e-6)
    assert float(same["mi_bits"][0]) == pytest.approx(entropy, abs=1e-4)  # MI(X, X) = H(X)
    inverted = rm.photometric_errors(jnp.asarray(1 - x), jnp.asarray(x))
    assert float(inverted["ncc"][0]) == pytest.approx(-1.0, abs=1e-6)
    assert float(inverted["mse"][0]) == pytest.approx(np.mean((1 - 2 * x) ** 2), rel=1e-6)
    flat = rm.photometric_errors(jnp.full((1, 12, 16), 0.5), jnp.asarray(x))
    assert np.isnan(flat["ncc"][0])
    assert float(flat["mi_bits"][0]) == pytest.approx(0.0, abs=1e-6)


def test_photometric_errors_match_numpy_on_rgb():
    rng = np.random.default_rng(2)
    ref = rng.uniform(size=(2, 10, 14, 1)).repeat(3, axis=-1).astype(np.float32)
    reg = np.clip(ref + rng.normal(0, 0.1, ref.shape[:3] + (1,)), 0, 1).astype(np.float32)
    reg = reg.repeat(3, axis=-1)
    out = rm.photometric_errors(jnp.asarray(reg), jnp.asarray(ref))
    for i in range(2):
        x, y = reg[i, ..., 0].astype(np.float64), ref[i, ..., 0].astype(np.float64)
        assert float(out["mse"][i]) == pytest.approx(np.mean((x - y) ** 2), rel=1e-5)
        assert float(out["ncc"][i]) == pytest.approx(np.corrcoef(x.ravel(), y.ravel())[0, 1], 1e-5)
        assert float(out["mi_bits"][i]) == pytest.approx(_numpy_mi_bits(x, y), abs=1e-4)


# --- field quality ----------------------------------------------------------------------------


def test_field_quality_of_identity_translation_scaling_and_reflection():
    p = _grid(8, 10)
    fields = {
        "identity": p,
        "translation": p + np.array([2.5, -1.0], np.float32),
        "scaling": 2 * p,
        "reflection": np.stack([9 - p[..., 0], p[..., 1]], axis=-1),
    }
    batch = jnp.asarray(np.stack(list(fields.values())))
    det = np.asarray(rm.jacobian_determinant(batch))
    np.testing.assert_allclose(det, np.asarray([1, 1, 4, -1])[:, None, None] * np.ones((8, 10)))
    quality = rm.field_quality(batch)
    np.testing.assert_allclose(quality["folding_pct"], [0, 0, 0, 100])
    # |grad u|_F: 0, 0, |I|_F = sqrt 2, |diag(-2, 0)|_F = 2
    np.testing.assert_allclose(quality["roughness"], [0, 0, np.sqrt(2), 2], atol=1e-6)


def test_folding_and_roughness_of_a_known_fold():
    # g_x(x) = x up to column 8, then 16 - x: the field folds back from column 8 on.
    p = _grid(4, 16)
    gx = np.where(p[..., 0] < 8, p[..., 0], 16 - p[..., 0])
    field = jnp.asarray(np.stack([gx, p[..., 1]], axis=-1))[None]
    # central differences: column 7: (8 - 6)/2 = 1; column 8: (7 - 7)/2 = 0 (det 0, counted);
    # columns 9..14: -1; column 15 (one-sided): 1 - 2 = -1. Folded: columns 8..15 = 50 %.
    quality = rm.field_quality(field)
    assert float(quality["folding_pct"][0]) == pytest.approx(50.0)
    # du_x/dx = dg_x/dx - 1: 0 (columns 0..7), -1 (column 8), -2 (columns 9..15)
    assert float(quality["roughness"][0]) == pytest.approx((1 + 2 * 7) / 16)


def test_jacobian_determinant_matches_numpy_gradient():
    rng = np.random.default_rng(3)
    g = _grid(12, 15) + _smooth_field(rng, 12, 15, 5.0)
    gx_y, gx_x = np.gradient(g[..., 0].astype(np.float64))
    gy_y, gy_x = np.gradient(g[..., 1].astype(np.float64))
    det = rm.jacobian_determinant(jnp.asarray(g)[None])[0]
    np.testing.assert_allclose(det, gx_x * gy_y - gx_y * gy_x, atol=1e-4)


def test_score_registration_order_and_identity_values():
    rng = np.random.default_rng(4)
    h, w = 10, 12
    source = _grid(h, w) + _smooth_field(rng, h, w, 3.0)
    image = rng.uniform(size=(1, h, w, 3)).astype(np.float32)
    out = rm.score_registration(
        jnp.asarray(_grid(h, w))[None], jnp.asarray(source)[None], image, image
    )
    assert tuple(out) == rm.METRIC_NAMES
    assert float(out["epe_mean_px"][0]) == pytest.approx(
        np.linalg.norm(source - _grid(h, w), axis=-1).mean(), rel=1e-5
    )
    assert float(out["folding_pct"][0]) == 0.0
    assert float(out["roughness"][0]) == pytest.approx(0.0, abs=1e-6)
    assert float(out["mse"][0]) == pytest.approx(0.0, abs=1e-12)


# --- ground truth files -----------------------------------------------------------------------


def test_read_flow_mat_on_the_msrs_test_pair():
    path = require(MSRS / "flow" / "00004N.png.mat")
    source = read_flow_mat(path)
    assert source.shape == (480, 640, 2) and source.dtype == np.float32
    identity = rm.composition_error(jnp.asarray(_grid(480, 640))[None], jnp.asarray(source)[None])
    # measured once: the misalignment of this pair (9.3 to 30.7 px over the 20 pairs)
    assert float(identity.mean()) == pytest.approx(14.2224, abs=1e-3)
    # ir_warp = floor(255 grid_sample(ir, flow)) (zeros padding = scipy's grid-constant mode)
    ir = read_image(require(MSRS / "ir" / "00004N.png"))[..., 0].astype(np.float64)
    stored = np.round(read_image(MSRS / "ir_warp" / "00004N.png")[..., 0] * 255)
    sampled = map_coordinates(
        ir, [source[..., 1], source[..., 0]], order=1, mode="grid-constant", cval=0.0
    )
    levels = np.floor(sampled * 255 + 1e-6)
    assert np.abs(stored - levels).max() <= 1
    assert np.mean(stored == levels) > 0.985


def test_read_flow_mat_converts_normalised_positions(tmp_path):
    h, w = 3, 4
    # pixel centres of align_corners=False: x = (2j + 1)/W - 1, y = (2i + 1)/H - 1, plus a
    # shift of 0.5 (normalised) along x = W/4 = 1 px
    ys, xs = np.mgrid[:h, :w]
    grid = np.stack([(2 * xs + 1) / w - 1 + 0.5, (2 * ys + 1) / h - 1], axis=-1)
    scipy.io.savemat(tmp_path / "a.png.mat", {"flow": grid[None].astype(np.float32)})
    source = read_flow_mat(tmp_path / "a.png.mat")
    np.testing.assert_allclose(source, _grid(h, w) + [1, 0], atol=1e-6)


def test_read_flow_mat_names_the_file_it_cannot_use(tmp_path):
    scipy.io.savemat(tmp_path / "other.mat", {"grid": np.zeros((1, 2, 2, 2))})
    scipy.io.savemat(tmp_path / "shape.mat", {"flow": np.zeros((2, 2, 3))})
    scipy.io.savemat(tmp_path / "nan.mat", {"flow": np.full((1, 2, 2, 2), np.nan)})
    scipy.io.savemat(tmp_path / "absurd.mat", {"flow": np.full((1, 2, 2, 2), 1e23, np.float32)})
    (tmp_path / "junk.mat").write_bytes(b"not a MATLAB file at all")
    cases = {
        "missing.mat": "no such file",
        "other.mat": "no array named 'flow'",
        "shape.mat": "shape",
        "nan.mat": "finite",
        "absurd.mat": "up to 1e[+]23 .* within ±3",
        "junk.mat": "MATLAB",
    }
    for name, problem in cases.items():
        with pytest.raises(GroundTruthReadError, match=problem) as info:
            read_flow_mat(tmp_path / name)
        assert name in str(info.value)


def test_the_inverse_of_the_real_ground_truth_scores_near_zero():
    """A registration that undoes the MSRS misalignment of 00004N exactly has EPE ~ 0 where the
    ground truth is invertible. The inverse g of src (src(g(p)) = p) is found independently of
    the metric's code by fixed-point iteration g <- g - (src(g) - p) with scipy's bilinear
    sampling (the field is smooth and close to a translation, so this converges)."""
    source = read_flow_mat(require(MSRS / "flow" / "00004N.png.mat"))
    h, w = source.shape[:2]
    p = np.stack(np.meshgrid(np.arange(w), np.arange(h)), -1).astype(np.float64)
    g = p.copy()
    for _ in range(30):
        at_g = np.stack(
            [
                map_coordinates(source[..., c], [g[..., 1], g[..., 0]], order=1, mode="nearest")
                for c in range(2)
            ],
            -1,
        )
        g = g - (at_g - p)
    epe = np.asarray(rm.composition_error(jnp.asarray(g[None], jnp.float32), source[None]))[0]
    # pixels whose inverse lies inside ir_warp's frame (elsewhere the warp showed black border)
    inside = (g[..., 0] >= 0) & (g[..., 0] <= w - 1) & (g[..., 1] >= 0) & (g[..., 1] <= h - 1)
    assert inside.mean() > 0.8
    median, mean = np.median(epe[inside]), np.mean(epe[inside])
    assert median < 0.01 and mean < 0.05, (median, mean)
    identity = np.asarray(rm.composition_error(jnp.asarray(p[None], jnp.float32), source[None]))
    assert identity.mean() > 10.0


def test_covered_pixels_exclude_what_left_the_frame():
    """ir_warp pixel q shows ir pixel q + (3, 0): columns 0-2 of ir are nobody's source, and
    the exact inverse scores 0 px on the covered pixels but not over all of them."""
    h, w = 6, 10
    src = np.asarray(rm.base_grid_pixels(h, w))[None] + np.float32([3.0, 0.0])
    covered = np.asarray(rm.covered_pixels(jnp.asarray(src)))[0]
    np.testing.assert_array_equal(covered[:, :3], 0.0)
    np.testing.assert_array_equal(covered[:, 3:], 1.0)
    exact = jnp.asarray(np.asarray(rm.base_grid_pixels(h, w))[None] - np.float32([3.0, 0.0]))
    images = jnp.zeros((1, h, w, 3))
    out = rm.score_registration(exact, jnp.asarray(src), images, images)
    assert float(out["epe_mean_covered_px"][0]) < 1e-5
    assert float(out["epe_mean_px"][0]) > 0.5
