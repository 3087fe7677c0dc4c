"""Data parallelism: a one-axis device mesh, shardings, batch placement and jitted steps.

The training state is replicated on every device and each batch is split along its first axis
over the mesh axis 'data'. Steps are written for the global batch: under `jax.jit` with these
shardings XLA inserts the cross-device reductions (batch means of BatchNorm and of the losses,
gradient sums), so a step on N devices computes what it computes on one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def _launched_multi_process() -> bool:
    """Whether the environment describes a launch of several processes that JAX can join:
    JAX's own `JAX_COORDINATOR_ADDRESS`, or a SLURM step, Open MPI job or Cloud TPU pod with
    more than one process (the cluster managers `jax.distributed.initialize` detects)."""
    env = os.environ
    if env.get("JAX_COORDINATOR_ADDRESS"):
        return True
    if "SLURM_STEP_NODELIST" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        return True
    if int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
        return True
    return "," in env.get("TPU_WORKER_HOSTNAMES", "")


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Start multi-process JAX (`jax.distributed.initialize`), before any other JAX call.

    With no argument and no multi-process launch in the environment (`JAX_COORDINATOR_ADDRESS`,
    or a SLURM step, Open MPI job or Cloud TPU pod of several processes) this is a
    single-process run and nothing is done; otherwise JAX reads the unset arguments from that
    environment. Does nothing if already initialised.
    Returns True when JAX runs distributed after the call.
    """
    if jax.distributed.is_initialized():
        return True
    given = (coordinator_address, num_processes, process_id)
    if all(v is None for v in given) and not _launched_multi_process():
        return False
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
    return True


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A mesh with the single axis 'data' over `devices` (default: all devices of all hosts)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array (training state, metrics)."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """The first (batch) axis is split over the 'data' axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place a pytree (e.g. a `TrainState`) replicated on the mesh; every process must pass the
    same values."""
    return jax.device_put(tree, replicated(mesh))


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """Place this process's part of a batch as global arrays sharded along the batch axis.

    batch: pytree of host arrays (B_local, ...); with P processes the global batch is their
    concatenation in process order, of size P · B_local, which must divide evenly over the
    mesh's devices.
    """
    sharding = batch_sharded(mesh)
    return jax.tree_util.tree_map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch
    )


def jit_step(step_fn: Callable, mesh: Mesh, *, extra_args: int = 0) -> Callable:
    """Jit `step_fn(state, batch, *extra) -> (state, metrics)` for the mesh: state in and out
    replicated (and donated), batch sharded on its first axis, the `extra_args` further
    arguments (e.g. a frozen network's variables) replicated, metrics replicated.

    Bind the step's keyword arguments first, e.g. `functools.partial(rf_step, variant=...,
    optimizer=...)`; pass the state (and extra arguments) through `replicate` and the batch
    through `shard_batch`.
    """
    rep = replicated(mesh)
    return jax.jit(
        step_fn,
        in_shardings=(rep, batch_sharded(mesh), *([rep] * extra_args)),
        out_shardings=(rep, rep),
        donate_argnums=0,
    )
