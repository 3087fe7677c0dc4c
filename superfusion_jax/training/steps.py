"""Training steps of the two stages of the release (model.py `update_RF`, `update_FS`).

Stage RF (registration + fusion) trains both networks on synthetically misaligned pairs
(`train_forward_RF` + `backward_RF`); stage FS (fusion + semantics) trains FusionNet alone on
aligned pairs (`train_forward_FS` + `backward_FS`; its semantic term, weight 0 in the release, is
`semantic_weight` here, computed with a frozen segmentation network passed as an argument).

Batches are dicts of NHWC float32 arrays in [0, 1]: `ir`, `vi` (B, H, W, 3) aligned (the infrared
image as grey repeated three times); stage RF adds `ir_warp`, `vi_warp` (B, H, W, 3), both warped
by one ground-truth field per example, and `disp` (B, H, W, 2), that field in the release's
normalised units (align_corners=True base grid, see `data.misalign`), whatever the variant;
stage FS with a semantic term needs `label` (B, H, W) int class ids.

Every function is pure. Jit a step with its keyword arguments bound (the variant is a
`models.variants.Variant`), e.g.
`jax.jit(functools.partial(rf_step, variant=FAITHFUL, optimizer=tx), donate_argnums=0)`
(or `training.mesh.jit_step` for several devices).
"""

from __future__ import annotations

from collections.abc import Iterable

import jax
import jax.numpy as jnp
import optax

from superfusion_jax.data.misalign import MisalignConfig, misalign_batch
from superfusion_jax.losses.fusion import FUSION_OBJECTIVES
from superfusion_jax.losses.registration import (
    RFOutputs,
    RFWeights,
    pair_luminance,
    rf_losses,
    valid_masks,
)
from superfusion_jax.losses.semantic import semantic_loss
from superfusion_jax.models.bisenet import apply_segmenter
from superfusion_jax.models.superfusion import SuperFusion
from superfusion_jax.models.variants import Variant
from superfusion_jax.ops.color import rgb_to_ycbcr, ycbcr_to_rgb
from superfusion_jax.ops.warp import base_grid
from superfusion_jax.training.optimizer import NETWORKS, keep_subnetworks
from superfusion_jax.training.state import TrainState

Array = jax.Array


def release_disp_to_variant(disp: Array, variant: Variant) -> Array:
    """Ground truth (N, H, W, 2) on the release's align_corners=True base grid -> the same
    sampling positions relative to `variant`'s base grid (unchanged for FAITHFUL)."""
    if variant.align_corners_base_grid:
        return disp
    h, w = disp.shape[1:3]
    return disp + base_grid(h, w, True) - base_grid(h, w, False)


def rf_forward(
    model: SuperFusion, ir: Array, vi: Array, ir_warp: Array, vi_warp: Array
) -> RFOutputs:
    """`train_forward_RF` inside `model.apply` (method=rf_forward): what `rf_losses` needs."""
    b = ir.shape[0]
    ir_stack = jnp.concatenate([ir_warp, ir])  # pair 1 = (ir_warp, vi), pair 2 = (ir, vi_warp)
    vi_stack = jnp.concatenate([vi, vi_warp])
    disp = model.dense_matcher(ir_stack, vi_stack, "bi", train=True)
    warped = model.warp(
        jnp.concatenate([ir_stack, vi_stack]), jnp.concatenate([disp["ir2vis"], disp["vis2ir"]])
    )
    ir_reg, ir_warp_fake, vi_warp_fake, vi_reg = jnp.split(warped, 4)
    ir_y, vi_reg_y = pair_luminance(ir, vi_reg)
    ir_reg_y, vi_y = pair_luminance(ir_reg, vi)
    fused = model.fusion_net(jnp.concatenate([ir_y, ir_reg_y]), jnp.concatenate([vi_reg_y, vi_y]))
    return RFOutputs(
        ir_reg=ir_reg,
        vi_reg=vi_reg,
        ir_warp_fake=ir_warp_fake,
        vi_warp_fake=vi_warp_fake,
        ir_y=ir_y,
        vi_y=vi_y,
        ir_reg_y=ir_reg_y,
        vi_reg_y=vi_reg_y,
        fused_1=fused[:b],
        fused_2=fused[b:],
        disp_vis2ir_1=disp["vis2ir"][:b],
        disp_ir2vis_2=disp["ir2vis"][b:],
        disp_down2=disp["down2"],
        disp_down4=disp["down4"],
        disp_down8=disp["down8"],
    )


def rf_loss_fn(
    params: dict,
    batch_stats: dict,
    batch: dict,
    *,
    variant: Variant,
    weights: RFWeights = RFWeights(),
) -> tuple[Array, tuple[dict, dict]]:
    """Stage-RF loss of the release (`train_forward_RF` + `backward_RF`), networks in train mode.

    params, batch_stats: SuperFusion variables; batch: `ir`, `vi`, `ir_warp`, `vi_warp`
    (B, H, W, 3) and `disp` (B, H, W, 2) (H, W > 45 for the smoothness windows). The DenseMatcher
    sees the stacked pairs [(ir_warp, vi); (ir, vi_warp)] in both directions; BatchNorm uses batch
    statistics and updates its running statistics (twice: once per direction). weights: the
    terms' weights (the release's by default).
    Returns (loss_total, (terms of `rf_losses`, new batch_stats)).
    """
    model = SuperFusion(variant)
    out, updated = model.apply(
        {"params": params, "batch_stats": batch_stats},
        batch["ir"],
        batch["vi"],
        batch["ir_warp"],
        batch["vi_warp"],
        method=rf_forward,
        mutable=["batch_stats"],
    )
    disp_gt = release_disp_to_variant(batch["disp"], variant)
    goodmask, goodmask_inverse = valid_masks(
        disp_gt, align_corners_grid=variant.align_corners_base_grid
    )
    terms = rf_losses(
        out,
        ir=batch["ir"],
        vi=batch["vi"],
        ir_warp=batch["ir_warp"],
        vi_warp=batch["vi_warp"],
        disp_gt=disp_gt,
        goodmask=goodmask,
        goodmask_inverse=goodmask_inverse,
        weights=weights,
    )
    return terms["loss_total"], (terms, updated["batch_stats"])


def _apply_gradients(
    state: TrainState,
    grads: dict,
    batch_stats: dict,
    terms: dict,
    optimizer: optax.GradientTransformation,
    trained: Iterable[str],
) -> tuple[TrainState, dict]:
    """One optimiser update of the `trained` SuperFusion networks (`guarded_update`).

    grads: full params-shaped gradients (zeros for untrained networks). Metrics: `terms`, the
    global gradient norm of each trained network before clipping (`grad_norm_<network>`) and
    `nonfinite`.
    """
    trained = tuple(trained)
    norms = {f"grad_norm_{name}": optax.global_norm(grads[name]) for name in trained}
    frozen = [name for name in NETWORKS if name not in trained]
    return guarded_update(state, grads, batch_stats, {**terms, **norms}, optimizer, frozen)


def guarded_update(
    state: TrainState,
    grads: dict,
    batch_stats: dict,
    metrics: dict,
    optimizer: optax.GradientTransformation,
    frozen: Iterable[str] = (),
) -> tuple[TrainState, dict]:
    """Apply `optimizer` to `grads` (params-shaped), or nothing if a metric is not finite.

    The networks named in `frozen` (top-level keys of params) keep their params and optimiser
    state (`keep_subnetworks`). Returns (new state with step + 1 and `batch_stats`, metrics
    plus `nonfinite`); when `nonfinite` is True the input state is returned unchanged.
    """
    checked = list(metrics.values())
    nonfinite = jnp.logical_not(jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in checked])))
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    params, opt_state = keep_subnetworks(state.opt_state, opt_state, state.params, params, frozen)
    new_state = state.replace(
        step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state
    )
    new_state = jax.tree_util.tree_map(
        lambda old, new: jnp.where(nonfinite, old, new), state, new_state
    )
    return new_state, {**metrics, "nonfinite": nonfinite}


def rf_step_on_warped(
    state: TrainState,
    batch: dict,
    *,
    variant: Variant,
    optimizer: optax.GradientTransformation,
    weights: RFWeights = RFWeights(),
) -> tuple[TrainState, dict]:
    """One stage-RF update (`update_RF`) on a batch that already holds `ir_warp`, `vi_warp` and
    `disp` (see `rf_loss_fn`): both networks, each with its own clipped Adam (the DenseMatcher
    alone when `weights` give FusionNet no gradient).

    Returns (new state, metrics): every `rf_losses` term, `grad_norm_<network>` of each trained
    network (before clipping) and `nonfinite` (then the state is returned as is).
    """
    grad_fn = jax.value_and_grad(rf_loss_fn, has_aux=True)
    (_, (terms, batch_stats)), grads = grad_fn(
        state.params, state.batch_stats, batch, variant=variant, weights=weights
    )
    trained = NETWORKS if weights.trains_fusion_net else ("dense_matcher",)
    return _apply_gradients(state, grads, batch_stats, terms, optimizer, trained)


def rf_step(
    state: TrainState,
    batch: dict,
    *,
    variant: Variant,
    optimizer: optax.GradientTransformation,
    misalign: MisalignConfig = MisalignConfig(),
    weights: RFWeights = RFWeights(),
) -> tuple[TrainState, dict]:
    """One stage-RF update on aligned pairs `ir`, `vi` (B, H, W, 3): misalign them with the key
    fold_in(state.rng, state.step) (`misalign_batch`), then `rf_step_on_warped`."""
    key = jax.random.fold_in(state.rng_key(), state.step)
    batch = misalign_batch(key, batch, misalign)
    return rf_step_on_warped(state, batch, variant=variant, optimizer=optimizer, weights=weights)


def fs_forward(params: dict, batch: dict, *, variant: Variant) -> dict:
    """`train_forward_FS`: fuse the luminance of aligned pairs.

    batch: `ir`, `vi` (B, H, W, 3). Returns `ir_y` (the infrared image's first channel), `vi_y`,
    `fused_y` (B, H, W, 1) and `fused_rgb` (B, H, W, 3) (fused Y with the visible chroma), all in
    [0, 1]; `fused_rgb` is what the release's semantic loss segments.
    """
    vi_y, vi_cb, vi_cr = rgb_to_ycbcr(batch["vi"])
    ir_y = batch["ir"][..., :1]
    fused_y = SuperFusion(variant).apply(
        {"params": params}, ir_y, vi_y, method=lambda m, a, b: m.fusion_net(a, b)
    )
    return {
        "ir_y": ir_y,
        "vi_y": vi_y,
        "fused_y": fused_y,
        "fused_rgb": ycbcr_to_rgb(fused_y, vi_cb, vi_cr),
    }


def fs_loss_fn(
    params: dict,
    batch: dict,
    segmenter: dict | None = None,
    *,
    variant: Variant,
    semantic_weight: float = 0.0,
    objective: str = "fs",
    objective_weights: tuple[float, ...] = (),
) -> tuple[Array, dict]:
    """Stage-FS loss (`backward_FS`): 10 · loss_fus + semantic_weight · loss_semantic.

    params: SuperFusion params (only 'fusion_net' is used); batch: `ir`, `vi` (B, H, W, 3) and,
    with a semantic term, `label` (B, H, W) int class ids. segmenter: the frozen segmentation
    network's variables (`apply_segmenter`), needed when semantic_weight > 0; it segments
    `fs_forward`'s `fused_rgb` and `losses.semantic.semantic_loss` (Lovasz-Softmax of the main
    head + 0.25 · of the auxiliary head) scores it against the labels. The release multiplies
    that term by 0.0 (semantic_weight 0: the term is not computed). objective: the fusion loss
    by name (`losses.fusion.FUSION_OBJECTIVES`): 'fs' the release's stage-FS loss, 'rf' stage
    RF's max-target loss on the aligned pair; objective_weights: its term weights (empty: the
    release's).
    Returns (loss_total, the objective's terms (for 'fs': loss_intensity, loss_ssim, loss_grad,
    loss_fus, loss_total), plus loss_semantic when semantic_weight > 0).
    """
    out = fs_forward(params, batch, variant=variant)
    weights = {"weights": tuple(objective_weights)} if objective_weights else {}
    terms = FUSION_OBJECTIVES[objective](out["ir_y"], out["vi_y"], out["fused_y"], **weights)
    if semantic_weight:
        if segmenter is None or "label" not in batch:
            raise ValueError("a semantic term needs the segmenter's variables and batch['label']")
        main, aux = apply_segmenter(segmenter, out["fused_rgb"])
        loss_semantic = semantic_loss(main, aux, batch["label"])
        total = terms["loss_total"] + semantic_weight * loss_semantic
        terms = {**terms, "loss_semantic": loss_semantic, "loss_total": total}
    return terms["loss_total"], terms


def fs_step(
    state: TrainState,
    batch: dict,
    segmenter: dict | None = None,
    *,
    variant: Variant,
    optimizer: optax.GradientTransformation,
    semantic_weight: float = 0.0,
    objective: str = "fs",
    objective_weights: tuple[float, ...] = (),
) -> tuple[TrainState, dict]:
    """One stage-FS update (`update_FS`): FusionNet only; the DenseMatcher's params, its optimiser
    state and the BatchNorm statistics are untouched.

    batch: `ir`, `vi` (B, H, W, 3) aligned (+ `label` (B, H, W) with a semantic term);
    segmenter, semantic_weight, objective, objective_weights: see `fs_loss_fn` (the segmenter
    is frozen: an argument, never updated). Returns (new state, metrics): the `fs_loss_fn` terms,
    `grad_norm_fusion_net` (before clipping) and `nonfinite`.
    """

    def loss(fusion_params: dict) -> tuple[Array, dict]:
        params = {**state.params, "fusion_net": fusion_params}
        return fs_loss_fn(
            params,
            batch,
            segmenter,
            variant=variant,
            semantic_weight=semantic_weight,
            objective=objective,
            objective_weights=objective_weights,
        )

    (_, terms), fusion_grads = jax.value_and_grad(loss, has_aux=True)(state.params["fusion_net"])
    grads = {
        **jax.tree_util.tree_map(jnp.zeros_like, state.params),
        "fusion_net": fusion_grads,
    }
    return _apply_gradients(state, grads, state.batch_stats, terms, optimizer, ("fusion_net",))
