"""Four-direction spatial IRNN of the release's GSAM (``modules/irnn.py`` + its CUDA kernels).

Per channel c and direction, a ReLU recurrence runs toward each pixel from one image edge:
h_edge = relu(x_edge), h_i = relu(w_c * h_{i-1} + b_c + x_i).

The four outputs are one (N, H, W, 4, C) array, direction before channel: reshaped to
(N, H, W, 4C) it is the release's channel concatenation (up, right, down, left) that the GSAM
convolves, so it is never built by copying (a copy that, with its gradient's slices, cost
seconds of the training step on a CPU: docs/performance.md).

Implementation: the two opposite directions along an axis (down/up along H, right/left along W)
share one ``lax.fori_loop`` that writes both outputs in place, row (or column) k of one and
row L-1-k of the other per step: half the sequential steps of one loop per direction, and no
transposes. The VJP is custom (see :func:`spatial_rnn`).
"""

import jax
import jax.numpy as jnp
from jax import lax

# Rows of ``weight`` / ``bias`` and positions on the output's direction axis.
UP, RIGHT, DOWN, LEFT = range(4)
# (array axis, direction sweeping from index 0, direction sweeping from the last index).
_AXIS_PAIRS = ((1, DOWN, UP), (2, RIGHT, LEFT))


def _take(a: jax.Array, index: jax.Array, axis: int) -> jax.Array:
    """Row/column `index` along `axis` of an (N, H, W, C) array, keeping the axis."""
    return lax.dynamic_slice_in_dim(a, index, 1, axis)


def _take_direction(a: jax.Array, index: jax.Array, axis: int, direction: int) -> jax.Array:
    """Row/column `index` of direction `direction` of an (N, H, W, 4, C) array: the
    (N, H, W, C) array's `_take`."""
    return _take(a[..., direction, :], index, axis)


def _put_direction(
    a: jax.Array, value: jax.Array, index: jax.Array, axis: int, direction: int
) -> jax.Array:
    """`a` (N, H, W, 4, C) with row/column `index` of direction `direction` set to `value`."""
    start = [0, 0, 0, direction, 0]
    start[axis] = index
    return lax.dynamic_update_slice(a, value[..., None, :], tuple(start))


def _sweep_pair(
    x: jax.Array,
    out: jax.Array,
    weight: jax.Array,
    bias: jax.Array,
    axis: int,
    asc: int,
    desc: int,
) -> jax.Array:
    """Recurrences along ``axis`` of (N, H, W, C) ``x``: direction `asc` starts at index 0,
    `desc` at the end; written into their places of ``out`` (N, H, W, 4, C), which is returned.
    weight, bias: (4, C)."""
    length = x.shape[axis]
    zero = jnp.zeros_like(_take(x, 0, axis))

    def step(k, carry):
        h_asc, h_desc, out = carry
        j = length - 1 - k
        bias_on = (k > 0).astype(x.dtype)  # the edge element gets no bias
        h_asc = jnp.maximum(weight[asc] * h_asc + bias_on * bias[asc] + _take(x, k, axis), 0)
        h_desc = jnp.maximum(weight[desc] * h_desc + bias_on * bias[desc] + _take(x, j, axis), 0)
        out = _put_direction(out, h_asc, k, axis, asc)
        return h_asc, h_desc, _put_direction(out, h_desc, j, axis, desc)

    return lax.fori_loop(0, length, step, (zero, zero, out))[2]


def _adjoint_pair(
    dx: jax.Array,
    outputs: jax.Array,
    cotangents: jax.Array,
    weight: jax.Array,
    axis: int,
    asc: int,
    desc: int,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    """Adds the input gradients of a :func:`_sweep_pair` to ``dx``; returns (dx, (dw, db) of
    `asc`, (dw, db) of `desc`).

    Per direction, in processing order t (t = 0 at the edge), the pre-activation adjoint is
    d_t = [h_t > 0] (g_t + w d_{t+1}), a linear recurrence run backwards; dx_t = d_t,
    db = sum_{t>=1} d_t and dw = sum_{t>=1} d_t h_{t-1}: what the release's CUDA backward computes.
    ``outputs`` are the forward outputs h, ``cotangents`` their cotangents g, both
    (N, H, W, 4, C); dx is (N, H, W, C); dw, db are (C,).
    """
    length = outputs.shape[axis]
    last = length - 1
    zero = jnp.zeros_like(_take(dx, 0, axis))

    def h(index, direction):
        return _take_direction(outputs, index, axis, direction)

    def g(index, direction):
        return _take_direction(cotangents, index, axis, direction)

    def step(k, carry):
        d_asc, d_desc, dw_asc, db_asc, dw_desc, db_desc, dx = carry
        j = last - k  # 'asc' is walked back from the end, 'desc' from the start
        d_asc = jnp.where(h(j, asc) > 0, g(j, asc) + weight[asc] * d_asc, 0)
        d_desc = jnp.where(h(k, desc) > 0, g(k, desc) + weight[desc] * d_desc, 0)
        # Terms of dw and db; the edge element (no weight or bias) contributes nothing.
        body_asc = (j > 0).astype(d_asc.dtype) * d_asc
        body_desc = (k < last).astype(d_desc.dtype) * d_desc
        dw_asc = dw_asc + body_asc * h(jnp.maximum(j - 1, 0), asc)
        dw_desc = dw_desc + body_desc * h(jnp.minimum(k + 1, last), desc)
        dx = lax.dynamic_update_slice_in_dim(dx, _take(dx, j, axis) + d_asc, j, axis)
        dx = lax.dynamic_update_slice_in_dim(dx, _take(dx, k, axis) + d_desc, k, axis)
        return d_asc, d_desc, dw_asc, db_asc + body_asc, dw_desc, db_desc + body_desc, dx

    carry = lax.fori_loop(0, length, step, (zero,) * 6 + (dx,))
    channel_sums = [jnp.sum(a, axis=tuple(range(a.ndim - 1))) for a in carry[2:6]]
    return carry[6], (channel_sums[0], channel_sums[1]), (channel_sums[2], channel_sums[3])


def _forward(x: jax.Array, weight: jax.Array, bias: jax.Array) -> jax.Array:
    n, h, w, c = x.shape
    out = jnp.zeros((n, h, w, 4, c), x.dtype)
    for axis, asc, desc in _AXIS_PAIRS:
        out = _sweep_pair(x, out, weight, bias, axis, asc, desc)
    return out


@jax.custom_vjp
def spatial_rnn(x: jax.Array, weight: jax.Array, bias: jax.Array) -> jax.Array:
    """Spatial IRNN: four directional ReLU recurrences with per-channel weight and bias.

    For channel c and each direction k, h_edge = relu(x_edge) and
    h_i = relu(weight[k, c] * h_{i-1} + bias[k, c] + x_i), where i-1 is the neighbour one step
    back toward the starting edge. 'up' sweeps from the bottom row upward, 'right' from the left
    column rightward, 'down' from the top row downward, 'left' from the right column leftward.

    The VJP is custom: it takes the ReLU mask from the outputs (h > 0, as the release's CUDA
    backward does; a pre-activation of exactly 0 passes no gradient) and runs the adjoint as a
    reverse linear recurrence. Gradients w.r.t. ``x``, ``weight`` and ``bias``.

    Args:
      x: (N, H, W, C) input features.
      weight: (4, C) recurrent weights, rows in the order (up, right, down, left).
      bias: (4, C) biases, same order.

    Returns:
      (N, H, W, 4, C), >= 0, dtype of ``x``: [..., k, :] is direction k (UP, RIGHT, DOWN, LEFT).
    """
    return _forward(x, weight, bias)


def _spatial_rnn_fwd(x, weight, bias):
    outputs = _forward(x, weight, bias)
    return outputs, (outputs, weight, bias)


def _spatial_rnn_bwd(residuals, cotangents):
    outputs, weight, bias = residuals
    dx = jnp.zeros(outputs.shape[:3] + outputs.shape[4:], outputs.dtype)
    dweight, dbias = [None] * 4, [None] * 4
    for axis, asc, desc in _AXIS_PAIRS:
        dx, (dweight[asc], dbias[asc]), (dweight[desc], dbias[desc]) = _adjoint_pair(
            dx, outputs, cotangents, weight, axis, asc, desc
        )
    return dx, jnp.stack(dweight).astype(weight.dtype), jnp.stack(dbias).astype(bias.dtype)


spatial_rnn.defvjp(_spatial_rnn_fwd, _spatial_rnn_bwd)
