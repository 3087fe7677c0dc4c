"""SuperFusion's training stages as the release runs them: 'RF' (DenseMatcher and FusionNet on
synthetically misaligned pairs, `steps.rf_step`) and 'FS' (FusionNet alone on aligned pairs,
`steps.fs_step`, with the semantic term of a frozen segmentation network when
`config.semantic_weight` > 0). One Adam per network with the release's 'lambda' learning-rate
policy (`training.optimizer`). Stage RF is evaluated on held-out pairs misaligned once with fixed
seeds (`eval/epe_px` against `eval/epe_identity_px`, `training.held_out`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import ml_collections
import optax

from superfusion_jax.data.misalign import MisalignConfig
from superfusion_jax.io.model_files import load_segmenter
from superfusion_jax.losses.fusion import FUSION_OBJECTIVES
from superfusion_jax.losses.registration import RFWeights
from superfusion_jax.models.variants import Variant, variant_named
from superfusion_jax.training.held_out import (
    HeldOutSet,
    evaluate_registration,
    make_held_out_set,
    sample_images,
)
from superfusion_jax.training.init_weights import superfusion_init_variables
from superfusion_jax.training.optimizer import make_optimizer, release_schedule
from superfusion_jax.training.state import TrainState, create_train_state
from superfusion_jax.training.steps import fs_step, rf_step
from superfusion_jax.training.task import Task


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raise ValueError naming the first invalid field of a stage RF or FS config."""
    weight = _semantic_weight(config)
    if weight < 0:
        raise ValueError(f"config.semantic_weight must be >= 0, got {weight}")
    if weight > 0 and config.stage != "FS":
        raise ValueError(
            f"config.semantic_weight applies to stage FS only (config.stage is {config.stage!r})"
        )
    if weight > 0 and not config.get("segmentation_checkpoint", ""):
        raise ValueError(
            "config.semantic_weight > 0 needs config.segmentation_checkpoint: a BiSeNet .pth "
            "(SeAFusion's model_final.pth) or a folder trained with configs/segmentation.py "
            "(WORKDIR/best); --config.semantic_weight=0 trains as the release (no semantic term)"
        )
    objective = config.get("fusion_objective", "fs")
    if objective not in FUSION_OBJECTIVES:
        raise ValueError(
            f"config.fusion_objective must be one of {sorted(FUSION_OBJECTIVES)}, got {objective!r}"
        )
    if objective != "fs" and config.stage != "FS":
        raise ValueError(
            f"config.fusion_objective applies to stage FS only (config.stage is {config.stage!r})"
        )
    if config.stage == "RF" and config.crop_size <= 45:
        raise ValueError(
            f"stage RF needs config.crop_size > 45 (loss windows), got {config.crop_size}"
        )
    if frame_size(config) < config.crop_size:
        raise ValueError("config.misalign.frame_size must be -1 or >= config.crop_size")


def make_task(
    config: ml_collections.ConfigDict,
    source: Sequence[dict],
    eval_source: Sequence[dict],
    *,
    steps_per_epoch: int,
    num_steps: int,
) -> Task:
    """Stage RF or FS of the release (FS with its semantic term when semantic_weight > 0).

    source, eval_source: training and held-out records; steps_per_epoch: updates per epoch of
    the learning-rate policy (num_steps is not used: the policy is in epochs).
    """
    del num_steps
    stage, variant = config.stage, variant_named(config.variant)
    schedule = release_schedule(
        config.learning_rate, steps_per_epoch, config.n_ep, config.n_ep_decay
    )
    optimizer = make_optimizer(
        schedule, weight_decay=config.weight_decay, clip_norm=config.clip_norm
    )
    frozen = None
    if stage == "FS" and _semantic_weight(config) > 0:
        if "label" not in source[0]:
            raise ValueError(
                "config.semantic_weight > 0 needs segmentation labels in the training data "
                "(MSRS, a folder source with label_dir, or the synthetic source); "
                "--config.semantic_weight=0 trains as the release"
            )
        frozen = load_segmenter(config.segmentation_checkpoint)
    held_out = make_held_out_set(
        eval_source,
        num_pairs=config.eval.num_pairs,
        crop_size=config.crop_size,
        frame_size=frame_size(config),
        seed=config.eval.seed,
        misalign=misalign_config(config) if stage == "RF" else None,
    )

    def create_state(init_variables: dict | None) -> TrainState:
        return create_train_state(
            variant=variant, optimizer=optimizer, seed=config.seed, init_variables=init_variables
        )

    return Task(
        crop_size=frame_size(config),
        schedule=schedule,
        step=_step_function(config, variant, optimizer),
        frozen=frozen,
        create_state=create_state,
        init_variables=lambda: superfusion_init_variables(
            config.init_checkpoint, variant, config.seed
        ),
        images=lambda state: sample_images(_variables(state), held_out, variant=variant),
        export=lambda state: (_variables(state), {"variant": variant.name}),
        evaluate=(
            (lambda state: _evaluate(state, held_out, variant, config.eval.batch_size))
            if stage == "RF"
            else None
        ),
    )


def frame_size(config: ml_collections.ConfigDict) -> int:
    """Side of the crops the data pipeline makes (the misalignment frame in stage RF)."""
    frame = config.misalign.frame_size if config.stage == "RF" else -1
    return config.crop_size if frame <= 0 else frame


def misalign_config(config: ml_collections.ConfigDict) -> MisalignConfig:
    """Stage RF's misalignment: drawn on frame_size frames, then cropped to crop_size."""
    m = config.misalign
    crop = config.crop_size if frame_size(config) > config.crop_size else None
    return MisalignConfig(m.angle, m.translation, m.ratio, crop)


def _semantic_weight(config: ml_collections.ConfigDict) -> float:
    return float(config.get("semantic_weight", 0.0))


def _step_function(
    config: ml_collections.ConfigDict, variant: Variant, optimizer: optax.GradientTransformation
):
    """The stage's step `(state, batch, frozen) -> (state, metrics)`, its keyword arguments
    bound; frozen is the segmentation network's variables (stage FS with a semantic term) or
    None."""
    if config.stage == "FS":
        return functools.partial(
            fs_step,
            variant=variant,
            optimizer=optimizer,
            semantic_weight=_semantic_weight(config),
            objective=config.get("fusion_objective", "fs"),
            objective_weights=tuple(config.get("fusion_weights", ())),
        )
    step = functools.partial(
        rf_step,
        variant=variant,
        optimizer=optimizer,
        misalign=misalign_config(config),
        weights=RFWeights(**config.get("rf_weights", {})),
    )
    return lambda state, batch, frozen: step(state, batch)


def _variables(state: TrainState) -> dict:
    return {"params": state.params, "batch_stats": state.batch_stats}


def _evaluate(state: TrainState, held_out: HeldOutSet, variant: Variant, batch_size: int) -> dict:
    """{'eval/epe_px', 'eval/epe_identity_px'} (stage RF)."""
    result = evaluate_registration(
        _variables(state), held_out, variant=variant, batch_size=batch_size
    )
    return {f"eval/{name}": value for name, value in result.items()}
