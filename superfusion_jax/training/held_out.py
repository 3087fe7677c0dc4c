"""Held-out evaluation during training: registration end-point error, and pictures.

The held-out set (`make_held_out_set`) is a fixed list of pairs misaligned once, in the same way
as stage RF's training pairs (`data.misalign.misalign_batch`: the release's rotation,
translation and elastic field, drawn on a frame of `frame_size` pixels), with fixed seeds so
that every evaluation of a run sees the same pairs:
1. record i of the source is cut to frame_size x frame_size by the training augmentation
   (`data.pipeline.augment`: resize up if smaller, crop, flip, rotation) with a generator
   seeded by (seed, i);
2. the frame is misaligned (no crop), which gives `ir_warp` and the ground-truth field;
3. the centre crop_size x crop_size window of ir, vi and ir_warp is what the network sees.

End-point error (EPE), defined as for the release's test pairs (whose ground truth is a sampling
grid, not a displacement to compare with), computed by
`evaluation.registration_metrics.end_point_error`:
- the ground truth is, for every pixel q of ir_warp's frame, the position src(q) in ir it was
  sampled from (pixels, on the whole frame, so known also outside the crop);
- the prediction is a registration field g: the network's ir2vis displacement on the crop, as
  the position g(p) in ir_warp each output pixel p is sampled from (pixels, converted with the
  variant's base grid, `ops.displacement.disp_to_pixels`);
- a perfect registration puts ir's point p at p, i.e. src(g(p)) = p, so
  EPE(p) = |src(g(p)) - p| (Euclidean, pixels), src interpolated bilinearly at g(p) (positions
  outside the frame are clamped to its edge); reported as the mean over all pixels and pairs.
- the identity field g(p) = p (no registration) gives |src(p) - p|, the size of the
  misalignment itself: the baseline to beat.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from superfusion_jax.data.misalign import MisalignConfig, misalign_batch
from superfusion_jax.data.pipeline import augment
from superfusion_jax.evaluation.registration_metrics import end_point_error
from superfusion_jax.models.superfusion import SuperFusion
from superfusion_jax.models.variants import Variant
from superfusion_jax.ops.displacement import base_grid_pixels, disp_to_pixels
from superfusion_jax.visualization import flow_to_color, image_grid

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class HeldOutSet:
    """Fixed evaluation pairs (numpy, float32).

    ir, vi: (N, S, S, 3) aligned crops in [0, 1]; ir_warp: (N, S, S, 3) the misaligned infrared
    crop (None for a set made without misalignment); source_px: (N, F, F, 2) for each pixel of
    the misaligned frame the position in ir it came from, pixels, x then y, frame coordinates;
    offset: (x, y) of the crop's top-left pixel in the frame. S = crop size, F = frame size.
    """

    ir: np.ndarray
    vi: np.ndarray
    ir_warp: np.ndarray | None
    source_px: np.ndarray | None
    offset: tuple[int, int]

    def __len__(self) -> int:
        return self.ir.shape[0]


def make_held_out_set(
    source: Sequence[dict],
    *,
    num_pairs: int,
    crop_size: int,
    frame_size: int,
    seed: int,
    misalign: MisalignConfig | None,
) -> HeldOutSet:
    """The first `num_pairs` records of `source` as a fixed held-out set (module docstring).

    Args:
      source: random-access records with ir, vi (H, W, 3) float32 in [0, 1].
      num_pairs: how many pairs (at most len(source)).
      crop_size: side S of what the network sees, pixels.
      frame_size: side F >= S of the frame the misalignment is drawn on, pixels.
      seed: fixes the augmentation and the misalignment.
      misalign: the misalignment (its crop_size is not used: the frame is cut to the centre
        crop), or None for aligned pairs only (stage FS).
    """
    if not 0 < num_pairs <= len(source):
        raise ValueError(f"num_pairs must be in [1, {len(source)}], got {num_pairs}")
    if frame_size < crop_size:
        raise ValueError(f"frame_size ({frame_size}) must be >= crop_size ({crop_size})")
    records = [
        augment(source[i], np.random.default_rng([seed, i]), frame_size) for i in range(num_pairs)
    ]
    frames = {k: np.stack([r[k] for r in records]) for k in ("ir", "vi")}
    top = left = (frame_size - crop_size) // 2
    window = (slice(None), slice(top, top + crop_size), slice(left, left + crop_size))
    if misalign is None:
        return HeldOutSet(frames["ir"][window], frames["vi"][window], None, None, (left, top))
    key = jax.random.key(np.random.SeedSequence([seed, 0x4E7]).generate_state(1)[0])
    frames_on_device = jax.tree_util.tree_map(jnp.asarray, frames)
    warped = misalign_batch(key, frames_on_device, dataclasses.replace(misalign, crop_size=None))
    source_px = base_grid_pixels(frame_size, frame_size) + disp_to_pixels(warped["disp"], True)
    return HeldOutSet(
        ir=frames["ir"][window],
        vi=frames["vi"][window],
        ir_warp=np.asarray(warped["ir_warp"])[window],
        source_px=np.asarray(source_px),
        offset=(left, top),
    )


@functools.partial(jax.jit, static_argnames=("variant", "offset"))
def _register_and_score(
    variables: dict,
    ir_warp: Array,
    vi: Array,
    source_px: Array,
    *,
    variant: Variant,
    offset: tuple[int, int],
) -> tuple[dict, Array, Array]:
    out = SuperFusion(variant).apply(variables, ir_warp, vi, method="register_and_fuse")
    predicted = end_point_error(out["disp"], source_px, offset, variant.align_corners_base_grid)
    identity = end_point_error(jnp.zeros_like(out["disp"]), source_px, offset, False)
    return out, predicted.mean(axis=(1, 2)), identity.mean(axis=(1, 2))


@functools.partial(jax.jit, static_argnames=("variant",))
def _fuse(variables: dict, ir: Array, vi: Array, *, variant: Variant) -> dict:
    return SuperFusion(variant).apply(variables, ir, vi, method="fuse")


def evaluate_registration(
    variables: dict, held_out: HeldOutSet, *, variant: Variant, batch_size: int
) -> dict[str, float]:
    """Mean EPE of the network's ir2vis registration on `held_out`, and of the identity field.

    variables: SuperFusion {'params', 'batch_stats'} (eval mode: BatchNorm running statistics).
    Returns {'epe_px': mean EPE, pixels; 'epe_identity_px': mean EPE of no registration}.
    """
    if held_out.ir_warp is None:
        raise ValueError("the held-out set was made without misalignment (stage FS)")
    predicted, identity = [], []
    for start in range(0, len(held_out), batch_size):
        part = slice(start, start + batch_size)
        _, epe, epe_identity = _register_and_score(
            variables,
            held_out.ir_warp[part],
            held_out.vi[part],
            held_out.source_px[part],
            variant=variant,
            offset=held_out.offset,
        )
        predicted.append(np.asarray(epe))
        identity.append(np.asarray(epe_identity))
    return {
        "epe_px": float(np.concatenate(predicted).mean()),
        "epe_identity_px": float(np.concatenate(identity).mean()),
    }


def sample_images(
    variables: dict, held_out: HeldOutSet, *, variant: Variant
) -> dict[str, np.ndarray]:
    """Pictures of the first held-out pair, for the run's image log.

    With misalignment (stage RF): one grid 'registration' of ir, ir_warp, ir registered, vi,
    fused (of the registered pair) and the predicted ir2vis field as colour (`flow_to_color`;
    fully saturated at the largest ground-truth displacement of the pair, so that colours
    compare across steps). Without (stage FS): a grid 'fusion' of ir, vi, fused.
    Returns {name: (H, W, 3) uint8}.
    """
    vi = held_out.vi[:1]
    if held_out.ir_warp is None:
        fused = np.asarray(_fuse(variables, held_out.ir[:1], vi, variant=variant)["fused"])
        grid = image_grid([held_out.ir[0], vi[0], fused[0]], 3, ["ir", "vi", "fused"])
        return {"fusion": grid}
    out, _, _ = _register_and_score(
        variables,
        held_out.ir_warp[:1],
        vi,
        held_out.source_px[:1],
        variant=variant,
        offset=held_out.offset,
    )
    disp_px = disp_to_pixels(out["disp"], variant.align_corners_base_grid)
    frame, crop = held_out.source_px.shape[1], held_out.ir.shape[1]
    gt_px = held_out.source_px[0] - np.asarray(base_grid_pixels(frame, frame))
    left, top = held_out.offset
    gt_crop = gt_px[top : top + crop, left : left + crop]
    colour = flow_to_color(np.asarray(disp_px[0]), float(np.linalg.norm(gt_crop, axis=-1).max()))
    images = [
        held_out.ir[0],
        held_out.ir_warp[0],
        np.asarray(out["ir_reg"][0]),
        vi[0],
        np.asarray(out["fused"][0]),
        colour / 255.0,
    ]
    labels = ["ir", "ir_warp", "ir registered", "vi", "fused", "ir2vis field"]
    return {"registration": image_grid(images, 3, labels)}
