"""The model checkpoint format read by the command line, the converters and evaluation.

A checkpoint is a directory:
- `variables/`: an orbax (StandardCheckpointer) pytree {'params': ..., 'batch_stats': ...} of the
  `SuperFusion` Flax module;
- `metadata.json`: {'format': 'superfusion-jax', 'version': 1, 'variant': 'faithful'|'corrected',
  ...provenance (source file, epoch, step)}.

The weights shipped inside the package use a single-file form of the same content
(`save_flat` / `load_flat`): one `.npz` whose keys are the '/'-joined paths of the variables
('params/dense_matcher/...', 'batch_stats/...') plus the metadata as JSON under '__metadata__'.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util

FORMAT = "superfusion-jax"
VERSION = 1
_METADATA_KEY = "__metadata__"


def save_model(directory: str | Path, variables: dict, metadata: dict[str, Any]) -> Path:
    """Write `variables` ({'params', 'batch_stats'}) and `metadata` (must name 'variant')."""
    directory = Path(directory).absolute()
    if "variant" not in metadata:
        raise ValueError("checkpoint metadata must name the model 'variant'")
    if (directory / "variables").exists():
        raise FileExistsError(f"{directory} already holds a checkpoint; choose a new folder")
    directory.mkdir(parents=True, exist_ok=True)
    tree = jax.tree_util.tree_map(np.asarray, dict(variables))
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(directory / "variables", tree)
    checkpointer.wait_until_finished()
    meta = {"format": FORMAT, "version": VERSION, **metadata}
    (directory / "metadata.json").write_text(json.dumps(meta, indent=1, default=str))
    return directory


def load_model(directory: str | Path) -> tuple[dict, dict[str, Any]]:
    """Read a checkpoint directory; returns (variables as numpy pytree, metadata)."""
    directory = Path(directory).absolute()
    meta_path = directory / "metadata.json"
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint folder {directory} does not exist")
    if not meta_path.is_file() or not (directory / "variables").is_dir():
        raise ValueError(
            f"{directory} is not a superfusion-jax checkpoint (expected metadata.json and "
            "variables/); official .pth files must first be imported with `superfusion convert`"
        )
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path}: unknown checkpoint format {meta.get('format')!r}")
    variables = ocp.StandardCheckpointer().restore(directory / "variables")
    return jax.tree_util.tree_map(np.asarray, variables), meta


def save_flat(path: str | Path, variables: dict, metadata: dict[str, Any]) -> Path:
    """Write `variables` and `metadata` (must name 'variant') as one compressed `.npz` file."""
    path = Path(path)
    if "variant" not in metadata:
        raise ValueError("checkpoint metadata must name the model 'variant'")
    flat = traverse_util.flatten_dict(jax.tree_util.tree_map(np.asarray, dict(variables)), sep="/")
    meta = {"format": FORMAT, "version": VERSION, **metadata}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as file:
        np.savez_compressed(
            file, **flat, **{_METADATA_KEY: np.array(json.dumps(meta, default=str))}
        )
    return path


def load_flat(path: str | Path) -> tuple[dict, dict[str, Any]]:
    """Read a file written by `save_flat`; returns (variables as numpy pytree, metadata)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not a superfusion-jax weights file: {error}") from error
    if _METADATA_KEY not in arrays:
        raise ValueError(f"{path} is not a superfusion-jax weights file (no {_METADATA_KEY})")
    meta = json.loads(str(arrays.pop(_METADATA_KEY)))
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown checkpoint format {meta.get('format')!r}")
    return traverse_util.unflatten_dict(arrays, sep="/"), meta
