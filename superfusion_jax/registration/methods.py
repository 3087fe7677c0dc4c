"""Training-free registration methods by name, and their settings.

- 'global': the global search (`search`), then gradient refinement of its best candidates at
  the search's level, the best refined candidate refined further coarse to fine (`parametric`);
- 'optimize': 'global', then a smooth residual field (`dense`).
`register(ir_warp, vi, settings)` returns sampling positions (N, H, W, 2) in pixels;
`positions_to_disp` turns them into the package's normalised `disp`, on a variant's base grid.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from superfusion_jax.ops.color import rgb_to_ycbcr
from superfusion_jax.ops.displacement import base_grid_pixels, pixels_to_disp
from superfusion_jax.registration import dense, geometry, parametric, search
from superfusion_jax.registration.similarity import make_similarity

Array = jax.Array

METHODS = ("global", "optimize")
# The smallest side the pyramid and the search can work with (pixels).
MIN_SIDE = 32


@dataclasses.dataclass(frozen=True)
class RegistrationSettings:
    """Everything a training-free registration does, one frozen object.

    similarity: a name of `similarity.SIMILARITIES`; model: 'affine' or 'homography';
    search: the global start; parametric_levels: refinement of the transform (learning rates in
    pixels); dense: the residual field, or None (the 'global' method); working_size: the longer
    side the pyramid factors and control spacing are meant for; other sizes scale them
    (`scaled_for`), so a large image costs about what a working_size one does (the output is
    still full size: the field is smooth, interpolated) and a small one is not searched at a
    uselessly coarse level.
    """

    similarity: str = "mind"
    model: str = "affine"
    search: search.SearchSettings = search.SearchSettings()
    parametric_levels: tuple[parametric.LevelSchedule, ...] = (
        parametric.LevelSchedule(4, 30, 0.64),
        parametric.LevelSchedule(2, 20, 0.16),
    )
    dense: dense.DenseSettings | None = dense.DenseSettings()
    working_size: int = 640


def scaled_for(settings: RegistrationSettings, shape: tuple[int, int]) -> RegistrationSettings:
    """`settings` (sized for a longer side of settings.working_size) adapted to an image of
    `shape`: every pyramid factor and the control spacing multiplied by
    ceil(longer side / working_size) for a larger image, scaled down (rounded, at least 1) for
    a smaller one, so that each level has about the same size whatever the image's."""
    ratio = max(shape) / settings.working_size
    if ratio > 1:
        multiplier = float(-(-max(shape) // settings.working_size))
    else:
        multiplier = ratio
    resize = lambda factor: max(1, round(factor * multiplier))
    if (
        all(resize(lv.factor) == lv.factor for lv in settings.parametric_levels)
        and resize(settings.search.factor) == settings.search.factor
    ):
        return settings
    level = lambda lv: dataclasses.replace(lv, factor=resize(lv.factor))
    replaced = {
        "search": dataclasses.replace(settings.search, factor=resize(settings.search.factor)),
        "parametric_levels": tuple(level(lv) for lv in settings.parametric_levels),
    }
    if settings.dense is not None:
        replaced["dense"] = dataclasses.replace(
            settings.dense,
            spacing=max(4, round(settings.dense.spacing * multiplier)),
            levels=tuple(level(lv) for lv in settings.dense.levels),
        )
    return dataclasses.replace(settings, **replaced)


def settings_for(method: str, **overrides) -> RegistrationSettings:
    """The default settings of a method name ('global' or 'optimize'), with field overrides."""
    if method not in METHODS:
        raise ValueError(f"unknown registration method {method!r}; expected one of {METHODS}")
    settings = RegistrationSettings(**overrides)
    if settings.model not in geometry.NUM_PARAMS:
        raise ValueError(
            f"unknown model {settings.model!r}; expected one of {list(geometry.NUM_PARAMS)}"
        )
    if settings.dense is not None and settings.dense.form not in dense.FORMS:
        raise ValueError(
            f"unknown dense form {settings.dense.form!r}; expected one of {dense.FORMS}"
        )
    if method == "global":
        settings = dataclasses.replace(settings, dense=None)
    elif settings.dense is None:
        raise ValueError("method 'optimize' needs dense settings")
    return settings


def register_pair(fixed: Array, moving: Array, settings: RegistrationSettings) -> dict:
    """One pair: fixed (visible) and moving (infrared) grey images (H, W) in [0, 1].

    Returns {'positions': (H, W, 2) where each pixel of the fixed frame samples the moving
    image, full-res px, x then y; 'matrix': (3, 3) the parametric part (u-space,
    `geometry`); 'score': the similarity's mean score of the parametric part; 'ok': False
    when the result is not finite or overlaps less than the search's `min_overlap` of the
    frame (then 'positions' is the identity and 'matrix' the identity matrix); 'prominence':
    how clearly the global search's best match stood out (`search.prominence`); 'confident':
    False when that is under the search's `min_prominence` (the result is kept, but may be a
    wrong alignment that scores as well as the right one)}.
    """
    settings = scaled_for(settings, fixed.shape)
    similarity = make_similarity(settings.similarity)
    candidates, _, prominence = search.global_search(similarity, fixed, moving, settings.search)
    start_level = settings.parametric_levels[0]
    starts = jax.vmap(lambda m: geometry.matrix_to_params(m, settings.model))(candidates)
    refined, scores = jax.vmap(
        lambda p: parametric.refine_level(similarity, fixed, moving, fixed.shape, p, start_level)
    )(starts)
    best = jnp.argmax(scores)
    params, score = refined[best], scores[best]
    if len(settings.parametric_levels) > 1:
        params, score = parametric.refine(
            similarity, fixed, moving, params, settings.parametric_levels[1:]
        )
    matrix = geometry.params_to_matrix(params)
    points = geometry.level_points(fixed.shape, fixed.shape)
    if settings.dense is None:
        where = geometry.transform_points(matrix, points, fixed.shape)
    else:
        control = dense.refine_dense(similarity, fixed, moving, matrix, settings.dense)
        where = dense.positions(matrix, control, fixed.shape, fixed.shape, settings.dense)
    overlap = jnp.mean(geometry.inside_frame(where, fixed.shape))
    ok = jnp.all(jnp.isfinite(where)) & (overlap >= settings.search.min_overlap)
    return {
        "positions": jnp.where(ok, where, points),
        "matrix": jnp.where(ok, matrix, jnp.eye(3)),
        "score": score,
        "ok": ok,
        "prominence": prominence,
        "confident": prominence >= settings.search.min_prominence,
    }


@functools.partial(jax.jit, static_argnames="settings")
def register(ir_warp: Array, vi: Array, settings: RegistrationSettings) -> dict:
    """A batch of pairs, (N, H, W, 3) RGB in [0, 1] each (infrared as grey RGB).

    Returns `register_pair`'s outputs with a leading batch axis. Compiled once per size and
    settings; deterministic. The pairs are vmapped on accelerators; on a CPU they run one after
    the other inside the compiled program (`lax.map`), since the vmapped gathers of the
    bilinear sampling ran 2.2x slower there (480 x 640, one pair).
    """
    run = lambda pair: register_pair(pair[0], pair[1], settings)
    batched = jax.lax.map if jax.default_backend() == "cpu" else jax.vmap
    # The release's luminance (an infrared image stored as grey RGB gives its grey level).
    luminance = lambda rgb: rgb_to_ycbcr(rgb)[0][..., 0]
    return batched(run, (luminance(vi), luminance(ir_warp)))


def positions_to_disp(positions: Array, align_corners_grid: bool) -> Array:
    """Sampling positions (N, H, W, 2), pixels -> `disp` (N, H, W, 2) in normalised units on
    the base grid of `align_corners_grid` (the variant's `align_corners_base_grid`)."""
    h, w = positions.shape[1:3]
    return pixels_to_disp(positions - base_grid_pixels(h, w), align_corners_grid)


def check_pair(ir_warp: np.ndarray, vi: np.ndarray) -> None:
    """Refuse, with a message, a batch (N, H, W, 3) a training-free method cannot register:
    a side under MIN_SIDE pixels, or an image without structure (all one grey level)."""
    h, w = vi.shape[1:3]
    if min(h, w) < MIN_SIDE:
        raise ValueError(
            f"the images are {h}x{w} pixels; training-free registration needs at least "
            f"{MIN_SIDE} pixels on each side"
        )
    for name, images in (("infrared", ir_warp), ("visible", vi)):
        grey = np.asarray(images, np.float32).mean(axis=-1)
        spread = grey.max(axis=(1, 2)) - grey.min(axis=(1, 2))
        if np.any(spread < 1.0 / 255.0):
            raise ValueError(f"the {name} image is uniform (one grey level): nothing to register")
