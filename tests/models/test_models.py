"""Model behaviour beyond the eval-mode parity: train-mode BatchNorm, sizes, batches, variants,
gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from superfusion_jax.convert.official import load_official
from superfusion_jax.models.superfusion import SuperFusion
from superfusion_jax.models.variants import CORRECTED, FAITHFUL, Variant
from tests.conftest import PARITY, require


@pytest.fixture(scope="module")
def official_variables():
    variables, _ = load_official(require(PARITY / "weights_seed0.pth"))
    return variables


def _init(variant: Variant, seed: int = 0, size=(16, 16)):
    x = jnp.zeros((1, *size, 3), jnp.float32)
    return SuperFusion(variant).init(jax.random.key(seed), x, x)


def test_train_mode_batch_stats_match_release(official_variables):
    """Golden file: parity/after_train_forward_seed0.pth (running statistics after one official
    'bi' forward in train mode on train_batch_seed0.npz: momentum 0.1, unbiased variance)."""
    batch = np.load(require(PARITY / "train_batch_seed0.npz"))
    after, _ = load_official(require(PARITY / "after_train_forward_seed0.pth"))
    nhwc = {k: np.transpose(batch[k], (0, 2, 3, 1)) for k in ("ir", "vi", "ir_warp", "vi_warp")}
    ir_stack = np.concatenate([nhwc["ir_warp"], nhwc["ir"]])
    vi_stack = np.concatenate([nhwc["vi"], nhwc["vi_warp"]])
    model = SuperFusion(FAITHFUL)

    def forward(mdl, ir, vi):
        return mdl.dense_matcher(ir, vi, "bi", train=True)

    out, updated = model.apply(
        official_variables, ir_stack, vi_stack, method=forward, mutable=["batch_stats"]
    )
    assert out["down2"].shape == (8, 256, 256, 2)
    got = traverse_util.flatten_dict(updated["batch_stats"])
    want = traverse_util.flatten_dict(after["batch_stats"])
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=2e-5, atol=1e-6, err_msg=str(key))
    count = ("dense_matcher", "matcher1", "head", "layer_0", "norm", "num_batches_tracked")
    assert int(got[count]) == 2


def test_any_size_and_batch(official_variables):
    """Sizes that are not multiples of 8 work, and a batch equals its elements run alone."""
    rng = np.random.default_rng()
    model = SuperFusion(FAITHFUL)
    run = jax.jit(lambda v, a, b: model.apply(v, a, b, method="register_and_fuse"))
    ir = rng.random((2, 37, 45, 3), np.float32)
    vi = rng.random((2, 37, 45, 3), np.float32)
    both = run(official_variables, ir, vi)
    assert both["disp"].shape == (2, 37, 45, 2)
    assert both["fused"].shape == both["ir_reg"].shape == (2, 37, 45, 3)
    single = run(official_variables, ir[1:], vi[1:])
    for key in both:
        np.testing.assert_allclose(both[key][1:], single[key], atol=2e-5, rtol=1e-4)
        assert np.isfinite(both[key]).all()


@pytest.mark.slow
@pytest.mark.parametrize("size", [(326, 544), (481, 643)])
def test_full_size_odd_shapes(official_variables, size):
    rng = np.random.default_rng()
    ir = rng.random((1, *size, 3), np.float32)
    vi = rng.random((1, *size, 3), np.float32)
    out = SuperFusion(FAITHFUL).apply(official_variables, ir, vi, method="register_and_fuse")
    assert out["disp"].shape == (1, *size, 2) and out["fused"].shape == (1, *size, 3)
    assert all(np.isfinite(v).all() for v in out.values())


def test_padding_crops_back_to_the_same_pixel_displacement():
    """An image whose size needs padding gives, on its own pixels, the displacement that the
    network computes on the explicitly padded image."""
    rng = np.random.default_rng()
    variables = _init(CORRECTED)
    ir = rng.random((1, 20, 27, 3), np.float32)
    vi = rng.random((1, 20, 27, 3), np.float32)
    pad = ((0, 0), (0, 4), (0, 5), (0, 0))
    model = SuperFusion(CORRECTED)
    register = jax.jit(lambda a, b: model.apply(variables, a, b, method="register")["disp"])
    small = register(ir, vi)
    big = register(np.pad(ir, pad, mode="edge"), np.pad(vi, pad, mode="edge"))
    # corrected grid: pixel displacement = disp * size / 2
    np.testing.assert_allclose(
        small * np.array([27, 20]) / 2, big[:, :20, :27] * np.array([32, 24]) / 2, atol=1e-4
    )


def test_corrected_variant_applies_direction_attention(official_variables):
    """With the direction attention driven to sigmoid(-50) ~ 0, the corrected GSAM no longer sees
    the first RNN; the faithful one (attention discarded) still does. (The parity weights are
    scaled so that every layer matters.)"""
    rng = np.random.default_rng()
    ir = rng.random((1, 12, 14, 3), np.float32)
    vi = rng.random((1, 12, 14, 3), np.float32)
    for variant, depends in ((CORRECTED, False), (FAITHFUL, True)):
        variables = official_variables
        params = traverse_util.flatten_dict(variables["params"])
        params[("fusion_net", "gsam", "attention_2", "conv", "bias")] = jnp.full((4,), -50.0)
        base = {**variables, "params": traverse_util.unflatten_dict(params)}
        params[("fusion_net", "gsam", "irnn1", "bias")] = jnp.full((4, 32), 3.0)
        moved = {**variables, "params": traverse_util.unflatten_dict(params)}
        model = SuperFusion(variant)
        a = model.apply(base, ir, vi, method="fuse")["fused"]
        b = model.apply(moved, ir, vi, method="fuse")["fused"]
        assert (np.abs(a - b).max() > 1e-3) == depends, (variant.name, np.abs(a - b).max())


def test_corrected_zero_displacement_is_identity_faithful_is_not():
    rng = np.random.default_rng()
    img = jnp.asarray(rng.random((1, 9, 11, 3), np.float32))
    zero = jnp.zeros((1, 9, 11, 2))
    for variant, identity in ((CORRECTED, True), (FAITHFUL, False)):
        out = SuperFusion(variant).apply({}, img, zero, method="warp")
        assert np.allclose(out, img, atol=1e-6) == identity


@pytest.mark.slow
def test_gradients_match_finite_differences():
    """jax.grad through the whole model (registration, warp, RNN, fusion) is finite and agrees
    with a central difference along a random direction, in float64. (Slow: a float64 compile of
    the whole model's gradient; the fast suite checks the ops' gradients against torch and the
    training step's gradient norms against the release.)"""
    rng = np.random.default_rng()
    with jax.enable_x64(True):
        variables = jax.tree_util.tree_map(
            lambda v: jnp.asarray(v, jnp.float64) if jnp.issubdtype(v.dtype, jnp.floating) else v,
            _init(FAITHFUL, seed=int(rng.integers(1 << 30))),
        )
        ir = jnp.asarray(rng.random((1, 16, 16, 3)))
        vi = jnp.asarray(rng.random((1, 16, 16, 3)))
        model = SuperFusion(FAITHFUL)

        def loss(params):
            out = model.apply({**variables, "params": params}, ir, vi, method="register_and_fuse")
            return jnp.sum(out["fused"] ** 2) + 1e3 * jnp.sum(out["disp"] ** 2)

        params = variables["params"]
        grad = jax.grad(loss)(params)
        leaves = jax.tree_util.tree_leaves(grad)
        assert all(np.isfinite(g).all() for g in leaves)
        assert sum(float(jnp.abs(g).sum()) for g in leaves) > 0
        direction = jax.tree_util.tree_map(lambda p: jnp.asarray(rng.normal(size=p.shape)), params)
        eps = 1e-6
        shift = lambda s: jax.tree_util.tree_map(lambda p, d: p + s * d, params, direction)
        numeric = (loss(shift(eps)) - loss(shift(-eps))) / (2 * eps)
        analytic = sum(
            float(jnp.sum(g * d))
            for g, d in zip(leaves, jax.tree_util.tree_leaves(direction), strict=True)
        )
        np.testing.assert_allclose(analytic, numeric, rtol=1e-4)
