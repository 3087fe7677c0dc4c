"""Checkpoints of a training run: resumable state, the exported model, stopping on a signal.

A run's folder (`workdir`) holds:
- `checkpoints/<step>/`: orbax `CheckpointManager` checkpoints, the last `keep` of them, each
  with three items: `state` (the whole `TrainState`: step, params, batch_stats, opt_state, rng),
  `data` (each process's position in its grain data iterator, grain's JSON) and `config` (the
  run's configuration, JSON). Orbax writes a checkpoint under a temporary name and renames it
  when complete, so a run killed at any moment leaves only complete checkpoints (temporary
  leftovers are removed when the next run starts).
- `model`: a symbolic link to `exports/step_<step>/`, the model of the latest checkpoint in the
  format of `superfusion_jax.io.model_files` (what `superfusion run --checkpoint WORKDIR/model` and
  `Pipeline.from_checkpoint` read). The link is replaced atomically after the new export is
  complete, and older exports are then deleted. Copy it with `cp -rL` (follow the link).
- `best` (runs that evaluate a metric to maximise, e.g. the segmentation network's mIoU): a
  link to `exports_best/step_<step>/`, the model of the best evaluation so far (`BestModel`).

`StopSignal` turns SIGTERM and SIGINT into a request that the loop honours at the next step
boundary: it saves a checkpoint and returns normally (a second Ctrl-C interrupts at once).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from superfusion_jax.io.model_files import save_model
from superfusion_jax.training.state import TrainState

logger = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
EXPORTS_DIR = "exports"
MODEL_LINK = "model"
BEST_LINK = "best"
BEST_EXPORTS_DIR = "exports_best"


class RunCheckpoints:
    """Save and restore a run's checkpoints in `workdir/checkpoints` (module docstring).

    Every process of a multi-host run must make the same calls (orbax synchronises them).

    Args:
      workdir: the run's folder (a local or shared file system path).
      keep: how many of the latest checkpoints to keep.
      async_save: write the arrays in a background thread (`wait` blocks until done).
    """

    def __init__(self, workdir: str | Path, *, keep: int, async_save: bool = True) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self.workdir = Path(workdir).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=True,
            cleanup_tmp_directories=True,
            enable_async_checkpointing=async_save,
        )
        self.manager = ocp.CheckpointManager(
            self.workdir / CHECKPOINTS_DIR,
            options=options,
            item_handlers={
                "state": ocp.StandardCheckpointHandler(),
                "data": grain.checkpoint.CheckpointHandler(),
                "config": ocp.JsonCheckpointHandler(),
            },
        )

    def latest_step(self) -> int | None:
        """Step of the newest complete checkpoint, None if there is none."""
        return self.manager.latest_step()

    def save(self, state: TrainState, data_iterator: Any, config: dict) -> None:
        """Checkpoint `state` with the data iterator's position and `config` (JSON-able dict).

        The checkpoint is named after `int(state.step)`; saving a step that already has a
        checkpoint does nothing. Returns when the data and config are written; the arrays may
        still be written in the background (`wait`).
        """
        step = int(state.step)
        if step in self.manager.all_steps():
            return
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data=grain.checkpoint.CheckpointSave(data_iterator),
                config=ocp.args.JsonSave(config),
            ),
            force=True,
        )

    def restore(self, state: TrainState, data_iterator: Any) -> TrainState | None:
        """Restore the newest checkpoint, if any.

        state: a state of the run's structure (shapes, dtypes and shardings are taken from it;
        its values are not used). data_iterator: the run's grain iterator, moved in place to the
        checkpoint's position. Returns the restored state, or None (iterator untouched) when
        there is no checkpoint.
        """
        step = self.latest_step()
        if step is None:
            return None
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, state)
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract),
                data=grain.checkpoint.CheckpointRestore(data_iterator),
            ),
        )
        return restored.state

    def saved_config(self, step: int | None = None) -> dict | None:
        """The config stored with checkpoint `step` (default: the newest), None if none."""
        step = self.latest_step() if step is None else step
        if step is None:
            return None
        restored = self.manager.restore(
            step, args=ocp.args.Composite(config=ocp.args.JsonRestore())
        )
        return dict(restored.config)

    def wait(self) -> None:
        """Block until every checkpoint started so far is complete on disk."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        """Wait for pending saves and release the manager."""
        self.manager.close()


def export_model(
    workdir: str | Path,
    variables: dict,
    metadata: dict[str, Any],
    *,
    link_name: str = MODEL_LINK,
    exports_dir: str = EXPORTS_DIR,
) -> Path:
    """Export `variables` as `workdir/model` (a link to `exports/step_<step>/`, see the module
    docstring) in the format of `superfusion_jax.io.model_files.save_model`.

    Every process must call it (orbax synchronises the write); process 0 moves the link.

    Args:
      workdir: the run's folder.
      variables: {'params', 'batch_stats'} of the model (SuperFusion, or the segmentation
        network).
      metadata: must name 'variant' and 'step'; stored in metadata.json.
      link_name, exports_dir: names of the link and of the folder of its exports (each link
        needs its own folder: older exports in it are deleted), e.g. 'best' / 'exports_best'.

    Returns:
      The path of the link, `workdir/<link_name>`.
    """
    workdir = Path(workdir).absolute()
    exports = workdir / exports_dir
    link = workdir / link_name
    name = f"step_{int(metadata['step']):08d}"
    target = exports / name
    current = _link_target(link)
    if current == name:
        return link
    if jax.process_index() == 0:
        # Anything but the linked export is an older or incomplete one.
        for stale in exports.glob("step_*") if exports.is_dir() else []:
            if stale.name != current:
                shutil.rmtree(stale)
    _sync("superfusion_export_prepared")
    save_model(target, dict(variables), metadata)
    _sync("superfusion_export_written")
    if jax.process_index() == 0:
        if link.exists() and not link.is_symlink():
            raise FileExistsError(f"{link} exists and is not the link this run maintains")
        temporary = workdir / f".{link_name}.link-tmp"
        temporary.unlink(missing_ok=True)
        os.symlink(Path(exports_dir) / name, temporary)
        os.replace(temporary, link)
        if current is not None and current != name:
            shutil.rmtree(exports / current, ignore_errors=True)
    _sync("superfusion_export_linked")
    return link


class BestModel:
    """`workdir/best`: the model of the evaluation with the highest `metric` so far (e.g. the
    validation mIoU), next to `workdir/model` (the latest); exported like it (`export_model`)
    into `exports_best/step_<step>/`.

    The value is stored in the export's metadata.json ('best_metric', 'best_value'), so a
    resumed run keeps comparing against it. Every process must make the same calls.
    """

    def __init__(self, workdir: str | Path, metric: str) -> None:
        self.workdir = Path(workdir).absolute()
        self.metric = metric
        self.value = -math.inf
        saved = self.workdir / BEST_LINK / "metadata.json"
        if saved.is_file():
            meta = json.loads(saved.read_text())
            if meta.get("best_metric") == metric:
                self.value = float(meta["best_value"])

    def update(self, value: float, variables: dict, metadata: dict[str, Any]) -> bool:
        """Export `variables` as the best model if `value` beats the best so far (NaN never
        does). metadata: as for `export_model`. Returns whether it was exported."""
        value = float(value)
        if not value > self.value:
            return False
        meta = {**metadata, "best_metric": self.metric, "best_value": value}
        export_model(
            self.workdir, variables, meta, link_name=BEST_LINK, exports_dir=BEST_EXPORTS_DIR
        )
        self.value = value
        return True


def _link_target(link: Path) -> str | None:
    """Name of the export `link` points to, None if there is no link."""
    if not link.is_symlink():
        return None
    return Path(os.readlink(link)).name


def _sync(name: str) -> None:
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


class StopSignal:
    """Context manager: SIGTERM / SIGINT ask the training loop to stop at the next step boundary.

    Inside the context the first such signal only sets `requested` (the signal number); a second
    SIGINT raises KeyboardInterrupt as usual. Previous handlers are put back on exit. Handlers
    can only be installed from the main thread; elsewhere the signals keep their handlers.
    In a multi-host run `should_stop` agrees across processes (any process signalled = stop).
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.requested: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signum
        logger.warning(
            "received %s: saving a checkpoint at the end of this step, then stopping",
            signal.Signals(signum).name,
        )

    def should_stop(self) -> bool:
        """Whether a stop was requested (on any process of a multi-host run)."""
        flag = self.requested is not None
        if jax.process_count() > 1:
            flags = multihost_utils.process_allgather(np.asarray(flag, np.int32))
            return bool(np.max(flags))
        return flag


def config_differences(saved: dict, current: dict) -> list[str]:
    """Dotted names whose values differ between two config dicts (for a resume warning)."""
    saved_flat, current_flat = _flatten(saved), _flatten(current)
    names = sorted(set(saved_flat) | set(current_flat))
    return [
        f"{name}: {saved_flat.get(name, '<absent>')!r} -> {current_flat.get(name, '<absent>')!r}"
        for name in names
        if saved_flat.get(name, "<absent>") != current_flat.get(name, "<absent>")
    ]


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            # JSON turns tuples into lists: compare through JSON.
            flat[f"{prefix}{key}"] = json.loads(json.dumps(value, default=str))
    return flat
