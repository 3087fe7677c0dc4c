"""Heavier misalignment than the release's test protocol, to stress a registration method.

About twice the release's `randflow(7, 0.07, 15)` of the MSRS test set: a rotation of up to
`max_angle_deg` and a scale in `scale_range` about the image centre, a translation of up to
`max_translation` of each side, plus a smooth elastic field (`data.misalign.elastic_field`: noise
blurred six times by a Gaussian of sigma 15 px) scaled to at most `max_elastic_px`.
`make_pair` returns the warped infrared image and its ground truth in the layout
`io.ground_truth.read_flow_mat` gives: for each pixel of the warped image, the position in the
aligned image it shows (pixels, x then y), the `source_px` of `evaluation.registration_metrics`.

`synthetic_infrared` makes a stand-in infrared image from a visible one: the same scene in a
different modality with an exact alignment, which separates a method's own error from the
misalignment a real pair's two cameras leave (benchmarks/registration.py, set msrs-synthetic).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from superfusion_jax.data.misalign import elastic_field
from superfusion_jax.ops.color import LUMA_WEIGHTS
from superfusion_jax.ops.warp import warp
from superfusion_jax.registration import geometry
from superfusion_jax.registration.methods import positions_to_disp
from superfusion_jax.registration.search import similarity_matrix


@dataclasses.dataclass(frozen=True)
class StressMisalignment:
    """Ranges of the drawn deformation (uniform draws); pixels and degrees."""

    max_angle_deg: float = 15.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    max_translation: float = 0.12
    max_elastic_px: float = 4.0


def source_positions(
    key: jax.Array, shape: tuple[int, int], spec: StressMisalignment
) -> np.ndarray:
    """Draw one deformation of an (H, W) frame: (H, W, 2) source positions, pixels, float32."""
    k_angle, k_scale, k_shift, k_noise = jax.random.split(key, 4)
    angle = jax.random.uniform(k_angle, (), minval=-1.0, maxval=1.0) * spec.max_angle_deg
    scale = jax.random.uniform(k_scale, (), minval=spec.scale_range[0], maxval=spec.scale_range[1])
    height, width = shape
    _, half = geometry.centre_and_scale(shape)
    shift_px = jax.random.uniform(k_shift, (2,), minval=-1.0, maxval=1.0) * spec.max_translation
    shift_px = shift_px * jnp.asarray([width, height], jnp.float32)
    matrix = similarity_matrix(angle, scale).at[:2, 2].set(shift_px / half)
    points = geometry.level_points(shape, shape)
    noise = jax.random.uniform(k_noise, (height, width, 2), minval=-1.0, maxval=1.0)
    elastic = elastic_field(noise)
    elastic = elastic / jnp.max(jnp.linalg.norm(elastic, axis=-1)) * spec.max_elastic_px
    return np.asarray(geometry.transform_points(matrix, points, shape) + elastic, np.float32)


def warp_image(image: np.ndarray, source_px: np.ndarray) -> np.ndarray:
    """Sample an (H, W, C) image at source positions (H, W, 2) as the release made its test
    pairs: bilinear, zero outside (`ops.warp.warp` on the pixel-centre grid)."""
    disp = positions_to_disp(jnp.asarray(source_px)[None], align_corners_grid=False)
    return np.asarray(warp(jnp.asarray(image)[None], disp, align_corners_grid=False)[0])


def make_pair(key: jax.Array, ir: np.ndarray, spec: StressMisalignment):
    """(ir_warp (H, W, C), source_px (H, W, 2)) for an aligned infrared image (H, W, C)."""
    source = source_positions(key, ir.shape[:2], spec)
    return warp_image(ir, source), source


def synthetic_infrared(
    visible: np.ndarray,
    seed: int,
    gamma: float = 0.7,
    blur_sigma: float = 1.5,
    noise_std: float = 0.02,
) -> np.ndarray:
    """A stand-in infrared image of a visible one's scene, aligned exactly.

    visible: (H, W, 3) RGB in [0, 1]. Its luminance Y (`ops.color.rgb_to_ycbcr`'s) becomes
    1 - Y**gamma (contrast inverted and bent, so no linear intensity map relates the two),
    blurred by a Gaussian of std `blur_sigma` px over 2 round(3 sigma) + 1 taps with the edge
    pixels repeated (`ops.filters.gaussian_blur`'s 'replicate'; infrared optics are softer;
    0: none), plus Gaussian noise of std `noise_std` (seeded), clipped to [0, 1]. Returns
    (H, W, 3) grey RGB float32, as infrared images are read. NumPy and SciPy on the host: a
    training source calls it for images of every size, where a jitted blur would compile once
    per size.
    """
    rgb = np.asarray(visible, np.float32)
    luminance = np.clip(rgb @ np.asarray(LUMA_WEIGHTS, np.float32), 0.0, 1.0)
    blurred = 1.0 - luminance**gamma
    if blur_sigma > 0:
        radius = int(round(3 * blur_sigma))
        blurred = ndimage.gaussian_filter(blurred, blur_sigma, mode="nearest", radius=radius)
    noise = np.random.default_rng(seed).normal(0.0, noise_std, blurred.shape)
    grey = np.clip(blurred + noise, 0.0, 1.0).astype(np.float32)
    return np.repeat(grey[..., None], 3, axis=-1)
