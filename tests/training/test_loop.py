"""The training loop: held-out registration error, resume after SIGKILL, SIGTERM, NaN stop, and
`train.py` end to end.

The runs are the demo config (64 x 64 crops, batch 2) for a handful of steps, each in its own
`train.py` process (signals are sent to it) sharing one persistent compilation cache: the first
run compiles the training step (minutes on 2 CPU cores), the others load it. Those tests are
marked slow.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from configs import demo
from superfusion_jax.data.misalign import MisalignConfig
from superfusion_jax.data.synthetic import SyntheticPairs
from superfusion_jax.io.model_files import load_model
from superfusion_jax.models.variants import FAITHFUL
from superfusion_jax.ops.displacement import base_grid_pixels, pixels_to_disp
from superfusion_jax.training import loop
from superfusion_jax.training.checkpoints import CHECKPOINTS_DIR, MODEL_LINK
from superfusion_jax.training.held_out import end_point_error, make_held_out_set
from superfusion_jax.training.init_weights import superfusion_init_variables

REPO = Path(__file__).resolve().parents[2]
# Run length and periods of the tiny runs (the compiled step only depends on the demo's sizes).
TINY = ["--config.num_steps=6", "--config.checkpoint_every=2", "--config.log_every=1"]
RUN_TIMEOUT_S = 1800

# --- held-out registration error (no model) -------------------------------------------------


@pytest.mark.parametrize("align_corners_grid", [True, False])
def test_epe_of_the_inverse_translation_is_zero(align_corners_grid):
    frame, crop, shift = 40, 24, np.array([3.5, -2.25], np.float32)
    source_px = (base_grid_pixels(frame, frame) + shift)[None]  # ir_warp(q) = ir(q + shift)
    undo = pixels_to_disp(jnp.broadcast_to(-shift, (1, crop, crop, 2)), align_corners_grid)
    epe = end_point_error(undo, source_px, (8, 8), align_corners_grid)
    np.testing.assert_allclose(epe, 0.0, atol=1e-4)
    identity = end_point_error(jnp.zeros((1, crop, crop, 2)), source_px, (8, 8), False)
    np.testing.assert_allclose(identity, np.hypot(*shift), rtol=1e-5)


def test_held_out_ground_truth_reproduces_the_warp():
    held_out = make_held_out_set(
        SyntheticPairs(2, 64, 64, seed=3),
        num_pairs=2,
        crop_size=64,
        frame_size=64,
        seed=0,
        misalign=MisalignConfig(angle=10.0, translation=0.1, ratio=1.0),
    )
    for ir, ir_warp, source in zip(held_out.ir, held_out.ir_warp, held_out.source_px, strict=True):
        # grid_sample (zeros, align_corners=False) = linear interpolation at pixel positions.
        resampled = np.stack(
            [
                map_coordinates(ir[..., c], [source[..., 1], source[..., 0]], order=1)
                for c in range(3)
            ],
            axis=-1,
        )
        inside = np.all((source > 0.5) & (source < 62.5), axis=-1)
        assert inside.mean() > 0.3
        np.testing.assert_allclose(ir_warp[inside], resampled[inside], atol=1e-4)
        assert np.abs(source - np.asarray(base_grid_pixels(64, 64))).mean() > 1.0


def test_nonfinite_message_names_the_terms():
    metrics = {
        "loss_total": np.float32(np.nan),
        "loss_smooth": np.float32(np.inf),
        "loss_fus": np.float32(0.5),
        "grad_norm_fusion_net": np.float32(1.0),
        "nonfinite": np.bool_(True),
    }
    message = loop.nonfinite_message(metrics, 7, 6)
    assert "update 7: loss_smooth, loss_total;" in message
    assert "newest checkpoint is step 6" in message


def test_config_checks():
    config = demo.get_config()
    loop.check_config(config)
    config.semantic_weight = 0.5
    with pytest.raises(ValueError, match="semantic"):
        loop.check_config(config)
    config = demo.get_config()
    config.misalign.frame_size = 32
    with pytest.raises(ValueError, match="frame_size"):
        loop.check_config(config)


def test_run_length_and_crop_size_checks():
    config = demo.get_config()
    for num_steps in (-1, 1, 10):
        config.num_steps = num_steps
        loop.check_config(config)
    for num_steps in (-5, 0, -2):
        config.num_steps = num_steps
        with pytest.raises(ValueError, match=f"config.num_steps .* got {num_steps}$"):
            loop.check_config(config)
    config = demo.get_config()
    config.crop_size = -8
    with pytest.raises(ValueError, match="config.crop_size must be positive, got -8"):
        loop.check_config(config)


def test_workdir_check(tmp_path):
    assert loop.check_workdir(tmp_path / "new" / "run") == tmp_path / "new" / "run"
    assert (tmp_path / "new" / "run").is_dir() and not any((tmp_path / "new" / "run").iterdir())
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ValueError, match="a_file is a file, not a folder"):
        loop.check_workdir(tmp_path / "a_file")
    with pytest.raises(ValueError, match="cannot write to the folder .*a_file/run"):
        loop.check_workdir(tmp_path / "a_file" / "run")


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--config.crop_size=-8", "train.py: config.crop_size must be positive, got -8"),
        ("--workdir={tmp}/a_file", "train.py: --workdir={tmp}/a_file: {tmp}/a_file is a file"),
    ],
)
def test_bad_values_and_workdirs_are_one_line_with_exit_2(tmp_path, flag, message):
    (tmp_path / "a_file").write_text("x")
    argv = [sys.executable, "train.py", "--config=configs/demo.py", f"--workdir={tmp_path}/run"]
    run = subprocess.run(
        [*argv, flag.format(tmp=tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 2
    assert message.format(tmp=tmp_path) in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


@pytest.mark.parametrize(
    "override",
    ["--config.semantic_weight=0", "--config.misalign.frame=3", "--config.num_stepz=3"],
)
def test_unknown_config_field_is_named_in_one_line(tmp_path, override):
    run = subprocess.run(
        [sys.executable, "train.py", "--config=configs/demo.py", f"--workdir={tmp_path}", override],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    flag = override.split("=")[0]
    assert run.returncode == 2
    assert f"{flag}: the config has no field '{flag.split('.')[-1]}'" in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    if flag.endswith("stepz"):
        assert "did you mean 'num_steps'?" in run.stderr
    assert not any(tmp_path.iterdir())


def test_config_file_errors_are_not_reported_as_unknown_fields(tmp_path):
    config_file = tmp_path / "broken.py"
    config_file.write_text("def get_config():\n    return {}.nothing\n")
    run = subprocess.run(
        [sys.executable, "train.py", f"--config={config_file}", f"--workdir={tmp_path / 'run'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0
    assert "has no attribute 'nothing'" in run.stderr
    assert "the config has no field" not in run.stderr


# --- training runs (train.py processes) -----------------------------------------------------


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory):
    """A persistent compilation cache shared by the runs of this module."""
    return os.environ.get("JAX_COMPILATION_CACHE_DIR") or str(tmp_path_factory.mktemp("jax"))


def _start(workdir: Path, jax_cache: str, *flags: str, script: str | None = None):
    env = {
        **os.environ,
        "JAX_COMPILATION_CACHE_DIR": jax_cache,
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }
    argv = ["--config=configs/demo.py", f"--workdir={workdir}", *flags]
    command = [sys.executable, "train.py", *argv]
    if script is not None:
        command = [sys.executable, "-c", script, *argv]
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    return process.returncode, stderr


def _wait_for(condition, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the run ended before {what}:\n{process.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _checkpoint_steps(workdir: Path) -> list[int]:
    folder = workdir / CHECKPOINTS_DIR
    return (
        sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.exists() else []
    )


def _assert_same_model(workdir: Path, reference: Path) -> None:
    got, meta = load_model(workdir / MODEL_LINK)
    want, want_meta = load_model(reference / MODEL_LINK)
    assert meta["step"] == want_meta["step"]
    flat_got, flat_want = _flatten(got), _flatten(want)
    assert flat_got.keys() == flat_want.keys()
    for name, value in flat_want.items():
        np.testing.assert_allclose(flat_got[name], value, rtol=1e-5, atol=1e-7, err_msg=name)


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = np.asarray(value)
    return out


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, jax_cache):
    """An uninterrupted 6-step run (checkpoints at 2, 4, 6); compiles the step for the others."""
    workdir = tmp_path_factory.mktemp("reference")
    returncode, stderr = _finish(_start(workdir, jax_cache, *TINY))
    assert returncode == 0, stderr[-3000:]
    return workdir


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path, jax_cache, reference_run):
    process = _start(tmp_path, jax_cache, *TINY)
    _wait_for(lambda: 4 in _checkpoint_steps(tmp_path), process, "the checkpoint of step 4")
    assert process.poll() is None, "the run finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert max(_checkpoint_steps(tmp_path)) < 6

    returncode, stderr = _finish(_start(tmp_path, jax_cache, *TINY))
    assert returncode == 0, stderr[-3000:]
    assert "resumed from the checkpoint of step" in stderr
    assert max(_checkpoint_steps(tmp_path)) == 6
    _assert_same_model(tmp_path, reference_run)


@pytest.mark.slow
def test_sigterm_saves_and_exits_cleanly(tmp_path, jax_cache, reference_run):
    flags = [*TINY, "--config.checkpoint_every=100"]  # the only checkpoint: the signal's
    process = _start(tmp_path, jax_cache, *flags)
    metrics = tmp_path / "metrics.jsonl"
    _wait_for(lambda: metrics.exists() and "train/" in metrics.read_text(), process, "a step")
    process.send_signal(signal.SIGTERM)
    returncode, stderr = _finish(process)

    assert returncode == 0, stderr[-3000:]
    assert "received SIGTERM" in stderr and "stopped by a signal after step" in stderr
    (step,) = _checkpoint_steps(tmp_path)
    assert 1 <= step < 6
    _, meta = load_model(tmp_path / MODEL_LINK)
    assert meta["step"] == step


# Continues a copy of the reference run with NaN infrared images from the data source.
_NAN_SCRIPT = """
import runpy, sys
import numpy as np
from superfusion_jax.data.misalign import MisalignConfig
from superfusion_jax.data.synthetic import SyntheticPairs
from superfusion_jax.data import sources

class NanPairs(SyntheticPairs):
    def __getitem__(self, index):
        record = super().__getitem__(index)
        record["ir"] = np.full_like(record["ir"], np.nan)
        return record

sources.SyntheticPairs = NanPairs
sys.argv = ["train.py", *sys.argv[1:]]
runpy.run_path("train.py", run_name="__main__")
"""


@pytest.mark.slow
def test_nan_stops_naming_the_terms_and_keeps_the_last_checkpoint(
    tmp_path, jax_cache, reference_run
):
    workdir = tmp_path / "run"
    shutil.copytree(reference_run, workdir, symlinks=True)
    process = _start(
        workdir,
        jax_cache,
        "--config.num_steps=8",
        "--config.checkpoint_every=1",
        script=_NAN_SCRIPT,
    )
    returncode, stderr = _finish(process)

    assert returncode == 3, stderr[-3000:]
    assert "non-finite values at update 7: " in stderr
    assert "loss_total" in stderr.split("non-finite values at update 7: ")[1].split(";")[0]
    assert "the newest checkpoint is step 6" in stderr
    assert _checkpoint_steps(workdir)[-1] == 6
    _assert_same_model(workdir, reference_run)


@pytest.mark.slow
def test_train_py_demo_runs_and_exports_a_loadable_model(tmp_path, jax_cache, reference_run):
    from superfusion_jax.inference import Pipeline

    returncode, stderr = _finish(_start(tmp_path, jax_cache, "--config.num_steps=3"))
    assert returncode == 0, stderr[-3000:]

    pipeline = Pipeline.from_checkpoint(tmp_path / MODEL_LINK)
    assert pipeline.variant == FAITHFUL
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    evals = [line for line in lines if "eval/epe_px" in line]
    assert len(evals) == 2 and evals[-1].startswith('{"step": 3')
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == [
        "registration_0000000.png",
        "registration_0000003.png",
    ]
    assert _checkpoint_steps(tmp_path) == [3]


@pytest.mark.slow
def test_init_checkpoint_starts_from_its_weights(tmp_path, jax_cache, reference_run):
    flags = ["--config.num_steps=1", f"--config.init_checkpoint={reference_run / MODEL_LINK}"]
    returncode, stderr = _finish(_start(tmp_path, jax_cache, *flags))
    assert returncode == 0, stderr[-3000:]

    def evals(workdir: Path) -> list[dict]:
        lines = (workdir / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines if "eval/epe_px" in line]

    # Same weights, same held-out pairs: the new run's step-0 error is the reference's last.
    assert evals(tmp_path)[0]["step"] == 0
    assert evals(tmp_path)[0]["eval/epe_px"] == evals(reference_run)[-1]["eval/epe_px"]


def test_init_checkpoint_reads_every_checkpoint_form(tmp_path, caplog):
    """A single-file .npz (a run carried over in one file) and a folder give the same start;
    other variants are trained with a warning."""
    from superfusion_jax.io.model_files import save_flat, save_model

    variables = {"params": {"w": np.arange(3, dtype=np.float32)}, "batch_stats": {"m": np.ones(2)}}
    save_flat(tmp_path / "m.npz", variables, {"variant": "corrected"})
    save_model(tmp_path / "m", variables, {"variant": "corrected"})
    for source in (tmp_path / "m.npz", tmp_path / "m"):
        start = superfusion_init_variables(str(source), FAITHFUL)
        np.testing.assert_array_equal(start["params"]["w"], variables["params"]["w"])
    assert "holds 'corrected' weights; training them as 'faithful'" in caplog.text
    assert superfusion_init_variables("", FAITHFUL) is None


def test_init_checkpoint_from_the_fusion_only_default_model(caplog):
    """Fine-tuning the shipped default (FusionNet only): its FusionNet is kept, the DenseMatcher
    the file lacks starts fresh, with its batch statistics."""
    from superfusion_jax import weights
    from superfusion_jax.training.state import fresh_variables

    shipped, _ = weights.load()
    start = superfusion_init_variables(str(weights.weights_path()), FAITHFUL, seed=3)
    fresh = fresh_variables(FAITHFUL, 3)
    assert set(start["params"]) == {"fusion_net", "dense_matcher"}
    for got, want in zip(
        jax.tree_util.tree_leaves(start["params"]["fusion_net"]),
        jax.tree_util.tree_leaves(shipped["params"]["fusion_net"]),
        strict=True,
    ):
        np.testing.assert_array_equal(got, want)
    assert jax.tree_util.tree_structure(start["batch_stats"]) == jax.tree_util.tree_structure(
        fresh["batch_stats"]
    )
    assert "holds no ['dense_matcher']: they start fresh" in caplog.text
