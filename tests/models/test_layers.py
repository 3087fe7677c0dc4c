"""ConvActOnParts: ConvAct of a channel concatenation, without building it."""

import jax
import jax.numpy as jnp
import numpy as np

from superfusion_jax.models.layers import ConvAct, ConvActOnParts


def test_conv_on_parts_equals_conv_of_the_concatenation():
    rng = np.random.default_rng(0)
    parts = tuple(jnp.asarray(rng.standard_normal((2, 9, 11, c), np.float32)) for c in (3, 5, 4))
    whole = jnp.concatenate(parts, axis=-1)
    on_parts = ConvActOnParts(6)
    variables = on_parts.init(jax.random.key(0), parts)
    reference = ConvAct(6).init(jax.random.key(0), whole)
    assert jax.tree.map(jnp.shape, variables) == jax.tree.map(jnp.shape, reference)
    np.testing.assert_allclose(
        on_parts.apply(variables, parts), ConvAct(6).apply(variables, whole), atol=1e-5
    )
