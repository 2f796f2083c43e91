"""A network as a denoiser of its process: ``denoise(x, t) -> (eps, x0)`` at a scalar time t,
the one thing the continuous-time samplers and the likelihood ask of a model.

What the network is called with comes from the process alone (:func:`~jaxdiff.parametrize.
network_input`: ``model_fn(x, process.model_time(t))``) with a float t ``[B]``, or the int32
timestep on a discrete schedule's integers; its output is read as eps and x_0 by the one
adapter, :func:`~jaxdiff.parametrize.eps_x0_from_prediction`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxdiff import _checks
from jaxdiff._compile import PytreeFn, as_pytree_fn
from jaxdiff.parametrize import PREDICTIONS, eps_x0_from_prediction, network_input
from jaxdiff.processes import expand_like
from jaxdiff.schedules import Schedule

__all__ = ["PREDICTIONS", "coefficients", "model_denoiser", "scaled_denoiser"]


def coefficients(process, t, x):
    """alpha(t), sigma(t) and their time derivatives, for a scalar or ``[B]`` t, each shaped
    to broadcast against ``x`` ``[B, ...]``."""
    t = jnp.asarray(t, jnp.result_type(float))
    coeffs = (*process.alpha_sigma(t), *process.alpha_sigma_derivatives(t))
    return tuple(expand_like(c, x).astype(x.dtype) for c in coeffs)


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
    if prediction == "mean":  # the posterior mean of a schedule's own int step
        t = jnp.broadcast_to(jnp.round(t), x.shape[:1]).astype(jnp.int32)
    x_in, model_t = network_input(x, process, t, prediction=prediction)
    if integer_time:
        out = model_fn(x_in, jnp.round(model_t).astype(jnp.int32))
    else:
        out = _call_real_time(model_fn, x_in, model_t.astype(x.dtype))
    return eps_x0_from_prediction(out, x, process, t, prediction=prediction,
                                  clip_denoised=clip_denoised)


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
      prediction: one of :data:`~jaxdiff.parametrize.PREDICTIONS` (eps, x0, v, velocity,
        score, edm; ``mean``, the posterior mean of a discrete schedule's step t -> t - 1,
        with ``integer_time`` only), read by :func:`~jaxdiff.parametrize.eps_x0_from_prediction`.
      clip_denoised: clip x0 to [-1, 1] and recompute eps from it.
      integer_time: call the network with the int32 model time (a grid on a schedule's
        integers).

    Returns:
      a :class:`~jaxdiff._compile.PytreeFn` (the model's arrays and the process's are arguments
      of the compiled samplers), called as ``denoise(x [B, ...], t scalar)``.
    """
    _checks.one_of("prediction", prediction, PREDICTIONS)
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
    alpha = coefficients(process, t, y)[0]
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
