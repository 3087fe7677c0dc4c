"""Train SuperFusion: `python train.py --config=configs/joint.py --workdir=DIR`.

Any config field can be overridden, e.g. `--config.batch_size=8 --config.num_steps=1000`.
Running the same command again resumes from the newest checkpoint in DIR. The trained model
is DIR/model (`superfusion run --checkpoint DIR/model ...`). See docs/training.md.

Multi-host (one process per host): JAX joins the processes when the launcher describes them
(JAX_COORDINATOR_ADDRESS, SLURM, Open MPI, Cloud TPU), or from --coordinator_address,
--num_processes and --process_id; --jax_distributed makes `jax.distributed.initialize()`
mandatory (it then detects the cluster itself or fails).
"""

from __future__ import annotations

import logging
import re
import sys

import jax
from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from superfusion_jax import huge_pages
from superfusion_jax.training import loop, mesh, xla_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Training config file (configs/*.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder of the run (checkpoints, logs, model).")
_DISTRIBUTED = flags.DEFINE_bool(
    "jax_distributed", False, "Require multi-process JAX (jax.distributed.initialize)."
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 (multi-host; else auto-detected)."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (multi-host).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Index of this process (multi-host).")
flags.mark_flags_as_required(["config", "workdir"])


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with a one-line error for a `--config.FIELD=...` override whose
    FIELD the config does not have (ml_collections raises a bare AttributeError/KeyError).
    Other such errors (e.g. raised by the config file's own code) propagate unchanged."""
    try:
        return app.parse_flags_with_usage(argv)
    except (AttributeError, KeyError) as error:
        text = str(error)
        given = [a.split("=")[0] for a in argv[1:] if a.startswith("--config.")]
        named = [a for a in given if re.search(rf"\b{re.escape(a.split('.')[-1])}\b", text)]
        if not named:
            raise
        field = named[0].split(".")[-1]
        suggestion = re.search(r'Did you mean "([^"]+)"', text)
        hint = f"; did you mean '{suggestion.group(1)}'?" if suggestion else ""
        print(
            f"train.py: {', '.join(named)}: the config has no field '{field}'{hint} (its fields "
            "are in the --config file and configs/common.py)",
            file=sys.stderr,
        )
        sys.exit(2)


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    # Progress of this package at INFO; other libraries (orbax logs every file) from WARNING.
    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.getLogger("superfusion_jax").setLevel(logging.INFO)
    # XLA's CPU convolutions measured fastest for training (before any JAX computation).
    xla_flags.use_training_xla_flags()
    # Joins a multi-process launch given by the flags or described by the environment
    # (JAX_COORDINATOR_ADDRESS, SLURM, Open MPI, Cloud TPU); a no-op for a single process.
    joined = mesh.initialize_distributed(
        coordinator_address=_COORDINATOR.value,
        num_processes=_NUM_PROCESSES.value,
        process_id=_PROCESS_ID.value,
    )
    if _DISTRIBUTED.value and not joined:
        jax.distributed.initialize()  # the other clusters JAX detects by itself, or an error
    # Invalid config values and an unusable --workdir: one line, exit status 2, nothing done.
    try:
        loop.check_config(_CONFIG.value)
    except ValueError as error:
        return _usage_error(str(error))
    try:
        loop.check_workdir(_WORKDIR.value)
    except ValueError as error:
        return _usage_error(f"--workdir={_WORKDIR.value}: {error}")
    try:
        loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except loop.NonFiniteLossError as error:
        print(f"train.py: {error}", file=sys.stderr)
        return 3
    return 0


def _usage_error(message: str) -> int:
    """Print `message` as train.py's one-line error; returns the exit status 2."""
    print(f"train.py: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    huge_pages.restart_with_huge_pages()  # XLA's buffers on huge pages (before any work)
    app.run(main, flags_parser=parse_flags)
