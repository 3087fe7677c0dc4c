"""Export of our checkpoints to the official SuperFusion .pth format (the inverse of `official`).

- `export_official(variables)`: Flax {'params', 'batch_stats'} -> the release's
  {'DM': state_dict, 'FN': state_dict} as numpy arrays: the official keys in the release's order,
  conv kernels OIHW float32, spatial-RNN weights as depthwise-conv (C, 1, 1, 1) weights and (C,)
  biases, BatchNorm `num_batches_tracked` int64 scalars.
- `adam_state_dict(network, moments, settings)`: one network's optax Adam moments ->
  `torch.optim.Adam(module.parameters()).state_dict()` of the release's module.
- `export(src, dst, ...)`: `superfusion convert` from a folder. `src` is a model folder
  (`superfusion_jax.io.model_files`: weights only) or a training checkpoint
  `WORKDIR/checkpoints/STEP` (weights, and the only place where optimiser state is kept);
  `dst` is the .pth file written:
  {'DM', 'FN', 'ep', 'total_it'} (+ 'DM_opt', 'FN_opt'), as the release's `SuperFusion.save`,
  or with `bare` the state_dict of the release's whole `SuperFusion` module ('DM.*', 'ST.grid',
  'FN.*').
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from flax import traverse_util

from superfusion_jax.convert.official import variable_shapes
from superfusion_jax.convert.official_keys import NETWORKS, locate, official_keys, to_official
from superfusion_jax.convert.torch_checkpoints import (
    import_torch,
    mismatch_error,
    save_pth_atomically,
)
from superfusion_jax.io.model_files import (
    is_training_checkpoint,
    load_model,
    read_training_config,
    read_training_state,
    run_checkpoint_steps,
    training_checkpoint_model,
)
from superfusion_jax.models.variants import FAITHFUL, Variant, variant_named
from superfusion_jax.training.optimizer import ADAM_BETAS, ADAM_EPS, release_schedule

if TYPE_CHECKING:
    import torch

# The release's `SpatialTransformer(256, 256)` keeps its sampling grid as the buffer 'ST.grid'.
RELEASE_GRID_SIZE = 256


@dataclasses.dataclass(frozen=True)
class AdamMoments:
    """One network's Adam state in Flax layout.

    count: updates this network has had; mu, nu: {Flax params path: array} (first and second
    moments, shaped as the parameters, paths starting with 'dense_matcher' / 'fusion_net').
    """

    count: int
    mu: dict[tuple[str, ...], np.ndarray]
    nu: dict[tuple[str, ...], np.ndarray]


@dataclasses.dataclass(frozen=True)
class AdamSettings:
    """The param group of a torch Adam: lr of the next update, base lr (the release's
    schedulers read 'initial_lr'), betas, eps, weight_decay (L2 added to the gradient)."""

    lr: float
    initial_lr: float
    betas: tuple[float, float]
    eps: float
    weight_decay: float


@dataclasses.dataclass(frozen=True)
class ExportSource:
    """What a checkpoint folder holds for export.

    variables: {'params', 'batch_stats'} (numpy); variant: the Variant its metadata names;
    ep, total_it: the release's epoch index and iteration count (None if unknown);
    adam: {'DM': AdamMoments, 'FN': AdamMoments}, None for a folder without optimiser state;
    config: the training configuration stored with a training checkpoint (None otherwise).
    """

    variables: dict
    variant: Variant
    ep: int | None
    total_it: int
    adam: dict[str, AdamMoments] | None = None
    config: dict | None = None


@dataclasses.dataclass(frozen=True)
class ExportSummary:
    """What `export` wrote: keys of the saved dict, variant, epoch and iteration, and notes for
    the user (approximations or overrides)."""

    keys: tuple[str, ...]
    variant: Variant
    ep: int
    total_it: int
    notes: tuple[str, ...]


def export_official(variables: dict) -> dict[str, dict[str, np.ndarray]]:
    """Flax variables {'params', 'batch_stats'} -> {'DM': {key: array}, 'FN': {...}} (numpy).

    Keys in the release's state_dict order (`official_keys`). Raises ValueError when the
    variables are not those of the SuperFusion architecture (`mismatch_error`: unknown, misshaped
    and missing leaves).
    """
    flat = {col: traverse_util.flatten_dict(dict(tree)) for col, tree in variables.items()}
    _check_architecture(flat)
    return {
        network: _official_arrays(network, flat, official_keys(network)) for network in NETWORKS
    }


def parameter_keys(network: str) -> list[str]:
    """The official keys of network 'DM' or 'FN' that are parameters, in `parameters()` order
    (index i is torch.optim.Adam's state key i)."""
    return [k for k in official_keys(network) if locate(network, k).collection == "params"]


def adam_state_dict(network: str, moments: AdamMoments, settings: AdamSettings) -> dict:
    """`torch.optim.Adam(module.parameters()).state_dict()` of the release's 'DM' or 'FN'.

    state: {i: {'step', 'exp_avg', 'exp_avg_sq'}} for parameter i of `parameter_keys(network)`
    (empty before the first update, as torch's); param_groups: one group with the keys of the
    installed torch's Adam, 'params' = [0, ..., n - 1] and 'initial_lr'.
    """
    torch = import_torch()
    keys = parameter_keys(network)
    dummy = torch.nn.Parameter(torch.zeros(1))
    group = torch.optim.Adam(
        [dummy],
        lr=settings.lr,
        betas=settings.betas,
        eps=settings.eps,
        weight_decay=settings.weight_decay,
    ).state_dict()["param_groups"][0]
    group = {**group, "initial_lr": settings.initial_lr, "params": list(range(len(keys)))}
    state: dict[int, dict] = {}
    if moments.count > 0:
        exp_avg = _official_arrays(network, {"params": moments.mu}, keys)
        exp_avg_sq = _official_arrays(network, {"params": moments.nu}, keys)
        for index, key in enumerate(keys):
            state[index] = {
                "step": torch.tensor(float(moments.count), dtype=torch.float32),
                "exp_avg": torch.from_numpy(exp_avg[key]),
                "exp_avg_sq": torch.from_numpy(exp_avg_sq[key]),
            }
    return {"state": state, "param_groups": [group]}


def read_export_source(src: str | Path) -> ExportSource:
    """Read a model folder (metadata.json + variables/) or a training checkpoint folder
    (`WORKDIR/checkpoints/STEP`: state/ + config/). Raises ValueError for other folders."""
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"checkpoint folder {src} does not exist")
    if (src / "metadata.json").is_file():
        variables, meta = load_model(src)
        total_it = meta.get("total_it", meta.get("step", 0))
        variant = _variant_of(meta["variant"], src)
        return ExportSource(variables, variant, meta.get("ep"), int(total_it))
    if is_training_checkpoint(src):
        return _read_training_checkpoint(src)
    if (src / "checkpoints").is_dir():
        steps = run_checkpoint_steps(src)
        raise ValueError(
            f"{src} is a training run folder: export {src / 'model'} (the latest model, weights "
            f"only) or one of its training checkpoints {src / 'checkpoints'}/STEP (weights and "
            f"optimiser state; steps: {', '.join(steps) or 'none'})"
        )
    raise ValueError(
        f"{src} is neither a superfusion-jax model folder (metadata.json, variables/) nor a "
        "training checkpoint (WORKDIR/checkpoints/STEP with state/ and config/)"
    )


def export(
    src: str | Path,
    dst: str | Path,
    *,
    include_optimizer: bool = False,
    bare: bool = False,
    allow_variant_mismatch: bool = False,
    epoch: int | None = None,
) -> ExportSummary:
    """Write the checkpoint folder `src` as the official .pth file `dst` (see the module doc).

    include_optimizer: add 'DM_opt' / 'FN_opt' (torch Adam state_dicts); needs a training
    checkpoint. bare: write the state_dict of the release's `SuperFusion` module instead
    (weights only). allow_variant_mismatch: export 'corrected' weights although the release
    computes the faithful network. epoch: the 'ep' to write (default: the checkpoint's, else
    the last completed epoch of a training checkpoint when its config fixes the epoch length,
    else -1, the release's value before its first epoch).
    Raises FileExistsError if `dst` exists, ValueError for refused or unreadable sources.
    """
    dst = Path(dst)
    if dst.exists():
        raise FileExistsError(f"{dst} already exists; choose a new file name")
    if include_optimizer and bare:
        raise ValueError("--bare writes weights only; it cannot include the optimiser state")
    source = read_export_source(src)
    notes = []
    if source.variant != FAITHFUL:
        if not allow_variant_mismatch:
            raise ValueError(
                f"{src} holds '{source.variant.name}' weights. The official code only computes the "
                "faithful network (no sigmoid on the GSAM mask and attention, direction attention "
                "discarded, align_corners=True base grid), so these weights would compute "
                "something else there. Pass --allow-variant-mismatch to export them anyway."
            )
        notes.append(
            f"exported '{source.variant.name}' weights: the official code runs them as the "
            "faithful network, which is not what they were trained as"
        )
    if include_optimizer and source.adam is None:
        raise ValueError(
            f"{src} is a model folder without optimiser state; to include it, export a training "
            "checkpoint instead: WORKDIR/checkpoints/STEP of the run"
        )
    networks = export_official(source.variables)
    ep = epoch if epoch is not None else source.ep
    if ep is None:
        ep = -1
        notes.append("the epoch is unknown: wrote ep = -1 (none completed); set it with --epoch")
    torch = import_torch()
    if bare:
        obj: dict[str, Any] = {f"DM.{k}": torch.from_numpy(v) for k, v in networks["DM"].items()}
        obj["ST.grid"] = release_grid(RELEASE_GRID_SIZE, RELEASE_GRID_SIZE)
        obj.update({f"FN.{k}": torch.from_numpy(v) for k, v in networks["FN"].items()})
    else:
        obj = {
            name: {k: torch.from_numpy(v) for k, v in arrays.items()}
            for name, arrays in networks.items()
        }
        if include_optimizer:
            for network, moments in source.adam.items():
                settings, note = adam_settings(source.config, moments.count)
                obj[f"{network}_opt"] = adam_state_dict(network, moments, settings)
                if note:
                    notes.append(f"{network}_opt: {note}")
        obj["ep"] = int(ep)
        obj["total_it"] = int(source.total_it)
    save_pth_atomically(obj, dst)
    return ExportSummary(tuple(obj), source.variant, int(ep), int(source.total_it), tuple(notes))


def adam_settings(config: dict, count: int) -> tuple[AdamSettings, str | None]:
    """The torch Adam param group of a network with `count` updates, from a training config.

    lr is the rate of the next update under the config's `release_schedule`; when that depends
    on the data set size (steps_per_epoch -1 with a decay), it is the base rate and the second
    value says so (else None).
    """
    missing = [
        k for k in ("learning_rate", "weight_decay", "n_ep", "n_ep_decay") if k not in config
    ]
    if missing:
        raise ValueError(
            f"the training config lacks {', '.join(missing)}: cannot rebuild Adam's param group"
        )
    base = float(config["learning_rate"])
    steps_per_epoch = int(config.get("steps_per_epoch", -1))
    n_ep, n_ep_decay = int(config["n_ep"]), int(config["n_ep_decay"])
    note = None
    if steps_per_epoch > 0 or n_ep_decay < 0:
        schedule = release_schedule(base, max(steps_per_epoch, 1), n_ep, n_ep_decay)
        lr = float(schedule(count))
    else:
        lr = base
        note = (
            "the run's epoch length depends on its data set (steps_per_epoch -1), so 'lr' is the "
            "base learning rate, not the decayed one"
        )
    settings = AdamSettings(lr, base, ADAM_BETAS, ADAM_EPS, float(config["weight_decay"]))
    return settings, note


def release_grid(height: int, width: int) -> torch.Tensor:
    """kornia's `create_meshgrid(height, width)` as the release stores it: a torch float32
    tensor (1, H, W, 2), x then y, linspace(-1, 1) along each axis."""
    torch = import_torch()
    ys, xs = torch.meshgrid(
        torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij"
    )
    return torch.stack([xs, ys], dim=-1)[None]


def _official_arrays(
    network: str, flat: dict[str, dict[tuple, np.ndarray]], keys: list[str]
) -> dict[str, np.ndarray]:
    """The official arrays of `keys` from flattened Flax collections {collection: {path: a}}."""
    out = {}
    for key in keys:
        loc = locate(network, key)
        out[key] = to_official(np.asarray(flat[loc.collection][loc.path]), loc)
    return out


def _check_architecture(flat: dict[str, dict[tuple, Any]]) -> None:
    template = {c: traverse_util.flatten_dict(t) for c, t in variable_shapes().items()}
    missing, unexpected, misshaped = [], [], []
    for col in sorted(set(template) | set(flat)):
        want, got = template.get(col, {}), flat.get(col, {})
        missing += [f"{col}/{'/'.join(p)}" for p in want if p not in got]
        unexpected += [f"{col}/{'/'.join(p)}" for p in got if p not in want]
        misshaped += [
            f"{col}/{'/'.join(p)}: {np.shape(got[p])} (expected {tuple(want[p].shape)})"
            for p in want
            if p in got and tuple(np.shape(got[p])) != tuple(want[p].shape)
        ]
    if missing or unexpected or misshaped:
        problems = {"unknown keys": unexpected, "misshaped": misshaped, "missing": missing}
        raise mismatch_error("the model to export", "the SuperFusion architecture", problems)


def _read_training_checkpoint(step_dir: Path) -> ExportSource:
    """A `RunCheckpoints` step folder: its TrainState (restored as saved) and config."""
    config = read_training_config(step_dir)
    state = read_training_state(step_dir)
    variables, meta = training_checkpoint_model(step_dir, config, state)
    step = meta["step"]
    steps_per_epoch = int(config.get("steps_per_epoch", -1))
    ep = step // steps_per_epoch - 1 if steps_per_epoch > 0 else None
    adam = {
        network: _adam_moments(state["opt_state"], root, step_dir)
        for network, root in NETWORKS.items()
    }
    variant = _variant_of(meta["variant"], step_dir)
    return ExportSource(variables, variant, ep, step, adam, dict(config))


def _variant_of(name: str, where: Path) -> Variant:
    """The Variant a checkpoint's metadata or config names; ValueError naming `where`."""
    try:
        return variant_named(name)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def _adam_moments(opt_state: Any, root: str, where: Path) -> AdamMoments:
    """The Adam moments of network `root` in a restored `make_optimizer` state (raw pytree).

    `make_optimizer` partitions by network: inner_states[root] is a masked chain whose Adam
    entry is the one holding count, mu and nu.
    """
    try:
        chain = opt_state["inner_states"][root]
    except (KeyError, TypeError) as err:
        raise ValueError(
            f"{where}: the optimiser state has no entry for '{root}'; it was not made by "
            "superfusion_jax.training.optimizer.make_optimizer"
        ) from err
    if isinstance(chain, dict) and "inner_state" in chain:
        chain = chain["inner_state"]
    entries = chain if isinstance(chain, (list, tuple)) else [chain]
    adam = [e for e in entries if isinstance(e, dict) and {"count", "mu", "nu"} <= set(e)]
    if len(adam) != 1:
        raise ValueError(f"{where}: no Adam moments (count, mu, nu) found for '{root}'")
    (adam,) = adam

    def moments(tree: dict) -> dict[tuple[str, ...], np.ndarray]:
        flat = traverse_util.flatten_dict({root: tree[root]})
        return {path: np.asarray(value) for path, value in flat.items()}

    return AdamMoments(int(np.asarray(adam["count"])), moments(adam["mu"]), moments(adam["nu"]))
