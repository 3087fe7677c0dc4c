"""What the training loop trains: a `Task` (SuperFusion's stages RF and FS, or the segmentation
network), built from the config by `training.loop.make_task`.

The loop (`training.loop.train_and_evaluate`) owns everything the tasks share: data iterator,
mesh, checkpoints with resume, writers, progress bar, signals, periods. A task provides the rest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import optax

from superfusion_jax.training.state import TrainState


@dataclasses.dataclass(frozen=True)
class Task:
    """The parts of a training run that depend on what is trained.

    crop_size: side of the square crops the data pipeline cuts (pixels).
    schedule: learning rate as a function of the update count (logged as train/learning_rate).
    step: pure `(state, batch, frozen) -> (state, metrics)`; batch as the pipeline gives it
      (NHWC), metrics with at least 'loss_total' and the boolean 'nonfinite' (then the state is
      returned unchanged). Jitted by the loop (`mesh.jit_step(..., extra_args=1)`).
    frozen: a pytree of fixed arrays the step reads (e.g. a frozen network's variables), passed
      to the jitted step as an argument, replicated on every device; None when there are none.
    create_state: `init_variables or None -> step-0 TrainState` (None: a fresh, seeded init).
    init_variables: `() -> variables to start from` (config.init_checkpoint), or None.
    images: `state -> {name: (H, W, 3) uint8}`, pictures of held-out data for the image log.
    export: `state -> (variables, metadata)` of the model written to workdir/model (metadata as
      for `checkpoint.save_model`, with 'step').
    evaluate: `state -> {'eval/<name>': float}` on held-out data (at step 0 and every
      eval_every updates), or None when the task has no held-out metric.
    best_metric: a key of `evaluate`'s result to maximise: the model of the best evaluation is
      kept as workdir/best (`checkpoints.BestModel`); None keeps no best model.
    """

    crop_size: int
    schedule: optax.Schedule
    step: Callable[..., tuple[TrainState, dict]]
    frozen: Any
    create_state: Callable[[dict | None], TrainState]
    init_variables: Callable[[], dict | None]
    images: Callable[[TrainState], dict[str, np.ndarray]]
    export: Callable[[TrainState], tuple[dict, dict]]
    evaluate: Callable[[TrainState], dict[str, float]] | None = None
    best_metric: str | None = None
