"""Fusion metrics: hand-checkable cases, independent numpy transcriptions, and the sources' output.

Reference values of the sources (``SOURCE_VALUES`` below) were produced once by running the
sources themselves on three 64×80 crops of real MSRS test pairs (``CROPS``: name -> top-left row,
column of ir/, vi/, fused_seafusion/ in shared/data/msrs_test); the tests never run them:

* ``matlab`` / ``matlab2023``: the unchanged MATLAB files of github.com/Linfeng-Tang/
  Evaluation-for-Image-Fusion, ``Evaluation/`` at commit 5d6c43a (2022) / HEAD 0e87153 (2023), in
  GNU Octave 7.3 with image 2.14 and signal 1.4.3, called as ``analysis_Reference.m`` calls them
  (the 2022 ``easy=1`` branch through ``analysis_Reference`` itself). Inputs were the crops after
  MATLAB's ``rgb2gray`` (its coefficients, rounded half up; computed in numpy and saved as grey
  PNG, because Octave's ``rgb2gray`` uses coefficients rounded to 6 digits). Two Octave built-ins
  differ from MATLAB's and were shadowed for the run (docs/metrics.md gives both):
  ``conv2(A, h, 'same')`` accumulating the kernel terms in column-major order (Octave's order
  changes exact ties in the 2022 Qabf; with the shadow, Octave reproduces the authors' MATLAB
  Qabf of Metric/Metric_TNO.xlsx digit for digit) and ``edge(I)`` as MATLAB's Sobel default with
  its directional thinning (Octave thins differently; ``analysis_fmi`` calls ``edge`` by default,
  which is the "FMI_pixel" of the 2022 code). The 2023 SSIM has no Octave reference (no ``ssim``
  in Octave's image package).
* ``cddfuse``: ``utils/Evaluator.py`` of github.com/Zhaozixiang1228/MMIF-CDDFuse at fd8da1f, run
  unchanged (numpy 2.4, scipy 1.17, scikit-learn 1.9, opencv-python-headless 5.0) on crops of
  ``image_read_cv2(path, 'GRAY')``, its SSIM given data_range=2 as its pinned scikit-image 0.19.2
  did implicitly (scikit-image 0.26 was used).
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.fft
import scipy.ndimage
import scipy.signal
from PIL import Image

from superfusion_jax.evaluation import fusion_metrics as fm
from superfusion_jax.evaluation import fusion_presets as fp
from tests.conftest import MSRS, require


@pytest.fixture(autouse=True)
def _float64():
    with jax.enable_x64(True):
        yield


# ~4× faster XLA compilation; the tests' images are small (the default is checked separately)
FAST = {"xla_backend_optimization_level": 0}


def _j(*arrays):
    """numpy (H, W) arrays -> list of float64 JAX batches (1, H, W)."""
    return [jnp.asarray(np.asarray(a, np.float64))[None] for a in arrays]


def _jit(fn, **kwargs):
    return jax.jit(functools.partial(fn, **kwargs), compiler_options=FAST)


def _run(fn, *images, **kwargs):
    """fn(*images, **kwargs) on (1, H, W) batches, jitted -> the scalar of the one image."""
    return float(np.asarray(_jit(fn, **kwargs)(*_j(*images)))[0])


def _rand_levels(seed, shape=(24, 28)):
    """Integer grey levels with texture and flat patches, as float64."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, shape).astype(np.float64)
    x[2:9, 3:12] = 77.0
    return x


# --------------------------------------------------------------------------------------------
# Intensity statistics
# --------------------------------------------------------------------------------------------


def test_entropy_hand_cases():
    half = np.array([[0.0, 0.0], [255.0, 255.0]])
    quarters = np.array([[0.0, 1.0], [2.0, 3.0]])
    assert _run(fm.entropy, half) == pytest.approx(1.0)
    assert _run(fm.entropy, quarters) == pytest.approx(2.0)
    assert _run(fm.entropy, np.full((2, 2), 9.0)) == 0.0
    assert _run(fm.entropy, quarters, log_base=math.e) == pytest.approx(math.log(4))


def test_standard_deviation_plain_and_matlab_uint8_saturation():
    x = _rand_levels(0)
    assert _run(fm.standard_deviation, x) == pytest.approx(np.std(x), rel=1e-12)
    sat = functools.partial(_run, fm.standard_deviation, uint8_saturation=True)
    # uint8 - double: negatives clip to 0; mean 2.5 -> 5 - 2.5 = 2.5 rounds half away to 3
    assert sat([[0.0, 5.0]]) == pytest.approx(math.sqrt(9 / 2))
    # difference 20 -> square 400 saturates at 255
    assert sat([[0.0, 40.0]]) == pytest.approx(math.sqrt(255 / 2))
    assert sat(x) <= math.sqrt(255)


def test_spatial_frequency_ramp_and_numpy():
    ramp = np.tile(np.arange(7.0), (5, 1))  # columns differ by 1, rows equal
    assert _run(fm.spatial_frequency, ramp) == pytest.approx(1.0)
    x = _rand_levels(1)
    rf = np.mean(np.diff(x, axis=0) ** 2)
    cf = np.mean(np.diff(x, axis=1) ** 2)
    assert _run(fm.spatial_frequency, x) == pytest.approx(math.sqrt(rf + cf), rel=1e-12)


def test_average_gradient_ramp_and_numpy_gradient():
    h, w = 6, 9
    ramp = np.tile(2.0 * np.arange(w), (h, 1))  # gradient 2 everywhere, borders included
    per_pixel = math.sqrt(4 / 2)
    interior = _run(fm.average_gradient, ramp)
    assert interior == pytest.approx(per_pixel * h * w / ((h - 1) * (w - 1)))
    everywhere = _run(fm.average_gradient, ramp, interior_normalisation=False)
    assert everywhere == pytest.approx(per_pixel)
    x = _rand_levels(2)
    gy, gx = np.gradient(x)  # central differences, one-sided at the ends: MATLAB's gradient
    expected = np.sqrt((gx**2 + gy**2) / 2).mean()
    got = _run(fm.average_gradient, x, interior_normalisation=False)
    assert got == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------------------------------------------------
# Reference-based metrics: MI, MSE, PSNR, CC, SCD
# --------------------------------------------------------------------------------------------


def _numpy_mi(a, f):
    """MI in bits from a 256×256 joint histogram (np.histogram2d)."""
    joint, _, _ = np.histogram2d(f.ravel(), a.ravel(), bins=256, range=[[0, 256], [0, 256]])
    p = joint / joint.sum()
    pf, pa = p.sum(1), p.sum(0)
    nz = p > 0
    return float(np.sum(p[nz] * np.log2(p[nz] / np.outer(pf, pa)[nz])))


def test_mutual_information_identical_and_numpy():
    x = _rand_levels(3)
    # MI(X, X) = H(X), so identical sources and fused image give 2 H
    h = _run(fm.entropy, x)
    assert _run(fm.mutual_information, x, x, x) == pytest.approx(2 * h, rel=1e-12)
    a, b, f = _rand_levels(4), _rand_levels(5), _rand_levels(6)
    expected = _numpy_mi(a, f) + _numpy_mi(b, f)
    assert _run(fm.mutual_information, a, b, f) == pytest.approx(expected, rel=1e-10)
    nats = _run(fm.mutual_information, a, b, f, log_base=math.e)
    assert nats == pytest.approx(expected * math.log(2), rel=1e-10)


def test_mutual_information_matlab_merges_254_and_255_in_the_joint_histogram():
    x = np.array([[254.0, 255.0], [254.0, 255.0]])  # H = 1 bit
    # without the merge MI(X, X) = 1 bit per source; Hab's saturating uint8 + 1 puts both levels
    # in one joint bin (joint entropy 0), so each term becomes H + H - 0 = 2 bits
    assert _run(fm.mutual_information, x, x, x) == pytest.approx(2.0)
    merged = _run(fm.mutual_information, x, x, x, merge_top_levels=True)
    assert merged == pytest.approx(4.0)


def test_mse_and_psnr_known_error():
    f = _rand_levels(7)
    a = b = f + 1.0
    assert _run(fm.mean_squared_error, a, b, f) == pytest.approx(1.0)
    assert _run(fm.psnr, a, b, f) == pytest.approx(10 * math.log10(255**2))
    peak_max = _run(fm.psnr, a, b, f, peak=None)
    assert peak_max == pytest.approx(10 * math.log10(f.max() ** 2))


def test_correlation_metrics_against_numpy():
    a, b = _rand_levels(8), _rand_levels(9)
    # an affine copy of A correlates perfectly with A
    assert _run(fm.correlation_coefficient, a, 2 * a + 3, a) == pytest.approx(1.0)
    f = 0.6 * a + 0.4 * b
    r = lambda x, y: np.corrcoef(x.ravel(), y.ravel())[0, 1]
    cc = _run(fm.correlation_coefficient, a, b, f)
    assert cc == pytest.approx((r(a, f) + r(b, f)) / 2, rel=1e-12)
    scd = _run(fm.sum_of_correlations_of_differences, a, b, f)
    assert scd == pytest.approx(r(f - b, a) + r(f - a, b), rel=1e-12)


# --------------------------------------------------------------------------------------------
# VIF
# --------------------------------------------------------------------------------------------


def _numpy_vif(ref, dist, uint8_first_scale=False):
    """Transcription of LIVE vifp_mscale.m with scipy.signal.correlate2d (filter2 'valid')."""
    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (5 - scale) + 1
        half = (n - 1) / 2
        y, x = np.mgrid[-half : half + 1, -half : half + 1]
        win = np.exp(-(x * x + y * y) / (2 * (n / 5) ** 2))
        win[win < np.finfo(float).eps * win.max()] = 0
        win /= win.sum()
        filt = lambda z: scipy.signal.correlate2d(z, win, mode="valid")  # noqa: B023
        if scale > 1:
            ref, dist = filt(ref)[::2, ::2], filt(dist)[::2, ::2]
        prod = (lambda p: np.minimum(p, 255)) if (uint8_first_scale and scale == 1) else None
        prod = prod or (lambda p: p)
        mu1, mu2 = filt(ref), filt(dist)
        s1 = filt(prod(ref * ref)) - mu1**2
        s2 = filt(prod(dist * dist)) - mu2**2
        s12 = filt(prod(ref * dist)) - mu1 * mu2
        s1[s1 < 0] = 0
        s2[s2 < 0] = 0
        g = s12 / (s1 + 1e-10)
        sv = s2 - g * s12
        g[s1 < 1e-10] = 0
        sv[s1 < 1e-10] = s2[s1 < 1e-10]
        s1[s1 < 1e-10] = 0
        g[s2 < 1e-10] = 0
        sv[s2 < 1e-10] = 0
        sv[g < 0] = s2[g < 0]
        g[g < 0] = 0
        sv[sv <= 1e-10] = 1e-10
        num += np.sum(np.log10(1 + g**2 * s1 / (sv + 2)))
        den += np.sum(np.log10(1 + s1 / 2))
    return num / den


@pytest.mark.parametrize("uint8_first_scale", [False, True])
def test_vif_against_numpy_transcription(uint8_first_scale):
    rng = np.random.default_rng(10)
    ref = scipy.ndimage.uniform_filter(rng.uniform(0, 255, (64, 64)), 3).round()
    dist = np.clip(ref + rng.normal(0, 12, ref.shape), 0, 255).round()
    dist[:4] = ref[:4]  # reference = distorted in part, flat nowhere
    got = _run(fm.vif, ref, dist, uint8_first_scale=uint8_first_scale)
    assert got == pytest.approx(_numpy_vif(ref, dist, uint8_first_scale), rel=1e-9)


def test_vif_identical_is_one_and_constant_reference_is_nan():
    rng = np.random.default_rng(11)
    x = scipy.ndimage.uniform_filter(rng.uniform(0, 255, (64, 64)), 3)
    # g = 1 and sv_sq is clipped to 1e-10 << sigma_nsq, so num/den = 1 to ~1e-10
    assert _run(fm.vif, x, x) == pytest.approx(1.0, abs=1e-9)
    assert math.isnan(_run(fm.vif, np.full((64, 64), 5.0), x))


# --------------------------------------------------------------------------------------------
# Qabf and Nabf
# --------------------------------------------------------------------------------------------


def _numpy_qabf(pa, pb, pf, equal_strength_oddity=True):
    """Transcription of analysis_Qabf.m with scipy.signal.convolve2d(mode='same')."""
    h1 = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], float)
    h3 = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], float)

    def edges(p):
        sx = scipy.signal.convolve2d(p, h3, mode="same")
        sy = scipy.signal.convolve2d(p, h1, mode="same")
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.hypot(sx, sy), np.where(sx == 0, np.pi / 2, np.arctan(sy / sx))

    (ga, aa), (gb, ab), (gf, af) = edges(pa), edges(pb), edges(pf)

    def q(g, a):
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(g > gf, gf / g, g / gf)
        ratio = np.where(g == gf, gf if equal_strength_oddity else 1.0, ratio)
        orient = 1 - np.abs(a - af) / (np.pi / 2)
        return (
            0.9994 / (1 + np.exp(-15 * (ratio - 0.5))) * 0.9879 / (1 + np.exp(-22 * (orient - 0.8)))
        )

    return np.sum(q(ga, aa) * ga + q(gb, ab) * gb) / np.sum(ga + gb)


def test_qabf_identical_images_with_and_without_the_equal_strength_oddity():
    x = _rand_levels(12)
    plain = _run(fm.qabf, x, x, x, equal_strength_oddity=False)
    # every pixel: ratio 1, orientation difference 0 -> one constant, whatever the weights
    expected = 0.9994 / (1 + math.exp(-7.5)) * 0.9879 / (1 + math.exp(-22 * 0.2))
    assert plain == pytest.approx(expected, rel=1e-12)
    # the sources' gA == gF branch uses gF itself as the ratio (scale dependent)
    odd = _run(fm.qabf, x, x, x)
    assert odd == pytest.approx(_numpy_qabf(x, x, x), rel=1e-12)
    assert abs(odd - plain) > 1e-4


def test_qabf_against_numpy_transcription_with_ties():
    a, b = _rand_levels(13), _rand_levels(14)
    f = 0.5 * (a + b)
    f[10:20, 5:15] = a[10:20, 5:15] + 9  # offset copy of A: gA == gF exactly there
    for oddity in (True, False):
        got = _run(fm.qabf, a, b, f, equal_strength_oddity=oddity)
        assert got == pytest.approx(_numpy_qabf(a, b, f, oddity), rel=1e-12)


def test_conv2_same_matches_scipy():
    x = _rand_levels(15)
    k = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0], [-1.0, 2.0, 4.0]])
    got = _jit(fm._conv2_same, kernel=k)(*_j(x))[0]
    np.testing.assert_allclose(got, scipy.signal.convolve2d(x, k, mode="same"), rtol=1e-13)


def test_nabf_hand_computed_step_edge():
    step = np.zeros((8, 10))
    step[:, 5:] = 40.0
    assert _run(fm.nabf, step, step, step) == 0.0  # no pixel where gF > gA, gB
    got = _run(fm.nabf, step, step, 2 * step)
    # Sobel/8 on a step of 40 (mirrored border): g = 20 in columns 4 and 5, 0 elsewhere. Fused
    # doubles it: ratio 0.5, same orientation (|dA - dF| = 0 -> 1 after the pi/2 flip).
    q_g = 0.9999 / (1 + math.exp(-19 * 0.0))
    q_a = 0.9995 / (1 + math.exp(-22 * 0.5))
    q = math.sqrt(q_g * q_a)
    w_edge, w_flat = 20.0**1.5, 0.001
    n_edge, n_flat = 2 * 8, 8 * 10 - 2 * 8
    expected = n_edge * 2 * (1 - q) * w_edge / (2 * (n_edge * w_edge + n_flat * w_flat))
    assert got == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------------------------------------------------
# SSIM family
# --------------------------------------------------------------------------------------------


def _numpy_ssim_map(mx, my, vx, vy, cxy, c1, c2):
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))


def test_ssim_skimage_against_numpy_transcription():
    x, y = _rand_levels(16), _rand_levels(17)
    f = lambda z: scipy.ndimage.uniform_filter(z, 7)
    cov = 49 / 48
    mx, my = f(x), f(y)
    s = _numpy_ssim_map(
        mx,
        my,
        cov * (f(x * x) - mx**2),
        cov * (f(y * y) - my**2),
        cov * (f(x * y) - mx * my),
        (0.01 * 2) ** 2,
        (0.03 * 2) ** 2,
    )
    # 1e-8: the transcription filters uncentred squares and loses digits to cancellation
    got = _run(fm.ssim_skimage, x, y, data_range=2.0)
    assert got == pytest.approx(s[3:-3, 3:-3].mean(), rel=1e-8)
    assert _run(fm.ssim_skimage, x, x, data_range=255.0) == pytest.approx(1.0)


def test_ssim_matlab_against_numpy_transcription():
    x, y = _rand_levels(18), _rand_levels(19)
    win = fm.gaussian_window(11, 1.5)
    f = lambda z: scipy.ndimage.correlate(z, win, mode="nearest")  # replicate border, 'same'
    mx, my = f(x), f(y)
    s = _numpy_ssim_map(
        mx, my, f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my, 0.01**2, 0.03**2
    )
    assert _run(fm.ssim_matlab, x, y) == pytest.approx(s.mean(), rel=1e-9)
    assert _run(fm.ssim_matlab, x, x) == pytest.approx(1.0)


def _numpy_mef_ssim(seq, fused):
    """Window-by-window transcription of mef_ssim.m (K = 0.03, Gaussian 11, sigma 1.5)."""
    win = fm.gaussian_window(11, 1.5).ravel(order="F")
    s1, s2, s3 = seq.shape
    box = np.ones((11, 11)) / 121
    mu = np.stack([scipy.signal.correlate2d(seq[..., k], box, "valid") for k in range(s3)], -1)
    sq = np.stack([scipy.signal.correlate2d(seq[..., k] ** 2, box, "valid") for k in range(s3)], -1)
    ed = np.sqrt(np.maximum(121 * (sq - mu**2), 0)) + 0.001
    eps = np.finfo(float).eps
    q = np.zeros((s1 - 10, s2 - 10))
    for i in range(s1 - 10):
        for j in range(s2 - 10):
            vecs = seq[i : i + 11, j : j + 11].reshape(121, s3, order="F")
            den = sum(np.linalg.norm(vecs[:, k] - mu[i, j, k]) for k in range(s3))
            tot = vecs.sum(1)
            r = (np.linalg.norm(tot - tot.mean()) + eps) / (den + eps)
            r = 1 - eps if r > 1 else (eps if r < 0 else r)
            p = min(math.tan(math.pi / 2 * r), 10)
            w = (ed[i, j] / 11) ** p + eps
            w = w / w.sum()
            rb = sum(w[k] * (vecs[:, k] - mu[i, j, k]) / ed[i, j, k] for k in range(s3))
            if np.linalg.norm(rb) > 0:
                rb = rb / np.linalg.norm(rb) * ed[i, j].max()
            fv = fused[i : i + 11, j : j + 11].ravel(order="F")
            m1, m2 = win @ rb, win @ fv
            v1, v2 = win @ (rb - m1) ** 2, win @ (fv - m2) ** 2
            c12 = win @ ((rb - m1) * (fv - m2))
            c = (0.03 * 255) ** 2
            q[i, j] = (2 * c12 + c) / (v1 + v2 + c)
    return q.mean()


def _numpy_halve(x):
    """imfilter(x, ones(2)/4, 'symmetric', 'same') then (1:2:end, 1:2:end)."""
    p = np.pad(x, ((0, 1), (0, 1)), mode="symmetric")
    return ((p[:-1, :-1] + p[1:, :-1] + p[:-1, 1:] + p[1:, 1:]) / 4)[::2, ::2]


def test_mef_ssim_against_window_loop():
    a, b = _rand_levels(20, (20, 23)), _rand_levels(21, (20, 23))
    b[:12, :12] = 30.0  # a flat source window region
    f = np.clip(0.5 * (a + b) + 3, 0, 255)
    expected = _numpy_mef_ssim(np.stack([a, b], -1), f)
    assert _run(fm.mef_ssim, a, b, f) == pytest.approx(expected, rel=1e-10)


@pytest.mark.slow
def test_mef_ms_ssim_against_window_loop():
    a, b = _rand_levels(22, (45, 47)), _rand_levels(23, (45, 47))
    f = np.clip(0.7 * a + 0.3 * b, 0, 255)
    got = _run(fm.mef_ms_ssim, a, b, f)
    weights = np.array([0.0448, 0.2856, 0.3001]) / (0.0448 + 0.2856 + 0.3001)
    expected = 1.0
    for level, w in enumerate(weights):
        if level:
            a, b, f = _numpy_halve(a), _numpy_halve(b), _numpy_halve(f)
        expected *= _numpy_mef_ssim(np.stack([a, b], -1), f) ** w
    assert got == pytest.approx(expected, rel=1e-10)


# --------------------------------------------------------------------------------------------
# FMI
# --------------------------------------------------------------------------------------------


def _numpy_nfmi(a, f):
    """Transcription of one A-F block of analysis_fmi.m (windows already rescaled), plain Python
    floats in MATLAB's loop order."""
    n = 9
    sa = sum(a[3 * c] + a[3 * c + 1] + a[3 * c + 2] for c in range(3))  # sum(sum(.))
    sf = sum(f[3 * c] + f[3 * c + 1] + f[3 * c + 2] for c in range(3))
    ap, fp = [v / sa for v in a], [v / sf for v in f]
    ac, fc = [ap[0]], [fp[0]]
    for i in range(1, n):
        ac.append(ap[i] + ac[-1])
        fc.append(fp[i] + fc[-1])
    ma = functools.reduce(lambda s, v: s + v, ap) / n
    mf = functools.reduce(lambda s, v: s + v, fp) / n
    at, ft = [v - ma for v in ap], [v - mf for v in fp]
    s = functools.reduce(lambda acc, k: acc + at[k] * ft[k], range(1, n), at[0] * ft[0])
    if s == 0:
        c = 0.0
    else:
        saa = functools.reduce(lambda acc, v: acc + v * v, at[1:], at[0] * at[0])
        sff = functools.reduce(lambda acc, v: acc + v * v, ft[1:], ft[0] * ft[0])
        c = s / math.sqrt(saa * sff)
    ea = sum((i + 1) * ap[i] for i in range(n))
    e2a = sum((i + 1) ** 2 * ap[i] for i in range(n))
    ef = sum((i + 1) * fp[i] for i in range(n))
    e2f = sum((i + 1) ** 2 * fp[i] for i in range(n))
    asd, fsd = math.sqrt(max(e2a - ea**2, 0)), math.sqrt(max(e2f - ef**2, 0))
    upper = c >= 0
    bound = (
        (lambda x, y: 0.5 * (x + y - abs(x - y)))
        if upper
        else (lambda x, y: 0.5 * (x + y - 1 + abs(x + y - 1)))
    )
    if (upper and c == 0) or asd == 0 or fsd == 0:
        mix = 0.0
    else:
        cov = sum(bound(fc[i], ac[j]) - fc[i] * ac[j] for i in range(n) for j in range(n))
        mix = c / (cov / (fsd * asd))
    cdf = lambda i, j: bound(fc[i], ac[j]) if i >= 0 and j >= 0 else 0.0
    joint = 0.0
    for i in range(n):
        for j in range(n):
            mass = cdf(i, j) - cdf(i - 1, j) - cdf(i, j - 1) + cdf(i - 1, j - 1)
            p = mix * mass + (1 - mix) * fp[i] * ap[j]
            if p != 0:
                joint += -p * math.log2(abs(p))
    ha = -sum(v * math.log2(v) for v in ap if v != 0)
    hf = -sum(v * math.log2(v) for v in fp if v != 0)
    mi = ha + hf - joint
    return 0.0 if mi == 0 else 2 * mi / (ha + hf)


def _numpy_fmi(a, b, f):
    """analysis_fmi.m over all 3×3 windows (features already extracted)."""

    def rescale(v):
        return np.ones(9) if v.max() == v.min() else (v - v.min()) / (v.max() - v.min())

    vals = []
    for p in range(1, a.shape[0] - 1):
        for q in range(1, a.shape[1] - 1):
            sub = [x[p - 1 : p + 2, q - 1 : q + 2].ravel(order="F") for x in (a, b, f)]
            wa, wb, wf = sub
            if np.all(wa == wf):
                fa = 1.0
            else:
                wa, wf = rescale(wa), rescale(wf)
                fa = _numpy_nfmi(list(wa), list(wf))
            if np.all(wb == wf):
                fb = 1.0
            else:
                wb, wf = rescale(wb), rescale(wf)
                fb = _numpy_nfmi(list(wb), list(wf))
            vals.append((fa + fb) / 2)
    return float(np.mean(vals))


def _fmi_images():
    rng = np.random.default_rng(24)
    a = rng.integers(0, 6, (9, 10)).astype(float)
    b = rng.integers(0, 6, (9, 10)).astype(float)
    f = np.round(0.5 * (a + b))
    a[:4, :4] = 2.0  # flat windows: A flat with F not, A = F, both flat at other levels
    f[:3, :3] = 2.0
    b[5:, 6:] = 1.0
    f[5:, 6:] = 3.0
    return a, b, f


@pytest.mark.parametrize("feature", ["none", "dct"])
def test_fmi_against_window_loop(feature):
    a, b, f = _fmi_images()
    feat = (lambda x: scipy.fft.dctn(x, norm="ortho")) if feature == "dct" else (lambda x: x)
    expected = _numpy_fmi(feat(a), feat(b), feat(f))
    got = _run(fm.fmi, a, b, f, feature=feature)
    assert got == pytest.approx(expected, rel=1e-10)


def test_fmi_hand_cases():
    x = _fmi_images()[0]
    assert _run(fm.fmi, x, x, x) == 1.0  # every window equals the fused one
    # A and B constant 0, F constant 0.5: analysis_fmi.m gives 1.0000000000000104 in Octave
    # (rounding of the mean of nine 1/9 makes a zero correlation exactly 1), not 0
    zeros, half = np.zeros((5, 5)), np.full((5, 5), 0.5)
    assert _run(fm.fmi, zeros, zeros, half) == pytest.approx(1.0, abs=1e-12)


def test_sobel_edge_map_step():
    step = np.zeros((6, 10))
    step[:, 5:] = 1.0
    # bx is equal in columns 4 and 5; the tie goes to column 5 (b(c-1) <= b(c) > b(c+1))
    expected = np.zeros((6, 10), bool)
    expected[:, 5] = True
    np.testing.assert_array_equal(_jit(fm.sobel_edge_map)(*_j(step))[0], expected)


def test_dct2_matches_scipy():
    x = _rand_levels(25, (6, 9))
    got = _jit(fm._dct2)(*_j(x))[0]
    np.testing.assert_allclose(got, scipy.fft.dctn(x, norm="ortho"), atol=1e-10)


# --------------------------------------------------------------------------------------------
# Grey conversion and the public entry point
# --------------------------------------------------------------------------------------------


def test_grey_conversion_matlab_and_opencv():
    # (R, G, B) -> grey found with cv2.cvtColor(float32 BGR, COLOR_BGR2GRAY) + np.round
    # (opencv-python-headless 5.0): cases where float32 rounding of the sum decides the level
    opencv = {(48, 234, 235): 178, (98, 20, 197): 63, (203, 229, 170): 215, (134, 116, 3): 109}
    rgb = np.array(list(opencv), np.uint8)[None, :, None, :]  # (1, 4, 1, 3)
    got = fp.to_grey_levels(rgb, "opencv")[0, :, 0]
    np.testing.assert_array_equal(got, list(opencv.values()))
    coef = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])
    x = np.random.default_rng(26).integers(0, 256, (2, 5, 7, 3)).astype(np.uint8)
    expected = np.floor(x.astype(np.float64) @ coef + 0.5)
    np.testing.assert_array_equal(fp.to_grey_levels(x, "matlab"), expected)
    levels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    grey_rgb = np.repeat(levels[..., None], 3, axis=-1)
    for mode in ("matlab", "opencv"):
        np.testing.assert_array_equal(fp.to_grey_levels(grey_rgb, mode), levels)
        np.testing.assert_array_equal(fp.to_grey_levels(levels / 255.0, mode), levels)


def test_compute_fusion_metrics_api():
    rng = np.random.default_rng(27)
    ir = rng.integers(0, 256, (2, 48, 50), dtype=np.uint8)
    vi = rng.integers(0, 256, (2, 48, 50, 3), dtype=np.uint8)
    fused = vi.astype(np.float32) / 255.0  # float input is quantised back to the same levels
    names = ["PSNR", "EN", "CC"]
    out = fp.compute_fusion_metrics(ir, vi, fused, "cddfuse", names, compiler_options=FAST)
    assert list(out) == names and all(v.shape == (2,) for v in out.values())
    single = fp.compute_fusion_metrics(
        ir[1:], vi[1:], vi[1:], "cddfuse", names, compiler_options=FAST
    )
    for n in names:
        assert float(out[n][1]) == float(single[n][0])
    with pytest.raises(ValueError, match="no metric"):
        fp.compute_fusion_metrics(ir, vi, fused, "cddfuse", ["Nabf"])
    with pytest.raises(ValueError, match="unknown preset"):
        fp.compute_fusion_metrics(ir, vi, fused, "matlab2021")
    with pytest.raises(ValueError, match="shapes differ"):
        fp.compute_fusion_metrics(ir, vi[:, :40], fused, "cddfuse", names)


def test_cddfuse_vif_reports_nan_as_one():
    const = np.full((1, 64, 64), 7, np.uint8)
    other = np.random.default_rng(28).integers(0, 256, (1, 64, 64), dtype=np.uint8)
    out = fp.compute_fusion_metrics(const, const, other, "cddfuse", ["VIF"], compiler_options=FAST)
    assert float(out["VIF"][0]) == 2.0  # each NaN term becomes 1
    out = fp.compute_fusion_metrics(
        const, const, other, "matlab2023", ["VIF"], compiler_options=FAST
    )
    assert math.isnan(float(out["VIF"][0]))


# --------------------------------------------------------------------------------------------
# The sources' own output on real MSRS crops (see the module docstring)
# --------------------------------------------------------------------------------------------

CROPS = {"00004N": (272, 512), "00055D": (200, 260), "00032N": (176, 112)}

SOURCE_VALUES = {
    "matlab": {
        "EN": (6.319212486489346, 6.7190629526306322, 6.1414316903805366),
        "SF": (0.054082841184238284, 0.083563626454956602, 0.042118045787434118),
        "SD": (7.4895630505056836, 8.3902380031796486, 7.2375566707625856),
        "PSNR": (65.75879244542341, 59.744739125453385, 63.893912673185611),
        "MSE": (0.017266372909457896, 0.06896146013552476, 0.026527058403018059),
        "MI": (4.5801004553049935, 6.0887002631716953, 4.6071631952441781),
        "VIF": (0.68206154256204732, 1.1421740277403358, 0.99683279294320593),
        "AG": (4.8892633140640074, 7.477265387756189, 3.8299107503646073),
        "CC": (0.55320948350387023, 0.66630723982030016, 0.45168293445601326),
        "SCD": (1.7076556429933514, 1.1648809826959758, 1.9099067984314133),
        "Qabf": (0.76447581523641739, 0.77614885521262489, 0.81342192985797612),
        "Nabf": (0.16735321703751491, 0.15959468810058527, 0.18272920203491738),
        "SSIM": (0.97471535631361128, 0.98582503521542819, 0.99029726559624953),
        "MS_SSIM": (0.9310292665167742, 0.99612408722110946, 0.99072386936411339),
        "FMI_pixel": (0.90909783933019106, 0.85368076990868247, 0.93962288362072066),
        "FMI_dct": (0.24631933605541873, 0.34115647545560129, 0.24293148235515757),
    },
    "matlab2023": {
        "EN": (6.319212486489346, 6.7190629526306322, 6.1414316903805366),
        "SF": (13.791124501980759, 21.308724746013926, 10.7401016757957),
        "SD": (38.812963650156227, 72.294123622363827, 49.382711008695125),
        "PSNR": (65.75879244542341, 59.744739125453385, 63.893912673185611),
        "MSE": (0.017266372909457896, 0.06896146013552476, 0.026527058403018059),
        "MI": (4.5801004553049935, 6.0887002631716953, 4.6071631952441781),
        "VIF": (0.93591420616677978, 1.0432017728837391, 1.2567642860893504),
        "AG": (4.8892633140640074, 7.477265387756189, 3.8299107503646073),
        "CC": (0.55320948350387067, 0.66630723982029982, 0.45168293445601393),
        "SCD": (1.707655642993325, 1.1648809826959647, 1.9099067984314497),
        "Qabf": (0.76880322183468486, 0.78529171539522935, 0.82317886016945951),
        "Nabf": (0.0071382373090602344, 0.002307574677279507, 0.00069043592991717634),
        "MS_SSIM": (0.9310292665167742, 0.99612408722110946, 0.99072386936411339),
        "FMI_pixel": (0.90909783933019106, 0.85368076990868247, 0.93982966608556773),
        "FMI_dct": (0.24631933605541861, 0.34115647545560102, 0.24293148235515744),
    },
    "cddfuse": {
        "EN": (6.319212486489346, 6.719062952630632, 6.141431690380537),
        "SD": (38.81296157836914, 72.29412078857422, 49.38270950317383),
        "SF": (13.791125297546387, 21.308725357055664, 10.74010181427002),
        "AG": (4.752707481384277, 7.268427848815918, 3.722942352294922),
        "MI": (3.174683717276131, 4.195636980237808, 3.1934421791631413),
        "MSE": (1122.7459716796875, 4484.2177734375, 1724.922119140625),
        "PSNR": (16.881502151489258, 11.511143684387207, 14.979423522949219),
        "CC": (0.5532094836235046, 0.666307270526886, 0.451682984828949),
        "SCD": (1.707655668258667, 1.1650104522705078, 1.9099066257476807),
        "VIF": (0.9359142061667846, 1.0432018496492286, 1.2567642860893486),
        "Qabf": (0.7688032984733582, 0.7852926850318909, 0.8231788277626038),
        "SSIM": (0.9079105336717348, 1.0136573650972227, 0.9838482145549295),
    },
}

# CDDFuse computes in float32 (its images are float32): agreement is to its float32 rounding
SOURCE_RTOL = {"matlab": 1e-9, "matlab2023": 1e-9, "cddfuse": 1e-5}
# float32 runs flip exact ties that these metrics test on [0, 1] images (docs/metrics.md)
FLOAT32_TIE_SENSITIVE = {"matlab": {"Qabf", "Nabf", "FMI_pixel"}, "matlab2023": {"FMI_pixel"}}


@functools.cache
def _msrs_crops():
    def load(folder):
        stack = []
        for name, (r, c) in CROPS.items():
            img = np.asarray(Image.open(require(MSRS / folder / f"{name}.png")))
            stack.append(img[r : r + 64, c : c + 80])
        return np.stack(stack)

    return load("ir"), load("vi"), load("fused_seafusion")


def _groups(preset):
    return sorted({m.group for m in fp.PRESETS[preset].metrics.values()})


def _check_source(preset, names, **kwargs):
    out = fp.compute_fusion_metrics(*_msrs_crops(), preset, names, **kwargs)
    for n in names:
        np.testing.assert_allclose(
            out[n], SOURCE_VALUES[preset][n], rtol=SOURCE_RTOL[preset], err_msg=n
        )


@pytest.mark.parametrize(
    ("preset", "group"),
    [
        pytest.param(p, g, marks=[pytest.mark.slow] if p == "matlab2023" else [])
        for p in fp.PRESETS
        for g in _groups(p)
    ],
)
def test_presets_reproduce_their_source(preset, group):
    names = [n for n, m in fp.PRESETS[preset].metrics.items() if m.group == group]
    _check_source(preset, [n for n in names if n in SOURCE_VALUES[preset]], compiler_options=FAST)


def test_default_compilation_keeps_matlab_ties():
    """Qabf/Nabf of the 2022 code test exact ties; XLA's default CPU build fuses multiply-adds
    (FMA) unless the code prevents it, which the fast-compile tests above would not notice."""
    _check_source("matlab", ["Qabf", "Nabf"])


@pytest.mark.slow
@pytest.mark.parametrize("preset", list(fp.PRESETS))
def test_presets_reproduce_their_source_default_compilation(preset):
    _check_source(preset, list(SOURCE_VALUES[preset]))


@pytest.mark.slow
@pytest.mark.parametrize("preset", list(fp.PRESETS))
def test_presets_in_float32_within_1e3(preset):
    out = fp.compute_fusion_metrics(*_msrs_crops(), preset, precision="float32")
    for n, expected in SOURCE_VALUES[preset].items():
        if n not in FLOAT32_TIE_SENSITIVE.get(preset, ()):
            np.testing.assert_allclose(out[n], expected, rtol=1e-3, err_msg=n)
