"""Data parallelism over every device through ``jax.sharding``.

A :func:`data_mesh` is a one-axis mesh (``data``) over the devices. Inside the compiled steps
every batch array is constrained to be split along its first axis over that axis, while the
train state and the data a step gathers from stay replicated: XLA's SPMD partitioner then runs
each device on its share of the batch and inserts the all-reduces (gradients, BatchNorm
statistics, loss means) itself, so a step computes the same numbers as on one device, up to the
order of float sums.

Several hosts: start every process with ``jax.distributed.initialize()`` (``ssimjax train
--distributed`` calls it; the coordinator address, process count and id come from the usual
``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID`` environment or the cluster
launcher, e.g. SLURM), give every process the same data, and ``jax.devices()`` then spans every
host: the same mesh and the same code shard each batch over all of them.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


class ParallelError(ValueError):
    pass


def data_mesh(devices=None) -> Mesh | None:
    """A ``data`` mesh over ``devices`` (default: every device); None for a single device (no
    sharding needed, nothing changes)."""
    devices = list(jax.devices() if devices is None else devices)
    if len(devices) <= 1:
        return None
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def mesh_size(mesh: Mesh | None) -> int:
    return 1 if mesh is None else int(mesh.devices.size)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def shard_batch(batch, mesh: Mesh | None):
    """Inside jit: every array of ``batch`` split along its first axis over the mesh."""
    if mesh is None:
        return batch
    return jax.tree_util.tree_map(lambda x: jax.lax.with_sharding_constraint(x, batch_sharding(mesh)), batch)


def replicate(tree, mesh: Mesh | None):
    """``tree`` (host or device arrays) placed whole on every device of the mesh."""
    if mesh is None:
        return tree
    return jax.device_put(tree, replicated(mesh))


def check_batch_size(batch_size: int, mesh: Mesh | None, what: str = "batch_size") -> None:
    n = mesh_size(mesh)
    if batch_size % n:
        raise ParallelError(f"{what} {batch_size} does not split evenly over {n} devices; "
                            f"use a multiple of {n} (e.g. {batch_size + n - batch_size % n})")


def round_up(batch_size: int, mesh: Mesh | None) -> int:
    """The smallest multiple of the device count >= ``batch_size`` (for padded, masked batches)."""
    n = mesh_size(mesh)
    return -(-batch_size // n) * n


def describe(mesh: Mesh | None) -> dict:
    devices = jax.devices() if mesh is None else list(mesh.devices.flat)
    used = devices[:1] if mesh is None else devices
    return {"count": len(used), "platform": used[0].platform, "kinds": sorted({d.device_kind for d in used}),
            "processes": jax.process_count(), "data_parallel": mesh is not None}
