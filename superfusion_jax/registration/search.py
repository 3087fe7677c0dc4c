"""The global start: a grid of rotations and scales x every translation at once by FFT.

For each (angle, scale) of the grid, the moving image (at a coarse pyramid level) is rotated and
scaled about its centre, its features are computed, and the similarity's mean over the overlap
is evaluated for every integer translation by FFT correlation of the terms of its `expansion`
(Cross-Sim-NGF's approach, MIDA-group/cross_sim_ngf; globalign does the same for mutual
information), divided by the overlap's area. Translations are limited to `max_shift` of each
side and to overlaps of at least `min_overlap` of the frame, which keeps the search off the
false optima of small overlaps. The best translation of each grid point gives one candidate
transform; the `top_k` best candidates go on to gradient refinement (`parametric`).

The search also says how clearly its best match stands out: the prominence, (best - mean) / std
of the scores of every (angle, scale, translation) searched. A pair whose content fixes one
alignment has a peak many standard deviations above the rest; one whose best match is one of
many near-equal ones (smoke hiding the visible scene, a field without texture) has not, and its
result may be a wrong alignment that scores as well as the right one.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from superfusion_jax.registration import geometry

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """angles_deg, scales: the grid; factor: pyramid level; max_shift: largest translation
    searched, as a fraction of each side; min_overlap: smallest overlap accepted, as a fraction
    of the frame; top_k: candidates kept for refinement; min_prominence: the prominence below
    which a result is reported as uncertain (on the real MSRS and stress pairs, the search's
    three lost results had 2.9-3.3, two right but ambiguous ones 2.8 and 3.2, the 65 others
    3.98 or more: docs/registration.md)."""

    angles_deg: tuple[float, ...] = tuple(float(a) for a in range(-16, 17, 2))
    scales: tuple[float, ...] = (0.9, 1.0, 1.1)
    factor: int = 4
    max_shift: float = 0.2
    min_overlap: float = 0.5
    top_k: int = 4
    min_prominence: float = 3.5


def similarity_matrix(angle_deg: Array, scale: Array) -> Array:
    """(3, 3) u-space matrix of a rotation by angle_deg (degrees, x toward y) and a scale
    about the image centre."""
    a = jnp.deg2rad(angle_deg)
    c, s = scale * jnp.cos(a), scale * jnp.sin(a)
    zero, one = jnp.zeros_like(a), jnp.ones_like(a)
    return jnp.stack(
        [jnp.stack([c, -s, zero]), jnp.stack([s, c, zero]), jnp.stack([zero, zero, one])]
    )


def _correlate(a: Array, b: Array, shape: tuple[int, int]) -> Array:
    """S(t) = sum_p a(p) b(p + t) for every shift t, (h, w, C) maps zero-padded to `shape`
    (>= twice the map), summed over channels; t = index (negative shifts wrap to the end)."""
    fa = jnp.fft.rfft2(a, s=shape, axes=(0, 1))
    fb = jnp.fft.rfft2(b, s=shape, axes=(0, 1))
    return jnp.fft.irfft2(jnp.sum(jnp.conj(fa) * fb, axis=-1), s=shape, axes=(0, 1))


def _shift_table(n: int, padded: int) -> Array:
    """The shift t held at each index 0..padded-1 of a correlation (negative ones at the end)."""
    index = jnp.arange(padded)
    return jnp.where(index < padded - n + 1, index, index - padded).astype(jnp.float32)


def translation_scores(
    similarity,
    fixed_features: Array,
    fixed_mask: Array,
    moving_image: Array,
    moving_mask: Array,
    settings: SearchSettings,
) -> tuple[Array, Array]:
    """Best integer translation of one rotated moving image.

    fixed_features: (h, w, C) of the fixed level image; fixed_mask, moving_mask: (h, w) 1
    where each holds image content; moving_image: (h, w) the rotated moving level image.
    Returns (score, t, moments) with t (2,) the level-pixel shift (x, y) such that fixed(p)
    matches moving_image(p + t), and moments (3,) the count, sum and sum of squares of the
    scores of every translation searched (for the prominence).
    """
    h, w = moving_image.shape
    moving_features = similarity.features(similarity.prepare(moving_image))
    a, b = similarity.expansion(fixed_features, moving_features)
    a = a * fixed_mask[..., None]
    b = b * moving_mask[..., None]
    padded = (2 * h, 2 * w)
    total = _correlate(a, b, padded)
    overlap = _correlate(fixed_mask[..., None], moving_mask[..., None], padded)
    ty = _shift_table(h, padded[0])[:, None]
    tx = _shift_table(w, padded[1])[None, :]
    allowed = (jnp.abs(tx) <= settings.max_shift * w) & (jnp.abs(ty) <= settings.max_shift * h)
    allowed &= overlap >= settings.min_overlap * h * w
    mean_score = total / jnp.maximum(overlap, 1.0)
    score = jnp.where(allowed, mean_score, -jnp.inf)
    best = jnp.argmax(score)
    row, col = jnp.unravel_index(best, score.shape)
    searched = jnp.where(allowed, mean_score, 0.0)
    moments = jnp.stack([jnp.sum(allowed), jnp.sum(searched), jnp.sum(searched**2)])
    return score[row, col], jnp.stack([tx[0, col], ty[row, 0]]), moments


def global_search(
    similarity, fixed: Array, moving: Array, settings: SearchSettings
) -> tuple[Array, Array]:
    """Candidate transforms of the moving image onto the fixed one.

    fixed, moving: full-resolution grey images (H, W). Returns (matrices (K, 3, 3) u-space,
    scores (K,), prominence ()): the `top_k` grid points by score, best first, and how many
    standard deviations the best score lies above the mean of all scores searched.
    """
    full_shape = fixed.shape
    shape = geometry.level_shape(*full_shape, settings.factor)
    fixed_level = geometry.downsample(fixed, shape)
    moving_level = geometry.downsample(moving, shape)
    fixed_features = similarity.features(similarity.prepare(fixed_level))
    fixed_mask = geometry.downsample(geometry.content_mask(fixed), shape) > 0.99
    moving_content = geometry.downsample(geometry.content_mask(moving), shape)
    points = geometry.level_points(full_shape, shape)
    angles, scales = jnp.meshgrid(
        jnp.asarray(settings.angles_deg, jnp.float32), jnp.asarray(settings.scales, jnp.float32)
    )
    _, scale_px = geometry.centre_and_scale(full_shape)
    pixel = jnp.asarray([full_shape[1] / shape[1], full_shape[0] / shape[0]])

    def candidate(angle: Array, scale: Array) -> tuple[Array, Array, Array]:
        matrix = similarity_matrix(angle, scale)
        positions = geometry.transform_points(matrix, points, full_shape)
        rotated = geometry.sample(moving_level, positions, full_shape)
        mask = geometry.inside_frame(positions, full_shape, margin=2.0 * settings.factor)
        mask = mask * (geometry.sample(moving_content, positions, full_shape) > 0.99)
        score, shift, moments = translation_scores(
            similarity, fixed_features, fixed_mask.astype(jnp.float32), rotated, mask, settings
        )
        # moving(T(p)) = rotated(p + t): T(p) = R(p) + L t, t in full-resolution pixels.
        translation = matrix[:2, :2] @ (shift * pixel) / scale_px
        return matrix.at[:2, 2].set(translation), score, moments

    matrices, scores, moments = jax.vmap(candidate)(angles.ravel(), scales.ravel())
    k = min(settings.top_k, scores.shape[0])
    top_scores, top = jax.lax.top_k(scores, k)
    return matrices[top], top_scores, prominence(top_scores[0], jnp.sum(moments, axis=0))


def prominence(best: Array, moments: Array) -> Array:
    """(best - mean) / std of scores given as moments (count, sum, sum of squares); 0 when
    there is no spread (a single translation searched)."""
    count = jnp.maximum(moments[0], 1.0)
    mean = moments[1] / count
    std = jnp.sqrt(jnp.maximum(moments[2] / count - mean**2, 0.0))
    return jnp.where(std > 0, (best - mean) / jnp.maximum(std, 1e-12), 0.0)
