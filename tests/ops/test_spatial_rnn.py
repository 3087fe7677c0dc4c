"""superfusion_jax.ops.spatial_rnn against restatements of the release's CUDA IRNN kernels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax.test_util import check_grads

from superfusion_jax.ops.spatial_rnn import spatial_rnn

SHAPES = [(2, 7, 9, 3), (1, 1, 6, 2), (1, 5, 1, 2)]


def random_case(rng, shape):
    """Inputs with negative weights and negative biases, so that many outputs hit 0."""
    channels = shape[-1]
    x = rng.standard_normal(shape)
    weight = rng.uniform(-1.2, 1.2, (4, channels))
    bias = rng.uniform(-0.6, 0.3, (4, channels))
    return x, weight, bias


def numpy_irnn(x, weight, bias):
    """The CUDA forward kernel as written: every output re-runs its recurrence from the edge."""
    n, h, w, c = x.shape
    up, right, down, left = (np.zeros_like(x) for _ in range(4))
    relu = lambda v: max(v, 0.0)
    for b in range(n):
        for ch in range(c):
            for i in range(h):
                for j in range(w):
                    acc = relu(x[b, h - 1, j, ch])
                    for k in range(h - 2, i - 1, -1):
                        acc = relu(acc * weight[0, ch] + bias[0, ch] + x[b, k, j, ch])
                    up[b, i, j, ch] = acc
                    acc = relu(x[b, i, 0, ch])
                    for k in range(1, j + 1):
                        acc = relu(acc * weight[1, ch] + bias[1, ch] + x[b, i, k, ch])
                    right[b, i, j, ch] = acc
                    acc = relu(x[b, 0, j, ch])
                    for k in range(1, i + 1):
                        acc = relu(acc * weight[2, ch] + bias[2, ch] + x[b, k, j, ch])
                    down[b, i, j, ch] = acc
                    acc = relu(x[b, i, w - 1, ch])
                    for k in range(w - 2, j - 1, -1):
                        acc = relu(acc * weight[3, ch] + bias[3, ch] + x[b, i, k, ch])
                    left[b, i, j, ch] = acc
    return up, right, down, left


def torch_irnn(x, weight, bias):
    """The same recurrence as a plain torch loop (NHWC tensors), for autograd."""

    def run(slices, k):
        out = [torch.relu(slices[0])]
        for s in slices[1:]:
            out.append(torch.relu(weight[k] * out[-1] + bias[k] + s))
        return out

    rows = list(x.unbind(1))
    cols = list(x.unbind(2))
    up = torch.stack(run(rows[::-1], 0)[::-1], 1)
    right = torch.stack(run(cols, 1), 2)
    down = torch.stack(run(rows, 2), 1)
    left = torch.stack(run(cols[::-1], 3)[::-1], 2)
    return up, right, down, left


@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_cuda_kernel_restatement(seed, shape):
    x, weight, bias = random_case(np.random.default_rng(seed), shape)
    expected = numpy_irnn(x, weight, bias)
    args = (
        jnp.asarray(x, jnp.float32),
        jnp.asarray(weight, jnp.float32),
        jnp.asarray(bias, jnp.float32),
    )
    got = jax.jit(spatial_rnn)(*args)
    n, h, w, c = shape
    assert got.shape == (n, h, w, 4, c) and got.dtype == jnp.float32
    values = np.stack(expected)
    assert (values == 0).any() and (values > 0).any(), f"degenerate case, seed={seed}"
    for k, (name, e) in enumerate(zip(("up", "right", "down", "left"), expected, strict=True)):
        np.testing.assert_allclose(
            got[..., k, :], e, rtol=1e-5, atol=1e-5, err_msg=f"{name}, seed={seed}"
        )


@pytest.mark.parametrize("shape", SHAPES)
def test_gradients_match_torch_autograd(seed, shape):
    rng = np.random.default_rng(seed)
    x, weight, bias = random_case(rng, shape)
    cotangents = [rng.standard_normal(shape) for _ in range(4)]
    stacked_cotangent = np.stack(cotangents, axis=-2)  # (N, H, W, 4, C), as the outputs

    tensors = [torch.tensor(a, requires_grad=True) for a in (x, weight, bias)]
    outputs = torch_irnn(*tensors)
    sum(
        (o * torch.from_numpy(g)).sum() for o, g in zip(outputs, cotangents, strict=True)
    ).backward()

    with jax.enable_x64(True):
        loss = lambda *a: jnp.sum(spatial_rnn(*a) * stacked_cotangent)
        grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(*map(jnp.asarray, (x, weight, bias)))
    for name, g, t in zip(("x", "weight", "bias"), grads, tensors, strict=True):
        np.testing.assert_allclose(
            g, t.grad.numpy(), rtol=1e-10, atol=1e-10, err_msg=f"{name}, seed={seed}"
        )


def test_gradients_finite_differences(seed):
    x, weight, bias = random_case(np.random.default_rng(seed), (1, 4, 5, 2))
    with jax.enable_x64(True):
        # eps is far below the distance of any pre-activation from the ReLU kink here, except
        # with negligible probability.
        check_grads(
            jax.jit(spatial_rnn),
            tuple(map(jnp.asarray, (x, weight, bias))),
            order=1,
            modes=("rev",),
            eps=1e-7,
        )


def test_float32_gradients_at_the_release_scale(seed):
    """float32 gradients at a GSAM-like shape stay close to the float64 ones."""
    rng = np.random.default_rng(seed)
    shape = (2, 24, 40, 4)
    x = rng.standard_normal(shape)
    weight = rng.uniform(0.1, 0.6, (4, shape[-1]))  # the parity weights' range
    bias = rng.uniform(-0.1, 0.1, (4, shape[-1]))
    loss = lambda *a: jnp.sum(spatial_rnn(*a) ** 2)
    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    grad32 = grad(*(jnp.asarray(a, jnp.float32) for a in (x, weight, bias)))
    with jax.enable_x64(True):
        grad64 = grad(*map(jnp.asarray, (x, weight, bias)))
    for name, g32, g64 in zip(("x", "weight", "bias"), grad32, grad64, strict=True):
        scale = np.abs(np.asarray(g64)).max()
        np.testing.assert_allclose(g32, g64, atol=1e-5 * scale, err_msg=f"{name}, seed={seed}")
