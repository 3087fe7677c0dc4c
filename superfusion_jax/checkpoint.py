"""The model checkpoint format read by the command line, the converters and evaluation.

A checkpoint is a directory:
- `variables/`: an orbax (StandardCheckpointer) pytree {'params': ..., 'batch_stats': ...} of the
  `SuperFusion` Flax module;
- `metadata.json`: {'format': 'superfusion-jax', 'version': 1, 'variant': 'faithful'|'corrected',
  ...provenance (source file, epoch, step)}.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

FORMAT = "superfusion-jax"
VERSION = 1


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
