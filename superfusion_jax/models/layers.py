"""Convolution blocks of the release, in NHWC, with PyTorch's padding, norms and init.

The release initialises every `nn.Conv2d` weight with N(0, 0.02) (`gaussian_weights_init`, which
also overwrites the spatial-RNN weights) and leaves biases at PyTorch's default
U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the initialisers below do the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from superfusion_jax.ops.strided_conv import flax_conv_general_dilated

Array = jax.Array


def _host_draw(key: Array, shape: tuple[int, ...], dtype, draw: Callable) -> Array:
    """Random values drawn by numpy on the host, seeded from a JAX key.

    XLA's CPU compiler takes minutes to compile the dozens of threefry samplers that a jitted
    `model.init` would otherwise contain (measured: 60 normal draws, 162 s); a host callback
    compiles in milliseconds and is just as deterministic given the key.
    """

    def sample(key_data: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(np.asarray(key_data).ravel().tolist())
        return np.asarray(draw(rng, shape), dtype)

    struct = jax.ShapeDtypeStruct(shape, dtype)
    return jax.pure_callback(sample, struct, jax.random.key_data(key))


def normal_init(stddev: float) -> Callable:
    """N(0, stddev^2) initialiser (host-drawn, see `_host_draw`)."""

    def init(key: Array, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
        return _host_draw(key, shape, dtype, lambda rng, s: stddev * rng.standard_normal(s))

    return init


def torch_bias_init(fan_in: int) -> Callable:
    """PyTorch's default conv bias initialiser U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key: Array, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
        return _host_draw(key, shape, dtype, lambda rng, s: rng.uniform(-bound, bound, s))

    return init


conv_kernel_init = normal_init(0.02)


class InstanceNorm(nn.Module):
    """`nn.InstanceNorm2d(affine=False)`: per sample and channel over H, W; biased variance.

    (N, H, W, C) -> (N, H, W, C). No parameters, no running statistics.
    """

    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: Array) -> Array:
        mean = jnp.mean(x, axis=(1, 2), keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=(1, 2), keepdims=True)
        return (x - mean) * jax.lax.rsqrt(var + self.epsilon)


class BatchNorm(nn.Module):
    """`nn.BatchNorm2d(affine=False)` with PyTorch's running statistics.

    Train mode normalises with the batch mean and biased variance over (N, H, W) and updates the
    `batch_stats` collection as PyTorch does: momentum 0.1 and the *unbiased* batch variance
    (flax's own BatchNorm stores the biased one, which would drift from the release).
    Eval mode normalises with the running statistics. (N, H, W, C) -> (N, H, W, C).
    `num_batches_tracked` is kept so that checkpoints convert back to PyTorch losslessly.
    """

    momentum: float = 0.1
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        c = x.shape[-1]
        mean_v = self.variable("batch_stats", "mean", jnp.zeros, (c,), jnp.float32)
        var_v = self.variable("batch_stats", "var", jnp.ones, (c,), jnp.float32)
        count_v = self.variable("batch_stats", "num_batches_tracked", jnp.zeros, (), jnp.int32)
        if not train:
            return (x - mean_v.value) * jax.lax.rsqrt(var_v.value + self.epsilon)
        mean = jnp.mean(x, axis=(0, 1, 2))
        var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2))
        if not self.is_initializing():
            n = x.shape[0] * x.shape[1] * x.shape[2]
            unbiased = var * (n / max(n - 1, 1))
            mean_v.value = (1 - self.momentum) * mean_v.value + self.momentum * mean
            var_v.value = (1 - self.momentum) * var_v.value + self.momentum * unbiased
            count_v.value = count_v.value + 1
        return (x - mean) * jax.lax.rsqrt(var + self.epsilon)


def _conv(features: int, in_features: int, stride: int, dilation: int, bias: bool) -> nn.Conv:
    """A 3x3 conv with PyTorch's symmetric padding (= dilation) and the release's init; of
    stride 2, with the phase-by-phase input gradient of `ops.strided_conv` (same function,
    faster backward on a CPU)."""
    strided = {"conv_general_dilated": flax_conv_general_dilated} if stride == 2 else {}
    return nn.Conv(
        features,
        (3, 3),
        strides=(stride, stride),
        padding=((dilation, dilation), (dilation, dilation)),
        kernel_dilation=(dilation, dilation),
        use_bias=bias,
        kernel_init=conv_kernel_init,
        bias_init=torch_bias_init(in_features * 9),
        name="conv",
        **strided,
    )


class ConvNormAct(nn.Module):
    """The release's DenseMatcher `Conv2d` block: 3x3 conv (no bias) -> norm -> LeakyReLU(0.1).

    norm: None, 'instance' or 'batch' (both affine=False); act: True for LeakyReLU(0.1).
    (N, H, W, C_in) -> (N, H/stride, W/stride, features), sizes rounded up.
    """

    features: int
    stride: int = 1
    dilation: int = 1
    norm: str | None = None
    act: bool = True

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        x = _conv(self.features, x.shape[-1], self.stride, self.dilation, bias=False)(x)
        if self.norm == "instance":
            x = InstanceNorm(name="norm")(x)
        elif self.norm == "batch":
            x = BatchNorm(name="norm")(x, train)
        elif self.norm is not None:
            raise ValueError(f"unknown norm {self.norm!r}")
        return nn.leaky_relu(x, 0.1) if self.act else x


class ResConv(nn.Module):
    """The release's `ResConv2d`: x + relu(instance_norm(conv3x3(x))), no bias; C_in == C_out."""

    dilation: int = 1

    @nn.compact
    def __call__(self, x: Array) -> Array:
        y = _conv(x.shape[-1], x.shape[-1], 1, self.dilation, bias=False)(x)
        return nn.relu(InstanceNorm(name="norm")(y)) + x


class ConvAct(nn.Module):
    """The release's FusionNet `ConvLeakyRelu2d`: 3x3 conv with bias -> activation.

    activation: 'lrelu' (PyTorch default slope 0.01), 'tanh', 'sigmoid' or None.
    (N, H, W, C_in) -> (N, H, W, features).
    """

    features: int
    activation: str | None = "lrelu"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x = _conv(self.features, x.shape[-1], 1, 1, bias=True)(x)
        if self.activation == "lrelu":
            return nn.leaky_relu(x, 0.01)
        if self.activation == "tanh":
            return jnp.tanh(x)
        if self.activation == "sigmoid":
            return nn.sigmoid(x)
        if self.activation is None:
            return x
        raise ValueError(f"unknown activation {self.activation!r}")
