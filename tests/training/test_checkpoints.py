"""Run checkpoints (state + data position + config), the exported model link, stop signals.

A small stand-in TrainState (one dense layer, Adam) keeps these tests free of model compiles;
the full training loop is exercised in test_loop.py.
"""

import json
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from superfusion_jax.data.pipeline import make_train_iterator
from superfusion_jax.data.synthetic import SyntheticPairs
from superfusion_jax.io.model_files import load_model
from superfusion_jax.training.checkpoints import (
    CHECKPOINTS_DIR,
    EXPORTS_DIR,
    MODEL_LINK,
    RunCheckpoints,
    StopSignal,
    config_differences,
    export_model,
)
from superfusion_jax.training.state import TrainState


def _state(step: int, scale: float = 1.0) -> TrainState:
    params = {"dense": {"kernel": jnp.full((3, 2), scale), "bias": jnp.arange(2.0) * scale}}
    return TrainState(
        step=jnp.asarray(step, jnp.int32),
        params=params,
        batch_stats={"bn": {"mean": jnp.ones(2) * scale}},
        opt_state=optax.adam(1e-3).init(params),
        rng=jnp.asarray([7, step], jnp.uint32),
    )


def _iterator():
    return make_train_iterator(SyntheticPairs(8, 16, 16), batch_size=2, crop_size=16, seed=0)


def test_restore_gives_the_state_and_the_data_position(tmp_path):
    checkpoints = RunCheckpoints(tmp_path, keep=2, async_save=True)
    assert checkpoints.latest_step() is None
    iterator = _iterator()
    next(iterator)
    checkpoints.save(_state(3, 2.0), iterator, {"seed": 0, "data": {"source": "synthetic"}})
    expected_batch = next(iterator)
    checkpoints.close()

    resumed = RunCheckpoints(tmp_path, keep=2)
    fresh = _iterator()
    state = resumed.restore(_state(0), fresh)
    assert resumed.latest_step() == 3 and int(state.step) == 3
    jax.tree_util.tree_map(np.testing.assert_array_equal, state, _state(3, 2.0))
    np.testing.assert_array_equal(next(fresh)["ir"], expected_batch["ir"])
    assert resumed.saved_config() == {"seed": 0, "data": {"source": "synthetic"}}
    resumed.close()


def test_keeps_the_newest_and_ignores_unfinished_ones(tmp_path):
    checkpoints = RunCheckpoints(tmp_path, keep=2, async_save=False)
    iterator = _iterator()
    for step in (2, 4, 6):
        checkpoints.save(_state(step), iterator, {})
    checkpoints.save(_state(6, 5.0), iterator, {})  # same step again: nothing written
    checkpoints.close()
    # A save interrupted by SIGKILL leaves only orbax's temporary folder.
    leftover = tmp_path / CHECKPOINTS_DIR / "8.orbax-checkpoint-tmp-1234"
    (leftover / "state").mkdir(parents=True)

    resumed = RunCheckpoints(tmp_path, keep=2)
    assert resumed.manager.all_steps() == [4, 6]
    iterator = _iterator()
    state = resumed.restore(_state(0), iterator)
    np.testing.assert_array_equal(state.params["dense"]["kernel"], np.ones((3, 2)))
    # Orbax removes leftovers in the background, at the latest before the next save.
    resumed.save(_state(10), iterator, {})
    resumed.close()
    assert not leftover.exists()
    assert resumed.manager.all_steps() == [6, 10]


def test_export_replaces_the_model_link(tmp_path):
    variables = {"params": {"w": np.ones(3, np.float32)}, "batch_stats": {}}
    link = export_model(tmp_path, variables, {"variant": "faithful", "step": 2})
    assert link == tmp_path / MODEL_LINK and link.is_symlink()
    # An export cut short (no metadata.json) is not linked and is cleaned up by the next one.
    (tmp_path / EXPORTS_DIR / "step_00000005" / "variables").mkdir(parents=True)
    variables["params"]["w"] = np.full(3, 4.0, np.float32)
    export_model(tmp_path, variables, {"variant": "corrected", "step": 6})

    assert sorted(p.name for p in (tmp_path / EXPORTS_DIR).iterdir()) == ["step_00000006"]
    loaded, meta = load_model(tmp_path / MODEL_LINK)
    np.testing.assert_array_equal(loaded["params"]["w"], np.full(3, 4.0))
    assert meta["variant"] == "corrected" and meta["step"] == 6
    # Exporting the linked step again changes nothing.
    export_model(tmp_path, variables, {"variant": "corrected", "step": 6})
    assert os.readlink(tmp_path / MODEL_LINK) == os.path.join(EXPORTS_DIR, "step_00000006")


def test_stop_signal_sets_a_flag_then_restores_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with StopSignal() as stop:
        assert not stop.should_stop()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested == signal.SIGTERM and stop.should_stop()
    assert signal.getsignal(signal.SIGTERM) is before
    with StopSignal(), pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)  # first: a request
        os.kill(os.getpid(), signal.SIGINT)  # second: interrupt now


def test_config_differences_name_dotted_fields():
    saved = json.loads(json.dumps({"a": 1, "b": {"c": (1, 2), "d": "x"}}))
    assert config_differences(saved, {"a": 1, "b": {"c": (1, 2), "d": "y"}, "e": 0}) == [
        "b.d: 'x' -> 'y'",
        "e: '<absent>' -> 0",
    ]
