"""Metric presets (the conventions of a source's evaluation code) and the public entry point.

A preset fixes how images become grey levels and, per metric, the image scale, constants and the
oddities of its source. ``compute_fusion_metrics`` applies one to batches of images, with one
jitted call per metric group. Presets:

* ``matlab``: Tang-Eval at commit 5d6c43a (2022), the code behind SuperFusion's and SeAFusion's
  tables (github.com/Linfeng-Tang/Evaluation-for-Image-Fusion, ``Evaluation/``);
* ``matlab2023``: the same repository at HEAD (2023);
* ``cddfuse``: ``utils/Evaluator.py`` of github.com/Zhaozixiang1228/MMIF-CDDFuse (fd8da1f).

What each convention is and why is in docs/metrics.md.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from superfusion_jax.evaluation import fusion_metrics as fm

Array = jax.Array
MetricFn = Callable[[Array, Array, Array], Array]

GROUPS = ("intensity", "similarity", "vif", "edges", "ssim", "fmi")
# The precisions the metrics are computed in (`compute_fusion_metrics(precision=...)`).
PRECISIONS = ("float64", "float32")


@dataclasses.dataclass(frozen=True)
class Metric:
    """One metric of a preset: ``fn(ir, vi, fused)`` on grey levels 0..255 (N, H, W) -> (N,);
    ``group`` names the jitted call that computes it."""

    group: str
    fn: MetricFn


@dataclasses.dataclass(frozen=True)
class FusionMetricPreset:
    """Conventions of one source: grey conversion (``'matlab'`` or ``'opencv'``) and its metrics."""

    name: str
    grey: str
    metrics: Mapping[str, Metric]


# --------------------------------------------------------------------------------------------
# Grey conversion
# --------------------------------------------------------------------------------------------

# MATLAB rgb2gray: first row of the inverse NTSC (YIQ) matrix, as MATLAB rounds it
_MATLAB_RGB2GRAY = (0.298936021293775, 0.587043074451121, 0.114020904255103)
# OpenCV COLOR_BGR2GRAY on float32 input: coefficients as float32
_OPENCV_R, _OPENCV_G, _OPENCV_B = (float(np.float32(c)) for c in (0.299, 0.587, 0.114))


def _rgb2gray_matlab(rgb: Array) -> Array:
    """MATLAB ``rgb2gray`` on uint8 RGB (…, 3) 0..255 float64 -> grey levels rounded half up."""
    terms = [fm.no_fma(rgb[..., i] * c) for i, c in enumerate(_MATLAB_RGB2GRAY)]
    return jnp.floor(terms[0] + terms[1] + terms[2] + 0.5)


def _f32_fma(x: Array, c: float, acc: Array) -> Array:
    """float32 fused multiply-add x*c + acc, exact in float64 for 8-bit x, then rounded once."""
    return (x * c + acc).astype(jnp.float32).astype(jnp.float64)


def _rgb2gray_opencv(rgb: Array) -> Array:
    """CDDFuse's ``image_read_cv2(path, 'GRAY')``: float32 ``cv2.cvtColor(BGR2GRAY)`` then
    ``np.round`` (half to even). OpenCV's SIMD path computes fma(R, cr, fma(B, cb, G*cg)) in
    float32 (checked equal to opencv-python 5.0 over all 2^24 RGB triplets)."""
    g = (rgb[..., 1] * _OPENCV_G).astype(jnp.float32).astype(jnp.float64)
    y = _f32_fma(rgb[..., 0], _OPENCV_R, _f32_fma(rgb[..., 2], _OPENCV_B, g))
    return jnp.round(y)


_GREY = {"matlab": _rgb2gray_matlab, "opencv": _rgb2gray_opencv}


def to_grey_levels(images: Array | np.ndarray, grey: str) -> Array:
    """Images as a source reads them: grey levels 0..255 (integer-valued float64), (N, H, W).

    ``images``: uint8 (N, H, W), (N, H, W, 1) or RGB (N, H, W, 3); or float in [0, 1], first
    quantised to 8 bits as a PNG writer would (round half to even), since both sources read
    8-bit files. RGB is converted with ``grey`` = ``'matlab'`` (``rgb2gray``) or ``'opencv'``.
    Call under ``jax.enable_x64(True)`` for exact rounding.
    """
    x = jnp.asarray(images)
    if jnp.issubdtype(x.dtype, jnp.floating):
        x = jnp.clip(jnp.round(x.astype(jnp.float64) * 255.0), 0.0, 255.0)
    elif x.dtype == jnp.uint8:
        x = x.astype(jnp.float64)
    else:
        raise ValueError(f"images must be uint8 or float in [0, 1], got {x.dtype}")
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim == 4 and x.shape[-1] == 3:
        x = _GREY[grey](x)
    if x.ndim != 3:
        raise ValueError(f"images must be (N, H, W), (N, H, W, 1) or (N, H, W, 3), got {x.shape}")
    return x


# --------------------------------------------------------------------------------------------
# Building blocks of the presets
# --------------------------------------------------------------------------------------------


_IM2DOUBLE = np.arange(256) / 255.0


def _unit(x: Array) -> Array:
    """Grey levels 0..255 -> [0, 1] exactly as MATLAB ``im2double`` of uint8 (correctly rounded
    i/255). A table, because XLA turns ``x / 255`` into ``x * (1/255)``, which differs in the
    last bit for 24 of the 256 levels and so moves exact ties in Qabf/Nabf."""
    return jnp.asarray(_IM2DOUBLE, x.dtype)[x.astype(jnp.int32)]


def _fused_only(
    fn: Callable[[Array], Array], scale: Callable[[Array], Array] = lambda x: x
) -> MetricFn:
    """Metric of the fused image alone, on ``scale(fused)``."""
    return lambda ir, vi, fused: fn(scale(fused))


def _three(fn: MetricFn, scale: Callable[[Array], Array] = lambda x: x) -> MetricFn:
    """Metric of (ir, vi, fused), all three passed through ``scale``."""
    return lambda ir, vi, fused: fn(scale(ir), scale(vi), scale(fused))


def _sum_over_sources(fn: Callable[[Array, Array], Array]) -> MetricFn:
    """fn(ir, fused) + fn(vi, fused), VIF's and SSIM's two-source form, as one batched call."""

    def metric(ir: Array, vi: Array, fused: Array) -> Array:
        v = fn(jnp.concatenate([ir, vi]), jnp.concatenate([fused, fused]))
        return v[: ir.shape[0]] + v[ir.shape[0] :]

    return metric


def _nan_to_one(fn: Callable[[Array, Array], Array]) -> Callable[[Array, Array], Array]:
    """CDDFuse-Evaluator ``compare_viff``: a NaN VIF (zero denominator) is reported as 1."""

    def wrapped(ref: Array, dist: Array) -> Array:
        v = fn(ref, dist)
        return jnp.where(jnp.isnan(v), 1.0, v)

    return wrapped


def _nabf_2023_argument_order(ir: Array, vi: Array, fused: Array) -> Array:
    """2023 Tang-Eval calls ``analysis_nabf(img1, img2, img_f)`` although the function expects
    (F, A, B): the infrared image plays the fused one, and the fused image a source."""
    return fm.nabf(vi, fused, ir)


_ssim_matlab_pair = _sum_over_sources(lambda src, fused: fm.ssim_matlab(fused, src))


def _mean_ssim_matlab(ir: Array, vi: Array, fused: Array) -> Array:
    """2023 Tang-Eval SSIM: 0.5 ssim(F, A) + 0.5 ssim(F, B), MATLAB ``ssim`` on 0..255 doubles
    (its DynamicRange is then 1)."""
    return 0.5 * _ssim_matlab_pair(ir, vi, fused)


def _fmi(feature: str, scale: Callable[[Array], Array]) -> MetricFn:
    """FMI with ``feature`` of the three images passed through ``scale``."""
    return _three(functools.partial(fm.fmi, feature=feature), scale)


def _common_matlab(scale: Callable[[Array], Array]) -> dict[str, Metric]:
    """Metrics whose call is the same in the 2022 and 2023 Tang-Eval code, bar the image scale."""
    return {
        "EN": Metric("intensity", _fused_only(fm.entropy)),
        "AG": Metric("intensity", _fused_only(fm.average_gradient)),
        "MI": Metric("similarity", functools.partial(fm.mutual_information, merge_top_levels=True)),
        # MSE and PSNR divide by 255 in both versions (2023 inside the functions); peak stays 255
        "MSE": Metric("similarity", _three(fm.mean_squared_error, _unit)),
        "PSNR": Metric("similarity", _three(fm.psnr, _unit)),
        "CC": Metric("similarity", _three(fm.correlation_coefficient, scale)),
        "SCD": Metric("similarity", _three(fm.sum_of_correlations_of_differences, scale)),
        "Qabf": Metric("edges", _three(fm.qabf, scale)),
        "MS_SSIM": Metric("ssim", fm.mef_ms_ssim),
        "FMI_pixel": Metric("fmi", _fmi("edge", scale)),
        "FMI_dct": Metric("fmi", _fmi("dct", scale)),
    }


def _matlab_2022() -> FusionMetricPreset:
    uint8_vif = functools.partial(fm.vif, uint8_first_scale=True)
    uint8_sd = functools.partial(fm.standard_deviation, uint8_saturation=True)
    metrics = _common_matlab(_unit) | {
        "SF": Metric("intensity", _fused_only(fm.spatial_frequency, _unit)),
        "SD": Metric("intensity", _fused_only(uint8_sd)),
        "VIF": Metric("vif", _sum_over_sources(uint8_vif)),
        "Nabf": Metric("edges", _three(fm.nabf, _unit)),
        "SSIM": Metric("ssim", fm.mef_ssim),
    }
    return FusionMetricPreset("matlab", "matlab", metrics)


def _matlab_2023() -> FusionMetricPreset:
    metrics = _common_matlab(lambda x: x) | {
        "SF": Metric("intensity", _fused_only(fm.spatial_frequency)),
        "SD": Metric("intensity", _fused_only(fm.standard_deviation)),
        "VIF": Metric("vif", _sum_over_sources(fm.vif)),
        "Nabf": Metric("edges", _nabf_2023_argument_order),
        "SSIM": Metric("ssim", _mean_ssim_matlab),
    }
    return FusionMetricPreset("matlab2023", "matlab", metrics)


def _cddfuse() -> FusionMetricPreset:
    ssim2 = functools.partial(fm.ssim_skimage, data_range=2.0)
    metrics = {
        "EN": Metric("intensity", _fused_only(fm.entropy)),
        "SD": Metric("intensity", _fused_only(fm.standard_deviation)),
        "SF": Metric("intensity", _fused_only(fm.spatial_frequency)),
        "AG": Metric(
            "intensity",
            _fused_only(functools.partial(fm.average_gradient, interior_normalisation=False)),
        ),
        "MI": Metric("similarity", functools.partial(fm.mutual_information, log_base=math.e)),
        "MSE": Metric("similarity", fm.mean_squared_error),
        "PSNR": Metric("similarity", functools.partial(fm.psnr, peak=None)),
        "CC": Metric("similarity", fm.correlation_coefficient),
        "SCD": Metric("similarity", fm.sum_of_correlations_of_differences),
        "VIF": Metric("vif", _sum_over_sources(_nan_to_one(fm.vif))),
        "Qabf": Metric("edges", fm.qabf),
        "SSIM": Metric("ssim", _sum_over_sources(lambda src, f: ssim2(f, src))),
    }
    return FusionMetricPreset("cddfuse", "opencv", metrics)


PRESETS: dict[str, FusionMetricPreset] = {
    p.name: p for p in (_matlab_2022(), _matlab_2023(), _cddfuse())
}


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


@functools.cache
def _group_fn(
    preset: str, names: tuple[str, ...], options: tuple[tuple[str, Any], ...]
) -> Callable[[Array, Array, Array], dict]:
    """One jitted function computing the metrics ``names`` (all of one group) of ``preset``."""
    metrics = PRESETS[preset].metrics

    def run(ir: Array, vi: Array, fused: Array) -> dict[str, Array]:
        return {n: metrics[n].fn(ir, vi, fused) for n in names}

    return jax.jit(run, compiler_options=dict(options) or None)


def _resolve(preset: str | FusionMetricPreset) -> FusionMetricPreset:
    if isinstance(preset, FusionMetricPreset):
        if PRESETS.get(preset.name) is not preset:
            raise ValueError(f"unregistered preset object {preset.name!r}; add it to PRESETS")
        return preset
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
    return PRESETS[preset]


def compute_fusion_metrics(
    ir: Array | np.ndarray,
    vi: Array | np.ndarray,
    fused: Array | np.ndarray,
    preset: str | FusionMetricPreset = "matlab",
    metrics: Sequence[str] | None = None,
    *,
    precision: str = "float64",
    compiler_options: Mapping[str, Any] | None = None,
) -> dict[str, Array]:
    """Fusion metrics of ``fused`` against the sources ``ir`` and ``vi``, per image.

    Args:
      ir, vi, fused: uint8 or float in [0, 1], each (N, H, W), (N, H, W, 1) or (N, H, W, 3);
        converted to grey levels with the preset's convention (:func:`to_grey_levels`).
      preset: ``'matlab'`` (2022 code of the SuperFusion tables), ``'matlab2023'`` or
        ``'cddfuse'``, or an object of :data:`PRESETS`.
      metrics: names to compute (default: all the preset defines, see ``PRESETS[p].metrics``).
      precision: ``'float64'`` (computed under ``jax.enable_x64``; reproduces the sources) or
        ``'float32'`` (faster, see docs/metrics.md for its deviations).
      compiler_options: XLA options for the jitted groups. On CPU,
        ``{'xla_backend_optimization_level': 0}`` compiles ~4× faster and runs up to ~10× slower:
        worth it for a few small images, not for a data set.

    Returns:
      {name: array (N,)} in the order of ``metrics``, dtype of ``precision``.
    """
    p = _resolve(preset)
    names = list(p.metrics) if metrics is None else list(metrics)
    unknown = [n for n in names if n not in p.metrics]
    if unknown:
        raise ValueError(f"preset {p.name!r} has no metric {unknown}; it has {list(p.metrics)}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be 'float64' or 'float32', got {precision!r}")
    dtype = jnp.float64 if precision == "float64" else jnp.float32
    with jax.enable_x64(True):
        grey = [to_grey_levels(x, p.grey) for x in (ir, vi, fused)]
        if not grey[0].shape == grey[1].shape == grey[2].shape:
            raise ValueError(f"shapes differ: {[g.shape for g in grey]}")
        grey = [g.astype(dtype) for g in grey]
    out: dict[str, Array] = {}
    with jax.enable_x64(precision == "float64"):
        for group in GROUPS:
            members = tuple(n for n in names if p.metrics[n].group == group)
            if members:
                options = tuple(sorted((compiler_options or {}).items()))
                out.update(_group_fn(p.name, members, options)(*grey))
    return {n: out[n] for n in names}
