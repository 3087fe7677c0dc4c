"""The training loop: `train_and_evaluate(config, workdir)` (configs/*.py, train.py).

What is trained is a `Task` that the task module of `config.stage` makes (`training.tasks`:
SuperFusion's stage 'RF' or 'FS', or the 'segmentation' network); the loop knows nothing else of
it. One run, from top to bottom:
1. the training records (`data.sources.make_source(config.data)`) as a grain iterator of this
   host's share of each global batch, and the held-out evaluation records (`config.eval`);
2. the task: its optimiser and learning-rate policy, and its step, jitted data parallel over all
   devices (`training.mesh`), with the task's frozen variables (if any) as an argument;
3. the newest checkpoint in `workdir/checkpoints` if there is one (state and data position),
   else a fresh state (from `config.init_checkpoint` if given);
4. the loop, until `num_steps` updates: a progress bar (ETA, loss) on process 0; every
   `log_every` updates the mean of each step metric since the last log (`train/...`) and the
   learning rate; every `eval_every` the task's held-out evaluation (stage RF: `eval/epe_px`
   against `eval/epe_identity_px`; segmentation: `eval/miou` and `eval/iou_<class>`, the best
   model kept as `workdir/best`; also before the first update); every `image_every` a picture
   of the first held-out record; every `checkpoint_every` a checkpoint and the exported model
   (`workdir/model`). The last update does all of them.
SIGTERM / SIGINT stop the loop at the next step boundary after saving a checkpoint. A step
whose loss or gradient is not finite leaves the state as it was and stops the run with
`NonFiniteLossError` naming the terms; no checkpoint is written for it.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from superfusion_jax.data.pipeline import Darken, make_train_iterator
from superfusion_jax.data.sources import check_source, make_source
from superfusion_jax.models.variants import variant_named
from superfusion_jax.training import mesh as mesh_lib
from superfusion_jax.training.checkpoints import (
    BestModel,
    RunCheckpoints,
    StopSignal,
    config_differences,
    export_model,
)
from superfusion_jax.training.state import TrainState
from superfusion_jax.training.task import Task
from superfusion_jax.training.tasks import task_module
from superfusion_jax.training.writers import MetricAverager, make_writer

logger = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """A training step produced a non-finite loss or gradient; the run stopped before it."""


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path) -> TrainState:
    """Train as `config` says, in `workdir` (created if needed; resumed if it has checkpoints).

    Args:
      config: a training config (configs/common.py documents every field; configs/semantic.py
        and configs/segmentation.py their own).
      workdir: the run's folder: checkpoints/, model (link), exports/, metrics.jsonl, images/
        (and best, exports_best/ for the segmentation network).

    Returns:
      The final training state (after `num_steps` updates, or where a signal stopped the run).

    Raises:
      NonFiniteLossError: a step's loss or gradient was NaN/Inf (the newest checkpoint is the
        last one saved before it).
      ValueError: an invalid config value, or a workdir that cannot be used (`check_workdir`).
    """
    check_config(config)
    workdir = check_workdir(workdir)

    source = make_source(config.data)
    steps_per_epoch = config.steps_per_epoch
    if steps_per_epoch <= 0:
        steps_per_epoch = max(1, len(source) // config.batch_size)
    num_steps = config.num_steps if config.num_steps > 0 else config.n_ep * steps_per_epoch
    task = make_task(config, source, steps_per_epoch=steps_per_epoch, num_steps=num_steps)

    iterator = make_train_iterator(
        source,
        batch_size=config.batch_size,
        crop_size=task.crop_size,
        seed=config.seed,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
        worker_count=config.data.worker_count,
        read_threads=config.data.read_threads,
        darken=Darken(config.data.darken_probability, config.data.darken_max_gamma),
    )
    mesh = mesh_lib.make_mesh()
    train_step = mesh_lib.jit_step(task.step, mesh, extra_args=1)
    frozen = mesh_lib.replicate(task.frozen, mesh)

    checkpoints = RunCheckpoints(workdir, keep=config.keep)
    config_dict = config.to_dict()
    state = _restore_or_create(config, checkpoints, iterator, task, mesh)
    start_step = int(state.step)
    best = BestModel(workdir, task.best_metric) if task.best_metric else None

    writer = make_writer(
        workdir,
        tensorboard={"auto": None, "yes": True, "no": False}[config.tensorboard],
        start_step=start_step,
    )
    if start_step == 0 and task.evaluate is not None:
        writer.write_scalars(0, task.evaluate(state))
    if start_step == 0:
        writer.write_images(0, task.images(state))
    logger.info(
        "training %s (%s) from step %d to %d; %d pairs, %d updates per epoch; workdir %s",
        config.stage,
        config.variant,
        start_step,
        num_steps,
        len(source),
        steps_per_epoch,
        workdir,
    )

    averager = MetricAverager()
    step = start_step
    last_log = (time.perf_counter(), step)
    progress = tqdm(
        total=num_steps,
        initial=start_step,
        unit="step",
        dynamic_ncols=True,
        mininterval=1.0,
        disable=jax.process_index() != 0,
    )
    try:
        with StopSignal() as stop:
            while step < num_steps:
                batch = mesh_lib.shard_batch(next(iterator), mesh)
                new_state, metrics = train_step(state, batch, frozen)
                if bool(metrics["nonfinite"]):
                    checkpoints.wait()
                    raise NonFiniteLossError(
                        nonfinite_message(metrics, step + 1, checkpoints.latest_step())
                    )
                state, step = new_state, step + 1
                averager.update(metrics)
                progress.update(1)
                progress.set_postfix(loss=f"{float(metrics['loss_total']):.4g}", refresh=False)

                last = step == num_steps
                stopping = stop.should_stop()
                if _due(step, config.log_every, last) or stopping:
                    now = time.perf_counter()
                    scalars = {f"train/{k}": v for k, v in averager.compute().items()}
                    scalars["train/learning_rate"] = float(task.schedule(step - 1))
                    scalars["train/steps_per_second"] = (step - last_log[1]) / (now - last_log[0])
                    writer.write_scalars(step, scalars)
                    averager.reset()
                    last_log = (now, step)
                if _due(step, config.eval_every, last) and task.evaluate is not None:
                    scalars = task.evaluate(state)
                    writer.write_scalars(step, scalars)
                    if best is not None:
                        variables, metadata = task.export(state)
                        metadata = _export_metadata(metadata, state, workdir, config)
                        best.update(scalars[task.best_metric], variables, metadata)
                if _due(step, config.image_every, last):
                    writer.write_images(step, task.images(state))
                if _due(step, config.checkpoint_every, last) or stopping:
                    _save(checkpoints, workdir, state, iterator, config_dict, config, task)
                    writer.flush()
                if stopping:
                    logger.warning(
                        "stopped by a signal after step %d (checkpoint saved); run the same "
                        "command again to continue",
                        step,
                    )
                    break
    finally:
        progress.close()
        checkpoints.close()
        writer.close()
    return state


def make_task(
    config: ml_collections.ConfigDict,
    source: Sequence[dict],
    *,
    steps_per_epoch: int,
    num_steps: int,
) -> Task:
    """The task `config.stage` names (`training.tasks`), with the held-out records of
    `config.eval`.

    source: the training records (checked for labels where the task needs them);
    steps_per_epoch, num_steps: the run's length (learning-rate policies).
    """
    return task_module(config.stage).make_task(
        config,
        source,
        make_source(config.eval),
        steps_per_epoch=steps_per_epoch,
        num_steps=num_steps,
    )


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raise ValueError naming the first config field with an invalid value: the fields the loop
    reads here, then the task's own (`training.tasks`)."""
    variant_named(config.variant)
    task = task_module(config.stage)
    check_source(config.data, "config.data")
    check_source(config.eval, "config.eval")
    if config.batch_size % jax.process_count():
        raise ValueError(
            f"config.batch_size ({config.batch_size}) must be a multiple of the number of "
            f"processes ({jax.process_count()})"
        )
    if config.tensorboard not in ("auto", "yes", "no"):
        raise ValueError(f"config.tensorboard must be auto, yes or no, got {config.tensorboard!r}")
    if config.keep < 1:
        raise ValueError(f"config.keep must be at least 1, got {config.keep}")
    if config.num_steps != -1 and config.num_steps < 1:
        raise ValueError(
            "config.num_steps must be a positive number of updates, or -1 for config.n_ep "
            f"epochs, got {config.num_steps}"
        )
    if config.crop_size < 1:
        raise ValueError(f"config.crop_size must be positive, got {config.crop_size}")
    task.check_config(config)


def check_workdir(workdir: str | Path) -> Path:
    """The run's folder `workdir` as an absolute path, created if needed; ValueError naming it
    when it is a file, cannot be created or cannot be written."""
    path = Path(workdir).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise ValueError(f"cannot write to the folder {path}: {reason}") from error
    return path


def _due(step: int, every: int, last: bool) -> bool:
    return last or (every > 0 and step % every == 0)


def _restore_or_create(
    config: ml_collections.ConfigDict,
    checkpoints: RunCheckpoints,
    iterator: object,
    task: Task,
    mesh: jax.sharding.Mesh,
) -> TrainState:
    """The newest checkpoint's state (the iterator moved to its position), else a fresh one."""
    if checkpoints.latest_step() is not None:
        rep = mesh_lib.replicated(mesh)
        template = jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep),
            jax.eval_shape(lambda: task.create_state(None)),
        )
        changed = config_differences(checkpoints.saved_config() or {}, config.to_dict())
        if changed:
            logger.warning("config changed since the last checkpoint: %s", "; ".join(changed))
        try:
            state = checkpoints.restore(template, iterator)
        except ValueError as error:
            raise ValueError(
                f"cannot resume from {checkpoints.workdir}: {error}\nIt was probably saved "
                "with another data order (seed, data source, number of processes) or model; "
                "resume with the original config or start a new workdir."
            ) from error
        logger.info("resumed from the checkpoint of step %d", int(state.step))
        return state
    state = task.create_state(task.init_variables())
    return mesh_lib.replicate(state, mesh)


def _save(
    checkpoints: RunCheckpoints,
    workdir: Path,
    state: TrainState,
    iterator: object,
    config_dict: dict,
    config: ml_collections.ConfigDict,
    task: Task,
) -> None:
    checkpoints.save(state, iterator, config_dict)
    variables, metadata = task.export(state)
    export_model(workdir, variables, _export_metadata(metadata, state, workdir, config))


def _export_metadata(
    metadata: dict, state: TrainState, workdir: Path, config: ml_collections.ConfigDict
) -> dict:
    """The task's export metadata with the step, the stage and where it comes from."""
    return {
        **metadata,
        "step": int(state.step),
        "stage": config.stage,
        "source": f"superfusion-jax training, {workdir}",
    }


def nonfinite_message(metrics: dict, step: int, latest_checkpoint: int | None) -> str:
    """The error of a non-finite update: names every metric (loss term, gradient norm) that is
    NaN or Inf, the update's number and the checkpoint that remains the newest."""
    values = {k: np.asarray(v) for k, v in metrics.items() if k != "nonfinite"}
    bad = sorted(k for k, v in values.items() if not np.all(np.isfinite(v)))
    kept = (
        "no checkpoint yet"
        if latest_checkpoint is None
        else f"the newest checkpoint is step {latest_checkpoint}"
    )
    return (
        f"non-finite values at update {step}: {', '.join(bad) or '(unnamed)'}; the update was "
        f"not applied and training stopped ({kept})."
    )
