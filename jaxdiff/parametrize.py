"""The denoiser adapter: a network's output, the process and what the network predicts give every
other quantity.

On a Gaussian path x = alpha x_0 + sigma eps (any :class:`~jaxdiff.processes.GaussianProcess`
at time t) a network may predict

- ``"eps"``: the noise eps (Ho et al. 2020);
- ``"x0"``: the data x_0 (a denoiser D(x; sigma) of Karras et al. 2022 on an alpha = 1 process);
- ``"v"``: v = alpha eps - sigma x_0 (Salimans & Ho 2022, Sec. 4);
- ``"velocity"``: dx/dt = alpha'(t) x_0 + sigma'(t) eps (flow matching: eps - x_0 on the linear
  path, Lipman et al. 2023);
- ``"score"``: grad_x log q_t(x) = -eps / sigma (Song & Ermon 2019; Song et al. 2021);
- ``"edm"``: the raw network F of EDM's preconditioning (Karras et al. 2022, eq. 7), called as
  F(c_in x~, c_noise) with x~ = x / alpha and sigma~ = sigma / alpha, x_0 = c_skip x~ + c_out F;
- ``"mean"``: the posterior mean of q(x_{t-1} | x_t, x_0) (Ho et al. 2020, Table 2), on a
  discrete :class:`~jaxdiff.schedules.Schedule`'s own int steps only.

Every conversion goes through the pair (eps, x_0) and is written once below, over (alpha,
sigma) (and their time derivatives for the velocity), with the argument order
``(x, quantity, alpha, sigma)``. :func:`eps_x0_from_prediction` reads an output as (eps, x_0),
:func:`prediction_from_eps_x0` gives the output a network should have (a loss's target),
:func:`network_input` what it is called with, and :func:`denoise` does all three for a model.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp

from jaxdiff import _checks
from jaxdiff.processes import GaussianProcess, expand_like
from jaxdiff.schedules import Schedule

__all__ = [
    "PREDICTIONS",
    "x0_from_eps",
    "eps_from_x0",
    "v_from_eps_x0",
    "eps_x0_from_v",
    "score_from_eps",
    "eps_from_score",
    "velocity_from_eps_x0",
    "eps_x0_from_velocity",
    "edm_scalings",
    "x0_from_posterior_mean",
    "eps_x0_from_output",
    "eps_x0_from_prediction",
    "prediction_from_eps_x0",
    "network_input",
    "denoise",
]

PREDICTIONS = ("eps", "x0", "v", "velocity", "score", "edm", "mean")


# --- the conversions, over (alpha, sigma) of x = alpha x_0 + sigma eps ---------------------------
# alpha, sigma (and their derivatives) broadcast against x: [B, 1, ...] arrays or scalars.


def x0_from_eps(x, eps, alpha, sigma) -> jnp.ndarray:
    """x_0 = (x - sigma eps) / alpha (Ho et al. 2020, eq. 4 solved for x_0)."""
    return (x - sigma * eps) / alpha


def eps_from_x0(x, x0, alpha, sigma) -> jnp.ndarray:
    """eps = (x - alpha x_0) / sigma (Ho et al. 2020, eq. 4 solved for eps)."""
    return (x - alpha * x0) / sigma


def v_from_eps_x0(eps, x0, alpha, sigma) -> jnp.ndarray:
    """v = alpha eps - sigma x_0 (Salimans & Ho 2022, Sec. 4)."""
    return alpha * eps - sigma * x0


def eps_x0_from_v(x, v, alpha, sigma):
    """(eps, x_0) from v: eps = (sigma x + alpha v) / r, x_0 = (alpha x - sigma v) / r with
    r = alpha^2 + sigma^2 (= 1 on a variance-preserving path; Salimans & Ho 2022, Sec. 4)."""
    r = alpha**2 + sigma**2
    return (sigma * x + alpha * v) / r, (alpha * x - sigma * v) / r


def score_from_eps(eps, sigma) -> jnp.ndarray:
    """grad_x log q_t(x) = -eps / sigma (Vincent 2011; Song et al. 2021, Sec. 3.3)."""
    return -eps / sigma


def eps_from_score(score, sigma) -> jnp.ndarray:
    """eps = -sigma grad_x log q_t(x), the inverse of :func:`score_from_eps`."""
    return -sigma * score


def velocity_from_eps_x0(eps, x0, dalpha, dsigma) -> jnp.ndarray:
    """dx/dt = alpha'(t) x_0 + sigma'(t) eps along the path (eps - x_0 on the linear path
    x = (1 - t) x_0 + t eps; Lipman et al. 2023, eq. 23; Liu et al. 2023, eq. 1)."""
    return dalpha * x0 + dsigma * eps


def eps_x0_from_velocity(x, u, alpha, sigma, dalpha, dsigma):
    """(eps, x_0) from x = alpha x_0 + sigma eps and u = alpha' x_0 + sigma' eps, a 2 x 2 linear
    system with determinant alpha sigma' - sigma alpha' (> 0 where the log-SNR decreases)."""
    det = alpha * dsigma - sigma * dalpha
    return (alpha * u - dalpha * x) / det, (dsigma * x - sigma * u) / det


def edm_scalings(sigma, sigma_data: float = 0.5):
    """c_skip, c_out, c_in and c_noise of EDM's preconditioning (Karras et al. 2022, Table 1,
    "Ours" column; derived in App. B.6):

    .. math:: c_{skip} = \\frac{\\sigma_d^2}{\\sigma^2 + \\sigma_d^2},\\quad
        c_{out} = \\frac{\\sigma \\sigma_d}{\\sqrt{\\sigma^2 + \\sigma_d^2}},\\quad
        c_{in} = \\frac{1}{\\sqrt{\\sigma^2 + \\sigma_d^2}},\\quad
        c_{noise} = \\tfrac14 \\ln \\sigma

    Args:
      sigma: noise levels (any shape).
      sigma_data: the standard deviation of the data, sigma_d.

    Returns:
      ``(c_skip, c_out, c_in, c_noise)``, each of ``sigma``'s shape.
    """
    sigma = jnp.asarray(sigma)
    total = sigma**2 + sigma_data**2
    return (
        sigma_data**2 / total,
        sigma * sigma_data * jnp.sqrt(1.0 / total),
        jnp.sqrt(1.0 / total),
        0.25 * jnp.log(sigma),
    )


def x0_from_posterior_mean(schedule: Schedule, x_t, t, mean) -> jnp.ndarray:
    """The x_0 whose posterior mean mu~_t(x_t, x_0) is ``mean``: eq. 7 of Ho et al. (2020)
    solved for x_0, x_0 = (mu - coef2_t x_t) / coef1_t, so a network that predicts mu~ directly
    (their Table 2, "mu~ prediction") fits every sampler and the bound. ``t``: int steps."""
    coef1, coef2 = (
        expand_like(c[t], x_t) for c in (schedule.posterior_mean_coef1, schedule.posterior_mean_coef2)
    )
    return (mean - coef2 * x_t) / coef1


def _posterior_mean(schedule: Schedule, x_t, t, x0) -> jnp.ndarray:
    coef1, coef2 = (
        expand_like(c[t], x_t) for c in (schedule.posterior_mean_coef1, schedule.posterior_mean_coef2)
    )
    return coef1 * x0 + coef2 * x_t


# --- a network's output on a process -------------------------------------------------------------


def _check_mean(process, t) -> None:
    if not (isinstance(process, Schedule) and jnp.issubdtype(jnp.result_type(t), jnp.integer)):
        raise ValueError(
            'prediction="mean" needs a discrete Schedule and its int timesteps, got '
            f"{type(process).__name__} with t of dtype {jnp.result_type(t)}"
        )


def _coefficients(process: GaussianProcess, t, x, prediction: str):
    """(alpha, sigma, alpha', sigma') at t, shaped against x (the derivatives only for the
    velocity, else None)."""
    alpha, sigma = (expand_like(v, x) for v in process.alpha_sigma(t))
    if prediction != "velocity":
        return alpha, sigma, None, None
    dalpha, dsigma = (expand_like(v, x) for v in process.alpha_sigma_derivatives(t))
    return alpha, sigma, dalpha, dsigma


def eps_x0_from_output(out, x, alpha, sigma, *, prediction: str = "eps", clip_denoised: bool = False):
    """Reads an output of a ``"eps"``, ``"x0"`` or ``"v"`` network at a point x of the path as
    (eps, x_0), given alpha and sigma; with ``clip_denoised`` x_0 is clipped to [-1, 1] and eps
    recomputed from it (as DDIM samplers do). The process-level form is
    :func:`eps_x0_from_prediction`."""
    _checks.one_of("prediction", prediction, ("eps", "x0", "v"))
    _checks.same_shape("the model output", out, "x_t", x)
    if prediction == "eps":
        eps, x0 = out, x0_from_eps(x, out, alpha, sigma)
    elif prediction == "x0":
        eps, x0 = eps_from_x0(x, out, alpha, sigma), out
    else:
        eps, x0 = eps_x0_from_v(x, out, alpha, sigma)
    return _clipped(eps, x0, x, alpha, sigma, clip_denoised)


def _clipped(eps, x0, x, alpha, sigma, clip_denoised: bool):
    if not clip_denoised:
        return eps, x0
    x0 = jnp.clip(x0, -1.0, 1.0)
    return eps_from_x0(x, x0, alpha, sigma), x0


def eps_x0_from_prediction(
    out,
    x,
    process: GaussianProcess,
    t,
    *,
    prediction: str = "eps",
    clip_denoised: bool = False,
    sigma_data: float = 0.5,
):
    """(eps, x_0) of a network's output ``out`` at the point ``x`` of ``process`` at time ``t``.

    Args:
      out: ``[B, ...]`` the network's output (its mean part).
      x: ``[B, ...]`` the point of the path it was called at (the process's own x).
      process: the process.
      t: ``[B]`` or scalar time of the process (int steps on a Schedule for ``"mean"``).
      prediction: one of :data:`PREDICTIONS`.
      clip_denoised: clip x_0 to [-1, 1] and recompute eps from it.
      sigma_data: sigma_d of ``"edm"``.

    Returns:
      ``(eps, x0)``, each of ``x``'s shape.
    """
    _checks.one_of("prediction", prediction, PREDICTIONS)
    _checks.same_shape("the model output", out, "x_t", x)
    alpha, sigma, dalpha, dsigma = _coefficients(process, t, x, prediction)
    if prediction in ("eps", "x0", "v"):
        return eps_x0_from_output(out, x, alpha, sigma, prediction=prediction, clip_denoised=clip_denoised)
    if prediction == "score":
        eps = eps_from_score(out, sigma)
        x0 = x0_from_eps(x, eps, alpha, sigma)
    elif prediction == "velocity":
        eps, x0 = eps_x0_from_velocity(x, out, alpha, sigma, dalpha, dsigma)
    elif prediction == "edm":
        c_skip, c_out, _, _ = edm_scalings(sigma / alpha, sigma_data)
        x0 = c_skip * x / alpha + c_out * out
        eps = eps_from_x0(x, x0, alpha, sigma)
    else:  # mean
        _check_mean(process, t)
        x0 = x0_from_posterior_mean(process, x, t, out)
        eps = eps_from_x0(x, x0, alpha, sigma)
    return _clipped(eps, x0, x, alpha, sigma, clip_denoised)


def prediction_from_eps_x0(
    eps, x0, x, process: GaussianProcess, t, *, prediction: str = "eps", sigma_data: float = 0.5
) -> jnp.ndarray:
    """What a ``prediction`` network should output at x = alpha x_0 + sigma eps: the inverse of
    :func:`eps_x0_from_prediction` (the regression target of a denoising loss)."""
    _checks.one_of("prediction", prediction, PREDICTIONS)
    alpha, sigma, dalpha, dsigma = _coefficients(process, t, x, prediction)
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    if prediction == "v":
        return v_from_eps_x0(eps, x0, alpha, sigma)
    if prediction == "score":
        return score_from_eps(eps, sigma)
    if prediction == "velocity":
        return velocity_from_eps_x0(eps, x0, dalpha, dsigma)
    if prediction == "edm":
        c_skip, c_out, _, _ = edm_scalings(sigma / alpha, sigma_data)
        return (x0 - c_skip * x / alpha) / c_out
    _check_mean(process, t)
    return _posterior_mean(process, x, t, x0)


def network_input(x, process: GaussianProcess, t, *, prediction: str = "eps", sigma_data: float = 0.5):
    """(x, time) a network is called with at the point x of ``process`` at ``t``: x and
    :meth:`~jaxdiff.processes.GaussianProcess.model_time` ``[B]``, or for ``"edm"`` c_in x~
    and c_noise of sigma~ = sigma / alpha (Karras et al. 2022, eq. 7)."""
    batch = x.shape[:1]
    if prediction != "edm":
        return x, jnp.broadcast_to(process.model_time(t), batch)
    alpha, sigma = (jnp.broadcast_to(v, batch) for v in process.alpha_sigma(t))
    _, _, c_in, c_noise = edm_scalings(sigma / alpha, sigma_data)
    return expand_like(c_in / alpha, x) * x, c_noise


def denoise(
    model_fn: Callable,
    process: GaussianProcess,
    x,
    t,
    *,
    prediction: str = "eps",
    clip_denoised: bool = False,
    sigma_data: float = 0.5,
):
    """Calls ``model_fn`` at the point x of ``process`` at time t (:func:`network_input`) and
    reads its output as (eps, x_0) (:func:`eps_x0_from_prediction`).

    Returns:
      ``(eps, x0)``, each of ``x``'s shape.
    """
    out = model_fn(*network_input(x, process, t, prediction=prediction, sigma_data=sigma_data))
    return eps_x0_from_prediction(
        out, x, process, t, prediction=prediction, clip_denoised=clip_denoised, sigma_data=sigma_data
    )
