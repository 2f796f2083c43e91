"""Device layout of a training run: the mesh, and partition rules for the train state.

The drivers (train, sample, evaluate) own the layout; the mathematics never sees it. A run's
mesh has two axes: ``"data"`` (the batch is split along it) and ``"model"`` (size 1 unless
``config.sharding.model_parallel`` says otherwise). The train state is either replicated on
every device (data parallelism) or, with ``config.sharding.fsdp``, sharded ZeRO-3 style
(Rajbhandari et al. 2020, "ZeRO", stage 3; PyTorch's FSDP): each array of the parameters, the
EMA and the optimizer state is split along the ``"data"`` axis, so the state's memory per
device falls by the number of data-parallel devices. ``jax.jit`` with these shardings lets
XLA insert the all-gathers of the forward pass and the reduce-scatters of the gradients; the
results equal the replicated run's up to float rounding.

The rule for one array of shape ``s`` (:func:`partition_spec`):

* arrays with fewer than ``min_size`` elements (biases, norms, scalars) stay replicated;
* with a ``"model"`` axis of size ``m > 1``, the last dimension (a kernel's output features,
  a Megatron-style column split) is split along it when ``m`` divides it;
* with FSDP, the largest other dimension that the ``"data"`` axis size divides is split
  along ``"data"``.

The same rules hold whatever the mesh's size, so a config grows from one host to a pod
without another step function.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = [
    "DATA",
    "MODEL",
    "make_mesh",
    "partition_spec",
    "state_shardings",
    "batch_sharding",
    "replicated",
    "abstract",
]

DATA, MODEL = "data", "model"


def make_mesh(devices=None, *, model_parallel: int = 1) -> Mesh:
    """A ``("data", "model")`` mesh over ``devices`` (all devices when None).

    Devices are ordered by process, then id, so that each process's devices hold consecutive
    parts of the batch (what ``jax.make_array_from_process_local_data`` expects), and each
    ``"model"`` group lies within one process.

    Raises:
      ValueError: ``model_parallel`` does not divide the number of devices of each process.
    """
    devices = sorted(jax.devices() if devices is None else devices, key=lambda d: (d.process_index, d.id))
    per_process = len(devices) // len({d.process_index for d in devices})
    if isinstance(model_parallel, bool) or not isinstance(model_parallel, int) or model_parallel < 1:
        raise ValueError(f"config.sharding.model_parallel must be a positive integer, got {model_parallel!r}")
    if per_process % model_parallel:
        raise ValueError(
            f"config.sharding.model_parallel={model_parallel} must divide the number of devices "
            f"of each process ({per_process})"
        )
    grid = np.asarray(devices, dtype=object).reshape(-1, model_parallel)
    return Mesh(grid, (DATA, MODEL))


def _axis_size(mesh: Mesh, name: str) -> int:
    return dict(mesh.shape).get(name, 1)


def partition_spec(shape, mesh: Mesh, *, fsdp: bool, min_size: int = 1024) -> PartitionSpec:
    """The partition of one state array of ``shape`` on ``mesh`` (see the module docstring).

    Args:
      shape: the array's shape.
      mesh: a mesh with a ``"data"`` axis and optionally a ``"model"`` axis.
      fsdp: split along ``"data"`` too (else only along ``"model"``, if any).
      min_size: arrays with fewer elements stay replicated.
    """
    spec: list[str | None] = [None] * len(shape)
    if int(np.prod(shape, dtype=np.int64)) < min_size:
        return PartitionSpec(*spec)
    model = _axis_size(mesh, MODEL)
    if model > 1 and shape and shape[-1] % model == 0:
        spec[-1] = MODEL
    data = _axis_size(mesh, DATA)
    if fsdp and data > 1:
        free = [i for i in range(len(shape)) if spec[i] is None and shape[i] % data == 0]
        if free:
            spec[max(free, key=lambda i: (shape[i], i))] = DATA
    return PartitionSpec(*spec)


def state_shardings(abstract_state: Any, mesh: Mesh, *, fsdp: bool = False, min_size: int = 1024) -> Any:
    """``NamedSharding`` of every array of a state pytree (params, EMA, optimizer state, ...),
    by :func:`partition_spec`; with ``fsdp=False`` on a mesh without a model axis, all
    replicated."""
    return jax.tree.map(
        lambda a: NamedSharding(mesh, partition_spec(np.shape(a), mesh, fsdp=fsdp, min_size=min_size)),
        abstract_state,
    )


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """The batch: its leading axis split along ``"data"``, replicated along ``"model"``."""
    return NamedSharding(mesh, PartitionSpec(DATA))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def abstract(tree: Any, shardings: Any) -> Any:
    """``jax.ShapeDtypeStruct`` leaves of ``tree`` carrying ``shardings``: the target that a
    checkpoint is restored into, laid out on the current mesh whatever the mesh it was saved
    from (orbax reads each device's part of every array)."""
    return jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(np.shape(a), a.dtype, sharding=s), tree, shardings
    )
