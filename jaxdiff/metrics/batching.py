"""Running a jitted per-batch function over a whole dataset, sharded over devices.

This is the one place where evaluation touches the device layout (the mathematics stays
device-agnostic): the examples are cut into batches, the last batch is padded to full size (so
one program is compiled), every batch is laid out along the ``"data"`` axis of a
:class:`jax.sharding.Mesh`, and the padding is dropped from the results.

Example::

    feats = map_batches(lambda x, i: net(x), images, batch_size=256)   # [N, D] numpy
    feats = map_batches(features, images, batch_size=256, args=(variables,))

The compiled program is cached on ``(fn, mesh)``: pass a module-level function (or a
:func:`jaxdiff._compile.static_partial` of one) and the parameters through ``args``, and one
compilation serves every parameter set of the same shapes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxdiff import _checks

__all__ = ["data_mesh", "as_array", "map_batches"]


def data_mesh(devices=None) -> Mesh:
    """A one-axis mesh ``("data",)`` over ``devices`` (all devices when None)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), ("data",))


def as_array(data, *, key: str = "x") -> np.ndarray:
    """A dataset as one host array: an array is returned as it is; a random-access source of
    ``{"x": ...}`` examples (see :mod:`jaxdiff.data`) is read and stacked.

    Raises:
      TypeError: for anything else.
    """
    if isinstance(data, (np.ndarray, jax.Array)):
        return np.asarray(data)
    is_source = (
        isinstance(data, Sequence) or hasattr(data, "__len__") and hasattr(data, "__getitem__")
    )
    if is_source and not isinstance(data, (str, bytes)):
        if len(data) < 1:
            raise ValueError("the dataset is empty")
        return np.stack([np.asarray(data[i][key]) for i in range(len(data))])
    raise TypeError(
        f"data must be an array [N, ...] or a random-access source of {{{key!r}: ...}} "
        f"examples, got {type(data).__name__}"
    )


@functools.lru_cache(maxsize=64)
def _compiled(fn: Callable, mesh: Mesh, num_args: int) -> Callable:
    """``fn(*args, batch, index)`` jitted: ``args`` replicated, the batch and the results split
    along ``"data"``. Cached, so equal ``fn`` share one compilation per shape."""
    rows, replicated = NamedSharding(mesh, PartitionSpec("data")), NamedSharding(mesh, PartitionSpec())
    return jax.jit(
        fn, in_shardings=(*[replicated] * num_args, rows, replicated), out_shardings=rows
    )


def map_batches(
    fn: Callable,
    data: np.ndarray,
    *,
    batch_size: int,
    mesh: Mesh | None = None,
    args: tuple = (),
):
    """Applies ``fn(*args, batch, batch_index)`` to consecutive batches and concatenates the
    results.

    ``fn`` is jitted once per ``(fn, mesh)`` (and cached across calls): the batch is sharded
    along the mesh's ``"data"`` axis, ``args`` are replicated, the results come back sharded
    like the batch. ``fn`` must map ``[batch_size, ...]`` to a pytree of ``[batch_size, ...]``
    arrays (one row per example); ``batch_index`` (an int32 scalar) lets it derive a per-batch
    key with ``jax.random.fold_in``.

    Args:
      fn: the per-batch function (hashable; a module-level function compiles once for all
        ``args`` of the same shapes).
      data: ``[N, ...]`` host array.
      batch_size: examples per batch (all devices together); a multiple of the mesh size.
      mesh: a mesh with a ``"data"`` axis; all devices when None.
      args: pytrees passed before the batch (parameters, keys, schedules): arguments of the
        compiled program, not constants.

    Returns:
      The pytree of results, each leaf a numpy array ``[N, ...]``.
    """
    _checks.batched("data", data, min_ndim=1)
    _checks.positive_int("batch_size", batch_size)
    mesh = data_mesh() if mesh is None else mesh
    if "data" not in mesh.axis_names:
        raise ValueError(f"mesh must have a 'data' axis, got axes {mesh.axis_names}")
    shards = mesh.shape["data"]
    if batch_size % shards:
        raise ValueError(
            f"batch_size={batch_size} must be divisible by the number of devices on the "
            f"'data' axis ({shards})"
        )
    step = _compiled(fn, mesh, len(args))
    num = data.shape[0]
    outputs = []
    for index, start in enumerate(range(0, num, batch_size)):
        batch = data[start : start + batch_size]
        pad = batch_size - batch.shape[0]
        if pad:
            batch = np.concatenate([batch, np.repeat(batch[-1:], pad, axis=0)])
        result = jax.device_get(step(*args, batch, np.int32(index)))
        outputs.append(jax.tree.map(lambda a: a[: batch_size - pad], result))
    return jax.tree.map(lambda *parts: np.concatenate(parts), *outputs)
