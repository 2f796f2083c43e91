"""What every sampler shares: the scanned chain with an optional thinned trajectory, and the
output bundle returned when a caller asks for more than x_0."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxdiff import _checks
from jaxdiff._compile import compiled as compiled


class SamplerOutput(NamedTuple):
    """What a sampler returns with ``return_info=True``.

    Attributes:
      samples: ``[B, ...]`` the final state (x_0).
      trajectory: ``[N, B, ...]`` the state after every ``trajectory_every``-th step (the last
        entry is the final state), or ``None`` when ``trajectory_every=0``.
      nfe: number of model evaluations per example, an int32 scalar array for every sampler
        (an adaptive solver's count is only known on the device).
    """

    samples: jnp.ndarray
    trajectory: jnp.ndarray | None
    nfe: Any


def run_chain(
    step: Callable[[Any, Any], Any],
    carry: Any,
    xs: Any,
    *,
    state: Callable[[Any], jnp.ndarray],
    trajectory_every: int = 0,
):
    """Runs ``carry = step(carry, x)`` over the leading axis of ``xs`` as one ``lax.scan``.

    With ``trajectory_every = k > 0`` the states after steps k, 2k, ... (and after the last
    step) are collected without storing the others: an outer scan over chunks of k steps
    records one state per chunk.

    Args:
      step: ``step(carry, x) -> carry``, one update of the chain.
      carry: the initial carry.
      xs: pytree with a leading axis of length N (the per-step inputs).
      state: picks the sample out of a carry.
      trajectory_every: 0 for no trajectory, else k.

    Returns:
      ``(final_carry, trajectory)`` with trajectory ``[ceil(N / k), B, ...]`` or ``None``.
    """
    if trajectory_every == 0:
        carry, _ = jax.lax.scan(lambda c, x: (step(c, x), None), carry, xs)
        return carry, None
    _checks.positive_int("trajectory_every", trajectory_every)
    num = jax.tree.leaves(xs)[0].shape[0]
    k = min(trajectory_every, num)
    full, rest = divmod(num, k)

    def chunk(c, x_chunk):
        c, _ = jax.lax.scan(lambda c_, x: (step(c_, x), None), c, x_chunk)
        return c, state(c)

    head = jax.tree.map(lambda a: a[: full * k].reshape((full, k) + a.shape[1:]), xs)
    carry, traj = jax.lax.scan(chunk, carry, head)
    if rest:
        tail = jax.tree.map(lambda a: a[full * k :][None], xs)
        carry, last = jax.lax.scan(chunk, carry, tail)
        traj = jnp.concatenate([traj, last], axis=0)
    return carry, traj


def finish(samples, trajectory, nfe, *, return_info: bool):
    """The sampler's return value: x_0 alone, or a :class:`SamplerOutput`."""
    if return_info:
        return SamplerOutput(samples, trajectory, jnp.asarray(nfe, jnp.int32))
    return samples

