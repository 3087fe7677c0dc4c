"""Trained SuperFusion weights shipped inside the package.

Each model is one file `NAME.npz` in this folder, in the single-file checkpoint format of
`superfusion_jax.checkpoint.save_flat` (variables plus metadata: variant, recipe, measured
quality). The command line and `Pipeline.pretrained()` use `DEFAULT` when no checkpoint is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DEFAULT = "roadscene"
FOLDER = Path(__file__).resolve().parent  # where the NAME.npz files are


def available() -> list[str]:
    """Names of the shipped models."""
    return sorted(path.stem for path in FOLDER.glob("*.npz"))


def weights_path(name: str = DEFAULT) -> Path:
    """The file of shipped model `name`; a clear error when there is no such model."""
    path = FOLDER / f"{name}.npz"
    if not path.is_file():
        raise FileNotFoundError(
            f"no shipped model named {name!r} (available: {available() or 'none'})"
        )
    return path


def load(name: str = DEFAULT) -> tuple[dict, dict[str, Any]]:
    """(variables as a numpy pytree, metadata) of shipped model `name`."""
    from superfusion_jax.checkpoint import load_flat  # JAX and orbax only when loading

    return load_flat(weights_path(name))
