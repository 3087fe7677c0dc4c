"""Export of our checkpoints to the official .pth format (`superfusion convert --from FOLDER`).

Checks key names, order, shapes and dtypes; both round trips; the Adam state continuing in
torch.optim.Adam; refusals; and that the exported file runs, loaded with strict=True, in a
plain-PyTorch restatement of the release (tests/torch_reference) with the JAX model's outputs.
Golden files: ../shared/parity/weights_seed0.pth, after_train_forward_seed0.pth,
official_state_dict_shapes.json, 00004N_seed0.npz (slow test of the restatement itself);
real pair: ../shared/data/msrs_test/{ir,ir_warp,vi}/00004N.png.
"""

import json
import zlib

import jax
import numpy as np
import optax
import pytest
import torch
from flax import traverse_util

from superfusion_jax.cli import main
from superfusion_jax.convert.export import (
    adam_settings,
    export_official,
    parameter_keys,
    release_grid,
)
from superfusion_jax.convert.official import load_official
from superfusion_jax.convert.official_keys import official_keys
from superfusion_jax.data.pipeline import make_train_iterator
from superfusion_jax.data.synthetic import SyntheticPairs
from superfusion_jax.inference import Pipeline
from superfusion_jax.io.model_files import load_checkpoint, load_model, save_model
from superfusion_jax.training.checkpoints import CHECKPOINTS_DIR, RunCheckpoints
from superfusion_jax.training.optimizer import make_optimizer, release_schedule
from superfusion_jax.training.state import TrainState
from tests.conftest import MSRS, PARITY, require
from tests.helpers import read_rgb
from tests.torch_reference import SuperFusionReference

GOLDEN = ("weights_seed0.pth", "after_train_forward_seed0.pth")
# parity/README.md: agreement expected in float32 on displacements and on images.
DISP_TOL, IMAGE_TOL = 1e-4, 1e-3


def _convert(src, dst, *flags) -> int:
    return main(["convert", "--from", str(src), "--to", str(dst), *flags])


def _flat(tree: dict) -> dict:
    return traverse_util.flatten_dict(tree)


def _assert_same_variables(a: dict, b: dict) -> None:
    fa, fb = _flat(a), _flat(b)
    assert fa.keys() == fb.keys()
    for key in fa:
        assert np.asarray(fa[key]).dtype == np.asarray(fb[key]).dtype, key
        np.testing.assert_array_equal(fa[key], fb[key], err_msg=str(key))


def _assert_same_state_dict(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
        assert torch.equal(a[key], b[key]), key


def _reference(pth: dict) -> SuperFusionReference:
    model = SuperFusionReference().eval()
    model.DM.load_state_dict(pth["DM"], strict=True)
    model.FN.load_state_dict(pth["FN"], strict=True)
    return model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """after_train_forward_seed0.pth (BatchNorm statistics randomised, then updated once)
    imported by the command line into a checkpoint folder."""
    folder = tmp_path_factory.mktemp("export") / "model"
    assert _convert(require(PARITY / "after_train_forward_seed0.pth"), folder) == 0
    return folder


@pytest.fixture(scope="module")
def exported(model_dir):
    path = model_dir.parent / "model.pth"
    assert _convert(model_dir, path) == 0
    return torch.load(path, weights_only=True)


def test_keys_follow_the_release_and_the_restatement():
    shapes = json.loads(require(PARITY / "official_state_dict_shapes.json").read_text())
    golden = torch.load(require(PARITY / "weights_seed0.pth"), weights_only=True)
    reference = SuperFusionReference()
    for network in ("DM", "FN"):
        keys = official_keys(network)
        assert keys == list(shapes[network]) == list(golden[network])
        module = getattr(reference, network)
        assert list(module.state_dict()) == keys
        assert [name for name, _ in module.named_parameters()] == parameter_keys(network)


def test_exported_file_has_the_official_layout(exported):
    shapes = json.loads(require(PARITY / "official_state_dict_shapes.json").read_text())
    assert list(exported) == ["DM", "FN", "ep", "total_it"]
    for network in ("DM", "FN"):
        assert list(exported[network]) == list(shapes[network])
        for key, tensor in exported[network].items():
            assert list(tensor.shape) == shapes[network][key], key
            want = torch.int64 if key.endswith("num_batches_tracked") else torch.float32
            assert tensor.dtype == want, key
            assert tensor.is_contiguous(), key


@pytest.mark.parametrize("name", GOLDEN)
def test_pth_to_jax_to_pth_is_bit_identical(name, tmp_path):
    original = torch.load(require(PARITY / name), weights_only=True)
    assert _convert(PARITY / name, tmp_path / "ckpt") == 0
    assert _convert(tmp_path / "ckpt", tmp_path / "again.pth") == 0
    again = torch.load(tmp_path / "again.pth", weights_only=True)
    assert list(again) == list(original)
    for network in ("DM", "FN"):
        _assert_same_state_dict(original[network], again[network])
    assert (again["ep"], again["total_it"]) == (original["ep"], original["total_it"])


def test_jax_to_pth_to_jax_is_identical(model_dir, tmp_path, capsys):
    """Variables that never came from a .pth: every leaf redrawn (counts too)."""
    variables, _ = load_model(model_dir)
    rng = np.random.default_rng(1)

    def redraw(x):
        if np.issubdtype(x.dtype, np.integer):
            return rng.integers(0, 10_000, x.shape).astype(x.dtype)
        return rng.standard_normal(x.shape).astype(x.dtype)

    variables = {
        c: traverse_util.unflatten_dict({k: redraw(v) for k, v in _flat(t).items()})
        for c, t in variables.items()
    }
    save_model(tmp_path / "ckpt", variables, {"variant": "faithful", "step": 12})
    assert _convert(tmp_path / "ckpt", tmp_path / "m.pth") == 0
    assert "ep -1, total_it 12" in capsys.readouterr().out
    back, extra = load_official(tmp_path / "m.pth")
    _assert_same_variables(variables, back)
    assert extra == {"ep": -1, "total_it": 12}


def test_bare_state_dict_loads_into_the_whole_module(model_dir, exported, tmp_path):
    assert _convert(model_dir, tmp_path / "bare.pth", "--bare") == 0
    bare = torch.load(tmp_path / "bare.pth", weights_only=True)
    assert list(bare) == (
        [f"DM.{k}" for k in official_keys("DM")]
        + ["ST.grid"]
        + [f"FN.{k}" for k in official_keys("FN")]
    )
    SuperFusionReference().load_state_dict(bare, strict=True)
    lin = np.linspace(-1, 1, 256, dtype=np.float32)
    np.testing.assert_allclose(bare["ST.grid"][0, 5, :, 0].numpy(), lin, atol=1e-6)
    np.testing.assert_allclose(bare["ST.grid"][0, :, 7, 1].numpy(), lin, atol=1e-6)
    assert torch.equal(bare["ST.grid"], release_grid(256, 256))
    for network in ("DM", "FN"):
        prefix = f"{network}."
        _assert_same_state_dict(
            exported[network],
            {k.removeprefix(prefix): v for k, v in bare.items() if k.startswith(prefix)},
        )
    variables, _ = load_official(tmp_path / "bare.pth")
    _assert_same_variables(variables, load_model(model_dir)[0])


def test_corrected_variant_is_refused_unless_allowed(model_dir, tmp_path, capsys):
    variables, _ = load_model(model_dir)
    save_model(tmp_path / "corrected", variables, {"variant": "corrected"})
    assert _convert(tmp_path / "corrected", tmp_path / "c.pth") == 2
    err = capsys.readouterr().err
    assert "'corrected'" in err and "--allow-variant-mismatch" in err
    assert not (tmp_path / "c.pth").exists()
    flags = ("--allow-variant-mismatch", "--epoch", "7")
    assert _convert(tmp_path / "corrected", tmp_path / "c.pth", *flags) == 0
    captured = capsys.readouterr()
    assert "WARNING" in captured.err and "(corrected)" in captured.out
    assert torch.load(tmp_path / "c.pth", weights_only=True)["ep"] == 7


def test_refusals_name_the_problem(model_dir, tmp_path, capsys):
    existing = tmp_path / "existing.pth"
    existing.touch()
    empty = tmp_path / "empty"
    empty.mkdir()
    workdir = tmp_path / "run"
    (workdir / CHECKPOINTS_DIR / "40").mkdir(parents=True)
    out = tmp_path / "o.pth"
    cases = [
        ((model_dir, existing), "already exists"),
        ((model_dir, out, "--include-optimizer"), "without optimiser state"),
        ((model_dir, out, "--bare", "--include-optimizer"), "weights only"),
        ((empty, out), "neither a superfusion-jax model folder"),
        ((workdir, out), "training run folder"),
        ((PARITY / "weights_seed0.pth", tmp_path / "d", "--bare"), "--bare: export options"),
    ]
    for args, message in cases:
        assert _convert(*args) == 2, args
        assert message in capsys.readouterr().err, args
    assert "steps: 40" in (_convert(workdir, out), capsys.readouterr().err)[1]
    assert not out.exists() and not (tmp_path / "d").exists()
    assert existing.stat().st_size == 0


def test_variables_of_another_architecture_are_listed(model_dir):
    variables, _ = load_model(model_dir)
    flat = traverse_util.flatten_dict(variables)
    dropped, reshaped = sorted(flat)[:2]
    del flat[dropped]
    flat[reshaped] = np.zeros((1, 2, 3), np.float32)
    flat[("params", "extra", "kernel")] = np.zeros(3, np.float32)
    with pytest.raises(ValueError) as error:
        export_official(traverse_util.unflatten_dict(flat))
    message = str(error.value)
    assert message.startswith("the model to export does not match the SuperFusion architecture:")
    assert f"missing (1): {'/'.join(dropped)}" in message
    assert f"misshaped (1): {'/'.join(reshaped)}: (1, 2, 3) (expected" in message
    assert "unknown keys (1): params/extra/kernel" in message


# Adam updates so far per network (different, as after stage-FS steps that skip DM).
COUNTS = {"dense_matcher": 3, "fusion_net": 5}
CONFIG = {
    "variant": "faithful",
    "stage": "RF",
    "learning_rate": 1e-3,
    "weight_decay": 1e-5,
    "steps_per_epoch": 2,
    "n_ep": 6,
    "n_ep_decay": 1,
}
# Next update: DM's 4th (epoch 1, lr 1e-3), FN's 6th (epoch 2, lr 1e-3 * (1 - 1/6)); ep =
# 5 // 2 - 1 = 1 (the last completed epoch).
NEXT_LR = {"DM": 1e-3, "FN": 1e-3 * (1 - 1 / 6)}


def _optimizer() -> optax.GradientTransformation:
    return make_optimizer(release_schedule(1e-3, 2, 6, 1), weight_decay=1e-5)


@pytest.fixture(scope="module")
def training_checkpoint(model_dir):
    """A RunCheckpoints step folder whose Adam moments are random and counts are `COUNTS`."""
    variables, _ = load_model(model_dir)

    def fill(path, leaf):
        names = [str(getattr(p, "name", getattr(p, "key", ""))) for p in path]
        if np.issubdtype(leaf.dtype, np.integer):  # Adam's and the schedule's counts
            return np.asarray(COUNTS[names[1]], leaf.dtype)
        # moments as Adam leaves them: nu >= mu^2 (one draw per parameter for both)
        parameter = "/".join(n for n in names if n not in ("mu", "nu"))
        rng = np.random.default_rng(zlib.crc32(parameter.encode()))
        a, b = (rng.standard_normal(leaf.shape).astype(np.float32) * 1e-3 for _ in range(2))
        return a * a + b * b if "nu" in names else a

    # the structure of make_optimizer's state (no need to run its init), filled at random
    opt_state = jax.eval_shape(_optimizer().init, variables["params"])
    state = TrainState(
        step=np.asarray(5, np.int32),
        params=variables["params"],
        batch_stats=variables["batch_stats"],
        opt_state=jax.tree_util.tree_map_with_path(fill, opt_state),
        rng=np.zeros(2, np.uint32),
    )
    workdir = model_dir.parent / "run"
    run = RunCheckpoints(workdir, keep=1, async_save=False)
    iterator = make_train_iterator(SyntheticPairs(4, 16, 16), batch_size=2, crop_size=16, seed=0)
    run.save(state, iterator, CONFIG)
    run.close()
    return workdir / CHECKPOINTS_DIR / "5", state


@pytest.fixture(scope="module")
def exported_with_adam(training_checkpoint):
    step_dir, _ = training_checkpoint
    path = step_dir.parents[2] / "with_adam.pth"
    assert _convert(step_dir, path, "--include-optimizer") == 0
    return torch.load(path, weights_only=True)


def test_a_training_checkpoint_is_a_checkpoint_for_inference(model_dir, training_checkpoint):
    """`load_checkpoint` (behind `Pipeline` and every `--checkpoint`) reads a run's step folder:
    its weights, the variant from its config, the step; the run folder itself is refused with
    the folders to pass instead, and a segmentation network is asked for in vain."""
    step_dir, _ = training_checkpoint
    variables, meta = load_checkpoint(step_dir)
    _assert_same_variables(variables, load_model(model_dir)[0])
    assert (meta["model"], meta["variant"], meta["step"]) == ("superfusion", "faithful", 5)
    with pytest.raises(ValueError, match=r"training run folder: pass .*model.*steps: 5\)"):
        load_checkpoint(step_dir.parents[1])
    with pytest.raises(ValueError, match="holds a 'superfusion' network, not a 'bisenet'"):
        load_checkpoint(step_dir, model="bisenet")


def _adam_moments(state, root: str) -> dict:
    (adam,) = [s for s in state.opt_state.inner_states[root].inner_state if hasattr(s, "mu")]
    return {"mu": adam.mu, "nu": adam.nu}


def test_adam_state_has_torch_layout(training_checkpoint, exported_with_adam, capsys):
    _, state = training_checkpoint
    pth = exported_with_adam
    assert list(pth) == ["DM", "FN", "DM_opt", "FN_opt", "ep", "total_it"]
    assert (pth["ep"], pth["total_it"]) == (1, 5)
    model = _reference(pth)
    for network, root in (("DM", "dense_matcher"), ("FN", "fusion_net")):
        saved = pth[f"{network}_opt"]
        keys = parameter_keys(network)
        (group,) = saved["param_groups"]
        assert (
            group["params"] == list(range(len(keys))) and sorted(saved["state"]) == group["params"]
        )
        assert group["lr"] == pytest.approx(NEXT_LR[network], rel=1e-6)
        assert group["initial_lr"] == 1e-3 and group["weight_decay"] == 1e-5
        assert group["betas"] == (0.9, 0.999) and group["eps"] == 1e-8 and not group["amsgrad"]
        moments = _adam_moments(state, root)
        # the moments of the other network are masked out: fill their place with its params
        official = {
            name: export_official(
                {"params": {**state.params, root: tree[root]}, "batch_stats": state.batch_stats}
            )[network]
            for name, tree in moments.items()
        }
        for index, key in enumerate(keys):
            entry = saved["state"][index]
            assert entry["step"].dtype == torch.float32 and float(entry["step"]) == COUNTS[root]
            assert torch.equal(entry["exp_avg"], torch.from_numpy(official["mu"][key]))
            assert torch.equal(entry["exp_avg_sq"], torch.from_numpy(official["nu"][key]))
        module = getattr(model, network)
        adam = torch.optim.Adam(module.parameters())
        adam.load_state_dict(saved)  # torch checks the group sizes against parameters()
    # two spot checks of the layout, written out: a conv kernel and a spatial-RNN row
    mu = _adam_moments(state, "dense_matcher")["mu"]["dense_matcher"]
    kernel = np.asarray(mu["matcher2"]["head"]["layer_0"]["conv"]["kernel"])  # HWIO
    index = parameter_keys("DM").index("matcher2.layers.0.model.0.weight")
    np.testing.assert_array_equal(
        pth["DM_opt"]["state"][index]["exp_avg"].numpy(), kernel.transpose(3, 2, 0, 1)
    )
    nu = _adam_moments(state, "fusion_net")["nu"]["fusion_net"]["gsam"]["irnn1"]["weight"]
    index = parameter_keys("FN").index("SAM.irnn1.left_weight.weight")  # row 3: left
    np.testing.assert_array_equal(
        pth["FN_opt"]["state"][index]["exp_avg_sq"].numpy(), np.asarray(nu)[3].reshape(-1, 1, 1, 1)
    )


def test_adam_learning_rate_follows_the_run_schedule():
    settings, note = adam_settings(CONFIG, 5)
    assert settings.lr == pytest.approx(NEXT_LR["FN"], rel=1e-6) and note is None
    assert (settings.initial_lr, settings.weight_decay) == (1e-3, 1e-5)
    # no decay: the release keeps epoch 0's factor 1 - (0 - n_ep_decay) / (n_ep - n_ep_decay + 1)
    no_decay = {**CONFIG, "steps_per_epoch": -1, "n_ep_decay": -1}
    assert adam_settings(no_decay, 5)[0].lr == pytest.approx(1e-3 * (1 - 1 / 8), rel=1e-6)
    settings, note = adam_settings({**CONFIG, "steps_per_epoch": -1}, 5)
    assert settings.lr == 1e-3 and "base learning rate" in note
    with pytest.raises(ValueError, match="n_ep_decay"):
        adam_settings({"learning_rate": 1e-3, "weight_decay": 0, "n_ep": 3}, 1)


@pytest.mark.slow
def test_adam_state_continues_in_torch(training_checkpoint, exported_with_adam):
    """torch.optim.Adam, loaded with the exported state over the restatement's parameters, makes
    the same next update as our optimiser (gradient norm 1 per network: no clipping)."""
    _, state = training_checkpoint
    pth = exported_with_adam
    rng = np.random.default_rng(5)
    grads = {}
    for root, tree in state.params.items():
        flat = {
            k: rng.standard_normal(np.shape(v)).astype(np.float32) for k, v in _flat(tree).items()
        }
        norm = np.sqrt(sum(float(np.sum(np.square(g))) for g in flat.values()))
        grads[root] = traverse_util.unflatten_dict({k: g / norm for k, g in flat.items()})
    updates, _ = jax.jit(_optimizer().update)(grads, state.opt_state, state.params)
    stats = state.batch_stats
    before = export_official({"params": state.params, "batch_stats": stats})
    after = export_official(
        {"params": optax.apply_updates(state.params, updates), "batch_stats": stats}
    )
    torch_grads = export_official({"params": grads, "batch_stats": stats})
    model = _reference(pth)
    for network in ("DM", "FN"):
        module = getattr(model, network)
        adam = torch.optim.Adam(module.parameters())
        adam.load_state_dict(pth[f"{network}_opt"])
        for name, parameter in module.named_parameters():
            parameter.grad = torch.from_numpy(torch_grads[network][name])
        adam.step()
        largest = worst = 0.0
        for name, parameter in module.named_parameters():
            p0 = before[network][name].astype(np.float64)
            step_torch = parameter.detach().numpy().astype(np.float64) - p0
            step_jax = after[network][name].astype(np.float64) - p0
            # both round p + step to float32: allow 2 ulps of the largest parameter
            ulp = np.spacing(np.float32(np.abs(after[network][name]).max()))
            np.testing.assert_allclose(step_torch, step_jax, rtol=0, atol=2 * ulp, err_msg=name)
            largest = max(largest, float(np.abs(step_jax).max()))
            worst = max(worst, float(np.abs(step_torch - step_jax).max()))
        assert largest > NEXT_LR[network] / 2, network  # Adam steps are about lr
        print(f"{network}: next Adam step, torch vs optax, max abs difference {worst:.3g}")


def _crop(name: str, rows: slice, cols: slice) -> np.ndarray:
    return np.ascontiguousarray(read_rgb(require(MSRS / name / "00004N.png"))[:, rows, cols])


def _compare(pipeline: Pipeline, model: SuperFusionReference, method: str, ir, vi) -> dict:
    """Max abs differences between the JAX pipeline and the restatement (NHWC vs NCHW)."""
    ours = getattr(pipeline, method)(ir, vi)
    nchw = lambda x: torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    with torch.no_grad():
        theirs = getattr(model, method)(nchw(ir), nchw(vi))
    diffs = {
        k: float(np.abs(ours[k] - theirs[k].numpy().transpose(0, 2, 3, 1)).max()) for k in ours
    }
    print(f"{method} {ir.shape[1]}x{ir.shape[2]} max abs differences: {diffs}")
    return diffs


def _check(diffs: dict) -> None:
    for key, diff in diffs.items():
        assert diff <= (DISP_TOL if key == "disp" else IMAGE_TOL), (key, diff)


def test_exported_weights_run_in_the_torch_restatement(model_dir, exported):
    """register_and_fuse on a 64x96 crop of a real misaligned MSRS pair."""
    torch.set_num_threads(2)
    rows, cols = slice(208, 272), slice(272, 368)
    ir, vi = _crop("ir_warp", rows, cols), _crop("vi", rows, cols)
    diffs = _compare(
        Pipeline.from_checkpoint(model_dir), _reference(exported), "register_and_fuse", ir, vi
    )
    _check(diffs)


@pytest.mark.slow
def test_register_and_fuse_separately_in_the_torch_restatement(model_dir, exported):
    torch.set_num_threads(2)
    rows, cols = slice(192, 288), slice(256, 384)
    pipeline, model = Pipeline.from_checkpoint(model_dir), _reference(exported)
    _check(
        _compare(pipeline, model, "register", _crop("ir_warp", rows, cols), _crop("vi", rows, cols))
    )
    _check(_compare(pipeline, model, "fuse", _crop("ir", rows, cols), _crop("vi", rows, cols)))


@pytest.mark.slow
def test_restatement_reproduces_the_release():
    """The restatement itself against the release's outputs (00004N_seed0.npz, 480x640)."""
    torch.set_num_threads(2)
    golden = np.load(require(PARITY / "00004N_seed0.npz"))
    model = _reference(torch.load(require(PARITY / "weights_seed0.pth"), weights_only=True))
    image = lambda d: torch.from_numpy(
        read_rgb(require(MSRS / d / "00004N.png")).transpose(0, 3, 1, 2).copy()
    )
    with torch.no_grad():
        out = model.register_and_fuse(image("ir_warp"), image("vi"))
        fused = model.fuse(image("ir"), image("vi"))["fused"]
    diffs = {
        "disp": float(np.abs(out["disp"].numpy() - golden["disp"]).max()),
        "ir_reg": float(np.abs(out["ir_reg"].numpy() - golden["ir_reg"]).max()),
        "reg_fused": float(np.abs(out["fused"].numpy() - golden["reg_fused_rgb"]).max()),
        "fused": float(np.abs(fused.numpy() - golden["fused_rgb"]).max()),
    }
    print(f"restatement vs release, max abs differences: {diffs}")
    _check(diffs)


# --- a checkpoint made by real training steps ----------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """configs/demo.py for 3 updates at 48 x 48 crops: running statistics and Adam moments as
    training leaves them (no held-out evaluation or images, to keep the compile to the step)."""
    from configs import demo
    from superfusion_jax.training import loop

    config = demo.get_config()
    config.crop_size, config.misalign.frame_size = 48, 56
    config.data.synthetic_pairs, config.data.synthetic_size = 8, 64
    config.num_steps, config.n_ep, config.n_ep_decay = 3, 2, 1
    config.eval_every = config.image_every = 0
    config.tensorboard = "no"
    workdir = tmp_path_factory.mktemp("trained") / "run"
    loop.train_and_evaluate(config, workdir)
    return workdir


def test_trained_checkpoint_exports_and_runs_in_the_torch_restatement(trained_run, capsys):
    """The run's step-3 checkpoint, exported with its Adam state: BatchNorm statistics and
    moments are those of 3 real updates, torch loads both strictly, and the restatement with
    those weights computes what our model computes on a real misaligned pair."""
    path = trained_run / "trained.pth"
    assert _convert(trained_run / CHECKPOINTS_DIR / "3", path, "--include-optimizer") == 0
    capsys.readouterr()
    pth = torch.load(path, weights_only=True)
    assert (pth["ep"], pth["total_it"]) == (-1, 3)  # 4 updates per epoch: none completed
    initial = SuperFusionReference().state_dict()
    model = _reference(pth)
    # the DenseMatcher's BatchNorm statistics (FusionNet has none) moved from their initial values
    stats = [k for k in pth["DM"] if k.endswith(("running_mean", "running_var"))]
    moved = [k for k in stats if not torch.equal(pth["DM"][k], initial[f"DM.{k}"])]
    assert stats and moved == stats
    counts = {int(v) for k, v in pth["DM"].items() if k.endswith("num_batches_tracked")}
    assert counts and min(counts) > 0
    for network in ("DM", "FN"):
        adam = torch.optim.Adam(getattr(model, network).parameters())
        adam.load_state_dict(pth[f"{network}_opt"])
        states = pth[f"{network}_opt"]["state"].values()
        assert {float(s["step"]) for s in states} == {3.0}
        assert sum(float(s["exp_avg_sq"].sum()) for s in states) > 0, network

    torch.set_num_threads(2)
    rows, cols = slice(208, 272), slice(272, 368)
    ir, vi = _crop("ir_warp", rows, cols), _crop("vi", rows, cols)
    pipeline = Pipeline.from_checkpoint(trained_run / "model")
    _check(_compare(pipeline, model, "register_and_fuse", ir, vi))
