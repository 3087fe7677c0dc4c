"""The segmentation task (training.tasks.segmentation_network): SeAFusion's optimiser and
learning-rate policy against torch's SGD with its parameter groups, initialisation from .pth files
and folders, the config checks, and (slow) a short run of configs/segmentation.py:runlocal on
synthetic scenes whose held-out mIoU beats the majority-class predictor's by far."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import traverse_util

from configs import segmentation as segmentation_config
from superfusion_jax.cli import main
from superfusion_jax.convert.segmentation import export_bisenet, export_state_dict
from superfusion_jax.data.pipeline import make_eval_batches
from superfusion_jax.data.sources import FirstRecords, make_source
from superfusion_jax.data.synthetic import SyntheticPairs
from superfusion_jax.evaluation.segmentation_metrics import ConfusionAccumulator
from superfusion_jax.io.model_files import load_model, load_segmenter, save_model
from superfusion_jax.models.bisenet import fresh_variables
from superfusion_jax.training import loop
from superfusion_jax.training.checkpoints import BEST_LINK, BestModel
from superfusion_jax.training.init_weights import segmentation_init_variables
from superfusion_jax.training.optimizer import make_segmentation_optimizer, seafusion_schedule
from superfusion_jax.training.segmentation_steps import evaluate_segmentation
from superfusion_jax.visualization import label_colors
from tests.conftest import PARITY, REPO, require


def _seafusion_lr(it: int, lr0: float, warmup: int, start: float, max_iter: int, power: float):
    """SeAFusion's Optimizer.get_lr, from its definition."""
    if it <= warmup:
        return start * (lr0 / start) ** (it / warmup)
    return lr0 * (1 - (it - warmup) / (max_iter - warmup)) ** power


def test_schedule_warms_up_then_decays_as_seafusion():
    schedule = seafusion_schedule(
        1e-2, total_steps=50, warmup_steps=10, warmup_start_lr=1e-5, power=0.9
    )
    for count in [0, 1, 5, 10, 11, 30, 49]:
        want = _seafusion_lr(count, 1e-2, 10, 1e-5, 50, 0.9)
        np.testing.assert_allclose(float(schedule(count)), want, rtol=2e-5, err_msg=str(count))
    assert float(schedule(60)) == 0.0  # past the end: 0, not NaN
    no_warmup = seafusion_schedule(0.1, total_steps=4, warmup_steps=0)
    np.testing.assert_allclose(
        [float(no_warmup(c)) for c in range(4)],
        [0.1 * (1 - c / 4) ** 0.9 for c in range(4)],
        rtol=1e-6,
    )


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_optimizer_matches_torch_with_seafusion_groups(kind):
    """Body conv kernel (decay), BatchNorm scale (no decay), head kernel (decay, 10 x lr),
    head BatchNorm bias (no decay, 10 x lr): five updates with a warm-up schedule, against
    torch.optim.SGD(momentum 0.9) (SeAFusion's) or torch.optim.Adam, both with weight_decay."""
    rng = np.random.default_rng(0)
    params = {
        "cp": {
            "conv": {"kernel": rng.normal(size=(3, 3, 2, 4))},
            "bn": {"scale": rng.normal(size=(4,))},
        },
        "conv_out": {
            "conv_out": {"kernel": rng.normal(size=(1, 1, 4, 9))},
            "bn": {"bias": rng.normal(size=(9,))},
        },
    }
    params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), params)
    grads = [
        jax.tree_util.tree_map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
        for _ in range(5)
    ]
    lr = lambda it: _seafusion_lr(it, 0.01, 2, 1e-3, 8, 0.9)  # noqa: E731
    schedule = seafusion_schedule(0.01, total_steps=8, warmup_steps=2, warmup_start_lr=1e-3)
    tx = make_segmentation_optimizer(schedule, kind=kind, weight_decay=0.05)
    ours, state = params, tx.init(params)
    for g in grads:
        updates, state = tx.update(g, state, ours)
        ours = optax.apply_updates(ours, updates)

    flat = traverse_util.flatten_dict(params)
    tensors = {k: torch.tensor(np.array(v), requires_grad=True) for k, v in flat.items()}
    groups = {  # (decay, head)
        (True, False): [("cp", "conv", "kernel")],
        (False, False): [("cp", "bn", "scale")],
        (True, True): [("conv_out", "conv_out", "kernel")],
        (False, True): [("conv_out", "bn", "bias")],
    }
    param_groups = [
        {"params": [tensors[k] for k in keys], "weight_decay": 0.05 if decay else 0.0, "head": head}
        for (decay, head), keys in groups.items()
    ]
    if kind == "sgd":
        reference = torch.optim.SGD(param_groups, lr=0.01, momentum=0.9)
    else:
        reference = torch.optim.Adam(param_groups, lr=0.01, eps=1e-8)
    for it, g in enumerate(grads):
        for key, t in tensors.items():
            t.grad = torch.tensor(np.array(traverse_util.flatten_dict(g)[key]))
        for group in reference.param_groups:
            group["lr"] = lr(it) * (10 if group["head"] else 1)
        reference.step()
    for key, value in traverse_util.flatten_dict(ours).items():
        want = tensors[key].detach().numpy()  # Adam's float32 rounding differs slightly more
        np.testing.assert_allclose(value, want, rtol=1e-5, atol=1e-6 if kind == "sgd" else 4e-6)


@pytest.fixture(scope="module")
def variables():
    return fresh_variables(9, seed=0)


def test_init_from_torchvision_backbone_keeps_the_heads(tmp_path, variables):
    """A torchvision-style resnet18 state_dict (keys without 'cp.resnet.', plus 'fc.*') goes into
    the backbone only."""
    donor = fresh_variables(9, seed=1)
    state = {
        k.removeprefix("cp.resnet."): torch.tensor(v)
        for k, v in export_state_dict(donor).items()
        if k.startswith("cp.resnet.")
    }
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    torch.save(state, tmp_path / "resnet18.pth")
    loaded = segmentation_init_variables(str(tmp_path / "resnet18.pth"), num_classes=9, seed=0)
    got = traverse_util.flatten_dict(loaded)
    for key in traverse_util.flatten_dict(dict(donor)):
        source = donor if key[2] == "resnet" else variables  # (collection, 'cp', 'resnet', ...)
        want = traverse_util.flatten_dict(dict(source))[key]
        np.testing.assert_array_equal(got[key], want, err_msg=str(key))


def test_init_from_bisenet_pth_and_folder(tmp_path, variables):
    export_bisenet(variables, tmp_path / "bisenet.pth")
    from_pth = segmentation_init_variables(str(tmp_path / "bisenet.pth"), num_classes=9, seed=5)
    save_model(tmp_path / "folder", variables, {"model": "bisenet"})
    from_folder = load_segmenter(tmp_path / "folder")
    for loaded in (from_pth, from_folder):
        for a, b in zip(
            jax.tree_util.tree_leaves(loaded),
            jax.tree_util.tree_leaves(dict(variables)),
            strict=True,
        ):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="classes"):
        segmentation_init_variables(str(tmp_path / "bisenet.pth"), num_classes=5, seed=0)


def test_a_superfusion_folder_is_not_a_segmenter(tmp_path):
    save_model(tmp_path / "sf", {"params": {}, "batch_stats": {}}, {"variant": "faithful"})
    with pytest.raises(ValueError, match="not a segmentation network"):
        load_segmenter(tmp_path / "sf")


def test_config_checks():
    config = segmentation_config.get_config("runlocal")
    loop.check_config(config)
    config.input_image = "fused"
    with pytest.raises(ValueError, match="fusion_checkpoint"):
        loop.check_config(config)
    config.input_image = "thermal"
    with pytest.raises(ValueError, match="input_image"):
        loop.check_config(config)
    with pytest.raises(ValueError, match="unknown argument"):
        segmentation_config.get_config("tiny")


def test_label_colors_and_first_records():
    colours = label_colors(np.array([[0, 1], [9, 255]]))
    assert colours.dtype == np.uint8 and colours.shape == (2, 2, 3)
    np.testing.assert_array_equal(colours[1, 0], colours[0, 0])  # 9 cycles to 0
    np.testing.assert_array_equal(colours[1, 1], [255, 255, 255])
    source = SyntheticPairs(5, 16, 16)
    assert len(FirstRecords(source, 3)) == 3
    assert len(FirstRecords(source, -1)) == 5
    with pytest.raises(IndexError):
        FirstRecords(source, 3)[3]


def test_best_model_keeps_the_highest_value_across_restarts(tmp_path):
    def variables(value):
        return {"params": {"w": np.full((2,), value, np.float32)}, "batch_stats": {}}

    best = BestModel(tmp_path, "eval/miou")
    meta = {"model": "bisenet"}
    assert best.update(0.3, variables(0.3), {**meta, "step": 10})
    assert not best.update(0.2, variables(0.2), {**meta, "step": 20})
    assert not best.update(float("nan"), variables(9.0), {**meta, "step": 25})
    resumed = BestModel(tmp_path, "eval/miou")  # a resumed run reads the value back
    assert resumed.value == pytest.approx(0.3)
    assert resumed.update(0.4, variables(0.4), {**meta, "step": 30})
    saved, saved_meta = load_model(tmp_path / BEST_LINK, model="bisenet")
    np.testing.assert_array_equal(saved["params"]["w"], variables(0.4)["params"]["w"])
    assert saved_meta["step"] == 30 and saved_meta["best_value"] == pytest.approx(0.4)
    assert [p.name for p in (tmp_path / "exports_best").iterdir()] == ["step_00000030"]
    assert BestModel(tmp_path, "eval/other").value == -np.inf


# --- a short training run -------------------------------------------------------------------


def _majority_miou(source) -> float:
    """mIoU of predicting the most frequent class (background) everywhere."""
    accumulator = ConfusionAccumulator()
    for batch in make_eval_batches(source, 32):
        accumulator.update(batch["label"], np.zeros_like(batch["label"]))
    return accumulator.mean_iou()


@pytest.mark.slow
def test_demo_run_learns_to_segment_synthetic_scenes(tmp_path):
    """train.py --config=configs/segmentation.py:runlocal (300 updates of 8 crops of 48 x 48).

    Measured (shared 2-core CPU, 17 min): held-out mIoU 0.002 at step 0, then 0.166, 0.197,
    0.208 at steps 100, 200, 300, against 0.125 for predicting background everywhere; IoU of
    'car' 0.547 (0 for that predictor), of the background 0.911, of the small classes 0."""
    cache = os.environ.get("JAX_COMPILATION_CACHE_DIR") or str(tmp_path / "jax")
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": cache, "JAX_PLATFORMS": "cpu"}
    workdir = tmp_path / "run"
    command = [
        sys.executable,
        "train.py",
        "--config=configs/segmentation.py:runlocal",
        f"--workdir={workdir}",
        "--config.tensorboard=no",
    ]
    run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=3600)
    assert run.returncode == 0, run.stderr[-3000:]
    _check_demo_run(workdir)


def _check_demo_run(workdir) -> None:
    """The assertions on a finished demo run's folder."""
    evals = [
        json.loads(line)
        for line in (workdir / "metrics.jsonl").read_text().splitlines()
        if "eval/miou" in line
    ]
    assert [e["step"] for e in evals] == [0, 100, 200, 300]
    config = segmentation_config.get_config("runlocal")
    held_out = make_source(config.eval)
    chance = _majority_miou(held_out)
    final, best_seen = evals[-1], max(e["eval/miou"] for e in evals)
    print(f"held-out mIoU: majority {chance:.3f}, evaluations {[e['eval/miou'] for e in evals]}")
    assert evals[0]["eval/miou"] < chance
    assert final["eval/miou"] > chance + 0.05 and final["eval/iou_car"] > 0.3
    # the best model is kept and scores what its evaluation said
    best = load_segmenter(workdir / "best")
    meta = json.loads((workdir / "best" / "metadata.json").read_text())
    assert meta["model"] == "bisenet" and meta["best_value"] == pytest.approx(best_seen)
    accumulator = evaluate_segmentation(best, make_eval_batches(held_out, 32))
    assert accumulator.mean_iou() == pytest.approx(best_seen, abs=1e-6)


@pytest.mark.slow
def test_run_on_fused_images_of_a_frozen_superfusion(tmp_path):
    """input_image='fused' through the loop: the segmenter learns from the fused images of a
    frozen SuperFusion model (here the release's seed-0 weights, imported), 2 updates, an
    evaluation, a picture, and an exported model that says what it was trained on."""
    fusion = tmp_path / "fusion"
    assert (
        main(["convert", "--from", str(require(PARITY / "weights_seed0.pth")), "--to", str(fusion)])
        == 0
    )
    config = segmentation_config.get_config("runlocal")
    config.input_image, config.fusion_checkpoint = "fused", str(fusion)
    config.crop_size, config.batch_size, config.num_steps, config.warmup_steps = 32, 2, 2, 1
    config.eval.num_pairs, config.eval.batch_size = 4, 4
    config.eval_every = config.image_every = config.checkpoint_every = 2
    config.tensorboard = "no"
    workdir = tmp_path / "run"
    loop.train_and_evaluate(config, workdir)
    evals = [
        json.loads(line)
        for line in (workdir / "metrics.jsonl").read_text().splitlines()
        if "eval/miou" in line
    ]
    assert [e["step"] for e in evals] == [0, 2] and 0.0 <= evals[-1]["eval/miou"] <= 1.0
    meta = json.loads((workdir / "model" / "metadata.json").read_text())
    assert meta["model"] == "bisenet" and meta["input_image"] == "fused" and meta["step"] == 2
    assert (workdir / "images" / "segmentation_0000002.png").is_file()
