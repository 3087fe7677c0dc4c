"""`train.py` on the paths a user takes with real data: the MSRS TFDS builder prepared from a
local copy (`data.source=tfds`, `manual_dir`) and the release's weights as the starting point
(`init_checkpoint=official.pth`).

One demo-sized run of one update (the compiled step is the demo's); marked slow because the
stage-RF step compiles for minutes on 2 CPU cores.
"""

import jax
import numpy as np
import pytest
from flax import traverse_util

from superfusion_jax.convert.official import load_official
from superfusion_jax.io.model_files import load_model
from superfusion_jax.training.checkpoints import MODEL_LINK
from tests.conftest import PARITY, require
from tests.data.test_folders import write_pairs
from tests.helpers import run_python


@pytest.mark.slow
def test_msrs_tfds_from_a_manual_copy_starting_from_the_release_weights(tmp_path):
    weights = require(PARITY / "weights_seed0.pth")
    manual = tmp_path / "manual" / "MSRS-main"
    write_pairs(
        manual / "train", ["00001D", "00002N", "00003D", "00004N"], (90, 100), labels="label"
    )
    write_pairs(manual / "test", ["00005D", "00006N"], (90, 100), labels="label", seed=1)
    workdir = tmp_path / "run"
    stderr = run_python(
        "train.py",
        "--config=configs/demo.py",
        f"--workdir={workdir}",
        "--config.num_steps=1",
        "--config.data.source=tfds",
        "--config.data.tfds_name=msrs",
        f"--config.data.data_dir={tmp_path / 'tfds'}",
        f"--config.data.manual_dir={tmp_path / 'manual'}",
        "--config.eval.source=tfds",
        "--config.eval.num_pairs=2",
        f"--config.init_checkpoint={weights}",
        env={"JAX_COMPILATION_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert "4 pairs" in stderr  # the train split of the prepared builder
    prepared = sorted(p.name for p in (tmp_path / "tfds" / "msrs" / "1.0.0").iterdir())
    assert "msrs-train.array_record-00000-of-00001" in prepared

    # One Adam update moves every parameter by about the learning rate (1e-3): the model is
    # the release's weights moved once, not a random initialisation.
    start, _ = load_official(weights)
    trained, meta = load_model(workdir / MODEL_LINK)
    assert meta["step"] == 1
    flat_start = traverse_util.flatten_dict(jax.tree_util.tree_map(np.asarray, start["params"]))
    flat_trained = traverse_util.flatten_dict(trained["params"])
    assert flat_start.keys() == flat_trained.keys()
    moved = max(np.max(np.abs(flat_trained[k] - flat_start[k])) for k in flat_start)
    assert 1e-4 < moved < 2e-3, moved
