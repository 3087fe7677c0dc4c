"""Import and export of the release's segmentation network (BiSeNet) checkpoints.

The release (and SeAFusion, whose `model_final.pth` it loads as `Seg_model.pth`) saves a plain
PyTorch state_dict of `BiSeNet(n_classes=9)`: keys such as `cp.resnet.layer2.0.downsample.1.
running_var`, `cp.arm32.conv.bn.weight`, `conv_out16.conv_out.weight`. Our Flax modules carry the
same names (`models/bisenet.py`, `models/resnet.py`) with Sequential indices written `layer2_0`,
`downsample_1`, so the mapping is derived from the Flax variables themselves: one table, used in
both directions, with the tensor layouts of `official_keys` (`to_flax` / `to_official`: conv
OIHW <-> HWIO, vectors as they are, `num_batches_tracked` int64 <-> int32). The export writes
the keys in the release's `state_dict()` order.
"""

from __future__ import annotations

import functools
import re
from collections import OrderedDict
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from superfusion_jax.convert.official_keys import (
    Location,
    expected_flax_shape,
    to_flax,
    to_official,
)
from superfusion_jax.convert.torch_checkpoints import (
    import_torch,
    mismatch_error,
    read_pth,
    save_pth_atomically,
    to_numpy,
)
from superfusion_jax.models.bisenet import NUM_CLASSES, BiSeNet, num_classes_of

# Flax leaf name -> (PyTorch leaf name, layout) per collection.
_LEAVES = {
    "params": {
        "kernel": ("weight", "conv"),
        "scale": ("weight", "vector"),
        "bias": ("bias", "vector"),
    },
    "batch_stats": {
        "mean": ("running_mean", "vector"),
        "var": ("running_var", "vector"),
        "num_batches_tracked": ("num_batches_tracked", "count"),
    },
}
# Names of the release's submodules in an order consistent with every module's declaration
# order (BiSeNet: cp, conv_out, conv_out16; ContextPath: resnet, arm32, ..., conv_fuse; ResNet:
# conv1, bn1, layer1..4; BasicBlock: conv1, bn1, conv2, bn2, downsample; ARM: conv, conv_atten,
# bn_atten; ConvBNReLU: conv, bn; BiSeNetOutput: conv, conv_out). Sorting by it gives the order of
# the release's `state_dict()` (and of `parameters()`, which indexes torch optimiser states).
_DECLARATION_ORDER = (
    "cp", "resnet", "conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "conv2", "bn2",
    "downsample", "arm32", "arm16", "arm8", "sp16", "sp8", "conv_head32", "conv_head16",
    "conv_fuse1", "conv_fuse2", "conv_fuse", "conv", "bn", "conv_atten", "bn_atten", "conv_out",
    "conv_out16", "weight", "bias", "running_mean", "running_var", "num_batches_tracked",
)  # fmt: skip


@functools.cache
def variable_shapes(num_classes: int = NUM_CLASSES) -> dict:
    """Shapes/dtypes of the BiSeNet variables {'params', 'batch_stats'} (no computation)."""
    x = jnp.zeros((1, 32, 32, 3), jnp.float32)
    return jax.eval_shape(lambda: BiSeNet(num_classes).init(jax.random.key(0), x))


def torch_key(collection: str, path: tuple[str, ...]) -> tuple[str, str]:
    """(PyTorch state_dict key, layout) of the Flax variable `path` in `collection`."""
    leaf, layout = _LEAVES[collection][path[-1]]
    modules = [re.sub(r"_(\d+)$", r".\1", part) for part in path[:-1]]
    return ".".join([*modules, leaf]), layout


def key_table(num_classes: int = NUM_CLASSES) -> dict[str, Location]:
    """Each PyTorch key of the release's BiSeNet -> its Flax Location, in state_dict order."""
    table = {}
    for collection, tree in variable_shapes(num_classes).items():
        for path in traverse_util.flatten_dict(tree):
            key, layout = torch_key(collection, path)
            table[key] = Location(collection, path, layout)
    return {key: table[key] for key in sorted(table, key=_declaration_rank)}


def _declaration_rank(key: str) -> tuple[int, ...]:
    """Sort key giving the release's state_dict order (Sequential indices sort numerically)."""
    return tuple(int(p) if p.isdigit() else _DECLARATION_ORDER.index(p) for p in key.split("."))


def import_state_dict(state: dict, source: str, num_classes: int = NUM_CLASSES) -> dict:
    """A BiSeNet state_dict (tensors or numpy) -> Flax {'params', 'batch_stats'} (numpy).

    DataParallel's 'module.' prefixes are accepted. Every key must map onto a Flax variable of
    the right shape and every Flax variable must be filled; otherwise one ValueError lists the
    unknown, misshaped and missing keys.
    """
    if not isinstance(state, dict):
        raise ValueError(f"{source}: expected a state_dict (dict), found {type(state).__name__}")
    table = key_table(num_classes)
    template = {
        col: traverse_util.flatten_dict(tree) for col, tree in variable_shapes(num_classes).items()
    }
    flat: dict[str, dict] = {col: {} for col in template}
    unknown, misshaped = [], []
    seen = set()
    for key, value in state.items():
        key = key.removeprefix("module.")
        loc = table.get(key)
        if loc is None:
            unknown.append(key)
            continue
        seen.add(key)
        tensor = to_numpy(value)
        target = template[loc.collection][loc.path]
        got = expected_flax_shape(tuple(tensor.shape), loc)
        if got != tuple(target.shape):
            misshaped.append(f"{key}: {tuple(tensor.shape)} (expected Flax {tuple(target.shape)})")
            continue
        flat[loc.collection][loc.path] = to_flax(tensor, loc).astype(target.dtype)
    missing = [key for key in table if key not in seen]
    if unknown or misshaped or missing:
        problems = {"unknown keys": unknown, "misshaped": misshaped, "missing": missing}
        raise mismatch_error(
            source, "the release's BiSeNet (SeAFusion model_final.pth layout)", problems
        )
    return {col: traverse_util.unflatten_dict(leaves) for col, leaves in flat.items()}


def export_state_dict(variables: dict) -> OrderedDict[str, np.ndarray]:
    """Flax BiSeNet variables -> the release's state_dict as numpy arrays (same keys, layouts).

    Conv kernels go back to OIHW float32, `num_batches_tracked` to int64 scalars.
    """
    flat = {col: traverse_util.flatten_dict(dict(tree)) for col, tree in variables.items()}
    num_classes = num_classes_of(variables)
    return OrderedDict(
        (key, to_official(np.asarray(flat[loc.collection][loc.path]), loc))
        for key, loc in key_table(num_classes).items()
    )


def is_bisenet_state(obj: object) -> bool:
    """Whether a loaded .pth looks like a BiSeNet state_dict (its head or backbone keys) rather
    than a SuperFusion checkpoint ({'DM', 'FN'} or 'DM.'/'FN.' keys)."""
    if not isinstance(obj, dict):
        return False
    keys = [str(key).removeprefix("module.") for key in obj]
    return any(key.startswith(("conv_out.", "cp.resnet.")) for key in keys)


def num_classes_in(state: object) -> int:
    """Number of classes of a BiSeNet state_dict (its main head), else the MSRS 9."""
    if not isinstance(state, dict):
        return NUM_CLASSES
    head = state.get("conv_out.conv_out.weight", state.get("module.conv_out.conv_out.weight"))
    if head is not None and len(head.shape) == 4:
        return int(head.shape[0])
    return NUM_CLASSES


def import_bisenet(path: str | Path) -> dict:
    """Read a BiSeNet .pth (plain state_dict, e.g. SeAFusion's model_final.pth) into Flax variables.

    Returns {'params', 'batch_stats'} (numpy) for `models.bisenet.BiSeNet`; the number of classes
    is taken from the checkpoint's `conv_out.conv_out.weight`.
    """
    state = read_pth(path)
    return import_state_dict(state, str(path), num_classes_in(state))


def export_bisenet(variables: dict, path: str | Path) -> None:
    """Write Flax BiSeNet variables as the release's plain state_dict (.pth, torch.save)."""
    torch = import_torch()
    state = OrderedDict(
        (key, torch.from_numpy(value)) for key, value in export_state_dict(variables).items()
    )
    save_pth_atomically(state, Path(path))


def import_backbone(variables: dict, state: dict, source: str) -> dict:
    """Put a torchvision `resnet18` state_dict (ImageNet weights; 'fc.*' ignored) into the
    ResNet-18 of BiSeNet `variables`; everything else is kept. Returns new numpy variables."""
    merged = export_state_dict(variables)
    for key, value in state.items():
        key = key.removeprefix("module.")
        if not key.startswith("fc."):
            merged[f"cp.resnet.{key}"] = value
    return import_state_dict(merged, source, num_classes_of(variables))
