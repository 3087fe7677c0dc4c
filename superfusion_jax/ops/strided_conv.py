"""3x3 convolution with stride 2 whose input gradient is computed phase by phase.

The input gradient of a strided convolution is a transposed convolution. XLA computes it as a
convolution of the cotangent dilated with zeros (`lhs_dilation`), and on a CPU that ran about
3x slower than the four small stride-1 convolutions below (16 x 256 x 256 x 32 channels, the
DenseMatcher's first stride-2 layer: 341 against 116 ms; docs/performance.md).

For stride 2 and dilation d, output i reads input 2i + d (a - 1) through tap a = 0, 1, 2 (along
each axis; PyTorch's padding d). An input pixel p = 2m + r (phase r = 0 or 1) therefore receives
the cotangent of output m + (r - d (a - 1)) / 2 through every tap a with d (a - 1) = r (mod 2):
per phase, a stride-1 correlation of the cotangent with those taps, no multiplications by
inserted zeros. The four phases are interleaved into the input's grid. Same function as
`lax.conv_general_dilated` (forward and weight gradient are XLA's own); the input gradient
equals XLA's up to float rounding.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def _conv(x: jax.Array, kernel: jax.Array, dilation: int) -> jax.Array:
    pad = ((dilation, dilation), (dilation, dilation))
    return lax.conv_general_dilated(
        x, kernel, (2, 2), pad, rhs_dilation=(dilation, dilation), dimension_numbers=_DIMENSIONS
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv3x3_stride2(x: jax.Array, kernel: jax.Array, dilation: int = 1) -> jax.Array:
    """(N, H, W, C) x (3, 3, C, O) -> (N, ceil(H/2), ceil(W/2), O); stride 2, the given
    dilation and symmetric zero padding `dilation` (PyTorch's `padding=dilation`), no bias."""
    return _conv(x, kernel, dilation)


def _phase_taps(dilation: int, phase: int) -> list[tuple[int, int]]:
    """(offset in the cotangent, tap index) of the taps reaching input phase `phase`, by
    increasing offset: input 2m + phase receives cotangent m + offset through that tap."""
    taps = [
        ((phase - dilation * (a - 1)) // 2, a)
        for a in range(3)
        if (dilation * (a - 1) - phase) % 2 == 0
    ]
    return sorted(taps)


def _phase_gradient(g: jax.Array, kernel: jax.Array, dilation: int, ry: int, rx: int, n_out):
    """Input gradient at the input pixels (2m + ry, 2k + rx): (N, ceil((H-ry)/2), ..., C)."""
    rows, cols = _phase_taps(dilation, ry), _phase_taps(dilation, rx)
    shape = (g.shape[0], *n_out, kernel.shape[2])
    if not rows or not cols:
        return jnp.zeros(shape, g.dtype)
    # Tap offsets are evenly spaced: a stride-1 correlation with that spacing as dilation.
    step = lambda taps: taps[1][0] - taps[0][0] if len(taps) > 1 else 1
    taps = jnp.stack([jnp.stack([kernel[a, b] for _, b in cols]) for _, a in rows])
    taps = jnp.swapaxes(taps, 2, 3)  # (kh, kw, O, C): cotangent channels in, input channels out
    pad = lambda taps, size, n: (-taps[0][0], n - size + taps[-1][0])
    out = lax.conv_general_dilated(
        g,
        taps,
        (1, 1),
        (pad(rows, g.shape[1], n_out[0]), pad(cols, g.shape[2], n_out[1])),
        rhs_dilation=(step(rows), step(cols)),
        dimension_numbers=_DIMENSIONS,
    )
    return out


def _forward(x, kernel, dilation):
    return _conv(x, kernel, dilation), (x, kernel)


def _backward(dilation, residuals, g):
    x, kernel = residuals
    h, w = x.shape[1:3]
    half = lambda size, r: (size - r + 1) // 2  # input pixels of phase r
    phases = [
        [_phase_gradient(g, kernel, dilation, ry, rx, (half(h, ry), half(w, rx))) for rx in (0, 1)]
        for ry in (0, 1)
    ]
    # Interleave: pad the odd phases to the even ones' size, stack, and crop to (H, W).
    hh, hw = half(h, 0), half(w, 0)
    fit = lambda a: jnp.pad(a, ((0, 0), (0, hh - a.shape[1]), (0, hw - a.shape[2]), (0, 0)))
    rows = [jnp.stack([fit(p) for p in row], axis=3) for row in phases]  # (N, hh, hw, 2, C)
    dx = jnp.stack(rows, axis=2).reshape(x.shape[0], 2 * hh, 2 * hw, x.shape[3])[:, :h, :w]
    _, kernel_vjp = jax.vjp(lambda k: _conv(x, k, dilation), kernel)
    return dx.astype(x.dtype), kernel_vjp(g)[0]


conv3x3_stride2.defvjp(_forward, _backward)


def flax_conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count: int = 1,
    precision=None,
) -> jax.Array:
    """`conv3x3_stride2` behind the signature `flax.linen.Conv(conv_general_dilated=...)`
    calls (flax passes NHWC inputs and an HWIO kernel). Only the case it implements is
    accepted: a 3x3 kernel, stride 2, equal dilations d and padding d, no input dilation,
    no feature groups, default precision."""
    dilation = (rhs_dilation or (1, 1))[0]
    implemented = (
        rhs.shape[:2] == (3, 3)
        and tuple(window_strides) == (2, 2)
        and tuple(rhs_dilation or (1, 1)) == (dilation, dilation)
        and [tuple(p) for p in padding] == [(dilation, dilation)] * 2
        and tuple(lhs_dilation or (1, 1)) == (1, 1)
        and feature_group_count == 1
        and precision is None
    )
    if not implemented:
        raise ValueError("conv3x3_stride2 implements 3x3 convolutions of stride 2 only")
    return conv3x3_stride2(lhs, rhs, dilation)
