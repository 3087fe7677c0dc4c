"""Import of official SuperFusion checkpoints (.pth) into Flax variables and our checkpoints.

The reverse direction (our checkpoints -> .pth) is `superfusion_jax.convert.export`; the
`superfusion convert` command is `superfusion_jax.convert.commands`.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from superfusion_jax.convert.official_keys import expected_flax_shape, locate, to_flax
from superfusion_jax.convert.torch_checkpoints import mismatch_error, read_pth, split_networks
from superfusion_jax.models.superfusion import SuperFusion
from superfusion_jax.models.variants import FAITHFUL, Variant


@functools.cache
def variable_shapes(variant: Variant = FAITHFUL) -> dict:
    """Shapes/dtypes of the SuperFusion variables {'params', 'batch_stats'} (no computation;
    cached: read it, do not modify it)."""
    x = jnp.zeros((1, 16, 16, 3), jnp.float32)
    model = SuperFusion(variant)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), x, x))


def import_official(networks: dict[str, dict[str, np.ndarray]], source: str) -> dict:
    """Official {'DM': state_dict, 'FN': state_dict} (numpy) -> Flax {'params', 'batch_stats'}.

    Every official key must map onto a Flax variable of the right shape and every Flax variable
    must be filled; otherwise a ValueError lists the unknown, misshaped and missing keys.
    """
    template = {col: traverse_util.flatten_dict(tree) for col, tree in variable_shapes().items()}
    filled: dict[str, dict] = {col: {} for col in template}
    rnn_rows: dict[tuple, dict[int, np.ndarray]] = {}
    unknown, misshaped = [], []
    for network, state in networks.items():
        for key, tensor in state.items():
            loc = locate(network, key)
            name = f"{network}.{key}"
            if loc is None or loc.path not in template[loc.collection]:
                unknown.append(name)
                continue
            target = template[loc.collection][loc.path]
            want = target.shape[1:] if loc.layout == "rnn" else target.shape
            got = expected_flax_shape(tuple(tensor.shape), loc)
            if got != tuple(want):
                misshaped.append(f"{name}: {tuple(tensor.shape)} (expected Flax {tuple(want)})")
                continue
            value = to_flax(tensor, loc)
            if loc.layout == "rnn":
                rnn_rows.setdefault((loc.collection, loc.path), {})[loc.row] = value
            else:
                filled[loc.collection][loc.path] = value.astype(target.dtype)
    for (col, path), rows in rnn_rows.items():
        if len(rows) == template[col][path].shape[0]:
            filled[col][path] = np.stack([rows[i] for i in range(len(rows))]).astype(np.float32)
    missing = [
        f"{col}/{'/'.join(path)}"
        for col, leaves in template.items()
        for path in leaves
        if path not in filled[col]
    ]
    if unknown or misshaped or missing:
        problems = {
            "unknown keys": unknown,
            "misshaped": misshaped,
            "missing (no official key filled them)": missing,
        }
        raise mismatch_error(source, "the SuperFusion architecture", problems)
    return {col: traverse_util.unflatten_dict(leaves) for col, leaves in filled.items()}


def load_official(path: str | Path) -> tuple[dict, dict]:
    """Read an official .pth into (Flax variables, info such as 'ep' and 'total_it')."""
    networks, extra = split_networks(read_pth(path), str(path))
    return import_official(networks, str(path)), extra
