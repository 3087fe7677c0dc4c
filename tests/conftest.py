"""Shared test fixtures: locations of ../shared (parity targets and real data)."""

from pathlib import Path

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
