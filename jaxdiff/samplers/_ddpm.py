"""Ancestral sampling of DDPM (Ho et al. 2020, Alg. 2), with the fixed and learned variances
and the respacing of improved DDPM (Nichol & Dhariwal 2021)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxdiff import _checks
from jaxdiff.diffusion import PREDICTIONS, VARIANCES, p_mean_variance
from jaxdiff.samplers._common import compiled, finish, reverse_chain
from jaxdiff.samplers._inpaint import Inpaint, inpaint_spec
from jaxdiff.samplers._spacing import Spacing, linspace_timesteps, respaced
from jaxdiff.schedules import Schedule

__all__ = ["ddpm_step", "ddpm_sample"]


def ddpm_step(
    model_fn: Callable,
    schedule: Schedule,
    x_t: jnp.ndarray,
    t: jnp.ndarray,
    rng,
    *,
    variance: str = "fixed_small",
    prediction: str = "eps",
    clip_denoised: bool = True,
) -> jnp.ndarray:
    """One ancestral step x_{t-1} ~ p(x_{t-1} | x_t) (Ho et al. 2020, Alg. 2, line 4):

    .. math:: x_{t-1} = \\mu_\\theta(x_t, t) + \\sigma_t z, \\quad z \\sim N(0, I),

    with no noise at t = 0; mu and sigma come from :func:`jaxdiff.diffusion.p_mean_variance`.

    Args:
      model_fn: ``model_fn(x_t, model_t) -> output``, called with ``schedule.timesteps[t]``
        (the original model timestep of a respaced schedule).
      schedule: the schedule, possibly :func:`~jaxdiff.schedules.respace`-d.
      x_t: ``[B, ...]`` the current state.
      t: ``[B]`` int indices into ``schedule``.
      rng: key of the noise, ``z = jax.random.normal(rng, x_t.shape, x_t.dtype)``.
      variance, prediction, clip_denoised: as in :func:`~jaxdiff.diffusion.p_mean_variance`.

    Returns:
      ``[B, ...]`` x_{t-1}.
    """
    out = model_fn(x_t, schedule.timesteps[t])
    p = p_mean_variance(
        schedule, out, x_t, t, variance=variance, prediction=prediction, clip_denoised=clip_denoised
    )
    noise = jax.random.normal(rng, x_t.shape, x_t.dtype)
    last = (t == 0).reshape(t.shape + (1,) * (x_t.ndim - 1))
    return jnp.where(last, p.mean, p.mean + jnp.exp(0.5 * p.log_variance) * noise)


def ddpm_sample(
    model_fn: Callable,
    schedule: Schedule,
    x_T: jnp.ndarray,
    rng,
    *,
    variance: str = "fixed_small",
    prediction: str = "eps",
    clip_denoised: bool = True,
    num_steps: int | None = None,
    spacing: Spacing = linspace_timesteps,
    mask=None,
    known=None,
    return_info: bool = False,
    trajectory_every: int = 1,
):
    """Ancestral sampling of DDPM (Ho et al. 2020, Alg. 2): x_T -> x_0 by :func:`ddpm_step`
    for t = T-1, ..., 0, compiled as one ``lax.scan``.

    Args:
      model_fn: ``model_fn(x_t, t) -> output`` (``[B, ..., C]``, or ``[B, ..., 2C]`` for the
        learned variances).
      schedule: the schedule the model was trained with, or a respaced one.
      x_T: ``[B, ...]`` the starting noise, usually N(0, I).
      rng: key; step i (counting down from T - 1) derives its keys from
        ``jax.random.fold_in(rng, i)``.
      variance: ``fixed_small``, ``fixed_large``, ``learned`` or ``learned_range``.
      prediction: ``eps``, ``x0`` or ``v``.
      clip_denoised: clip the x_0 estimate to [-1, 1] at every step.
      num_steps: if given, sample on ``num_steps`` of the T timesteps with improved DDPM's
        respacing (Nichol & Dhariwal 2021, Sec. 4): ``respace(schedule, spacing(T, num_steps))``.
      spacing: which timesteps ``num_steps`` selects (see ``jaxdiff.samplers.*_timesteps``).
      mask, known: inpainting: ``known`` ``[B, ...]`` and a bool ``mask`` broadcastable to it.
        After every step the pixels where ``mask`` is True are replaced by a sample of
        q(x_{t-1} | x_0 = known), so x_0 holds ``known`` there exactly.
      return_info: return a :class:`SamplerOutput` instead of x_0 alone.
      trajectory_every: with ``return_info``, keep the state every this many steps (0: none).

    Returns:
      ``[B, ...]`` x_0, or a :class:`SamplerOutput` with ``nfe`` = the number of steps.
    """
    _checks.batched("x_T", x_T)
    _checks.one_of("variance", variance, VARIANCES)
    _checks.one_of("prediction", prediction, PREDICTIONS)
    if num_steps is not None:
        schedule = respaced(schedule, num_steps, spacing, prediction=prediction)
    inpaint = inpaint_spec(mask, known, x_T)
    x_0, trajectory = _ddpm_chain(
        model_fn,
        schedule,
        x_T,
        rng,
        inpaint,
        variance=variance,
        prediction=prediction,
        clip_denoised=clip_denoised,
        trajectory_every=trajectory_every if return_info else 0,
    )
    return finish(x_0, trajectory, schedule.num_timesteps, return_info=return_info)


@compiled(static_argnames=("variance", "prediction", "clip_denoised", "trajectory_every"))
def _ddpm_chain(
    model_fn,
    schedule: Schedule,
    x_T,
    rng,
    inpaint: Inpaint | None,
    *,
    variance,
    prediction,
    clip_denoised,
    trajectory_every,
):
    update = functools.partial(
        ddpm_step,
        model_fn,
        schedule,
        variance=variance,
        prediction=prediction,
        clip_denoised=clip_denoised,
    )
    return reverse_chain(update, schedule, x_T, rng, inpaint, trajectory_every=trajectory_every)
