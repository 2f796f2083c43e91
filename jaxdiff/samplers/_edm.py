"""EDM's samplers (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based
Generative Models", Sec. 3-4): the probability-flow ODE of x = x_0 + sigma n,

.. math:: \\frac{dx}{d\\sigma} = \\frac{x - D(x; \\sigma)}{\\sigma}

(their eq. 4 with s(t) = 1, sigma(t) = t), solved by Heun's method on a decreasing grid of
levels (Alg. 1), optionally with "churn": noise added before each step to climb to a higher
level (Alg. 2).

A model trained on another process samples here through the columns of their Table 1:
:func:`process_denoiser` for an eps-, x_0- or v-model on any process of
:mod:`jaxdiff.processes` or a discrete :class:`~jaxdiff.schedules.Schedule` (the VP column for
DDPM; the state is the scaled x / alpha, with sigma = sigma(t) / alpha(t)), :func:`ve_denoiser`
for an NCSN score model on its noise levels.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import _checks
from jaxdiff._compile import PytreeFn, as_pytree_fn
from jaxdiff.diffusion import x0_from_score_sigma
from jaxdiff.processes import EDM
from jaxdiff.samplers._common import compiled, drive, finish, with_known
from jaxdiff.samplers._denoise import PREDICTIONS, model_denoiser, scaled_denoiser
from jaxdiff.samplers._inpaint import inpaint_spec
from jaxdiff.samplers._ode import change_of_variables, euler_step, heun_step, probability_flow

__all__ = [
    "churn_gammas",
    "edm_step",
    "edm_sample",
    "edm_likelihood",
    "sigma_range",
    "process_denoiser",
    "ve_denoiser",
]

_METHODS = ("heun", "euler")


def churn_gammas(sigmas, *, churn, s_tmin, s_tmax) -> jnp.ndarray:
    """The per-step churn of Karras et al. (2022), Alg. 2, line 3:

    .. math:: \\gamma_i = \\min(S_{churn} / N, \\sqrt2 - 1) \\text{ if }
        \\sigma_i \\in [S_{tmin}, S_{tmax}], \\text{ else } 0

    Args:
      sigmas: ``[N + 1]`` the levels.
      churn, s_tmin, s_tmax: S_churn and the range of levels it applies to.

    Returns:
      ``[N]`` the gamma of each step.
    """
    sigmas = jnp.asarray(sigmas)
    num = sigmas.shape[0] - 1
    gamma = jnp.minimum(churn / num, math.sqrt(2.0) - 1.0)
    inside = (sigmas[:-1] >= s_tmin) & (sigmas[:-1] <= s_tmax)
    return jnp.where(inside, gamma, 0.0).astype(sigmas.dtype)


def edm_step(
    denoiser_fn: Callable,
    x: jnp.ndarray,
    sigma,
    sigma_next,
    rng=None,
    *,
    gamma=0.0,
    s_noise=1.0,
    method: str = "heun",
) -> jnp.ndarray:
    """One step of Karras et al. (2022), Alg. 2 (Alg. 1 when gamma = 0), lines 4-10:

    .. math:: \\hat\\sigma = (1 + \\gamma) \\sigma,\\quad
        \\hat x = x + \\sqrt{\\hat\\sigma^2 - \\sigma^2}\\, S_{noise}\\, z,

    then one Heun step (:func:`~jaxdiff.samplers.heun_step`) of the probability flow of
    :class:`~jaxdiff.processes.EDM`, dx/dsigma = (x - D(x; sigma)) / sigma, from
    sigma_hat to sigma_next, or an Euler step (``method="euler"``, and always when sigma_next
    = 0, where the field is not defined: Alg. 1, line 6).

    Args:
      denoiser_fn: ``denoiser_fn(x, sigma) -> D(x; sigma)``, sigma a float ``[B]``.
      x: ``[B, ...]`` the state at level ``sigma``.
      sigma, sigma_next: scalar levels, sigma > sigma_next >= 0.
      rng: key of z; ``None`` for no churn.
      gamma: the step's churn (see :func:`churn_gammas`).
      s_noise: S_noise, the scale of the added noise.
      method: ``"heun"`` (2 model calls) or ``"euler"`` (1).

    Returns:
      ``[B, ...]`` the state at level ``sigma_next``.
    """
    _checks.one_of("method", method, _METHODS)
    field = probability_flow(model_denoiser(denoiser_fn, EDM(), prediction="x0"), EDM())
    if rng is not None:
        sigma_hat = sigma * (1.0 + gamma)
        z = jax.random.normal(rng, x.shape, x.dtype)
        x = x + sigma * jnp.sqrt(gamma * (2.0 + gamma)) * s_noise * z  # sqrt(sigma_hat^2 - sigma^2)
        sigma = sigma_hat

    def euler(y):
        return euler_step(field, y, sigma, sigma_next)

    if method == "euler":
        return euler(x)
    return jax.lax.cond(sigma_next > 0, lambda y: heun_step(field, y, sigma, sigma_next), euler, x)


def _check_sigmas(sigmas) -> jnp.ndarray:
    sigmas = jnp.asarray(sigmas)
    if sigmas.ndim != 1 or sigmas.shape[0] < 2:
        raise ValueError(f"sigmas must be a 1-D array of at least 2 levels, got shape {sigmas.shape}")
    if not isinstance(sigmas, jax.core.Tracer):
        values = np.asarray(sigmas)
        if np.any(np.diff(values) >= 0) or values[-1] < 0 or not np.all(np.isfinite(values)):
            raise ValueError(
                "sigmas must be finite, strictly decreasing and >= 0 (e.g. karras_sigmas, "
                f"ending with 0), got {values}"
            )
    return sigmas


def _nfe(sigmas, method: str) -> int:
    """Model calls per example: 2 per Heun step but 1 for a step onto sigma = 0 (one per
    Euler step)."""
    steps = sigmas.shape[0] - 1
    if method == "euler":
        return steps
    if isinstance(sigmas, jax.core.Tracer):
        return 2 * steps
    return 2 * steps - int(np.sum(np.asarray(sigmas)[1:] == 0))


def edm_sample(
    denoiser_fn: Callable,
    sigmas,
    x_T: jnp.ndarray,
    rng=None,
    *,
    churn=0.0,
    s_tmin=0.0,
    s_tmax=float("inf"),
    s_noise=1.0,
    method: str = "heun",
    mask=None,
    known=None,
    return_info: bool = False,
    trajectory_every: int = 1,
):
    """Karras et al. (2022), Alg. 1 (``churn = 0``: the deterministic Heun sampler) and Alg. 2
    (the stochastic sampler): :func:`edm_step` from ``sigmas[0]`` down to ``sigmas[-1]``,
    compiled as one ``lax.scan``.

    Args:
      denoiser_fn: ``denoiser_fn(x, sigma) -> D(x; sigma)``, sigma a float ``[B]`` (e.g.
        :func:`~jaxdiff.models.edm_precondition`, :func:`process_denoiser`, :func:`ve_denoiser`).
      sigmas: ``[N + 1]`` strictly decreasing levels, the last usually 0
        (:func:`~jaxdiff.schedules.karras_sigmas`).
      x_T: ``[B, ...]`` the start, x ~ N(0, sigmas[0]^2 I) (noise scaled by sigmas[0]).
      rng: key of the churn noise (step i uses ``fold_in(rng, i)``) and of inpainting; needed
        when churn > 0 or with ``mask``.
      churn, s_tmin, s_tmax, s_noise: S_churn, S_tmin, S_tmax, S_noise of Alg. 2 (the
        per-step gamma is :func:`churn_gammas`); may be traced.
      method: ``"heun"`` (Alg. 1) or ``"euler"`` (the same steps with Euler's method; with a
        DDPM model through :func:`process_denoiser` on DDIM's levels it is DDIM).
      mask, known: inpainting, as in :func:`~jaxdiff.samplers.ddpm_sample`: after every step
        the known pixels are ``known + sigma_next z``, and ``known`` at the end (needs rng).
      return_info: return a :class:`~jaxdiff.samplers.SamplerOutput`.
      trajectory_every: with ``return_info``, keep the state after every k-th step.

    Returns:
      ``[B, ...]`` the state at ``sigmas[-1]`` (the sample when it is 0), or a
      :class:`SamplerOutput` with ``nfe`` = 2 N - 1 for Heun ending at 0 (N for Euler).

    Raises:
      ValueError: for bad sigmas, a negative churn or S_noise, churn without rng, or an
        unknown method.
    """
    _checks.batched("x_T", x_T)
    _checks.one_of("method", method, _METHODS)
    sigmas = _check_sigmas(sigmas)
    nfe = _nfe(sigmas, method)
    sigmas = sigmas.astype(x_T.dtype)
    for name, value in (("churn", churn), ("s_noise", s_noise)):
        if not isinstance(value, jax.core.Tracer) and not float(value) >= 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    stochastic = isinstance(churn, jax.core.Tracer) or float(churn) > 0
    if stochastic and rng is None:
        raise ValueError("churn > 0 draws noise (Alg. 2): pass an rng key")
    gammas = churn_gammas(sigmas, churn=churn, s_tmin=s_tmin, s_tmax=s_tmax)
    inpaint = inpaint_spec(mask, known, x_T)
    x, trajectory = _edm_chain(
        denoiser_fn,
        sigmas,
        gammas,
        x_T,
        rng if stochastic or inpaint is not None else None,
        jnp.asarray(s_noise, x_T.dtype),
        inpaint,
        stochastic=stochastic,
        method=method,
        trajectory_every=trajectory_every if return_info else 0,
    )
    return finish(x, trajectory, nfe, return_info=return_info)


@compiled(static_argnames=("stochastic", "method", "trajectory_every"))
def _edm_chain(
    denoiser_fn, sigmas, gammas, x_T, rng, s_noise, inpaint, *, stochastic, method, trajectory_every
):
    def step(x, inputs, key):
        sigma, sigma_next, gamma = inputs
        return edm_step(
            denoiser_fn, x, sigma, sigma_next, key if stochastic else None, gamma=gamma,
            s_noise=s_noise, method=method,
        )

    x, trajectory = drive(
        step, x_T, (sigmas[:-1], sigmas[1:], gammas), rng=rng, inpaint=inpaint,
        arrives_at=lambda inputs: (1.0, inputs[1]), trajectory_every=trajectory_every,
    )
    return with_known(x, trajectory, inpaint)


def edm_likelihood(
    denoiser_fn: Callable,
    x0: jnp.ndarray,
    rng,
    *,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    **options,
) -> dict:
    """The log-likelihood of EDM's probability-flow ODE (Karras et al. 2022, eq. 4; the
    likelihood of Song et al. 2021, Sec. 4.3, for its VE form) by the instantaneous change of
    variables (:func:`~jaxdiff.samplers.change_of_variables`) in the time s = log sigma,
    where the field is x - D(x; e^s), from x0 at sigma_min to the prior N(0, sigma_max^2 I) at
    sigma_max (the data's variance is negligible there):

    .. math:: \\log p(x_0) \\approx \\log \\mathcal N(x(\\sigma_{\\max}); 0, \\sigma_{\\max}^2 I)
        + \\int_{\\ln \\sigma_{\\min}}^{\\ln \\sigma_{\\max}} \\nabla_x \\cdot (x - D(x; e^s))\\, ds

    It is the density of the data smoothed by N(0, sigma_min^2), the level closest to the data
    the model was trained on.

    Args:
      denoiser_fn: ``denoiser_fn(x, sigma)``, sigma a float ``[B]``.
      x0, rng: the data (in [-1, 1]) and the key of the dequantisation noise and the probes.
      sigma_min, sigma_max: the ends of the solve (those of the sampler's grid).
      **options: those of :func:`~jaxdiff.samplers.change_of_variables` (``num_probes``,
        ``dequantize``, ``trace``, ``method``, ``num_steps``, ``rtol``, ``atol``).

    Returns:
      The dict of :func:`~jaxdiff.samplers.change_of_variables`.
    """
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    process = EDM(sigma_min=sigma_min, sigma_max=sigma_max)
    return change_of_variables(
        model_denoiser(denoiser_fn, process, prediction="x0"), process, x0, rng,
        t_data=sigma_min, t_prior=sigma_max, log_time=True, **options,
    )


def sigma_range(process) -> tuple[float, float]:
    """(sigma_min, sigma_max) of a process in EDM's scaled form, sigma = sigma(t) / alpha(t) =
    exp(-log-SNR / 2) at ``t_data`` and ``t_noise`` (Karras et al. 2022, Table 1; for a DDPM
    schedule sqrt((1 - abar) / abar) at t = 0 and T - 1): the range in which
    :func:`process_denoiser` reads the model, e.g. for ``karras_sigmas(N, *sigma_range(p))``."""
    ends = jnp.asarray([process.t_data, process.t_noise], jnp.float32)
    sigma = np.exp(-0.5 * np.asarray(process.log_snr_at(ends), np.float64))
    return float(sigma[0]), float(sigma[1])


def _x0_of(denoise, x, sigma):
    return denoise(x, sigma)[1]


def process_denoiser(
    model_fn: Callable, process, *, prediction: str = "eps", clip_denoised: bool = False
) -> Callable:
    """A model trained on any Gaussian process x_t = alpha(t) x_0 + sigma(t) eps as EDM's
    denoiser (Karras et al. 2022, Sec. 3, eq. 4 with s = alpha, and Table 1: the VP column for a
    DDPM schedule or VDM's process, the VE column for :class:`~jaxdiff.processes.VE`):

    .. math:: D(y; \\sigma) = \\hat x_0\\big(\\alpha(t) y, t\\big), \\quad
        t = \\lambda^{-1}(-2 \\ln \\sigma),

    on the scaled state y = x / alpha at the level sigma = sigma(t) / alpha(t) = exp(-lambda / 2),
    with x_0-hat read from the network's output (eps, x_0 or v). For an eps-model this is
    D(y; sigma) = y - sigma eps(alpha y, t): Table 1's c_skip = 1, c_out = -sigma, c_in = alpha
    (1 / sqrt(1 + sigma^2) for a VP process) and c_noise = the process's model time of t (the
    real timestep (M - 1) sigma^{-1}(sigma) for a DDPM schedule, interpolated between the
    integers). The model is called with a float t ``[B]``.

    A chain started from the process's x at t_noise scaled by 1 / alpha -- for DDPM
    ``x_T * sqrt(1 + sigma_max^2)`` -- ends on the data at sigma = 0, where y = x.

    Args:
      model_fn: ``model_fn(x_t, t) -> output`` of the model trained on ``process``.
      process: its process (:class:`~jaxdiff.schedules.Schedule` or one of
        :mod:`jaxdiff.processes`); read the model inside :func:`sigma_range`.
      prediction: what the model predicts: eps | x0 | v | velocity | score.
      clip_denoised: clip the x_0 estimate to [-1, 1].

    Returns:
      ``denoiser_fn(y, sigma) -> [B, ...]`` (:func:`~jaxdiff.samplers._denoise.scaled_denoiser`) (a :class:`~jaxdiff._compile.PytreeFn`: the
      model's bound arrays and the process's are arguments of the samplers' compiled programs).
    """
    _checks.one_of("prediction", prediction, PREDICTIONS)
    denoise = model_denoiser(model_fn, process, prediction=prediction, clip_denoised=clip_denoised)
    return PytreeFn(_x0_of, (scaled_denoiser(denoise, process),))


def _ve_denoise(score_fn, x, sigma):
    sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), x.shape[:1])
    return x0_from_score_sigma(x, sigma, score_fn(x, sigma))


def ve_denoiser(score_fn: Callable) -> Callable:
    """An NCSN score model s(x, sigma) (Song & Ermon 2019) as EDM's denoiser (Karras et al.
    2022, Table 1, VE column: c_skip = 1, c_out = sigma, the network output being sigma times
    the score), by Tweedie's formula D(x; sigma) = x + sigma^2 s(x, sigma).

    Returns:
      ``denoiser_fn(x, sigma) -> [B, ...]``; read it within the levels the model was trained on.
    """
    return PytreeFn(_ve_denoise, (as_pytree_fn(score_fn),))
