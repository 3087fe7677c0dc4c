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

The exported model (workdir/model, workdir/best) is a `checkpoint.save_model` folder whose
metadata names model 'bisenet' (read it with `load_segmenter`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import traverse_util

from superfusion_jax.data.pipeline import make_eval_batches
from superfusion_jax.evaluation.segmentation_metrics import ConfusionAccumulator, class_names
from superfusion_jax.io.model_files import BISENET, load_model, model_name
from superfusion_jax.losses.semantic import segmentation_loss
from superfusion_jax.models.bisenet import BiSeNet, apply_segmenter, num_classes_of
from superfusion_jax.training.state import TrainState, state_from_variables
from superfusion_jax.training.steps import fs_forward, guarded_update
from superfusion_jax.training.task import Task
from superfusion_jax.visualization import image_grid

Array = jax.Array

INPUT_IMAGES = ("vi", "ir", "fused")
OPTIMIZERS = ("sgd", "adam")  # 'sgd' is SeAFusion's
HEADS = ("conv_out", "conv_out16")  # the output heads, trained at head_lr_multiplier x lr
# Colours of the label maps in the image log (MSRS classes; more classes cycle through them).
PALETTE = np.array(
    [
        [0, 0, 0],  # unlabelled
        [220, 20, 60],  # car
        [255, 200, 0],  # person
        [0, 160, 255],  # bike
        [150, 80, 255],  # curve
        [0, 200, 120],  # car stop
        [255, 120, 200],  # guardrail
        [255, 110, 0],  # color cone
        [140, 140, 140],  # bump
    ],
    np.uint8,
)
_INIT_SIZE = 32  # side of the dummy input of `fresh_variables` (variables do not depend on it)


@dataclasses.dataclass(frozen=True)
class OhemConfig:
    """Options of `losses.semantic.segmentation_loss` (SeAFusion's values by default)."""

    aux_weight: float = 0.75
    threshold: float = 0.7
    min_kept_fraction: float = 1 / 16
    ignore_index: int | None = 255


# --- optimiser -----------------------------------------------------------------------------


def seafusion_schedule(
    base_lr: float,
    *,
    total_steps: int,
    warmup_steps: int = 1000,
    warmup_start_lr: float = 1e-5,
    power: float = 0.9,
) -> optax.Schedule:
    """SeAFusion's learning rate (its `Optimizer.get_lr`) of update `count` (0-based).

    count <= warmup_steps: warmup_start_lr · (base_lr / warmup_start_lr)^(count / warmup_steps);
    after: base_lr · (1 - (count - warmup_steps) / (total_steps - warmup_steps))^power, clamped
    at 0 beyond total_steps. warmup_steps = 0: the polynomial decay from the first update.
    Returns a schedule count -> learning rate (float32 scalar).
    """
    if total_steps <= warmup_steps:
        raise ValueError(f"total_steps ({total_steps}) must exceed warmup_steps ({warmup_steps})")
    if warmup_steps < 0 or (warmup_steps > 0 and warmup_start_lr <= 0):
        raise ValueError("warmup_steps must be >= 0 and warmup_start_lr > 0")

    def schedule(count: Array) -> Array:
        count = jnp.asarray(count, jnp.float32)
        remaining = 1.0 - (count - warmup_steps) / (total_steps - warmup_steps)
        poly = base_lr * jnp.maximum(remaining, 0.0) ** power
        if warmup_steps == 0:
            return poly
        warm = warmup_start_lr * (base_lr / warmup_start_lr) ** (count / warmup_steps)
        return jnp.where(count <= warmup_steps, warm, poly)

    return schedule


def make_segmentation_optimizer(
    learning_rate: float | optax.Schedule,
    *,
    kind: str = "sgd",
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    head_lr_multiplier: float = 10.0,
    clip_norm: float = 0.0,
) -> optax.GradientTransformation:
    """SeAFusion's SGD for BiSeNet params: [clip] -> + weight_decay · kernel -> momentum ->
    learning rate, x head_lr_multiplier for the heads.

    kind 'sgd': as torch.optim.SGD(momentum, weight_decay) with SeAFusion's parameter groups:
    the decay is added to the gradient of convolution kernels only (BatchNorm scales and biases
    have none), the momentum buffer is m · buf + g (the first one g), and the step is lr · buf,
    with lr multiplied by head_lr_multiplier for `conv_out` and `conv_out16` (and their
    BatchNorms). kind 'adam': Adam's moments (b1 0.9, b2 0.999, eps 1e-8) instead of the
    momentum buffer, the rest alike (not SeAFusion's; for short runs from a random
    initialisation, see configs/segmentation.py:demo). clip_norm > 0 clips the global gradient
    norm first (SeAFusion does not clip: 0).
    """
    if kind not in OPTIMIZERS:
        raise ValueError(f"optimizer kind must be one of {OPTIMIZERS}, got {kind!r}")
    decayed = functools.partial(traverse_util.path_aware_map, lambda path, _: path[-1] == "kernel")
    heads = functools.partial(traverse_util.path_aware_map, lambda path, _: path[0] in HEADS)
    parts = [optax.clip_by_global_norm(clip_norm)] if clip_norm > 0 else []
    parts += [
        optax.add_decayed_weights(weight_decay, mask=decayed),
        optax.trace(decay=momentum) if kind == "sgd" else optax.scale_by_adam(eps=1e-8),
        optax.scale_by_learning_rate(learning_rate),
        optax.masked(optax.scale(head_lr_multiplier), heads),
    ]
    return optax.chain(*parts)


# --- variables -----------------------------------------------------------------------------


def fresh_variables(num_classes: int, seed: int) -> dict:
    """Randomly initialised BiSeNet variables {'params', 'batch_stats'} (the release's init laws,
    `models.resnet`), deterministic in `seed`."""
    x = jnp.zeros((1, _INIT_SIZE, _INIT_SIZE, 3), jnp.float32)
    return dict(BiSeNet(num_classes).init(jax.random.key(seed), x))


def load_segmenter(path: str | Path) -> dict:
    """A trained segmentation network's variables {'params', 'batch_stats'} (numpy).

    path: a BiSeNet .pth state_dict (the release's / SeAFusion's model_final.pth; needs torch)
    or a folder exported by the segmentation task (workdir/best, workdir/model).
    Raises FileNotFoundError (no such path) or ValueError (not a segmentation network).
    """
    path = Path(path).expanduser()
    if path.is_file():
        from superfusion_jax.convert.segmentation import import_bisenet  # needs torch

        return import_bisenet(path)
    variables, meta = load_model(path, model=None)
    if model_name(meta) != BISENET:
        raise ValueError(
            f"{path} holds a {model_name(meta)!r} network, not a segmentation "
            "network: give a folder written by configs/segmentation.py (WORKDIR/best) or a "
            "BiSeNet .pth (SeAFusion's model_final.pth)"
        )
    return {"params": variables["params"], "batch_stats": variables["batch_stats"]}


def import_backbone(variables: dict, state: dict, source: str) -> dict:
    """Put a torchvision `resnet18` state_dict (ImageNet weights; 'fc.*' ignored) into the
    ResNet-18 of BiSeNet `variables`; everything else is kept. Returns new numpy variables."""
    from superfusion_jax.convert.segmentation import export_state_dict, import_state_dict

    merged = export_state_dict(variables)
    for key, value in state.items():
        key = key.removeprefix("module.")
        if not key.startswith("fc."):
            merged[f"cp.resnet.{key}"] = value
    return import_state_dict(merged, source, num_classes_of(variables))


def load_init_variables(path: str, *, num_classes: int, seed: int) -> dict | None:
    """Variables to start from (config.init_checkpoint): '' -> None; a torchvision resnet18 .pth
    -> fresh variables with that backbone; a BiSeNet .pth or a folder -> `load_segmenter`."""
    if not path:
        return None
    path = Path(path).expanduser()
    variables = None
    if path.is_file():
        from superfusion_jax.convert.torch_checkpoints import read_pth  # needs torch

        state = read_pth(path)
        keys = {k.removeprefix("module.") for k in state} if isinstance(state, dict) else set()
        if "layer1.0.conv1.weight" in keys and not any(k.startswith("cp.") for k in keys):
            variables = import_backbone(fresh_variables(num_classes, seed), state, str(path))
    if variables is None:
        variables = load_segmenter(path)
    if num_classes_of(variables) != num_classes:
        raise ValueError(
            f"{path} has {num_classes_of(variables)} classes; config.num_classes is {num_classes}"
        )
    return variables


# --- step and evaluation -------------------------------------------------------------------


def segmentation_inputs(
    batch: dict, input_image: str, frozen: dict | None, variant: str = "faithful"
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
    variant: str = "faithful",
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
    variables: dict, batch: dict, frozen: dict | None, *, input_image: str, variant: str
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
    variant: str = "faithful",
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


def label_colors(label: np.ndarray) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 colours (`PALETTE`; ids >= 9 cycle, 255 is white)."""
    label = np.asarray(label)
    colours = PALETTE[np.mod(label, len(PALETTE))]
    colours[label == 255] = 255
    return colours


class FirstRecords(Sequence):
    """The first `count` records of a random-access source (all of them for count <= 0)."""

    def __init__(self, source: Sequence[dict], count: int) -> None:
        self.source = source
        self.count = len(source) if count <= 0 else min(count, len(source))

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.count:
            raise IndexError(f"record {index} out of range [0, {self.count})")
        return self.source[index]


# --- the loop's task -----------------------------------------------------------------------


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
    if config.optimizer not in OPTIMIZERS:
        raise ValueError(f"config.optimizer must be one of {OPTIMIZERS}, got {config.optimizer!r}")
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
    num_steps: int,
    fusion_params: dict | None = None,
) -> Task:
    """The segmentation task of the training loop (configs/segmentation.py documents the fields).

    source, eval_source: training and held-out records with labels; num_steps: length of the
    run (end of the polynomial decay); fusion_params: SuperFusion params for input 'fused'.
    """
    check_config(config)
    _require_labels(source, "the training data (config.data)")
    _require_labels(eval_source, "the held-out data (config.eval)")
    num_classes, input_image, variant = config.num_classes, config.input_image, config.variant
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
    frozen = {"fusion": fusion_params} if input_image == "fused" else None
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
        init_variables=lambda: load_init_variables(
            config.init_checkpoint, num_classes=num_classes, seed=config.seed
        ),
        images=images,
        export=export,
        evaluate=evaluate,
        best_metric="eval/miou",
    )
