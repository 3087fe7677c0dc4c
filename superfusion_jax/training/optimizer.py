"""The release's optimisers and learning-rate policy, as optax transformations.

The release (model.py, train.py) keeps one `torch.optim.Adam(lr=1e-3, betas=(0.9, 0.999),
weight_decay=1e-5)` per network (DenseMatcher `DM`, FusionNet `FN`) and, before each step,
clips each network's gradients to a global norm of 5 (`clip_grad_norm_`). torch's Adam adds
weight_decay · param to the gradient before the moments (L2 regularisation, not AdamW's
decoupled decay). The learning rate follows the 'lambda' policy of `get_scheduler`
(modules/modules.py), stepped once per epoch by `update_lr`.

The segmentation network is trained with SeAFusion's SGD and learning rate instead
(`make_segmentation_optimizer`, `seafusion_schedule`: its optimizer.py and train.py).

Parameters are the `params` collection of `SuperFusion`: {'dense_matcher': ..., 'fusion_net': ...}.
The optimiser state is an `optax.PartitionState` whose `inner_states` maps each network name to
its own state (Adam moments, counts), so one network can be left untouched (see
`keep_subnetworks`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

NETWORKS = ("dense_matcher", "fusion_net")
# The release's Adam hyper-parameters (torch.optim.Adam defaults), also written on export.
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
SEGMENTATION_OPTIMIZERS = ("sgd", "adam")  # 'sgd' is SeAFusion's
# The segmentation network's output heads, trained at head_lr_multiplier x the learning rate.
SEGMENTATION_HEADS = ("conv_out", "conv_out16")


def _network_labels(params: dict) -> dict:
    """Label every leaf of params with the name of its top-level network."""
    return {name: jax.tree_util.tree_map(lambda _, n=name: n, sub) for name, sub in params.items()}


def make_optimizer(
    learning_rate: float | optax.Schedule,
    *,
    weight_decay: float = 1e-5,
    clip_norm: float = 5.0,
    b1: float = ADAM_BETAS[0],
    b2: float = ADAM_BETAS[1],
) -> optax.GradientTransformation:
    """One Adam per network as the release: clip -> L2 decay -> Adam moments -> learning rate.

    learning_rate: a constant or a schedule of the network's own update count (the count of
    `scale_by_learning_rate`, which advances only when that network is updated).
    Per network: gradients clipped to global norm `clip_norm` over that network only (optax's
    clip multiplies by clip_norm / norm when norm > clip_norm; torch's by
    clip_norm / (norm + 1e-6), a relative difference of 1e-6 / norm), then
    g + weight_decay · param, then Adam (eps 1e-8 added to sqrt(v_hat), as torch).
    Acts on params {'dense_matcher': ..., 'fusion_net': ...}; the state's `inner_states` is keyed
    by those names.
    """

    def per_network() -> optax.GradientTransformation:
        return optax.chain(
            optax.clip_by_global_norm(clip_norm),
            optax.add_decayed_weights(weight_decay),
            optax.scale_by_adam(b1=b1, b2=b2, eps=ADAM_EPS),
            optax.scale_by_learning_rate(learning_rate),
        )

    return optax.partition({name: per_network() for name in NETWORKS}, _network_labels)


def release_schedule(
    base_lr: float, steps_per_epoch: int, n_ep: int, n_ep_decay: int
) -> optax.Schedule:
    """The release's 'lambda' learning-rate policy as a function of the update count.

    Update `count` belongs to epoch ep = count // steps_per_epoch, whose learning rate is
    base_lr · (1 - max(0, ep - n_ep_decay) / (n_ep - n_ep_decay + 1)): constant until epoch
    n_ep_decay, then linear towards 0 (never reached within the n_ep epochs; clamped at 0 after).
    With n_ep_decay < 0 the release never steps its scheduler (`if opts.n_ep_decay > -1`), so
    every update keeps epoch 0's factor, 1 - (0 - n_ep_decay) / (n_ep - n_ep_decay + 1).
    Returns a schedule count -> learning rate (float32 scalar).
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    if n_ep - n_ep_decay + 1 <= 0:
        raise ValueError(f"n_ep ({n_ep}) must be >= n_ep_decay ({n_ep_decay})")
    denominator = float(n_ep - n_ep_decay + 1)

    def schedule(count: jax.Array) -> jax.Array:
        if n_ep_decay < 0:
            epoch = jnp.zeros((), jnp.int32)
        else:
            epoch = jnp.asarray(count, jnp.int32) // steps_per_epoch
        factor = 1.0 - jnp.maximum(0, epoch - n_ep_decay).astype(jnp.float32) / denominator
        return base_lr * jnp.maximum(factor, 0.0)

    return schedule


def keep_subnetworks(
    old_opt_state: optax.OptState,
    new_opt_state: optax.OptState,
    old_params: dict,
    new_params: dict,
    frozen: Iterable[str],
) -> tuple[dict, optax.OptState]:
    """Undo an update for the `frozen` networks: their params and optimiser state stay old.

    Needed because the L2 term and Adam's moments move a network even when its gradient is 0.
    With frozen networks the states must come from `make_optimizer` (an
    `optax.PartitionState`); with none, any optimiser's do. Returns
    (params, opt_state) with the frozen networks' entries taken from the old ones.
    """
    frozen = tuple(frozen)
    if not frozen:
        return new_params, new_opt_state
    if not isinstance(new_opt_state, optax.PartitionState):
        raise TypeError(
            f"expected the state of `make_optimizer` (optax.PartitionState), got "
            f"{type(new_opt_state).__name__}"
        )
    params = {k: (old_params[k] if k in frozen else v) for k, v in new_params.items()}
    inner = {
        k: (old_opt_state.inner_states[k] if k in frozen else v)
        for k, v in new_opt_state.inner_states.items()
    }
    return params, optax.PartitionState(inner)


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

    def schedule(count: jax.Array) -> jax.Array:
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
    initialisation, see configs/segmentation.py:runlocal). clip_norm > 0 clips the global gradient
    norm first (SeAFusion does not clip: 0).
    """
    if kind not in SEGMENTATION_OPTIMIZERS:
        raise ValueError(f"optimizer kind must be one of {SEGMENTATION_OPTIMIZERS}, got {kind!r}")
    decayed = functools.partial(traverse_util.path_aware_map, lambda path, _: path[-1] == "kernel")
    heads = functools.partial(
        traverse_util.path_aware_map, lambda path, _: path[0] in SEGMENTATION_HEADS
    )
    parts = [optax.clip_by_global_norm(clip_norm)] if clip_norm > 0 else []
    parts += [
        optax.add_decayed_weights(weight_decay, mask=decayed),
        optax.trace(decay=momentum) if kind == "sgd" else optax.scale_by_adam(eps=1e-8),
        optax.scale_by_learning_rate(learning_rate),
        optax.masked(optax.scale(head_lr_multiplier), heads),
    ]
    return optax.chain(*parts)
