"""torch_abs / torch_clamp: values and derivatives equal torch's, including at the kinks."""

import jax
import jax.numpy as jnp
import numpy as np
import torch

from superfusion_jax.ops.kinks import torch_abs, torch_clamp


def test_torch_abs_and_clamp_have_torch_derivatives_at_kinks():
    x = np.array([-2.0, -0.5, 0.0, 0.25, 0.5, 1.0, 3.0], np.float32)
    cases = [
        (lambda v: torch_abs(v), lambda t: t.abs()),
        (lambda v: torch_clamp(v, 0.25), lambda t: t.clamp(min=0.25)),
        (lambda v: torch_clamp(v, hi=0.5), lambda t: t.clamp(max=0.5)),
        (lambda v: torch_clamp(v, 0.0, 1.0), lambda t: t.clamp(0.0, 1.0)),
    ]
    for ours, theirs in cases:
        t = torch.from_numpy(x).requires_grad_(True)
        value = theirs(t)
        value.sum().backward()
        np.testing.assert_array_equal(np.asarray(ours(jnp.asarray(x))), value.detach().numpy())
        grad = np.asarray(jax.grad(lambda v, f=ours: f(v).sum())(jnp.asarray(x)))
        np.testing.assert_array_equal(grad, t.grad.numpy())
