"""The stride-2 convolution with a phase-by-phase input gradient against XLA's own."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from superfusion_jax.ops.strided_conv import conv3x3_stride2


def _reference(x, kernel, dilation):
    pad = ((dilation, dilation), (dilation, dilation))
    return lax.conv_general_dilated(
        x,
        kernel,
        (2, 2),
        pad,
        rhs_dilation=(dilation, dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


@pytest.mark.parametrize("dilation", [1, 2, 4])
@pytest.mark.parametrize("size", [(16, 20), (17, 23), (9, 10)])
def test_value_and_gradients_equal_xla(dilation, size):
    rng = np.random.default_rng(dilation * 100 + size[0])
    x = jnp.asarray(rng.standard_normal((2, *size, 3), np.float32))
    kernel = jnp.asarray(rng.standard_normal((3, 3, 3, 5), np.float32))
    y_ref, vjp_ref = jax.vjp(lambda a, k: _reference(a, k, dilation), x, kernel)
    y, vjp = jax.vjp(lambda a, k: conv3x3_stride2(a, k, dilation), x, kernel)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    assert y.shape == (2, -(-size[0] // 2), -(-size[1] // 2), 5)
    g = jnp.asarray(rng.standard_normal(y.shape, np.float32))
    for mine, ref in zip(vjp(g), vjp_ref(g), strict=True):
        np.testing.assert_allclose(mine, ref, rtol=1e-4, atol=1e-4)
