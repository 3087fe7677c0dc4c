"""Trained SuperFusion weights shipped inside the package.

Each model is one file `NAME.npz` in this folder, in the single-file checkpoint format of
`superfusion_jax.io.model_files.save_flat` (variables plus metadata: variant, the registration
method to use with it, recipe). The command line and `Pipeline.pretrained()` use `DEFAULT` when no
checkpoint is given. `package` (or `python -m superfusion_jax.weights RUN/model NAME`) makes one
from a training run's model: FusionNet only, registered by the training-free method
(docs/model_card.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DEFAULT = "default"
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
    from superfusion_jax.io.model_files import load_flat  # JAX and orbax only when loading

    return load_flat(weights_path(name))


def package(model: str | Path, name: str = DEFAULT, recipe: str = "configs/fusion.py") -> Path:
    """Ship the FusionNet of checkpoint `model` (a training run's WORKDIR/model) as NAME.npz.

    Only FusionNet's parameters are kept (the file stays small); its metadata names the
    training-free registration 'optimize', since the model holds no registration network.
    Returns the path written.
    """
    from superfusion_jax.io.model_files import load_checkpoint, save_flat

    variables, meta = load_checkpoint(model)
    metadata = {
        "variant": meta["variant"],
        "registration": "optimize",
        "recipe": recipe,
        "step": meta.get("step"),
        "networks": "fusion_net only (registration: training-free, superfusion_jax.registration)",
    }
    fusion = {"params": {"fusion_net": variables["params"]["fusion_net"]}, "batch_stats": {}}
    return save_flat(FOLDER / f"{name}.npz", fusion, metadata)
