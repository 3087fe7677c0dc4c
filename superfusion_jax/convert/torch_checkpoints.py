"""Reading official PyTorch checkpoints into numpy (torch is needed only here, lazily imported).

Accepted layouts: the release's `{'DM': state_dict, 'FN': state_dict, 'ep', 'total_it', ...}`;
a bare state_dict of the release's `SuperFusion` module (keys 'DM.*', 'FN.*', the 'ST.grid'
buffer); and either with DataParallel's 'module.' prefixes. Files saved on GPU load on the CPU.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

# Buffers of the release's SuperFusion module that are not weights (a fixed sampling grid).
IGNORED_KEYS = ("ST.grid",)


def import_torch():
    """The torch module, or an ImportError saying how to install it (an optional dependency)."""
    try:
        import torch
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading or writing .pth files needs PyTorch: pip install 'superfusion-jax[torch]'"
        ) from err
    return torch


def read_pth(path: str | Path) -> dict[str, Any]:
    """torch.load a .pth file on the CPU (tensors only, no pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    torch = import_torch()
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint: {err}") from err


def split_networks(obj: dict[str, Any], source: str) -> tuple[dict[str, dict], dict[str, Any]]:
    """Split a loaded checkpoint into {'DM': {key: np.ndarray}, 'FN': {...}} and extra info."""
    if not isinstance(obj, dict):
        raise ValueError(f"{source}: expected a dict, found {type(obj).__name__}")
    if "DM" in obj or "FN" in obj:
        nets = {name: obj.get(name, {}) for name in ("DM", "FN")}
        extra = {k: v for k, v in obj.items() if k in ("ep", "total_it")}
    else:
        nets = {"DM": {}, "FN": {}}
        unknown = []
        for key, value in obj.items():
            key = key.removeprefix("module.")
            prefix, _, rest = key.partition(".")
            if prefix in nets and rest:
                nets[prefix][rest] = value
            elif key not in IGNORED_KEYS:
                unknown.append(key)
        if unknown:
            raise ValueError(
                f"{source}: not a SuperFusion checkpoint; keys without a 'DM.'/'FN.' prefix: "
                + ", ".join(sorted(unknown)[:20])
            )
        extra = {}
    arrays = {
        name: {k.removeprefix("module."): to_numpy(v) for k, v in sd.items()}
        for name, sd in nets.items()
    }
    return arrays, extra


def save_pth_atomically(obj: Any, dst: Path) -> None:
    """torch.save to a temporary name beside `dst`, then rename (no half-written files)."""
    torch = import_torch()
    dst.parent.mkdir(parents=True, exist_ok=True)
    temporary = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, temporary)
        os.replace(temporary, dst)
    finally:
        temporary.unlink(missing_ok=True)


MAX_LISTED = 30  # keys listed per kind of mismatch in an error message


def mismatch_error(source: str, architecture: str, problems: dict[str, list[str]]) -> ValueError:
    """One error listing, per kind of problem ('unknown keys', 'misshaped', 'missing'), the keys
    of checkpoint `source` that do not fit `architecture` (at most MAX_LISTED per kind)."""
    parts = [f"{source} does not match {architecture}:"]
    for title, items in problems.items():
        if items:
            items = sorted(items)
            more = len(items) - MAX_LISTED
            listed = "; ".join(items[:MAX_LISTED]) + (f"; ... and {more} more" if more > 0 else "")
            parts.append(f"  {title} ({len(items)}): {listed}")
    return ValueError("\n".join(parts))


def to_numpy(value: Any) -> np.ndarray:
    """A torch tensor (any device) or array-like as a numpy array."""
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)
