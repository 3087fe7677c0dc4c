"""Shared test fixtures: locations of ../shared (parity targets and real data), random seeds."""

import os
import zlib
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PARITY = SHARED / "parity"
MSRS = SHARED / "data" / "msrs_test"


def require(path: Path) -> Path:
    """Skip the calling test when a file from ../shared is absent (never in CI)."""
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


@pytest.fixture
def seed(request) -> int:
    """A seed for the test's random inputs, printed so a failure can be replayed.

    Fixed per test (derived from its node id) so CI is reproducible. Set the environment
    variable SUPERFUSION_TEST_SEED to an integer to use that seed everywhere, or to
    `random` to draw fresh seeds (fuzzing the tolerances locally).
    """
    choice = os.environ.get("SUPERFUSION_TEST_SEED", "")
    if choice == "random":
        value = int(np.random.SeedSequence().generate_state(1)[0])
    elif choice:
        value = int(choice)
    else:
        value = zlib.crc32(request.node.nodeid.encode())
    print(f"seed={value} (replay with SUPERFUSION_TEST_SEED={value})")
    return value


@pytest.fixture
def rng(seed) -> np.random.Generator:
    """A numpy generator seeded by the `seed` fixture."""
    return np.random.default_rng(seed)
