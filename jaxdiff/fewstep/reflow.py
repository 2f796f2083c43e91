"""Reflow (Liu et al. 2023, "Flow Straight and Fast"): a flow trained on the (noise, sample)
pairs of another flow's ODE has straighter paths (the 2-rectified flow), and a straight flow
is exact in one Euler step; distilling it to one step finishes the job.

The linear path runs from the data at t = 0 to the noise at t = 1 (as
:func:`jaxdiff.samplers.flow_sample`): a pair is (x_0, x_1) = (ODE(x_1), x_1).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxdiff import _checks, losses, samplers
from jaxdiff.elbo import mean_flat

__all__ = ["reflow_pairs", "reflow_loss", "one_step_time", "straightness"]


def reflow_pairs(
    velocity_fn: Callable, x1: jnp.ndarray, *, num_steps: int, method: str = "heun"
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """The coupling of a flow (Liu et al. 2023, Alg. 1): each noise x_1 paired with the end
    x_0 of the flow's ODE from it (``num_steps`` equal steps of ``method``,
    :func:`jaxdiff.samplers.flow_sample`). The k-th flow's pairs train the (k+1)-rectified
    flow (:func:`reflow_loss`) or its one-step distillation (with :func:`one_step_time`).

    Args:
      velocity_fn: ``velocity_fn(x, t)``.
      x1: ``[B, ...]`` noise.

    Returns:
      ``(x0, x1)``, each ``[B, ...]``.
    """
    _checks.batched("x1", x1)
    return samplers.flow_sample(velocity_fn, x1, num_steps=num_steps, method=method), x1


def one_step_time(rng: jax.Array, batch: int, dtype=jnp.float32) -> jnp.ndarray:
    """t = 1 for every example: :func:`reflow_loss` with it trains the one-step map x_0 =
    x_1 - v(x_1, 1) alone (the distillation of Liu et al. 2023, Sec. 2.3, with the squared L2
    distance), on the pairs of the flow being distilled (:func:`reflow_pairs`)."""
    return jnp.ones((batch,), dtype)


def reflow_loss(
    velocity_fn: Callable,
    x0: jnp.ndarray,
    x1: jnp.ndarray,
    rng: jax.Array,
    *,
    time_sampling: Callable = losses.uniform_time,
) -> jnp.ndarray:
    """Rectified flow on a coupling (Liu et al. 2023, eq. 1): for pairs (x_0, x_1) drawn
    together (the k-th flow's ODE endpoints) instead of independently,

    .. math:: L = \\| v_\\theta(x_t, t) - (x_1 - x_0) \\|^2 / D, \\quad
        x_t = (1 - t)\\, x_0 + t\\, x_1

    Its minimiser is v(x, t) = E[x_1 - x_0 | x_t = x], the (k+1)-rectified flow. With
    :func:`one_step_time` it distils to one step.

    Args:
      velocity_fn: ``velocity_fn(x_t, t) -> [B, ...]``, t float ``[B]``.
      x0, x1: ``[B, ...]`` the data end and the noise end of each pair.
      rng: key of t.
      time_sampling: ``sample(rng, batch, dtype) -> t [B]`` (uniform by default).

    Returns:
      ``[B]`` losses.
    """
    _checks.batched("x0", x0)
    _checks.same_shape("x0", x0, "x1", x1)
    t = time_sampling(rng, x0.shape[0], x0.dtype)
    t_b = t.reshape((-1,) + (1,) * (x0.ndim - 1))
    velocity = velocity_fn((1.0 - t_b) * x0 + t_b * x1, t)
    _checks.same_shape("velocity", velocity, "x0", x0)
    return mean_flat((velocity - (x1 - x0)) ** 2)


def straightness(velocity_fn: Callable, x1: jnp.ndarray, *, num_steps: int = 64) -> jnp.ndarray:
    """The straightness of a flow (Liu et al. 2023, Sec. 2.2, per dimension):

    .. math:: S = \\int_0^1 \\mathbb{E}\\, \\| (Z_1 - Z_0) - v(Z_t, t) \\|^2 / D \\, dt

    along the flow's own trajectories from the noise x_1 (Heun's method on ``num_steps`` equal
    steps, the integral by the trapezoidal rule on the same grid); 0 exactly when every path
    is straight.

    Args:
      velocity_fn: ``velocity_fn(x, t)``.
      x1: ``[B, ...]`` noise.
      num_steps: the grid (static).

    Returns:
      ``[B]`` the straightness of each path.
    """
    _checks.batched("x1", x1)
    _checks.positive_int("num_steps", num_steps)
    def field(t, x):  # dx/dt = v(x, t), t a scalar
        return velocity_fn(x, jnp.full(x.shape[:1], t, x.dtype))

    times = jnp.linspace(1.0, 0.0, num_steps + 1, dtype=x1.dtype)

    def step(x, pair):
        t, t_next = pair
        return samplers.heun_step(field, x, t, t_next), field(t, x)

    x0, velocities = jax.lax.scan(step, x1, (times[:-1], times[1:]))
    velocities = jnp.concatenate([velocities, field(times[-1], x0)[None]])  # [K + 1, B, ...]
    deviation = jax.vmap(lambda v: mean_flat((x1 - x0 - v) ** 2))(velocities)  # [K + 1, B]
    return jnp.trapezoid(deviation, -times, axis=0)
