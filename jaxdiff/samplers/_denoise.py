"""A network as a denoiser of its process: ``denoise(x, t) -> (eps, x0)`` at a scalar time t,
the one thing the continuous-time samplers and the likelihood ask of a model.

What the network is called with comes from the process alone: ``model_fn(x, process.model_time(t))``
with a float t ``[B]``, or the int32 timestep on a discrete schedule's integers. Its output is
read as eps and x_0 by what it predicts (eps, x0, v, velocity or score), over the process's
alpha(t) and sigma(t) (and their time derivatives for a velocity).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxdiff import _checks
from jaxdiff._compile import PytreeFn, as_pytree_fn
from jaxdiff.diffusion import eps_from_x0, eps_x0_from_output, x0_from_eps, x0_from_posterior_mean
from jaxdiff.schedules import Schedule

__all__ = ["PREDICTIONS", "coefficients", "read_output", "model_denoiser", "scaled_denoiser"]

# What a network may predict on a continuous path.
PREDICTIONS = ("eps", "x0", "v", "velocity", "score")


def coefficients(process, t, ndim: int):
    """alpha(t), sigma(t) and their time derivatives, for a scalar or ``[B]`` t, each shaped to
    broadcast against ``[B, ...]`` of rank ``ndim``."""
    t = jnp.asarray(t, jnp.result_type(float))
    coeffs = (*process.alpha_sigma(t), *process.alpha_sigma_derivatives(t))
    shape = (1,) * ndim if t.ndim == 0 else (-1,) + (1,) * (ndim - 1)
    return tuple(jnp.reshape(c, shape) for c in coeffs)


def read_output(out, x, process, t, *, prediction: str, clip_denoised: bool = False):
    """A network's output at (x, t) of ``process`` (t a scalar or ``[B]``) read as ``(eps, x0)``.

    eps, x0 and v (Salimans & Ho 2022) by :func:`~jaxdiff.diffusion.eps_x0_from_output`; a score
    s gives eps = -sigma s (Vincent 2011); a velocity u = alpha' x0 + sigma' eps (Lipman et al.
    2023) is solved with x = alpha x0 + sigma eps:

    .. math:: x_0 = \\frac{\\sigma' x - \\sigma u}{\\alpha \\sigma' - \\sigma \\alpha'},\\quad
        \\epsilon = \\frac{\\alpha u - \\alpha' x}{\\alpha \\sigma' - \\sigma \\alpha'}

    (defined at alpha = 0 too, e.g. t = 1 of the linear path).
    """
    _checks.one_of("prediction", prediction, PREDICTIONS)
    _checks.same_shape("model output", out, "x", x)
    alpha, sigma, dalpha, dsigma = coefficients(process, t, x.ndim)
    alpha, sigma = alpha.astype(x.dtype), sigma.astype(x.dtype)
    if prediction in ("eps", "x0", "v"):
        return eps_x0_from_output(
            out, x, alpha, sigma, prediction=prediction, clip_denoised=clip_denoised
        )
    if prediction == "score":
        eps = -sigma * out
        x0 = x0_from_eps(x, eps, alpha, sigma)
    else:
        det = alpha * dsigma - sigma * dalpha
        x0 = ((dsigma * x - sigma * out) / det).astype(x.dtype)
        eps = ((alpha * out - dalpha * x) / det).astype(x.dtype)
    if clip_denoised:
        x0 = jnp.clip(x0, -1.0, 1.0)
        eps = eps_from_x0(x, x0, alpha, sigma)
    return eps, x0


def _call_real_time(model_fn, x, t):
    """``model_fn(x, t)`` with a float t ``[B]``; a model that fails there but takes an int32 t
    (one that indexes a table by t) gets one line naming the samplers that call it so."""
    try:
        return model_fn(x, t)
    except Exception as err:
        try:
            jax.eval_shape(model_fn, x, t.astype(jnp.int32))
        except Exception:
            raise err from None
        raise TypeError(
            "model_fn takes an integer t but not a real-valued one; the continuous-time solvers "
            "(ode_sample, ode_likelihood, dpm_solver_sample on a real grid) call it with a float "
            "t [B]: sample on a schedule's integer timesteps (ddpm, ddim, pc, or dpm_solver_sample "
            "on its default grid), or give the model a time embedding that takes real t"
        ) from None


def _model_denoise(model_fn, process, x, t, *, prediction, clip_denoised, integer_time):
    model_t = jnp.broadcast_to(process.model_time(t), x.shape[:1])
    if integer_time:
        model_t = jnp.round(model_t).astype(jnp.int32)
        out = model_fn(x, model_t)
    else:
        out = _call_real_time(model_fn, x, model_t.astype(x.dtype))
    if prediction == "mean":  # a posterior mean is defined on a schedule's own steps only
        step = jnp.broadcast_to(jnp.round(t), x.shape[:1]).astype(jnp.int32)
        out, prediction = x0_from_posterior_mean(process, x, step, out), "x0"
    return read_output(out, x, process, t, prediction=prediction, clip_denoised=clip_denoised)


def model_denoiser(
    model_fn: Callable,
    process,
    *,
    prediction: str = "eps",
    clip_denoised: bool = False,
    integer_time: bool = False,
) -> Callable:
    """``denoise(x, t) -> (eps, x0)``: ``model_fn(x, process.model_time(t))`` read by
    :func:`read_output`.

    Args:
      model_fn: ``model_fn(x, t) -> output``, t a float ``[B]`` (int32 with ``integer_time``).
      process: the process it was trained on (any GaussianProcess).
      prediction: eps | x0 | v | velocity | score; or ``mean``, the posterior mean of a
        discrete schedule's step t -> t - 1 (with ``integer_time`` only).
      clip_denoised: clip x0 to [-1, 1] and recompute eps from it.
      integer_time: call the network with the int32 model time (a grid on a schedule's
        integers).

    Returns:
      a :class:`~jaxdiff._compile.PytreeFn` (the model's arrays and the process's are arguments
      of the compiled samplers), called as ``denoise(x [B, ...], t scalar)``.
    """
    _checks.one_of("prediction", prediction, PREDICTIONS + ("mean",))
    if prediction == "mean" and not (integer_time and isinstance(process, Schedule)):
        raise ValueError(
            'prediction="mean" needs a discrete Schedule and a grid on its integer timesteps'
        )
    return PytreeFn(
        _model_denoise,
        (as_pytree_fn(model_fn), process),
        dict(prediction=prediction, clip_denoised=clip_denoised, integer_time=integer_time),
    )


def _scaled_denoise(denoise, process, y, level):
    t = process.time_at_log_snr(-2.0 * jnp.log(level))
    alpha = coefficients(process, t, y.ndim)[0].astype(y.dtype)
    return denoise(alpha * y, t)


def scaled_denoiser(denoise: Callable, process) -> Callable:
    """``denoise`` in the scaled coordinates of ``process``: y = x / alpha at the level
    sigma~ = sigma / alpha = exp(-lambda / 2) (Karras et al. 2022, eq. 4 with s = alpha; Song,
    Meng & Ermon 2021, eq. 14), where every process is the one with alpha = 1 and sigma = t
    (:class:`~jaxdiff.processes.EDM`'s form). eps and x0 are the same in both coordinates:

    .. math:: \\tilde D(y, \\tilde\\sigma) = D\\big(\\alpha(t) y, t\\big),
        \\quad t = \\lambda^{-1}(-2 \\ln \\tilde\\sigma)

    Returns:
      ``denoise(y, level) -> (eps, x0)`` (a :class:`~jaxdiff._compile.PytreeFn`).
    """
    return PytreeFn(_scaled_denoise, (as_pytree_fn(denoise), process))
