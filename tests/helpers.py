"""Small helpers shared by tests (reading the parity inputs as the release does, running a
Python process in the repository)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import REPO


def read_rgb(path: Path) -> np.ndarray:
    """A PNG as the release's TestData reads it: RGB float32 in [0, 1], shape (1, H, W, 3)."""
    return (np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0)[None]


def run_python(*args: str, env: dict[str, str], timeout: float = 3600) -> str:
    """Run `python ARGS` in the repository root with the environment plus `env`; returns its
    stderr, or fails the test with the end of stderr when the process exits non-zero."""
    run = subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    return run.stderr
