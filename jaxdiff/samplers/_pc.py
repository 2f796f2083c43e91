"""Predictor-corrector sampling (Song et al. 2021, "Score-based generative modeling through
stochastic differential equations", Sec. 4.2 and App. G) for the discrete variance-preserving
process of a :class:`~jaxdiff.schedules.Schedule`: a predictor step of the discretised
reverse SDE, preceded at each level by Langevin corrector steps at a target signal-to-noise
ratio. The score is read from any ``model_fn(x_t, t)`` as -eps / sqrt(1 - abar_t).

A predictor is a function ``predictor(schedule, x, t, score) -> (mean, std)`` of x_{t-1}:
:func:`reverse_diffusion_predictor` or :func:`ancestral_predictor`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import _checks
from jaxdiff.diffusion import PREDICTIONS, extract, predict_eps_and_x0, score_from_eps
from jaxdiff.samplers._common import compiled, finish, reverse_chain
from jaxdiff.samplers._inpaint import inpaint_spec
from jaxdiff.samplers._langevin import langevin_update
from jaxdiff.samplers._spacing import Spacing, linspace_timesteps, respaced
from jaxdiff.schedules import Schedule

__all__ = [
    "model_score",
    "reverse_diffusion_predictor",
    "ancestral_predictor",
    "langevin_corrector_step",
    "pc_step",
    "pc_sample",
]

Predictor = Callable[..., tuple]


def model_score(model_fn: Callable, schedule: Schedule, x_t, t, *, prediction="eps") -> jnp.ndarray:
    """The score s(x_t, t) = -eps_theta(x_t, t) / sqrt(1 - abar_t) of a diffusion model
    (Song et al. 2021, Sec. 3.3 / App. B), for any prediction type.

    Args:
      model_fn: ``model_fn(x_t, model_t)``, called with ``schedule.timesteps[t]``.
      schedule: the (respaced) schedule; x_t: ``[B, ...]``; t: ``[B]`` indices into it.

    Returns:
      ``[B, ...]`` the score.
    """
    out = model_fn(x_t, schedule.timesteps[t])
    eps, _ = predict_eps_and_x0(schedule, x_t, t, out, prediction=prediction)
    return score_from_eps(schedule, t, eps)


def reverse_diffusion_predictor(schedule: Schedule, x, t, score):
    """The reverse diffusion predictor (Song et al. 2021, App. E) for the discretised VP SDE
    x_{i+1} = sqrt(1 - beta_i) x_i + sqrt(beta_i) z (App. B, f_i(x) = (sqrt(1 - beta_i) - 1) x,
    G_i = sqrt(beta_i)):

    .. math:: x_{i-1} = (2 - \\sqrt{1 - \\beta_i})\\, x_i + \\beta_i s_\\theta(x_i, i)
        + \\sqrt{\\beta_i}\\, z

    Args:
      schedule: the (respaced) schedule; x: ``[B, ...]``; t: ``[B]`` indices; score: ``[B, ...]``.

    Returns:
      ``(mean [B, ...], std [B, 1, ...])`` of x_{i-1}.
    """
    beta = extract(schedule.betas, t, x.ndim)
    return (2.0 - jnp.sqrt(1.0 - beta)) * x + beta * score, jnp.sqrt(beta)


def ancestral_predictor(schedule: Schedule, x, t, score):
    """The ancestral sampling predictor for VP models (Song et al. 2021, App. F):

    .. math:: x_{i-1} = \\frac{x_i + \\beta_i s_\\theta(x_i, i)}{\\sqrt{1 - \\beta_i}}
        + \\sqrt{\\beta_i}\\, z,

    which is DDPM's ancestral step with the ``fixed_large`` variance (Ho et al. 2020, Alg. 2).

    Returns:
      ``(mean [B, ...], std [B, 1, ...])`` of x_{i-1}.
    """
    beta = extract(schedule.betas, t, x.ndim)
    return (x + beta * score) / jnp.sqrt(1.0 - beta), jnp.sqrt(beta)


def langevin_corrector_step(score, x, t, schedule: Schedule, noise, *, snr) -> jnp.ndarray:
    """One Langevin corrector step at target signal-to-noise ratio r (Song et al. 2021,
    Alg. 5, VP): with g = s_theta(x, t) and alpha_t = 1 - beta_t,

    .. math:: \\epsilon = 2 \\alpha_t (r \\|z\\|_2 / \\|g\\|_2)^2, \\qquad
        x \\leftarrow x + \\epsilon g + \\sqrt{2 \\epsilon}\\, z,

    i.e. :func:`langevin_update` with step size 2 epsilon. As in the reference code, the norms
    are averaged over the batch, so that epsilon does not depend on the example: a step size
    that depends on x (through ||g||) and on z biases the chain's stationary variance by
    O(r^2 / D) per step, which is large in low dimension D.

    Args:
      score: ``[B, ...]`` g; x: ``[B, ...]``; t: ``[B]`` indices into ``schedule``;
      noise: ``[B, ...]`` z ~ N(0, I); snr: r.

    Returns:
      ``[B, ...]`` the corrected x.
    """
    axes = tuple(range(1, x.ndim))
    noise_norm = jnp.mean(jnp.sqrt(jnp.sum(noise**2, axis=axes)))
    score_norm = jnp.mean(jnp.sqrt(jnp.sum(score**2, axis=axes)))
    step = 2.0 * extract(1.0 - schedule.betas, t, x.ndim) * (snr * noise_norm / score_norm) ** 2
    return langevin_update(x, score, noise, 2.0 * step)


def pc_step(
    model_fn: Callable,
    schedule: Schedule,
    x_t: jnp.ndarray,
    t: jnp.ndarray,
    rng,
    *,
    predictor: Predictor = reverse_diffusion_predictor,
    corrector_steps: int = 1,
    snr=0.16,
    prediction: str = "eps",
) -> jnp.ndarray:
    """One level of predictor-corrector sampling: ``corrector_steps`` Langevin corrector
    steps at level t, then the predictor step to level t - 1 (as the reference code orders
    them; Song et al. 2021, Alg. 1 and 3). The last predictor step (t = 0) adds no noise.

    Args:
      model_fn: ``model_fn(x_t, model_t)``, called with ``schedule.timesteps[t]``.
      schedule: the (respaced) schedule; x_t: ``[B, ...]``; t: ``[B]`` indices into it.
      rng: key; corrector step j uses ``fold_in(rng, j)``, the predictor
        ``fold_in(rng, corrector_steps)``.
      predictor: :func:`reverse_diffusion_predictor` or :func:`ancestral_predictor`.
      corrector_steps: M, Langevin steps per level (0: predictor only).
      snr: the target signal-to-noise ratio r of the corrector.
      prediction: ``eps``, ``x0`` or ``v``.

    Returns:
      ``[B, ...]`` x_{t-1}.
    """

    def correct(j, x):
        noise = jax.random.normal(jax.random.fold_in(rng, j), x.shape, x.dtype)
        score = model_score(model_fn, schedule, x, t, prediction=prediction)
        return langevin_corrector_step(score, x, t, schedule, noise, snr=snr)

    x = jax.lax.fori_loop(0, corrector_steps, correct, x_t)
    score = model_score(model_fn, schedule, x, t, prediction=prediction)
    mean, std = predictor(schedule, x, t, score)
    noise = jax.random.normal(jax.random.fold_in(rng, corrector_steps), x.shape, x.dtype)
    last = (t == 0).reshape(t.shape + (1,) * (x.ndim - 1))
    return jnp.where(last, mean, mean + std * noise)


def pc_sample(
    model_fn: Callable,
    schedule: Schedule,
    x_T: jnp.ndarray,
    rng,
    *,
    predictor: Predictor = reverse_diffusion_predictor,
    corrector_steps: int = 1,
    snr=0.16,
    prediction: str = "eps",
    num_steps: int | None = None,
    spacing: Spacing = linspace_timesteps,
    mask=None,
    known=None,
    return_info: bool = False,
    trajectory_every: int = 1,
):
    """Predictor-corrector sampling (Song et al. 2021, Alg. 1 and 3, VP): :func:`pc_step`
    for t = T-1, ..., 0, compiled as one ``lax.scan``.

    Args:
      model_fn: ``model_fn(x_t, t) -> output`` of a diffusion model trained on ``schedule``.
      schedule: the training schedule.
      x_T: ``[B, ...]`` starting noise.
      rng: key; level i (counting down from T - 1) uses ``jax.random.fold_in(rng, i)``.
      predictor, corrector_steps, snr, prediction: as in :func:`pc_step`.
      num_steps, spacing: sample on a respaced schedule, as in :func:`ddpm_sample`.
      mask, known: inpainting, as in :func:`ddpm_sample` (the known pixels are re-imposed
        after every level, Song et al. 2021, App. I.2).
      return_info, trajectory_every: as in :func:`ddpm_sample`.

    Returns:
      ``[B, ...]`` x_0, or a :class:`SamplerOutput` with
      ``nfe = num_steps * (corrector_steps + 1)``.
    """
    _checks.batched("x_T", x_T)
    _checks.one_of("prediction", prediction, PREDICTIONS)
    if isinstance(corrector_steps, bool) or not isinstance(corrector_steps, (int, np.integer)) or (
        corrector_steps < 0
    ):
        raise ValueError(f"corrector_steps must be a non-negative integer, got {corrector_steps!r}")
    if not isinstance(snr, jax.core.Tracer) and not float(snr) > 0:
        raise ValueError(f"snr must be positive, got {snr}")
    if not callable(predictor):
        raise TypeError(
            f"predictor must be a function such as ancestral_predictor, got {predictor!r}"
        )
    if num_steps is not None:
        schedule = respaced(schedule, num_steps, spacing, prediction=prediction)
    x_0, trajectory = _pc_chain(
        model_fn,
        schedule,
        x_T,
        rng,
        jnp.asarray(snr, x_T.dtype),
        inpaint_spec(mask, known, x_T),
        predictor=predictor,
        corrector_steps=corrector_steps,
        prediction=prediction,
        trajectory_every=trajectory_every if return_info else 0,
    )
    nfe = schedule.num_timesteps * (corrector_steps + 1)
    return finish(x_0, trajectory, nfe, return_info=return_info)


@compiled(static_argnames=("predictor", "corrector_steps", "prediction", "trajectory_every"))
def _pc_chain(
    model_fn,
    schedule,
    x_T,
    rng,
    snr,
    inpaint,
    *,
    predictor,
    corrector_steps,
    prediction,
    trajectory_every,
):
    update = functools.partial(
        pc_step,
        model_fn,
        schedule,
        predictor=predictor,
        corrector_steps=corrector_steps,
        snr=snr,
        prediction=prediction,
    )
    return reverse_chain(update, schedule, x_T, rng, inpaint, trajectory_every=trajectory_every)
