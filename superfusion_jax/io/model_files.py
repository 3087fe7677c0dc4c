"""The model checkpoint format read by the command line, the converters and evaluation.

A checkpoint is a directory:
- `variables/`: an orbax (StandardCheckpointer) pytree {'params': ..., 'batch_stats': ...} of the
  `SuperFusion` Flax module;
- `metadata.json`: {'format': 'superfusion-jax', 'version': 1, 'model': 'superfusion'|'bisenet',
  ...provenance (source file, epoch, step)}; a SuperFusion model also names its 'variant'
  ('faithful'|'corrected'); the segmentation network (`models.bisenet`) has none.

A training run's checkpoint `WORKDIR/checkpoints/STEP` (`training.checkpoints.RunCheckpoints`:
`state/`, the TrainState, and `config/`) is read too (`load_training_checkpoint`): its weights,
with metadata built from its config, so a run can be used before it exports `WORKDIR/model`.

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
# metadata 'model': the registration + fusion network, or the segmentation network
SUPERFUSION = "superfusion"
BISENET = "bisenet"
_METADATA_KEY = "__metadata__"


def model_name(metadata: dict[str, Any]) -> str:
    """The network a checkpoint holds (folders written before 'model' existed hold SuperFusion)."""
    return metadata.get("model", SUPERFUSION)


def _full_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """`metadata` with format, version and model filled in; SuperFusion must name its variant."""
    if model_name(metadata) == SUPERFUSION and "variant" not in metadata:
        raise ValueError("checkpoint metadata of a SuperFusion model must name its 'variant'")
    return {"format": FORMAT, "version": VERSION, "model": model_name(metadata), **metadata}


def _check_model(metadata: dict[str, Any], model: str | None, where: Path) -> None:
    found = model_name(metadata)
    if model is not None and found != model:
        raise ValueError(f"{where} holds a {found!r} network, not a {model!r} one")


def save_model(directory: str | Path, variables: dict, metadata: dict[str, Any]) -> Path:
    """Write `variables` ({'params', 'batch_stats'}) and `metadata` ('model', default
    'superfusion', which must name its 'variant')."""
    directory = Path(directory).absolute()
    meta = _full_metadata(metadata)
    if (directory / "variables").exists():
        raise FileExistsError(f"{directory} already holds a checkpoint; choose a new folder")
    directory.mkdir(parents=True, exist_ok=True)
    tree = jax.tree_util.tree_map(np.asarray, dict(variables))
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(directory / "variables", tree)
    checkpointer.wait_until_finished()
    (directory / "metadata.json").write_text(json.dumps(meta, indent=1, default=str))
    return directory


def load_model(
    directory: str | Path, model: str | None = SUPERFUSION
) -> tuple[dict, dict[str, Any]]:
    """Read a checkpoint directory; returns (variables as numpy pytree, metadata).

    model: the network the folder must hold ('superfusion', 'bisenet'; None accepts any);
    another one is a ValueError naming what the folder holds.
    """
    directory = Path(directory).absolute()
    meta = read_metadata(directory)
    _check_model(meta, model, directory)
    variables = ocp.StandardCheckpointer().restore(directory / "variables")
    return jax.tree_util.tree_map(np.asarray, variables), meta


def is_training_checkpoint(path: str | Path) -> bool:
    """Whether `path` is a training run's step folder (`WORKDIR/checkpoints/STEP`)."""
    path = Path(path)
    return (path / "state").is_dir() and (path / "config").is_dir()


def run_checkpoint_steps(workdir: str | Path) -> list[str]:
    """The steps of a training run folder's checkpoints (`WORKDIR/checkpoints/STEP`), ascending."""
    folder = Path(workdir) / "checkpoints"
    return sorted((p.name for p in folder.iterdir() if p.name.isdigit()), key=int)


def read_training_config(step_dir: str | Path) -> dict:
    """The config (a dict) saved with a training run's step folder."""
    return dict(ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(Path(step_dir) / "config"))


def read_training_state(step_dir: str | Path) -> dict:
    """The TrainState of a training run's step folder, restored as saved (nested dicts)."""
    state = ocp.StandardCheckpointer().restore(Path(step_dir) / "state")
    if not isinstance(state, dict) or not {"params", "batch_stats", "opt_state", "step"} <= set(
        state
    ):
        raise ValueError(f"{Path(step_dir) / 'state'} does not hold a superfusion-jax TrainState")
    return state


def training_model_name(config: dict) -> str:
    """The network a training run's config trains: BiSeNet for the segmentation stage, else
    SuperFusion."""
    return BISENET if config.get("stage") == "segmentation" else SUPERFUSION


def training_checkpoint_model(
    step_dir: Path, config: dict, state: dict, model: str | None = SUPERFUSION
) -> tuple[dict, dict[str, Any]]:
    """The weights (no optimiser state) of a step folder's `config` and `state` as read by
    `read_training_config` / `read_training_state`, and metadata as `load_model` returns it:
    the network (`training_model_name`), its variant and the step. model: as in `load_model`;
    step_dir names the folder in errors."""
    found = training_model_name(config)
    _check_model({"model": found}, model, step_dir)
    meta: dict[str, Any] = {"model": found, "step": int(np.asarray(state["step"]))}
    if found == SUPERFUSION:
        if "variant" not in config:
            raise ValueError(f"{step_dir / 'config'} does not name the model variant")
        meta["variant"] = config["variant"]
    meta["source"] = str(step_dir)
    variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
    return jax.tree_util.tree_map(np.asarray, variables), _full_metadata(meta)


def load_training_checkpoint(
    step_dir: str | Path, model: str | None = SUPERFUSION
) -> tuple[dict, dict[str, Any]]:
    """`training_checkpoint_model` of a training run's step folder. model: as in `load_model`
    (checked before the TrainState is read)."""
    step_dir = Path(step_dir).absolute()
    config = read_training_config(step_dir)
    _check_model({"model": training_model_name(config)}, model, step_dir)
    return training_checkpoint_model(step_dir, config, read_training_state(step_dir), model)


def load_checkpoint(
    path: str | Path, model: str | None = SUPERFUSION
) -> tuple[dict, dict[str, Any]]:
    """Any form of checkpoint: a model folder (`load_model`), a training run's step folder
    (`load_training_checkpoint`) or a single `.npz` file (`load_flat`).
    Returns (variables as numpy pytree, metadata); model: as in `load_model`.
    Any other file is a ValueError; an official .pth one says how to convert it, a training run
    folder which of its folders to pass."""
    path = Path(path).expanduser()
    if path.suffix == ".npz" and not path.is_dir():
        return load_flat(path, model)
    if path.is_file():
        if path.suffix in (".pth", ".pt"):
            raise ValueError(
                f"{path} is a PyTorch .pth file; convert it to a checkpoint folder first: "
                f"`superfusion convert --from {path} --to DIR`, then pass --checkpoint DIR"
            )
        raise ValueError(
            f"{path} is a file, not a checkpoint folder (from `superfusion convert` or "
            "training) nor a single-file .npz checkpoint"
        )
    if is_training_checkpoint(path):
        return load_training_checkpoint(path, model)
    if (path / "checkpoints").is_dir() and not (path / "metadata.json").is_file():
        steps = run_checkpoint_steps(path)
        raise ValueError(
            f"{path} is a training run folder: pass {path / 'model'} (its latest model) or one "
            f"of its training checkpoints {path / 'checkpoints'}/STEP "
            f"(steps: {', '.join(steps) or 'none'})"
        )
    return load_model(path, model)


def read_metadata(directory: str | Path) -> dict[str, Any]:
    """The metadata of checkpoint folder `directory` (no variables read); ValueError when the
    folder is not a superfusion-jax checkpoint."""
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
    return meta


def save_flat(path: str | Path, variables: dict, metadata: dict[str, Any]) -> Path:
    """Write `variables` and `metadata` (as `save_model`) as one compressed `.npz` file."""
    path = Path(path)
    meta = _full_metadata(metadata)
    flat = traverse_util.flatten_dict(jax.tree_util.tree_map(np.asarray, dict(variables)), sep="/")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as file:
        np.savez_compressed(
            file, **flat, **{_METADATA_KEY: np.array(json.dumps(meta, default=str))}
        )
    return path


def load_flat(path: str | Path, model: str | None = SUPERFUSION) -> tuple[dict, dict[str, Any]]:
    """Read a file written by `save_flat`; returns (variables as numpy pytree, metadata).
    model: as in `load_model`."""
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
    _check_model(meta, model, path)
    return traverse_util.unflatten_dict(arrays, sep="/"), meta


def load_segmenter(path: str | Path) -> dict:
    """A trained segmentation network's variables {'params', 'batch_stats'} (numpy).

    path: a BiSeNet .pth state_dict (the release's / SeAFusion's model_final.pth; needs torch)
    or a folder exported by the segmentation task (workdir/best, workdir/model).
    Raises FileNotFoundError (no such path) or ValueError (not a segmentation network).
    """
    path = Path(path).expanduser()
    if path.is_file():
        from superfusion_jax.convert.segmentation import import_bisenet  # needs torch

        return import_bisenet(path)
    variables, meta = load_model(path, model=None)
    if model_name(meta) != BISENET:
        raise ValueError(
            f"{path} holds a {model_name(meta)!r} network, not a segmentation "
            "network: give a folder written by configs/segmentation.py (WORKDIR/best) or a "
            "BiSeNet .pth (SeAFusion's model_final.pth)"
        )
    return {"params": variables["params"], "batch_stats": variables["batch_stats"]}
