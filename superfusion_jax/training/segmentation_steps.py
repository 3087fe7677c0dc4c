"""The segmentation network's training step and held-out evaluation, as SeAFusion trains it
(its train.py `train_seg`, loss.py): OHEM cross-entropy on the main head + 0.75 · on the
auxiliary head (`losses.semantic`), BatchNorm in train mode; evaluation in eval mode, IoU per
class from the confusion matrix summed over the whole held-out images
(`evaluation.segmentation_metrics`).

The network sees `input_image`: the visible image, the infrared image, or the fused RGB image of
a frozen SuperFusion model computed on the fly (`segmentation_inputs`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable

import jax
import jax.numpy as jnp
import optax

from superfusion_jax.evaluation.segmentation_metrics import ConfusionAccumulator, class_names
from superfusion_jax.losses.semantic import segmentation_loss
from superfusion_jax.models.bisenet import BiSeNet, apply_segmenter, num_classes_of
from superfusion_jax.models.variants import FAITHFUL, Variant
from superfusion_jax.training.state import TrainState
from superfusion_jax.training.steps import fs_forward, guarded_update

Array = jax.Array

INPUT_IMAGES = ("vi", "ir", "fused")


@dataclasses.dataclass(frozen=True)
class OhemConfig:
    """Options of `losses.semantic.segmentation_loss` (SeAFusion's values by default)."""

    aux_weight: float = 0.75
    threshold: float = 0.7
    min_kept_fraction: float = 1 / 16
    ignore_index: int | None = 255


def segmentation_inputs(
    batch: dict, input_image: str, frozen: dict | None, variant: Variant = FAITHFUL
) -> Array:
    """The images the segmenter sees: batch['vi'], batch['ir'] (B, H, W, 3), or 'fused': the
    fused RGB image (`steps.fs_forward`'s `fused_rgb`) of the SuperFusion params
    frozen['fusion'] of `variant`. Values in [0, 1]."""
    if input_image == "fused":
        return fs_forward(frozen["fusion"], batch, variant=variant)["fused_rgb"]
    if input_image not in ("vi", "ir"):
        raise ValueError(f"input_image must be one of {INPUT_IMAGES}, got {input_image!r}")
    return batch[input_image]


def seg_step(
    state: TrainState,
    batch: dict,
    frozen: dict | None = None,
    *,
    optimizer: optax.GradientTransformation,
    num_classes: int,
    input_image: str = "vi",
    variant: Variant = FAITHFUL,
    ohem: OhemConfig = OhemConfig(),
) -> tuple[TrainState, dict]:
    """One update of the segmentation network, BatchNorm in train mode (batch statistics,
    running statistics updated).

    batch: `vi`, `ir` (B, H, W, 3) in [0, 1] and `label` (B, H, W) int class ids; frozen: None,
    or {'fusion': SuperFusion params} for input_image 'fused' (`segmentation_inputs`).
    Returns (new state, metrics): loss_main, loss_aux, loss_total (`segmentation_loss`),
    grad_norm_bisenet (before any clipping) and nonfinite (then the state is returned as is).
    """
    images = segmentation_inputs(batch, input_image, frozen, variant)

    def loss_fn(params: dict) -> tuple[Array, tuple[dict, dict]]:
        (main, aux), updated = BiSeNet(num_classes).apply(
            {"params": params, "batch_stats": state.batch_stats},
            images,
            train=True,
            mutable=["batch_stats"],
        )
        total, terms = segmentation_loss(main, aux, batch["label"], **dataclasses.asdict(ohem))
        return total, (terms, updated["batch_stats"])

    (_, (terms, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    metrics = {**terms, "grad_norm_bisenet": optax.global_norm(grads)}
    return guarded_update(state, grads, batch_stats, metrics, optimizer)


@functools.partial(jax.jit, static_argnames=("input_image", "variant"))
def predict(
    variables: dict, batch: dict, frozen: dict | None, *, input_image: str, variant: Variant
) -> tuple[Array, Array]:
    """(input images (B, H, W, 3), predicted classes (B, H, W) int32: argmax of the main head),
    the network in eval mode."""
    images = segmentation_inputs(batch, input_image, frozen, variant)
    main, _ = apply_segmenter(variables, images)
    return images, jnp.argmax(main, axis=-1).astype(jnp.int32)


def evaluate_segmentation(
    variables: dict,
    batches: Iterable[dict],
    frozen: dict | None = None,
    *,
    input_image: str = "vi",
    variant: Variant = FAITHFUL,
    ignore_index: int = 255,
) -> ConfusionAccumulator:
    """Confusion matrix of the segmentation network over held-out batches (eval mode).

    batches: dicts with `vi`, `ir` (B, H, W, 3) and `label` (B, H, W) (`make_eval_batches`).
    Returns the accumulator: `.mean_iou()`, `.iou()` per class.
    """
    names = class_names(num_classes_of(variables))
    accumulator = ConfusionAccumulator(names, ignore_index)
    for batch in batches:
        inputs = {k: batch[k] for k in ("vi", "ir")}
        _, predicted = predict(variables, inputs, frozen, input_image=input_image, variant=variant)
        accumulator.update(batch["label"], predicted)
    return accumulator
