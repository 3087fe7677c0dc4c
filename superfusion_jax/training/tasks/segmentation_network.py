"""Training the segmentation network (the release's BiSeNet, `models.bisenet`) the way SeAFusion
trains it (its train.py `train_seg`, loss.py, optimizer.py): the 'segmentation' task of the
training loop (configs/segmentation.py).

Kept from SeAFusion:
- loss: OHEM cross-entropy on the main head + 0.75 · on the auxiliary head, probability threshold
  0.7, at least 1/16 of the batch's pixels kept, label 255 ignored (`losses.semantic`);
- optimiser: SGD, momentum 0.9, weight decay 5e-4 added to the gradient (torch's SGD) on the
  convolution kernels only (not on BatchNorm), the two output heads (`conv_out`, `conv_out16`)
  at 10 times the learning rate; no gradient clipping;
- schedule: 1000 warm-up updates rising exponentially from 1e-5 to 1e-2, then a polynomial
  decay (power 0.9) to 0 at the last update (SeAFusion: 80,000);
- evaluation: IoU per class from the confusion matrix summed over the whole held-out images
  (`evaluation.segmentation_metrics`), the network in eval mode.
Different here:
- augmentation: the pipeline's (the release's random flips, rotations and square crops,
  `data.pipeline`); SeAFusion uses colour jitter, horizontal flips, random scaling (0.75-2) and
  640 x 480 crops;
- the input image is `config.input_image`: 'vi' (visible RGB, default), 'ir' (infrared, grey as
  RGB) or 'fused' (the fused RGB image of a frozen SuperFusion model, `config.fusion_checkpoint`,
  computed on the fly). SeAFusion trains on its own fused images, in four rounds of 20,000
  updates that alternate with training its fusion network; here one run;
- initialisation: SeAFusion loads torchvision's ImageNet ResNet-18 into the backbone; here
  `config.init_checkpoint` may be such a torchvision `resnet18` .pth (backbone only), a whole
  BiSeNet .pth (SeAFusion's model_final.pth) or a folder written by this task; else random;
- `config.optimizer='adam'` replaces the SGD momentum by Adam's moments (the offline demo uses
  it: from a random initialisation SGD learnt nothing in its 300 updates).

The exported model (workdir/model, workdir/best) is a `io.model_files.save_model` folder whose
metadata names model 'bisenet' (read it with `io.model_files.load_segmenter`). The optimiser is
in `training.optimizer`, the step and evaluation in `training.segmentation_steps`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import ml_collections
import numpy as np

from superfusion_jax.data.pipeline import make_eval_batches
from superfusion_jax.data.sources import FirstRecords
from superfusion_jax.evaluation.segmentation_metrics import class_names
from superfusion_jax.io.model_files import BISENET
from superfusion_jax.models.bisenet import fresh_variables
from superfusion_jax.models.variants import variant_named
from superfusion_jax.training.init_weights import (
    segmentation_init_variables,
    superfusion_init_variables,
)
from superfusion_jax.training.optimizer import (
    SEGMENTATION_OPTIMIZERS,
    make_segmentation_optimizer,
    seafusion_schedule,
)
from superfusion_jax.training.segmentation_steps import (
    INPUT_IMAGES,
    OhemConfig,
    evaluate_segmentation,
    predict,
    seg_step,
)
from superfusion_jax.training.state import TrainState, state_from_variables
from superfusion_jax.training.task import Task
from superfusion_jax.visualization import image_grid, label_colors


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raise ValueError naming the first invalid field of a segmentation config."""
    if config.input_image not in INPUT_IMAGES:
        raise ValueError(
            f"config.input_image must be one of {INPUT_IMAGES}, got {config.input_image!r}"
        )
    if config.input_image == "fused" and not config.get("fusion_checkpoint", ""):
        raise ValueError(
            "config.input_image='fused' needs config.fusion_checkpoint (a SuperFusion "
            "checkpoint folder or official .pth whose fused images the network learns from)"
        )
    if config.optimizer not in SEGMENTATION_OPTIMIZERS:
        raise ValueError(
            f"config.optimizer must be one of {SEGMENTATION_OPTIMIZERS}, got {config.optimizer!r}"
        )
    if config.num_classes < 2:
        raise ValueError(f"config.num_classes must be at least 2, got {config.num_classes}")
    if not 0 < config.ohem_min_kept_fraction < 1:
        raise ValueError("config.ohem_min_kept_fraction must be in (0, 1)")


def _require_labels(source: Sequence[dict], what: str) -> None:
    if len(source) == 0 or "label" not in source[0]:
        raise ValueError(
            f"{what} has no segmentation labels: use MSRS (tfds 'msrs'), a folder source with "
            "label_dir, or the synthetic source"
        )


def make_task(
    config: ml_collections.ConfigDict,
    source: Sequence[dict],
    eval_source: Sequence[dict],
    *,
    steps_per_epoch: int,
    num_steps: int,
) -> Task:
    """The segmentation task of the training loop (configs/segmentation.py documents the fields).

    source, eval_source: training and held-out records with labels; num_steps: length of the
    run (end of the polynomial decay; steps_per_epoch is not used). For input_image 'fused', the
    FusionNet of config.fusion_checkpoint is loaded and frozen.
    """
    del steps_per_epoch
    check_config(config)
    _require_labels(source, "the training data (config.data)")
    _require_labels(eval_source, "the held-out data (config.eval)")
    num_classes, input_image = config.num_classes, config.input_image
    variant = variant_named(config.variant)
    schedule = seafusion_schedule(
        config.learning_rate,
        total_steps=num_steps,
        warmup_steps=config.warmup_steps,
        warmup_start_lr=config.warmup_start_lr,
        power=config.poly_power,
    )
    optimizer = make_segmentation_optimizer(
        schedule,
        kind=config.optimizer,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        head_lr_multiplier=config.head_lr_multiplier,
        clip_norm=config.clip_norm,
    )
    ohem = OhemConfig(
        aux_weight=config.aux_weight,
        threshold=config.ohem_threshold,
        min_kept_fraction=config.ohem_min_kept_fraction,
        ignore_index=config.ignore_index,
    )
    frozen = None
    if input_image == "fused":
        fusion = superfusion_init_variables(config.fusion_checkpoint, variant)
        frozen = {"fusion": {"fusion_net": fusion["params"]["fusion_net"]}}
    held_out = FirstRecords(eval_source, config.eval.num_pairs)

    def variables(state: TrainState) -> dict:
        return {"params": state.params, "batch_stats": state.batch_stats}

    def evaluate(state: TrainState) -> dict[str, float]:
        accumulator = evaluate_segmentation(
            variables(state),
            make_eval_batches(held_out, config.eval.batch_size),
            frozen,
            input_image=input_image,
            variant=variant,
            ignore_index=config.ignore_index,
        )
        per_class = {f"eval/iou_{name}": v for name, v in accumulator.iou().items()}
        return {"eval/miou": accumulator.mean_iou(), **per_class}

    def images(state: TrainState) -> dict[str, np.ndarray]:
        batch = next(make_eval_batches(FirstRecords(held_out, 1), 1))
        inputs = {k: batch[k] for k in ("vi", "ir")}
        shown, predicted = predict(
            variables(state), inputs, frozen, input_image=input_image, variant=variant
        )
        tiles = [
            np.asarray(shown[0]),
            label_colors(batch["label"][0]) / 255.0,
            label_colors(np.asarray(predicted[0])) / 255.0,
        ]
        return {"segmentation": image_grid(tiles, 3, [input_image, "label", "prediction"])}

    def export(state: TrainState) -> tuple[dict, dict]:
        metadata = {
            "model": BISENET,
            "num_classes": num_classes,
            "classes": list(class_names(num_classes)),
            "input_image": input_image,
        }
        return variables(state), metadata

    return Task(
        crop_size=config.crop_size,
        schedule=schedule,
        step=functools.partial(
            seg_step,
            optimizer=optimizer,
            num_classes=num_classes,
            input_image=input_image,
            variant=variant,
            ohem=ohem,
        ),
        frozen=frozen,
        create_state=lambda init: state_from_variables(
            fresh_variables(num_classes, config.seed) if init is None else init,
            optimizer=optimizer,
            seed=config.seed,
        ),
        init_variables=lambda: segmentation_init_variables(
            config.init_checkpoint, num_classes=num_classes, seed=config.seed
        ),
        images=images,
        export=export,
        evaluate=evaluate,
        best_metric="eval/miou",
    )
