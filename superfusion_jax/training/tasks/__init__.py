"""Training tasks, chosen by `config.stage`: each is a module with `check_config(config)` (raise
ValueError naming the first invalid field the task reads) and `make_task(config, source,
eval_source, *, steps_per_epoch, num_steps) -> training.task.Task`. The loop
(`training.loop`) knows nothing else of what it trains.

To add a task: a module here with those two functions, and its stage name(s) in `STAGES`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# config.stage -> the task module that trains it.
STAGES = {
    "RF": "superfusion_stages",
    "FS": "superfusion_stages",
    "segmentation": "segmentation_network",
}


def task_module(stage: str) -> ModuleType:
    """The module of the task that trains `stage` (ValueError for an unknown stage)."""
    if stage not in STAGES:
        raise ValueError(f"config.stage must be one of {tuple(STAGES)}, got {stage!r}")
    return importlib.import_module(f"{__name__}.{STAGES[stage]}")
