"""Training steps vs the official release: one golden step of each stage (parity/), and the
optimiser and learning-rate policy vs torch's Adam, clip_grad_norm_ and LambdaLR."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import traverse_util

from superfusion_jax.convert.official import load_official
from superfusion_jax.losses.registration import RFWeights
from superfusion_jax.models.variants import CORRECTED, FAITHFUL
from superfusion_jax.ops.warp import warp
from superfusion_jax.training import steps
from superfusion_jax.training.optimizer import make_optimizer, release_schedule
from superfusion_jax.training.state import create_train_state
from tests.conftest import PARITY, require

# golden json name -> our metric name
GOLDEN_NAMES = {"grad_norm_DM": "grad_norm_dense_matcher", "grad_norm_FN": "grad_norm_fusion_net"}


@pytest.fixture(scope="module")
def golden():
    return json.loads(require(PARITY / "train_losses_seed0.json").read_text())


@pytest.fixture(scope="module")
def parity_state():
    """Step-0 state from weights_seed0.pth, with the release's optimiser (lr 1e-3)."""
    variables, _ = load_official(require(PARITY / "weights_seed0.pth"))
    tx = make_optimizer(1e-3)
    state = create_train_state(variant=FAITHFUL, optimizer=tx, seed=0, init_variables=variables)
    return tx, state


@pytest.fixture(scope="module")
def golden_batch():
    """train_batch_seed0.npz in NHWC (its disp is already (N, H, W, 2))."""
    raw = np.load(require(PARITY / "train_batch_seed0.npz"))
    batch = {k: np.transpose(raw[k], (0, 2, 3, 1)) for k in ("ir", "vi", "ir_warp", "vi_warp")}
    return {**batch, "disp": raw["disp"]}


def _with_nan(batch: dict, key: str) -> dict:
    image = batch[key].copy()
    image[0, 100, 100, 0] = np.nan
    return {**batch, key: image}


def _run_twice(step, state, batch, nan_key):
    """The step on the batch and on the batch with one NaN pixel (same shapes: one compile)."""
    good = step(state, batch)
    bad = step(state, _with_nan(batch, nan_key))
    return jax.device_get(good), jax.device_get(bad)


@pytest.fixture(scope="module")
def rf_result(parity_state, golden_batch):
    tx, state = parity_state
    step = jax.jit(functools.partial(steps.rf_step_on_warped, variant=FAITHFUL, optimizer=tx))
    return _run_twice(step, state, golden_batch, "ir")


@pytest.fixture(scope="module")
def rf_matcher_only(parity_state, golden_batch):
    """The step with the DenseMatcher-only weights (no fusion terms, field term x 10)."""
    tx, state = parity_state
    weights = RFWeights(reg_field=10.0, fus=0.0, ncc=0.0)
    step = functools.partial(
        steps.rf_step_on_warped, variant=FAITHFUL, optimizer=tx, weights=weights
    )
    return jax.device_get(jax.jit(step)(state, golden_batch))


@pytest.fixture(scope="module")
def fs_result(parity_state, golden_batch):
    tx, state = parity_state
    step = jax.jit(functools.partial(steps.fs_step, variant=FAITHFUL, optimizer=tx))
    return _run_twice(step, state, {k: golden_batch[k] for k in ("ir", "vi")}, "vi")


def _assert_trees_equal(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _all_finite(tree) -> bool:
    return all(np.isfinite(np.asarray(x)).all() for x in jax.tree_util.tree_leaves(tree))


@pytest.mark.slow
def test_rf_step_losses_and_gradient_norms_match_release(rf_result, golden):
    """parity/train_losses_seed0.json `rf_step` (measured: every term within 3e-6 relative,
    DM gradient norm 1e-6, FN gradient norm 2.5e-5)."""
    (_, metrics), _ = rf_result
    for name, want in golden["rf_step"].items():
        got = float(metrics[GOLDEN_NAMES.get(name, name)])
        np.testing.assert_allclose(got, want, rtol=1e-4, err_msg=name)
    # the release reports the border term only inside the total
    others = ("loss_reg_img", "loss_fus")
    rest = (
        golden["rf_step"]["loss_total"]
        - 10 * sum(golden["rf_step"][k] for k in others)
        - sum(golden["rf_step"][k] for k in ("loss_reg_field", "loss_smooth", "loss_ncc"))
    )
    np.testing.assert_allclose(float(metrics["loss_border"]), rest, rtol=1e-3)
    assert not metrics["nonfinite"]


@pytest.mark.slow
def test_rf_step_running_statistics_match_release(rf_result):
    """parity/after_train_forward_seed0.pth: BatchNorm statistics after the step's forward."""
    (state, _), _ = rf_result
    after, _ = load_official(require(PARITY / "after_train_forward_seed0.pth"))
    got = traverse_util.flatten_dict(state.batch_stats)
    want = traverse_util.flatten_dict(after["batch_stats"])
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=2e-5, atol=1e-6, err_msg=str(key))


@pytest.mark.slow
def test_rf_step_updates_both_networks_and_stays_finite(rf_result, parity_state):
    _, old = parity_state
    (state, _), _ = rf_result
    assert int(state.step) == 1
    assert _all_finite(state)
    old_params = traverse_util.flatten_dict(old.params)
    new_params = traverse_util.flatten_dict(state.params)
    unchanged = [k for k in old_params if np.array_equal(old_params[k], new_params[k])]
    assert not unchanged
    # Adam moves every parameter by about lr = 1e-3 on its first step (sign of g + wd·p)
    for key, value in new_params.items():
        moved = np.abs(value - old_params[key])
        assert moved.max() <= 1.01e-3 and np.median(moved) > 5e-4, key


@pytest.mark.slow
def test_rf_step_with_matcher_only_weights_trains_the_matcher_alone(
    rf_matcher_only, parity_state, golden
):
    _, old = parity_state
    state, metrics = rf_matcher_only
    _assert_trees_equal(old.params["fusion_net"], state.params["fusion_net"])
    assert "grad_norm_fusion_net" not in metrics
    matcher_old = jax.tree_util.tree_leaves(old.params["dense_matcher"])
    matcher_new = jax.tree_util.tree_leaves(state.params["dense_matcher"])
    assert all(not np.array_equal(a, b) for a, b in zip(matcher_old, matcher_new, strict=True))
    # The same forward as the release's step; only the total is weighted differently.
    for name in ("loss_reg_img", "loss_reg_field", "loss_smooth", "loss_fus", "loss_ncc"):
        np.testing.assert_allclose(float(metrics[name]), golden["rf_step"][name], rtol=1e-4)
    want = sum(
        w * float(metrics[f"loss_{k}"])
        for k, w in (("reg_img", 10), ("reg_field", 10), ("smooth", 1), ("border", 1))
    )
    np.testing.assert_allclose(float(metrics["loss_total"]), want, rtol=1e-5)


@pytest.mark.slow
def test_nonfinite_rf_step_returns_the_input_state(rf_result, parity_state):
    _, old = parity_state
    _, (state, metrics) = rf_result
    assert metrics["nonfinite"]
    _assert_trees_equal(state, old)


def test_fs_step_losses_and_gradient_norm_match_release(fs_result, golden):
    """parity/train_losses_seed0.json `fs_step` (measured: within 4e-6 relative)."""
    (_, metrics), _ = fs_result
    for name, want in golden["fs_step"].items():
        got = float(metrics[GOLDEN_NAMES.get(name, name)])
        np.testing.assert_allclose(got, want, rtol=1e-4, err_msg=name)
    assert not metrics["nonfinite"]


def test_fs_step_updates_only_the_fusion_net(fs_result, parity_state):
    _, old = parity_state
    (state, _), (nan_state, nan_metrics) = fs_result
    assert int(state.step) == 1 and _all_finite(state)
    _assert_trees_equal(state.params["dense_matcher"], old.params["dense_matcher"])
    _assert_trees_equal(state.batch_stats, old.batch_stats)
    _assert_trees_equal(
        state.opt_state.inner_states["dense_matcher"], old.opt_state.inner_states["dense_matcher"]
    )
    for new, before in zip(
        jax.tree_util.tree_leaves(state.params["fusion_net"]),
        jax.tree_util.tree_leaves(old.params["fusion_net"]),
        strict=True,
    ):
        assert not np.array_equal(new, before)
    assert nan_metrics["nonfinite"]
    _assert_trees_equal(nan_state, old)


def test_ground_truth_is_converted_to_the_corrected_grid():
    """`release_disp_to_variant`: warping with the converted field on the corrected grid reads
    the same source positions as the release's field on its align_corners=True grid."""
    rng = np.random.default_rng(0)
    image = jnp.asarray(rng.random((1, 9, 13, 3), np.float32))
    disp = jnp.asarray(rng.normal(0.0, 0.1, (1, 9, 13, 2)).astype(np.float32))
    release = warp(image, disp, align_corners_grid=True)
    corrected = warp(image, steps.release_disp_to_variant(disp, CORRECTED), False)
    np.testing.assert_allclose(corrected, release, atol=1e-5)
    assert steps.release_disp_to_variant(disp, FAITHFUL) is disp


def _torch_reference(params, grads_per_step, lrs_per_epoch, steps_per_epoch, clip, wd):
    """The release's update: per network clip_grad_norm_ then Adam(weight_decay); LambdaLR-like
    learning rates given per epoch. Returns the final params."""
    nets = {
        name: [torch.tensor(np.array(p)) for p in jax.tree_util.tree_leaves(sub)]
        for name, sub in params.items()
    }
    for tensors in nets.values():
        for t in tensors:
            t.requires_grad_(True)
    opts = {
        name: torch.optim.Adam(t, lr=1.0, betas=(0.9, 0.999), weight_decay=wd)
        for name, t in nets.items()
    }
    for i, grads in enumerate(grads_per_step):
        for name, tensors in nets.items():
            for t, g in zip(tensors, jax.tree_util.tree_leaves(grads[name]), strict=True):
                t.grad = torch.tensor(np.array(g))
            torch.nn.utils.clip_grad_norm_(tensors, clip)
            for group in opts[name].param_groups:
                group["lr"] = lrs_per_epoch[i // steps_per_epoch]
            opts[name].step()
    return {name: [t.detach().numpy() for t in tensors] for name, tensors in nets.items()}


@pytest.mark.parametrize("scheduled", [False, True])
def test_optimizer_matches_torch_adam_with_clipping(scheduled):
    """Two networks, one with gradients above the clip norm and one below, four updates."""
    rng = np.random.default_rng(0)
    params = {
        "dense_matcher": {"a": rng.normal(size=(3, 4)), "b": {"c": rng.normal(size=(5,))}},
        "fusion_net": {"d": rng.normal(size=(2, 3, 3, 4))},
    }
    params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), params)
    grads_per_step = [
        {
            "dense_matcher": jax.tree_util.tree_map(
                lambda p: jnp.asarray(rng.normal(0, 10.0, p.shape), jnp.float32),
                params["dense_matcher"],
            ),
            "fusion_net": jax.tree_util.tree_map(
                lambda p: jnp.asarray(rng.normal(0, 0.01, p.shape), jnp.float32),
                params["fusion_net"],
            ),
        }
        for _ in range(4)
    ]
    base_lr, spe, n_ep, n_ep_decay = 0.1, 1, 4, 1
    if scheduled:
        lrs = [
            base_lr * (1 - max(0, ep - n_ep_decay) / (n_ep - n_ep_decay + 1)) for ep in range(n_ep)
        ]
        tx = make_optimizer(release_schedule(base_lr, spe, n_ep, n_ep_decay), weight_decay=0.01)
    else:
        lrs = [base_lr] * n_ep
        tx = make_optimizer(base_lr, weight_decay=0.01)
    state = tx.init(params)
    ours = params
    for grads in grads_per_step:
        updates, state = tx.update(grads, state, ours)
        ours = optax.apply_updates(ours, updates)
    want = _torch_reference(params, grads_per_step, lrs, spe, clip=5.0, wd=0.01)
    for name in params:
        for got, ref in zip(jax.tree_util.tree_leaves(ours[name]), want[name], strict=True):
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=2e-5, err_msg=name)


@pytest.mark.parametrize(("n_ep", "n_ep_decay"), [(7, 3), (5, 0), (4, -1)])
def test_release_schedule_matches_torch_lambda_lr(n_ep, n_ep_decay):
    """train.py: LambdaLR built with last_epoch=-1, `update_lr` after each epoch only when
    n_ep_decay > -1; three iterations per epoch."""
    steps_per_epoch, base_lr = 3, 1e-3
    param = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([param], lr=base_lr)
    rule = lambda ep: 1.0 - max(0, ep - n_ep_decay) / float(n_ep - n_ep_decay + 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda=rule, last_epoch=-1)
    want = []
    for _ in range(n_ep):
        want += [opt.param_groups[0]["lr"]] * steps_per_epoch
        opt.step()
        if n_ep_decay > -1:
            scheduler.step()
    schedule = release_schedule(base_lr, steps_per_epoch, n_ep, n_ep_decay)
    got = [float(schedule(jnp.asarray(i))) for i in range(len(want))]
    np.testing.assert_allclose(got, want, rtol=1e-6)
