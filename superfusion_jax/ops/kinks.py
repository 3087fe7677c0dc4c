"""Element-wise functions with PyTorch's derivatives at their kinks.

JAX and PyTorch agree everywhere except exactly at a kink, and exact values there are common in
this model (black borders of warped images, clamped luminance): `jnp.abs` has derivative 1 at 0
where torch's is 0, and `jnp.clip` has 1/2 at a bound where torch's `clamp` has 1. Gradient
parity with the release needs torch's choice.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def torch_abs(x: Array) -> Array:
    """|x| whose derivative is sign(x), 0 at x = 0 (torch's)."""
    return x * jnp.sign(x)


def torch_clamp(x: Array, lo: float | None = None, hi: float | None = None) -> Array:
    """Clamp to [lo, hi] with derivative 1 on the closed interval and 0 outside (torch's)."""
    inside = jnp.ones(x.shape, bool)
    if lo is not None:
        inside = inside & (x >= lo)
    if hi is not None:
        inside = inside & (x <= hi)
    return jnp.where(inside, x, jax.lax.stop_gradient(jnp.clip(x, lo, hi)))
