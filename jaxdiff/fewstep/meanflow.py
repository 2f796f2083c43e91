"""MeanFlow (Geng et al. 2025, "Mean Flows for One-step Generative Modeling"): a network
u(z, r, t) for the *average* velocity of the flow between times r <= t on the linear path
z_t = (1 - t) x + t e (noise at t = 1, data at t = 0, instantaneous velocity v = e - x),

.. math:: u(z_t, r, t) = \\frac{1}{t - r} \\int_r^t v(z_\\tau, \\tau)\\, d\\tau,
    \\qquad z_r = z_t - (t - r)\\, u(z_t, r, t),

so one evaluation, z_0 = z_1 - u(z_1, 0, 1), generates. Differentiating (t - r) u in t gives
the MeanFlow identity u = v - (t - r) du/dt with the total derivative du/dt = v d_z u + d_t u,
a Jacobian-vector product with tangent (v, 0, 1) (:func:`meanflow_target`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxdiff import _checks, losses

__all__ = [
    "sample_time_pairs",
    "meanflow_target",
    "guided_velocity",
    "adaptive_weight",
    "meanflow_loss",
    "meanflow_sample",
]


def sample_time_pairs(
    rng: jax.Array, batch: int, *, mean: float = -0.4, std: float = 1.0, ratio: float = 0.25,
    dtype=jnp.float32,
):
    """(r, t) of MeanFlow's training (Geng et al. 2025, Sec. 4.3 and Table 1): two logit-normal
    times (:func:`jaxdiff.losses.logit_normal_time`), t the larger and r the smaller; a
    fraction ``1 - ratio`` of the pairs gets r = t (plain flow matching there). Their ImageNet
    default: mean -0.4, std 1, ratio 0.25.

    Returns:
      ``(r, t)``, each ``[batch]`` with 0 < r <= t < 1.
    """
    time_key, pick_key = jax.random.split(rng)
    a, b = jnp.split(losses.logit_normal_time(time_key, 2 * batch, dtype, mean=mean, std=std), 2)
    t, r = jnp.maximum(a, b), jnp.minimum(a, b)
    distinct = jax.random.uniform(pick_key, (batch,)) < ratio
    return jnp.where(distinct, r, t), t


def meanflow_target(u_fn: Callable, z, r, t, v):
    """The MeanFlow identity's right-hand side (Geng et al. 2025, eqs. 6 and 8):

    .. math:: u_{tgt} = v - (t - r) \\Big(v\\, \\partial_z u + \\partial_t u\\Big)

    the total derivative d/dt u(z_t, r, t) along the flow as one ``jax.jvp`` of u at (z, r, t)
    with tangent (v, 0, 1).

    Args:
      u_fn: ``u_fn(z, r, t) -> [B, ...]``, r and t float ``[B]``.
      z: ``[B, ...]`` points z_t; r, t: ``[B]``; v: ``[B, ...]`` the velocity at (z, t).

    Returns:
      ``(u, u_tgt)``: u(z, r, t) and the target, each ``[B, ...]`` (the target not yet
      stop-gradiented).
    """
    u, dudt = jax.jvp(u_fn, (z, r, t), (v, jnp.zeros_like(r), jnp.ones_like(t)))
    gap = (t - r).reshape((-1,) + (1,) * (z.ndim - 1))
    return u, v - gap * dudt


def guided_velocity(v, u_cond, u_uncond, *, scale, mix=0.0):
    """The velocity of MeanFlow's target under classifier-free guidance trained in (Geng et al.
    2025, Sec. 4.2, with the mixing scale kappa of their App. B.1):

    .. math:: \\tilde v = \\omega\\, v + \\kappa\\, u(z_t, t, t \\mid c)
        + (1 - \\omega - \\kappa)\\, u(z_t, t, t \\mid \\varnothing)

    the network at r = t standing in for the conditional and unconditional instantaneous
    velocities. With the exact fields its expectation is the guided field
    omega' v(z|c) + (1 - omega') v(z) of scale omega' = omega / (1 - kappa), and the average
    velocity learnt from it samples that field in one step. ``scale = 1, mix = 0``: no guidance.

    Args:
      v: ``[B, ...]`` the velocity e - x of the drawn pair.
      u_cond, u_uncond: ``[B, ...]`` u(z_t, t, t) with the labels and with the null label
        (stop-gradiented here).
      scale: omega, a float or ``[B]`` (1 where a label was dropped).
      mix: kappa, a float or ``[B]``.

    Returns:
      ``[B, ...]`` the guided velocity.
    """
    shape = (-1,) + (1,) * (v.ndim - 1)
    omega, kappa = (jnp.reshape(jnp.asarray(a, v.dtype), shape) for a in (scale, mix))
    u_cond, u_uncond = jax.lax.stop_gradient((u_cond, u_uncond))
    return omega * v + kappa * u_cond + (1.0 - omega - kappa) * u_uncond


def adaptive_weight(squared_error, *, power: float = 1.0, c: float = 1e-3):
    """The adaptive loss weight w = 1 / (||Delta||^2 + c)^p, stop-gradiented (Geng et al.
    2025, Sec. 4.3, after Geng et al. 2024): the loss sg(w) ||Delta||^2 is the squared L2
    loss for p = 0 and close to a robust (Cauchy-like) one for p = 1. ``[B] -> [B]``."""
    return jax.lax.stop_gradient(1.0 / (squared_error + c) ** power)


def meanflow_loss(
    u_fn: Callable,
    x0: jnp.ndarray,
    rng: jax.Array,
    *,
    time_mean: float = -0.4,
    time_std: float = 1.0,
    ratio: float = 0.25,
    power: float = 1.0,
    c: float = 1e-3,
    uncond_fn: Callable | None = None,
    guidance_scale=1.0,
    guidance_mix=0.0,
) -> jnp.ndarray:
    """The MeanFlow objective (Geng et al. 2025, eq. 9 and Alg. 1):

    .. math:: L = \\mathrm{sg}(w)\\, \\big\\| u_\\theta(z_t, r, t) - \\mathrm{sg}(u_{tgt})
        \\big\\|^2, \\quad z_t = (1 - t) x + t e,\\ v = e - x

    with (r, t) from :func:`sample_time_pairs`, u_tgt from :func:`meanflow_target` and w from
    :func:`adaptive_weight` (``power = 0``: plain squared error). With ``uncond_fn``,
    classifier-free guidance is trained in: v is replaced, in the target and in the jvp's
    tangent, by :func:`guided_velocity` (Geng et al. 2025, Sec. 4.2).

    Args:
      u_fn: ``u_fn(z, r, t)``, the network (on the batch's labels, if any).
      x0: ``[B, ...]`` data.
      rng: key of the times and the noise.
      uncond_fn: ``uncond_fn(z, r, t)``, the network on the null label; None: no guidance.
      guidance_scale, guidance_mix: omega and kappa of :func:`guided_velocity` (floats or
        ``[B]``; used with ``uncond_fn``).

    Returns:
      ``[B]`` losses (the squared error summed over dimensions, weighted).
    """
    _checks.batched("x0", x0)
    time_key, noise_key = jax.random.split(rng)
    r, t = sample_time_pairs(
        time_key, x0.shape[0], mean=time_mean, std=time_std, ratio=ratio, dtype=x0.dtype
    )
    e = jax.random.normal(noise_key, x0.shape, x0.dtype)
    t_b = t.reshape((-1,) + (1,) * (x0.ndim - 1))
    z = (1.0 - t_b) * x0 + t_b * e
    v = e - x0
    if uncond_fn is not None:
        v = guided_velocity(
            v, u_fn(z, t, t), uncond_fn(z, t, t), scale=guidance_scale, mix=guidance_mix
        )
    u, target = meanflow_target(u_fn, z, r, t, v)
    _checks.same_shape("u", u, "x0", x0)
    squared_error = jnp.sum((u - jax.lax.stop_gradient(target)) ** 2, axis=tuple(range(1, x0.ndim)))
    return adaptive_weight(squared_error, power=power, c=c) * squared_error


def meanflow_sample(u_fn: Callable, noise: jnp.ndarray, *, num_steps: int = 1) -> jnp.ndarray:
    """Few-step MeanFlow sampling (Geng et al. 2025, eq. 12 and Alg. 2): ``num_steps`` equal
    steps from t = 1 to 0, each

    .. math:: z_r = z_t - (t - r)\\, u(z_t, r, t)

    (one network evaluation each; 1 step: z_0 = e - u(e, 0, 1)).

    Args:
      u_fn: ``u_fn(z, r, t)``.
      noise: ``[B, ...]`` e ~ N(0, I).
      num_steps: the number of steps (static).

    Returns:
      ``[B, ...]`` samples.
    """
    _checks.batched("noise", noise)
    _checks.positive_int("num_steps", num_steps)
    times = jnp.linspace(1.0, 0.0, num_steps + 1, dtype=noise.dtype)

    def step(z, pair):
        t, r = pair
        full = lambda s: jnp.full(z.shape[:1], s, z.dtype)  # noqa: E731
        return z - (t - r) * u_fn(z, full(r), full(t)), None

    z, _ = jax.lax.scan(step, noise, (times[:-1], times[1:]))
    return z
