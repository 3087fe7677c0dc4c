"""Multi-host training on one machine: two `train.py` processes joined by `jax.distributed`.

Each process is a "host" with one CPU device; they find each other through a coordinator on
localhost (`--coordinator_address`, `--num_processes`, `--process_id`, what a cluster launcher
provides) and exchange gradients and BatchNorm statistics with JAX's CPU collectives (gloo). The
run is the demo recipe at 48 x 48 crops and a global batch of 2 (one pair per host): both
processes must finish, process 0 alone writes the logs, the checkpoints written together must
be complete, and a second launch must resume from them. Marked slow: each process compiles the
stage-RF step (minutes on 2 cores).
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from superfusion_jax.io.model_files import load_model
from superfusion_jax.training.checkpoints import CHECKPOINTS_DIR, MODEL_LINK
from tests.conftest import REPO

SMALL = [
    "--config=configs/demo.py",
    "--config.crop_size=48",
    "--config.misalign.frame_size=56",
    "--config.data.synthetic_pairs=8",
    "--config.data.synthetic_size=64",
    "--config.eval.synthetic_pairs=2",
    "--config.eval.synthetic_size=64",
    "--config.eval.num_pairs=2",
    "--config.eval.batch_size=2",
    "--config.log_every=1",
    "--config.checkpoint_every=1",
    "--config.eval_every=0",
    "--config.image_every=0",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(workdir, num_steps, cache):
    port = _free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": str(cache)}
    env.pop("XLA_FLAGS", None)
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "train.py",
                *SMALL,
                f"--config.num_steps={num_steps}",
                f"--workdir={workdir}",
                f"--coordinator_address=localhost:{port}",
                "--num_processes=2",
                f"--process_id={i}",
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=2400)[0] for p in processes]
    for i, (p, out) in enumerate(zip(processes, outputs, strict=True)):
        assert p.returncode == 0, f"process {i}:\n{out[-4000:]}"
    return outputs


def _steps_logged(workdir):
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines if "train/loss_total" in line]


@pytest.mark.slow
def test_two_processes_train_checkpoint_and_resume(tmp_path):
    workdir, cache = tmp_path / "run", tmp_path / "cache"
    _launch(workdir, 2, cache)
    assert _steps_logged(workdir) == [1, 2]
    saved = sorted(int(p.name) for p in (workdir / CHECKPOINTS_DIR).iterdir() if p.name.isdigit())
    assert saved[-1] == 2
    losses = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(x["train/loss_total"]) for x in losses if "train/loss_total" in x)

    second = _launch(workdir, 3, cache)
    assert all("resumed from the checkpoint of step 2" in out for out in second)
    assert _steps_logged(workdir) == [1, 2, 3]
    variables, meta = load_model(workdir / MODEL_LINK)
    assert meta["step"] == 3 and "dense_matcher" in variables["params"]
