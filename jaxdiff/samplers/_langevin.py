"""Langevin dynamics with a noise-conditional score ``score_fn(x, sigma)``: annealed over
decreasing noise levels (NCSN, Song & Ermon 2019, Alg. 1) or at one fixed level."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import _checks
from jaxdiff.diffusion import x0_from_score_sigma
from jaxdiff.samplers._common import compiled, drive, finish, with_known
from jaxdiff.samplers._inpaint import Inpaint, inpaint_spec

__all__ = ["langevin_update", "langevin_step", "annealed_langevin", "langevin"]


def langevin_update(x, score, noise, step_size) -> jnp.ndarray:
    """One step of Langevin dynamics (Song & Ermon 2019, Sec. 2.2; Welling & Teh 2011):

    .. math:: \\tilde x_t = \\tilde x_{t-1}
        + \\frac{\\epsilon}{2} \\nabla_x \\log p(\\tilde x_{t-1}) + \\sqrt{\\epsilon}\\, z_t

    Args:
      x: ``[B, ...]`` the current state.
      score: ``[B, ...]`` the score at x.
      noise: ``[B, ...]`` z ~ N(0, I).
      step_size: epsilon, a scalar or ``[B, 1, ...]``.

    Returns:
      ``[B, ...]`` the next state.
    """
    return x + 0.5 * step_size * score + jnp.sqrt(step_size) * noise


def langevin_step(score_fn: Callable, x: jnp.ndarray, sigma, rng, *, step_size) -> jnp.ndarray:
    """:func:`langevin_update` with the score ``score_fn(x, sigma)`` of the noise level sigma.

    Args:
      score_fn: ``score_fn(x, sigma) -> [B, ...]`` with sigma of shape ``[B]``.
      x: ``[B, ...]`` the current state.
      sigma: scalar or ``[B]`` noise level.
      rng: key of ``z = jax.random.normal(rng, x.shape, x.dtype)``.
      step_size: epsilon (scalar).

    Returns:
      ``[B, ...]`` the next state.
    """
    sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), x.shape[:1])
    noise = jax.random.normal(rng, x.shape, x.dtype)
    return langevin_update(x, score_fn(x, sigma), noise, step_size)


def _check_positive(name: str, value) -> None:
    if not isinstance(value, jax.core.Tracer) and not np.all(np.asarray(value) > 0):
        raise ValueError(f"{name} must be positive, got {value}")


def annealed_langevin(
    score_fn: Callable,
    sigmas,
    x_init: jnp.ndarray,
    rng,
    *,
    steps_per_sigma: int,
    step_lr,
    denoise_last: bool = True,
    mask=None,
    known=None,
    return_info: bool = False,
    trajectory_every: int = 1,
):
    """Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1): for each noise level sigma_i,
    largest first, ``steps_per_sigma`` steps of :func:`langevin_step` with step size

    .. math:: \\alpha_i = \\text{step\\_lr} \\cdot \\sigma_i^2 / \\sigma_L^2,

    then optionally one denoising step x + sigma_L^2 score(x, sigma_L) (Tweedie's formula;
    Jolicoeur-Martineau et al. 2021, Song & Ermon 2020). One ``lax.scan`` over all L * T steps.

    Args:
      score_fn: ``score_fn(x, sigma) -> [B, ...]`` with sigma a float array ``[B]``.
      sigmas: ``[L]`` noise levels, largest first (e.g. ``schedules.geometric_sigmas``).
      x_init: ``[B, ...]`` the initial state (Song & Ermon draw it uniformly).
      rng: key; Langevin step k derives its noise from ``jax.random.fold_in(rng, k)`` (with
        inpainting, from the first of ``jax.random.split(rng)``).
      steps_per_sigma: T, the number of steps per noise level.
      step_lr: epsilon, the step size at the smallest level sigma_L.
      denoise_last: end with the denoising step (one more score evaluation).
      mask, known: inpainting (Song & Ermon 2019, Alg. 2): ``known`` ``[B, ...]`` and a bool
        ``mask`` broadcastable to it; after every step the known pixels are replaced by
        ``known + sigma_i z`` (z drawn once per level), and by ``known`` at the end.
      return_info: return a :class:`SamplerOutput` instead of x alone.
      trajectory_every: with ``return_info``, keep the state every this many steps (0: none);
        with ``denoise_last`` the final output is appended.

    Returns:
      ``[B, ...]`` samples, or a :class:`SamplerOutput` with ``nfe = L * T (+ 1)``.
    """
    _checks.batched("x_init", x_init)
    if np.ndim(sigmas) != 1 or np.shape(sigmas)[0] < 1:
        raise ValueError(f"sigmas must be a non-empty 1-D sequence, got shape {np.shape(sigmas)}")
    _check_positive("sigmas", sigmas)
    _check_positive("step_lr", step_lr)
    _checks.positive_int("steps_per_sigma", steps_per_sigma)
    inpaint = inpaint_spec(mask, known, x_init)
    x, trajectory = _langevin_chain(
        score_fn,
        jnp.asarray(sigmas, x_init.dtype),
        x_init,
        rng,
        jnp.asarray(step_lr, x_init.dtype),
        inpaint,
        steps_per_sigma=steps_per_sigma,
        denoise_last=denoise_last,
        trajectory_every=trajectory_every if return_info else 0,
    )
    nfe = np.shape(sigmas)[0] * steps_per_sigma + int(denoise_last)
    return finish(x, trajectory, nfe, return_info=return_info)


def langevin(
    score_fn: Callable,
    sigma,
    x_init: jnp.ndarray,
    rng,
    *,
    num_steps: int,
    step_size,
    **options,
):
    """Plain Langevin dynamics at one fixed noise level sigma (Song & Ermon 2019, Sec. 2.2):
    :func:`annealed_langevin` with the single level ``[sigma]``, so the two can be compared
    (Sec. 3.2.2: without annealing, the relative weights of separated modes are lost).

    Args:
      score_fn, x_init, rng: as in :func:`annealed_langevin`.
      sigma: the noise level (scalar).
      num_steps: number of Langevin steps.
      step_size: epsilon.
      **options: ``denoise_last``, ``mask``, ``known``, ``return_info``, ``trajectory_every``
        of :func:`annealed_langevin`.
    """
    if np.ndim(sigma) != 0:
        raise ValueError(f"sigma must be a scalar, got shape {np.shape(sigma)}")
    return annealed_langevin(
        score_fn,
        jnp.reshape(jnp.asarray(sigma), (1,)),
        x_init,
        rng,
        steps_per_sigma=num_steps,
        step_lr=step_size,
        **options,
    )


@compiled(static_argnames=("steps_per_sigma", "denoise_last", "trajectory_every"))
def _langevin_chain(
    score_fn,
    sigmas,
    x_init,
    rng,
    step_lr,
    inpaint: Inpaint | None,
    *,
    steps_per_sigma,
    denoise_last,
    trajectory_every,
):
    levels = jnp.repeat(jnp.arange(sigmas.shape[0]), steps_per_sigma)

    def step(x, level, key):
        sigma = sigmas[level]
        alpha = step_lr * (sigma / sigmas[-1]) ** 2
        return langevin_step(score_fn, x, sigma, key, step_size=alpha)

    x, trajectory = drive(
        step, x_init, levels, rng=rng, inpaint=inpaint, known_ids=levels,
        arrives_at=lambda level: (1.0, sigmas[level]), trajectory_every=trajectory_every,
    )
    if denoise_last:
        sigma_last = jnp.broadcast_to(sigmas[-1], x.shape[:1])
        x = x0_from_score_sigma(x, sigma_last, score_fn(x, sigma_last))
        if trajectory is not None:
            trajectory = jnp.concatenate([trajectory, x[None]], axis=0)
    return with_known(x, trajectory, inpaint)
