"""Registration metrics: end-point error by composition, photometric error, field quality.

Conventions (shared/DATA.md):
- a registration of ir_warp onto vi is a field g, (N, H, W, 2) in PIXELS, x (column) then y
  (row): for each output pixel p, the position g(p) in ir_warp's frame it is sampled from, so
  ir_reg = sample(ir_warp, g). Our network's `disp` (normalised units, on the variant's base
  grid) becomes g with :func:`sampling_positions`; the identity field is g(p) = p.
- the ground truth is src, (N, F_h, F_w, 2) pixels: for each pixel q of ir_warp's frame, the
  position in the aligned ir it was sampled from (`io.ground_truth.read_flow_mat` for the MSRS
  test set, `training.held_out.make_held_out_set` for training's held-out pairs).

End-point error (EPE): g is right where src(g(p)) = p, so EPE(p) = |src(g(p)) - p| (Euclidean,
pixels); src is interpolated bilinearly at g(p), positions outside the frame clamped to its edge.
No inverse field is needed (compose, then compare). The identity field's EPE |src(p) - p| is
the size of the misalignment itself, the baseline to beat. The summary per image follows the
optical-flow benchmarks (Baker et al., "A database and evaluation methodology for optical flow",
IJCV 2011: average end-point error; Butler et al., Sintel, ECCV 2012: s0-10 style thresholds):
mean, median and the percentage of pixels with EPE under 1, 3 and 5 px. Some pixels of the
aligned frame are the source of no pixel of ir_warp (the warp moved them out of its frame, about
4 % on the MSRS test set): no registration can place them, and even the exact inverse of the
ground truth scores 0.38 px mean over all pixels there. `epe_mean_covered_px` is the mean over
the pixels that are a source (`covered_pixels`).

Photometric error of the registered infrared image against the aligned one, on grey
intensities (channel mean) in [0, 1]: MSE; NCC, the global zero-mean normalised
cross-correlation; MI in bits (Viola & Wells, IJCV 1997), on 256 grey levels, computed by
`fusion_metrics.mutual_information` (Qu et al. 2002's histograms, no merging of levels).

Field quality of p -> g(p), with derivatives by central differences in the interior and
one-sided differences on the border rows/columns (`jnp.gradient`, as numpy.gradient):
- folding: percentage of pixels whose Jacobian determinant det(dg/dp) <= 0, where the field
  folds over or collapses (Ashburner, NeuroImage 2007; the usual diffeomorphism check of
  deformable registration, e.g. VoxelMorph, Dalca et al., MICCAI 2018);
- roughness: mean over pixels of the Frobenius norm of the displacement's spatial gradient,
  |grad u|_F with u(p) = g(p) - p, in px/px. It is 0 for any translation and grows with how fast
  the displacement changes, whatever its size, so it separates a smooth field from a noisy one of
  the same EPE; it is the first-order term that diffusion regularisers penalise (squared).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from superfusion_jax.evaluation.fusion_metrics import mutual_information
from superfusion_jax.ops.displacement import base_grid_pixels, disp_to_pixels

Array = jax.Array

EPE_THRESHOLDS_PX = (1, 3, 5)

# Names of `score_registration`'s outputs, in table order, and which are better when lower.
METRIC_NAMES = (
    "epe_mean_px",
    "epe_mean_covered_px",
    "epe_median_px",
    *(f"epe_under_{t}px_pct" for t in EPE_THRESHOLDS_PX),
    "mse",
    "ncc",
    "mi_bits",
    "folding_pct",
    "roughness",
)
LOWER_IS_BETTER = frozenset(
    {"epe_mean_px", "epe_mean_covered_px", "epe_median_px", "mse", "folding_pct", "roughness"}
)


def sampling_positions(disp: Array, align_corners_grid: bool) -> Array:
    """Normalised displacement (N, H, W, 2), on the base grid of `align_corners_grid` (the
    variant's `align_corners_base_grid`) -> sampling positions g (N, H, W, 2), pixels, x then y."""
    h, w = disp.shape[-3], disp.shape[-2]
    return base_grid_pixels(h, w) + disp_to_pixels(disp, align_corners_grid)


def _bilinear_clamped(field: Array, rows: Array, cols: Array) -> Array:
    """Bilinear interpolation of one (F_h, F_w, 2) field at (H, W) positions (clamped first)."""
    f_h, f_w = field.shape[:2]
    rows = jnp.clip(rows, 0.0, f_h - 1.0)
    cols = jnp.clip(cols, 0.0, f_w - 1.0)
    taps = lambda ch: jax.scipy.ndimage.map_coordinates(ch, [rows, cols], order=1)
    return jnp.stack([taps(field[..., 0]), taps(field[..., 1])], axis=-1)


@functools.partial(jax.jit, static_argnames=("offset",))
def composition_error(
    positions_px: Array, source_px: Array, offset: tuple[int, int] = (0, 0)
) -> Array:
    """Per-pixel end-point error |src(g(p)) - p| of a registration field (module docstring).

    Args:
      positions_px: g, (N, H, W, 2) sampling positions in ir_warp's frame, pixels, x then y.
      source_px: src, (N, F_h, F_w, 2) ground-truth source positions, pixels, x then y.
      offset: (x, y) of output pixel (0, 0) in the frame (a crop's top-left corner; (0, 0)
        when the output is the whole frame). g and p are both in frame pixels.

    Returns:
      (N, H, W) end-point errors, pixels.
    """
    h, w = positions_px.shape[1:3]
    targets = base_grid_pixels(h, w) + jnp.asarray(offset, jnp.float32)
    composed = jax.vmap(_bilinear_clamped)(source_px, positions_px[..., 1], positions_px[..., 0])
    return jnp.linalg.norm(composed - targets, axis=-1)


@functools.partial(jax.jit, static_argnames=("offset", "align_corners_grid"))
def end_point_error(
    disp: Array, source_px: Array, offset: tuple[int, int], align_corners_grid: bool
) -> Array:
    """Per-pixel end-point error (pixels, (N, H, W)) of a normalised displacement.

    disp: (N, H, W, 2) ir2vis displacement, normalised units of the output (crop) on the base
    grid given by `align_corners_grid`; zeros with `align_corners_grid=False` is the identity
    field. source_px: (N, F_h, F_w, 2) ground-truth source positions, frame pixels, x then y;
    offset: (x, y) of the crop in the frame. See :func:`composition_error`.
    """
    positions = sampling_positions(disp, align_corners_grid) + jnp.asarray(offset, jnp.float32)
    return composition_error(positions, source_px, offset)


@jax.jit
def covered_pixels(source_px: Array) -> Array:
    """(N, H, W) 1.0 at the pixels of the aligned frame that are the source of some pixel of the
    warped frame: within one pixel of a ground-truth source position (each source marks the
    four pixels around it), else 0.0. source_px: (N, H, W, 2) pixels, x then y."""
    n, h, w = source_px.shape[:3]

    def one(src: Array) -> Array:
        marks = jnp.zeros((h, w))
        for col in (jnp.floor(src[..., 0]), jnp.ceil(src[..., 0])):
            for row in (jnp.floor(src[..., 1]), jnp.ceil(src[..., 1])):
                inside = (col >= 0) & (col <= w - 1) & (row >= 0) & (row <= h - 1)
                r = jnp.clip(row, 0, h - 1).astype(jnp.int32)
                c = jnp.clip(col, 0, w - 1).astype(jnp.int32)
                marks = marks.at[r, c].max(inside.astype(marks.dtype))
        return marks

    return jax.vmap(one)(source_px)


@jax.jit
def summarise_epe(epe: Array) -> dict[str, Array]:
    """Per-image summary of end-point errors (N, H, W) pixels -> {name: (N,)}: `epe_mean_px`,
    `epe_median_px` (pixels) and `epe_under_{1,3,5}px_pct` (percent of pixels with EPE < t)."""
    flat = epe.reshape(epe.shape[0], -1)
    out = {"epe_mean_px": flat.mean(axis=1), "epe_median_px": jnp.median(flat, axis=1)}
    for t in EPE_THRESHOLDS_PX:
        out[f"epe_under_{t}px_pct"] = 100.0 * jnp.mean(flat < t, axis=1)
    return out


def _grey(images: Array) -> Array:
    """(N, H, W, C) or (N, H, W) intensities -> (N, H, W) channel mean."""
    return images.mean(axis=-1) if images.ndim == 4 else images


@jax.jit
def photometric_errors(registered: Array, reference: Array) -> dict[str, Array]:
    """Photometric agreement of the registered infrared image with the aligned one.

    Args:
      registered, reference: (N, H, W, C) or (N, H, W) intensities in [0, 1]; colour channels
        are averaged to grey.

    Returns:
      {'mse': mean squared difference, intensity^2 in [0, 1]; 'ncc': global zero-mean normalised
      cross-correlation in [-1, 1] (NaN if either image is constant); 'mi_bits': mutual
      information in bits on 256 levels round(255 x)}, each (N,).
    """
    x, y = _grey(registered), _grey(reference)
    mse = jnp.mean((x - y) ** 2, axis=(1, 2))
    xc = x - x.mean(axis=(1, 2), keepdims=True)
    yc = y - y.mean(axis=(1, 2), keepdims=True)
    ncc = jnp.sum(xc * yc, axis=(1, 2)) / jnp.sqrt(
        jnp.sum(xc**2, axis=(1, 2)) * jnp.sum(yc**2, axis=(1, 2))
    )
    levels = [255.0 * jnp.clip(v, 0.0, 1.0) for v in (y, x)]
    # MI(R, X) + MI(R, X) from the fusion metric's histograms (XLA computes the term once).
    mi = 0.5 * mutual_information(levels[0], levels[0], levels[1])
    return {"mse": mse, "ncc": ncc, "mi_bits": mi}


def _position_gradient(positions_px: Array) -> Array:
    """dg/dp of (N, H, W, 2) positions: (N, H, W, 2, 2), [..., i, j] = d g_i / d p_j with
    (x, y) order on both axes; central differences inside, one-sided on the border."""
    d_dy, d_dx = jnp.gradient(positions_px, axis=(1, 2))
    return jnp.stack([d_dx, d_dy], axis=-1)


@jax.jit
def jacobian_determinant(positions_px: Array) -> Array:
    """det(dg/dp) of a field (N, H, W, 2) in pixels -> (N, H, W), px^2/px^2 (1 for the
    identity, <= 0 where the field folds); derivatives as in :func:`field_quality`."""
    j = _position_gradient(positions_px)
    return j[..., 0, 0] * j[..., 1, 1] - j[..., 0, 1] * j[..., 1, 0]


@jax.jit
def field_quality(positions_px: Array) -> dict[str, Array]:
    """Folding and roughness of a registration field g, (N, H, W, 2) pixels, x then y.

    Returns {'folding_pct': percent of pixels with det(dg/dp) <= 0; 'roughness': mean over
    pixels of |grad u|_F, u = g - p, px/px}, each (N,). Derivatives: central differences in
    the interior, one-sided at the border rows/columns (numpy.gradient's scheme).
    """
    det = jacobian_determinant(positions_px)
    grad_u = _position_gradient(positions_px) - jnp.eye(2, dtype=positions_px.dtype)
    rough = jnp.sqrt(jnp.sum(grad_u**2, axis=(-2, -1)))
    return {
        "folding_pct": 100.0 * jnp.mean(det <= 0, axis=(1, 2)),
        "roughness": rough.mean(axis=(1, 2)),
    }


@jax.jit
def _score_registration(
    positions_px: Array, source_px: Array, registered: Array, reference: Array
) -> dict[str, Array]:
    epe = composition_error(positions_px, source_px)
    out = summarise_epe(epe)
    covered = covered_pixels(source_px)
    out["epe_mean_covered_px"] = jnp.sum(epe * covered, axis=(1, 2)) / jnp.maximum(
        jnp.sum(covered, axis=(1, 2)), 1.0
    )
    out |= photometric_errors(registered, reference)
    return out | field_quality(positions_px)


def score_registration(
    positions_px: Array, source_px: Array, registered: Array, reference: Array
) -> dict[str, Array]:
    """All registration metrics of one batch, {name: (N,)} in the order of `METRIC_NAMES`
    (one jitted call).

    Args:
      positions_px: g, (N, H, W, 2) sampling positions in ir_warp, pixels (output = whole frame).
      source_px: (N, H, W, 2) ground-truth source positions, pixels.
      registered: (N, H, W, C) ir_warp sampled at g, intensities in [0, 1].
      reference: (N, H, W, C) the aligned infrared image, intensities in [0, 1].
    """
    out = _score_registration(positions_px, source_px, registered, reference)
    return {name: out[name] for name in METRIC_NAMES}  # jit returns dicts in key order
