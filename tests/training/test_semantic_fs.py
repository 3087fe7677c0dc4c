"""Stage FS with the semantic term (configs/semantic.py): the frozen segmentation network's
Lovasz loss on the fused RGB image reaches FusionNet's gradient, changes what it learns, is an
argument of the jitted step (not a constant), and the configuration errors are clear.

Tiny sizes: 32 x 32 synthetic pairs with labels, batch 2. The frozen network is a random BiSeNet
whose BatchNorm running statistics are those of synthetic visible images (as a network that has
seen such images has; with the initial statistics its output barely depends on the input and
the semantic gradient is ~1e-4 of the fusion gradient). What matters is that its loss flows,
not what it segments. The tests that compile FusionNet's training step are slow."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import semantic as semantic_config
from superfusion_jax.data.synthetic import SyntheticPairs
from superfusion_jax.io.model_files import load_model, save_model
from superfusion_jax.losses.semantic import semantic_loss
from superfusion_jax.models.bisenet import BiSeNet, apply_segmenter
from superfusion_jax.models.bisenet import fresh_variables as fresh_bisenet
from superfusion_jax.models.variants import FAITHFUL
from superfusion_jax.training import loop, steps
from superfusion_jax.training.optimizer import make_optimizer
from superfusion_jax.training.state import create_train_state, fresh_variables

VARIANT = FAITHFUL


@pytest.fixture(scope="module")
def batch():
    source = SyntheticPairs(2, 32, 32, seed=7)
    return {k: np.stack([source[i][k] for i in range(2)]) for k in ("ir", "vi", "label")}


def _with_statistics_of(variables: dict, images: np.ndarray) -> dict:
    """`variables` with BatchNorm running statistics equal to the batch statistics of `images`
    (one train-mode pass: new = 0.9 · old + 0.1 · batch, solved for batch)."""
    _, updated = BiSeNet(9).apply(variables, images, train=True, mutable=["batch_stats"])

    def solve(path, old, new):
        return new if path[-1].key == "num_batches_tracked" else (new - 0.9 * old) / 0.1

    stats = jax.tree_util.tree_map_with_path(
        solve, variables["batch_stats"], updated["batch_stats"]
    )
    return {"params": variables["params"], "batch_stats": stats}


@pytest.fixture(scope="module")
def segmenter():
    images = np.stack([record["vi"] for record in SyntheticPairs(8, 32, 32, seed=11)])
    return _with_statistics_of(fresh_bisenet(9, seed=3), images)


@pytest.fixture(scope="module")
def params():
    return fresh_variables(VARIANT, seed=0)["params"]


def _norm(tree) -> float:
    return float(jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree_util.tree_leaves(tree))))


@pytest.mark.slow
def test_semantic_gradient_reaches_the_fusion_net(params, batch, segmenter):
    """grad(10·fus + 1·sem) - grad(10·fus) = grad(sem), computed on its own from fused_rgb."""

    @jax.jit
    def grads(fusion_params, segmenter):
        def total(p, weight):
            full = {**params, "fusion_net": p}
            return steps.fs_loss_fn(
                full, batch, segmenter, variant=VARIANT, semantic_weight=weight
            )[0]

        def semantic_only(p):
            fused = steps.fs_forward({**params, "fusion_net": p}, batch, variant=VARIANT)
            main, aux = apply_segmenter(segmenter, fused["fused_rgb"])
            return semantic_loss(main, aux, batch["label"])

        return (
            jax.grad(total)(fusion_params, 0.0),
            jax.grad(total)(fusion_params, 1.0),
            jax.grad(semantic_only)(fusion_params),
        )

    g0, g1, g_sem = grads(params["fusion_net"], segmenter)
    difference = jax.tree_util.tree_map(jnp.subtract, g1, g0)
    print(f"|grad fusion| {_norm(g0):.4g}, |grad semantic| {_norm(g_sem):.4g}")
    assert _norm(g_sem) > 1e-3 * _norm(g0)
    for got, want in zip(
        jax.tree_util.tree_leaves(difference), jax.tree_util.tree_leaves(g_sem), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * _norm(g_sem))


@pytest.mark.slow
def test_semantic_term_changes_training_and_segmenter_is_an_argument(params, batch, segmenter):
    """Three Adam updates (lr 1e-3) from one state with weight 0 and with weight 1: the fused
    images differ (the runs are deterministic: weight 0 twice gives identical images). Measured
    with this untrained segmenter, whose semantic gradient is ~0.6% of the fusion gradient:
    mean |difference| 5e-6 (max 1e-5), against a change of the fused image by training itself
    of 4e-3; a trained segmenter gives larger gradients."""
    tx = make_optimizer(1e-3)
    jitted = {
        weight: jax.jit(
            functools.partial(steps.fs_step, variant=VARIANT, optimizer=tx, semantic_weight=weight)
        )
        for weight in (0.0, 1.0)
    }
    start = {"params": params, "batch_stats": fresh_variables(VARIANT, 0)["batch_stats"]}

    def run(weight, segmenter_variables):
        state = create_train_state(variant=VARIANT, optimizer=tx, seed=0, init_variables=start)
        losses = []
        for _ in range(3):
            state, metrics = jitted[weight](state, batch, segmenter_variables)
            assert not metrics["nonfinite"]
            losses.append(float(metrics.get("loss_semantic", np.nan)))
        return np.asarray(steps.fs_forward(state.params, batch, variant=VARIANT)["fused_y"]), losses

    before = np.asarray(steps.fs_forward(params, batch, variant=VARIANT)["fused_y"])
    fused_0, _ = run(0.0, None)
    fused_0_again, _ = run(0.0, None)
    fused_1, semantic = run(1.0, segmenter)
    change, trained = np.abs(fused_1 - fused_0), np.abs(fused_0 - before)
    print(
        f"fused after 3 updates: weight 1 vs 0 |diff| mean {change.mean():.3g} max "
        f"{change.max():.3g}; training itself moved it by {trained.mean():.3g} on average; "
        f"loss_semantic {semantic}"
    )
    np.testing.assert_array_equal(fused_0_again, fused_0)
    assert change.mean() > 1e-6
    assert all(np.isfinite(semantic)) and 0 < semantic[0] <= 1.25
    # Another segmenter goes through the same compiled step (an argument, not a constant).
    other = fresh_bisenet(9, seed=4)
    state = create_train_state(variant=VARIANT, optimizer=tx, seed=0, init_variables=start)
    _, metrics = jitted[1.0](state, batch, other)
    assert jitted[1.0]._cache_size() == 1
    assert float(metrics["loss_semantic"]) != semantic[0]


@pytest.mark.slow
def test_weight_zero_is_the_release_step(params, batch, segmenter):
    """semantic_weight 0 computes no semantic term: same update with or without a segmenter."""
    tx = make_optimizer(1e-3)
    state = create_train_state(variant=VARIANT, optimizer=tx, seed=0)
    step = jax.jit(functools.partial(steps.fs_step, variant=VARIANT, optimizer=tx))
    with_seg, metrics = step(state, batch, segmenter)
    without, _ = step(create_train_state(variant=VARIANT, optimizer=tx, seed=0), batch)
    assert "loss_semantic" not in metrics
    for a, b in zip(
        jax.tree_util.tree_leaves(with_seg), jax.tree_util.tree_leaves(without), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def test_config_errors_are_clear(tmp_path):
    config = semantic_config.get_config()
    assert config.semantic_weight == 1.0
    with pytest.raises(ValueError, match="segmentation_checkpoint"):
        loop.check_config(config)
    config.semantic_weight = 0.0  # the release: no segmentation network needed
    loop.check_config(config)

    config = semantic_config.get_config()
    config.segmentation_checkpoint = str(tmp_path / "seg")
    config.eval.source = "synthetic"
    config.eval.synthetic_size = 32
    unlabelled = [{k: v for k, v in SyntheticPairs(1, 32, 32)[0].items() if k != "label"}]
    with pytest.raises(ValueError, match="needs segmentation labels"):
        loop.make_task(config, unlabelled, steps_per_epoch=1, num_steps=1)
    save_model(tmp_path / "seg", {"params": {}, "batch_stats": {}}, {"variant": "faithful"})
    with pytest.raises(ValueError, match="not a segmentation network"):
        loop.make_task(config, SyntheticPairs(1, 32, 32), steps_per_epoch=1, num_steps=1)


@pytest.mark.slow
def test_train_and_evaluate_stage_fs_with_the_semantic_term(tmp_path, segmenter):
    """configs/semantic.py through the training loop: 2 updates on synthetic pairs with labels,
    the segmenter a folder; the model is exported and the semantic loss logged."""
    save_model(tmp_path / "seg", segmenter, {"model": "bisenet"})
    config = semantic_config.get_config()
    config.segmentation_checkpoint = str(tmp_path / "seg")
    config.batch_size, config.crop_size, config.num_steps = 2, 32, 2
    for spec in (config.data, config.eval):
        spec.source, spec.synthetic_size, spec.synthetic_pairs = "synthetic", 32, 4
    config.eval.num_pairs, config.log_every, config.tensorboard = 2, 1, "no"
    loop.train_and_evaluate(config, tmp_path / "run")
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    logged = [json.loads(line) for line in lines if "train/loss_semantic" in line]
    assert [entry["step"] for entry in logged] == [1, 2]
    assert all(0 < entry["train/loss_semantic"] <= 1.25 for entry in logged)
    _, meta = load_model(tmp_path / "run" / "model")
    assert meta["step"] == 2 and meta["stage"] == "FS" and meta["variant"] == VARIANT.name
