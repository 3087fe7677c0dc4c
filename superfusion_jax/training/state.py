"""The training state: model variables (SuperFusion's, or the segmentation network's), optimiser
state, step counter and PRNG key."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from superfusion_jax.models.superfusion import SuperFusion
from superfusion_jax.models.variants import Variant

# The PRNG implementation of `TrainState.rng` (its raw key data is uint32 (2,)).
RNG_IMPL = "threefry2x32"
# Side of the dummy input of the host-drawn init: the variables do not depend on the input size.
_INIT_SIZE = 16


@flax.struct.dataclass
class TrainState:
    """Everything a training step reads and writes (a pytree; orbax can save it as is).

    step: int32 scalar, number of completed updates.
    params: {'dense_matcher': ..., 'fusion_net': ...} float32 (the `params` collection); for the
      segmentation task BiSeNet's params.
    batch_stats: BatchNorm running statistics of the DenseMatcher (or of BiSeNet) ('mean',
      'var', 'num_batches_tracked').
    opt_state: the state of `make_optimizer`'s transformation.
    rng: uint32 (2,), raw key data of a threefry2x32 key (`rng_key` wraps it); the steps derive
      their randomness from (rng, step) and never change it.
    """

    step: jax.Array
    params: dict
    batch_stats: dict
    opt_state: Any
    rng: jax.Array

    def rng_key(self) -> jax.Array:
        """The typed PRNG key of `rng`."""
        return jax.random.wrap_key_data(self.rng, impl=RNG_IMPL)


def fresh_variables(variant: Variant, seed: int) -> dict:
    """Fresh SuperFusion variables {'params', 'batch_stats'} as the release initialises them.

    Drawn on the host (see `models.layers`), deterministic in `seed`; conv weights N(0, 0.02²).
    """
    x = jnp.zeros((1, _INIT_SIZE, _INIT_SIZE, 3), jnp.float32)
    return dict(SuperFusion(variant).init(jax.random.key(seed), x, x))


def create_train_state(
    *,
    variant: Variant,
    optimizer: optax.GradientTransformation,
    seed: int,
    init_variables: dict | None = None,
) -> TrainState:
    """A step-0 state for `variant` (`models.variants.FAITHFUL` or `CORRECTED`).

    init_variables: {'params', 'batch_stats'} to start from (e.g. `load_official(...)[0]` or a
    checkpoint's variables, numpy or JAX arrays, copied); None draws fresh ones from `seed`. The
    training PRNG key is derived from `seed` independently of the initialisation.
    """
    variables = fresh_variables(variant, seed) if init_variables is None else init_variables
    return state_from_variables(variables, optimizer=optimizer, seed=seed)


def state_from_variables(
    variables: dict, *, optimizer: optax.GradientTransformation, seed: int
) -> TrainState:
    """A step-0 state holding copies of `variables` ({'params', 'batch_stats'} of any Flax model,
    numpy or JAX arrays; params cast to float32), `optimizer.init(params)` and the training PRNG
    key derived from `seed` (independently of how the variables were initialised)."""
    if set(variables) != {"params", "batch_stats"}:
        raise ValueError(
            f"init_variables must hold 'params' and 'batch_stats', got {sorted(variables)}"
        )
    # copies: donating the state to a step must not delete the caller's arrays
    params = jax.tree_util.tree_map(lambda x: jnp.array(x, jnp.float32), variables["params"])
    batch_stats = jax.tree_util.tree_map(jnp.array, variables["batch_stats"])
    rng = jax.random.fold_in(jax.random.key(seed, impl=RNG_IMPL), 0x5F)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=batch_stats,
        opt_state=optimizer.init(params),
        rng=jax.random.key_data(rng),
    )
