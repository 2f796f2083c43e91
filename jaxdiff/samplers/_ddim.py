"""DDIM (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models"): the generalised
reverse step with noise scale eta, its deterministic sampler and its inversion x_0 -> x_T.

A DDIM chain on S of the T timesteps is a chain on the respaced schedule
``respace(schedule, spacing(T, S))``: the step from index i uses abar_{tau_i} and
abar_{tau_{i-1}} (= ``alphas_cumprod_prev``, 1 for the last step, which lands on the data).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxdiff import _checks
from jaxdiff.diffusion import PREDICTIONS, extract, predict_eps_and_x0
from jaxdiff.samplers._common import compiled, drive, finish, reverse_chain
from jaxdiff.samplers._inpaint import Inpaint, inpaint_spec
from jaxdiff.samplers._spacing import Spacing, respaced, uniform_timesteps
from jaxdiff.schedules import Schedule

__all__ = [
    "ddim_update",
    "ddim_sigma",
    "ddim_step",
    "ddim_sample",
    "ddim_invert_step",
    "ddim_invert",
]


def ddim_update(x0, eps, alpha_bar_prev, sigma, noise) -> jnp.ndarray:
    """The DDIM update (Song, Meng & Ermon 2021, eq. 12):

    .. math:: x_{t-1} = \\sqrt{\\bar\\alpha_{t-1}}\\, \\hat x_0
        + \\sqrt{1 - \\bar\\alpha_{t-1} - \\sigma_t^2}\\, \\hat\\epsilon + \\sigma_t z

    (the paper's alpha_t is our abar_t).

    Args:
      x0, eps: ``[B, ...]`` the model's estimates of x_0 and eps at x_t.
      alpha_bar_prev: ``[B, 1, ...]`` abar of the level the step lands on.
      sigma: ``[B, 1, ...]`` or scalar, the step's noise scale sigma_t (0 for DDIM proper).
      noise: ``[B, ...]`` z ~ N(0, I) (ignored where sigma = 0).

    Returns:
      ``[B, ...]`` x_{t-1}.
    """
    direction = jnp.sqrt(jnp.maximum(1.0 - alpha_bar_prev - sigma**2, 0.0))
    return jnp.sqrt(alpha_bar_prev) * x0 + direction * eps + sigma * noise


def ddim_sigma(schedule: Schedule, t, eta, ndim: int) -> jnp.ndarray:
    """sigma_t(eta) (Song, Meng & Ermon 2021, eq. 16):

    .. math:: \\sigma_t = \\eta \\sqrt{(1 - \\bar\\alpha_{t-1}) / (1 - \\bar\\alpha_t)}
        \\sqrt{1 - \\bar\\alpha_t / \\bar\\alpha_{t-1}},

    i.e. eta times the standard deviation of the DDPM posterior q(x_{t-1} | x_t, x_0) of the
    (respaced) schedule: eta = 1 is DDPM's ancestral step with fixed_small variance.

    Returns:
      ``[B, 1, ...]`` of rank ``ndim``.
    """
    return eta * jnp.sqrt(extract(schedule.posterior_variance, t, ndim))


def _check_eta(eta, rng) -> None:
    if not isinstance(eta, jax.core.Tracer):
        if not 0.0 <= float(eta) <= 1.0:
            raise ValueError(f"eta must lie in [0, 1] (0: DDIM, 1: DDPM), got {eta}")
        if rng is None and float(eta) != 0.0:
            raise ValueError(f"eta = {eta} > 0 draws noise: pass an rng key")
    elif rng is None:
        raise ValueError("eta is traced, so it may be > 0: pass an rng key")


def ddim_step(
    model_fn: Callable,
    schedule: Schedule,
    x_t: jnp.ndarray,
    t: jnp.ndarray,
    rng=None,
    *,
    eta=0.0,
    prediction: str = "eps",
    clip_denoised: bool = False,
) -> jnp.ndarray:
    """One DDIM step x_t -> x_{t-1} (Song, Meng & Ermon 2021, eqs. 12 and 16).

    Args:
      model_fn: ``model_fn(x_t, model_t) -> output``, called with ``schedule.timesteps[t]``.
      schedule: the (respaced) schedule; the step lands on ``alphas_cumprod_prev[t]``.
      x_t: ``[B, ...]`` the current state.
      t: ``[B]`` int indices into ``schedule``.
      rng: key of the noise ``z = jax.random.normal(rng, x_t.shape, x_t.dtype)``; ``None``
        only for eta = 0.
      eta: noise scale in [0, 1] (0: deterministic DDIM, 1: DDPM posterior variance).
      prediction: ``eps``, ``x0`` or ``v``.
      clip_denoised: clip the x_0 estimate to [-1, 1] and recompute eps from it.

    Returns:
      ``[B, ...]`` x_{t-1}.
    """
    _check_eta(eta, rng)
    out = model_fn(x_t, schedule.timesteps[t])
    eps, x0 = predict_eps_and_x0(
        schedule, x_t, t, out, prediction=prediction, clip_denoised=clip_denoised
    )
    alpha_bar_prev = extract(schedule.alphas_cumprod_prev, t, x_t.ndim)
    if rng is None:
        return ddim_update(x0, eps, alpha_bar_prev, 0.0, 0.0)
    sigma = ddim_sigma(schedule, t, eta, x_t.ndim)
    noise = jax.random.normal(rng, x_t.shape, x_t.dtype)
    return ddim_update(x0, eps, alpha_bar_prev, sigma, noise)


def ddim_sample(
    model_fn: Callable,
    schedule: Schedule,
    x_T: jnp.ndarray,
    rng=None,
    *,
    num_steps: int,
    eta=0.0,
    prediction: str = "eps",
    clip_denoised: bool = False,
    spacing: Spacing = uniform_timesteps,
    mask=None,
    known=None,
    return_info: bool = False,
    trajectory_every: int = 1,
):
    """DDIM sampling (Song, Meng & Ermon 2021, Sec. 4): :func:`ddim_step` over the
    ``num_steps`` timesteps tau chosen by ``spacing``, from tau_{S-1} down to tau_0 and then
    onto abar = 1, compiled as one ``lax.scan``. Deterministic given x_T when eta = 0.

    Args:
      model_fn: ``model_fn(x_t, t) -> output`` of the model trained on ``schedule``.
      schedule: the training schedule (T steps).
      x_T: ``[B, ...]`` starting noise.
      rng: key (step i, counting down from S - 1, derives its keys from
        ``jax.random.fold_in(rng, i)``); ``None`` allowed for eta = 0 without inpainting.
      num_steps: S, in [1, T].
      eta: noise scale in [0, 1]; may be a traced value (it does not recompile).
      prediction: ``eps``, ``x0`` or ``v``.
      clip_denoised: clip the x_0 estimate to [-1, 1] at every step.
      spacing: the timestep selection: :func:`uniform_timesteps` (the paper's linear one;
        50 of 1000 gives 980, 960, ..., 0) or :func:`quadratic_timesteps`.
      mask, known: inpainting as in :func:`ddpm_sample` (needs ``rng``).
      return_info, trajectory_every: as in :func:`ddpm_sample`.

    Returns:
      ``[B, ...]`` x_0, or a :class:`SamplerOutput` with ``nfe`` = the number of timesteps
      visited (``num_steps``, or fewer where the quadratic spacing repeats a timestep).
    """
    _checks.batched("x_T", x_T)
    _checks.one_of("prediction", prediction, PREDICTIONS)
    _check_eta(eta, rng)
    steps = respaced(schedule, num_steps, spacing, prediction=prediction)
    inpaint = inpaint_spec(mask, known, x_T)
    x_0, trajectory = _ddim_chain(
        model_fn,
        steps,
        x_T,
        rng,
        jnp.asarray(eta, x_T.dtype),
        inpaint,
        prediction=prediction,
        clip_denoised=clip_denoised,
        trajectory_every=trajectory_every if return_info else 0,
    )
    return finish(x_0, trajectory, steps.num_timesteps, return_info=return_info)


@compiled(static_argnames=("prediction", "clip_denoised", "trajectory_every"))
def _ddim_chain(
    model_fn,
    schedule: Schedule,
    x_T,
    rng,
    eta,
    inpaint: Inpaint | None,
    *,
    prediction,
    clip_denoised,
    trajectory_every,
):
    update = functools.partial(
        ddim_step,
        model_fn,
        schedule,
        eta=0.0 if rng is None else eta,
        prediction=prediction,
        clip_denoised=clip_denoised,
    )
    return reverse_chain(update, schedule, x_T, rng, inpaint, trajectory_every=trajectory_every)


def ddim_invert_step(
    model_fn: Callable, schedule: Schedule, x_prev: jnp.ndarray, t: jnp.ndarray, *, prediction="eps"
) -> jnp.ndarray:
    """One step of DDIM inversion x_{t-1} -> x_t: the deterministic DDIM step (eq. 12 with
    sigma = 0, an Euler step of the ODE of eq. 14) run towards more noise, with the model
    evaluated at the target t on the current state, eps(x_{t-1}, t) ~ eps(x_t, t) (Song, Meng
    & Ermon 2021, Sec. 4.3 and 5.4):

    .. math:: x_t = \\sqrt{\\bar\\alpha_t}\\, \\frac{x_{t-1} - \\sqrt{1 - \\bar\\alpha_{t-1}}
        \\hat\\epsilon}{\\sqrt{\\bar\\alpha_{t-1}}} + \\sqrt{1 - \\bar\\alpha_t}\\, \\hat\\epsilon

    Args:
      model_fn: ``model_fn(x, model_t) -> output``, called with ``schedule.timesteps[t]``.
      schedule: the (respaced) schedule; the step starts from ``alphas_cumprod_prev[t]``.
      x_prev: ``[B, ...]`` the state at level t - 1 (the data for t = 0).
      t: ``[B]`` int indices into ``schedule``.
      prediction: ``eps``, ``x0`` or ``v``.

    Returns:
      ``[B, ...]`` x_t.
    """
    out = model_fn(x_prev, schedule.timesteps[t])
    eps, _ = predict_eps_and_x0(schedule, x_prev, t, out, prediction=prediction)
    alpha_bar_prev = extract(schedule.alphas_cumprod_prev, t, x_prev.ndim)
    x0 = (x_prev - jnp.sqrt(1.0 - alpha_bar_prev) * eps) / jnp.sqrt(alpha_bar_prev)
    return ddim_update(x0, eps, extract(schedule.alphas_cumprod, t, x_prev.ndim), 0.0, 0.0)


def ddim_invert(
    model_fn: Callable,
    schedule: Schedule,
    x_0: jnp.ndarray,
    *,
    num_steps: int,
    prediction: str = "eps",
    spacing: Spacing = uniform_timesteps,
    return_info: bool = False,
    trajectory_every: int = 1,
):
    """DDIM inversion (encoding) x_0 -> x_T (Song, Meng & Ermon 2021, Sec. 5.4): the
    deterministic chain of :func:`ddim_invert_step` over the same timesteps as
    :func:`ddim_sample`, so ``ddim_sample(ddim_invert(x_0))`` reconstructs x_0 up to the
    discretisation error, which vanishes as ``num_steps`` grows.

    Args:
      model_fn, schedule, num_steps, prediction, spacing: as in :func:`ddim_sample`.
      x_0: ``[B, ...]`` data.
      return_info, trajectory_every: as in :func:`ddpm_sample`.

    Returns:
      ``[B, ...]`` the latent at the last selected timestep (980 for 50 of 1000), or a
      :class:`SamplerOutput` with ``nfe`` as in :func:`ddim_sample`.
    """
    _checks.batched("x_0", x_0)
    _checks.one_of("prediction", prediction, PREDICTIONS)
    steps = respaced(schedule, num_steps, spacing, prediction=prediction)
    x_T, trajectory = _ddim_invert_chain(
        model_fn,
        steps,
        x_0,
        prediction=prediction,
        trajectory_every=trajectory_every if return_info else 0,
    )
    return finish(x_T, trajectory, steps.num_timesteps, return_info=return_info)


@compiled(static_argnames=("prediction", "trajectory_every"))
def _ddim_invert_chain(model_fn, schedule: Schedule, x_0, *, prediction, trajectory_every):
    def step(x, i, key):
        t = jnp.full(x.shape[:1], i, dtype=jnp.int32)
        return ddim_invert_step(model_fn, schedule, x, t, prediction=prediction)

    steps = jnp.arange(schedule.num_timesteps)
    return drive(step, x_0, steps, trajectory_every=trajectory_every)
