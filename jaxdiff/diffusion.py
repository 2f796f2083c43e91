"""The forward (noising) process q and the parametrisations of the reverse process.

Discrete time follows Ho et al. (2020) with 0-based ``t`` ([B] int32); noise levels ``sigma``
follow Song & Ermon (2019). Arrays are NHWC (any ``[B, ...]`` shape works); per-timestep
coefficients broadcast over all non-batch axes.

The one place that turns a raw network output into the Gaussian p(x_{t-1} | x_t) is
:func:`p_mean_variance`; the bound, the losses and the samplers all call it.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from jaxdiff import _checks, parametrize
from jaxdiff.parametrize import eps_from_x0 as eps_from_x0
from jaxdiff.parametrize import eps_x0_from_output as eps_x0_from_output
from jaxdiff.parametrize import eps_x0_from_v as eps_x0_from_v
from jaxdiff.parametrize import v_from_eps_x0 as v_from_eps_x0
from jaxdiff.parametrize import x0_from_eps as x0_from_eps
from jaxdiff.parametrize import x0_from_posterior_mean as x0_from_posterior_mean
from jaxdiff.schedules import Schedule

__all__ = [
    "PREDICTIONS",
    "PATH_PREDICTIONS",
    "VARIANCES",
    "q_sample",
    "q_mean_variance",
    "q_posterior",
    "predict_x0_from_eps",
    "predict_eps_from_x0",
    "v_from_x0_eps",
    "predict_x0_from_v",
    "predict_eps_from_v",
    "score_from_eps",
    "eps_from_score",
    "predict_eps_and_x0",
    "training_target",
    "PMeanVariance",
    "p_mean_variance",
    "split_learned_variance",
    "perturb_sigma",
    "x0_from_score_sigma",
]
# Also importable here, for the code written before :mod:`jaxdiff.parametrize`: ``extract``,
# the (alpha, sigma) conversions ``x0_from_eps``, ``eps_from_x0``, ``v_from_eps_x0``,
# ``eps_x0_from_v``, ``eps_x0_from_output``, ``x0_from_posterior_mean``, and the sigma forms
# ``score_from_eps_sigma``, ``eps_from_score_sigma``.

PREDICTIONS = ("eps", "x0", "v", "mean")
# What a network can predict at any point of a path; "mean" (the posterior mean of
# p(x_{t-1} | x_t), Ho et al. 2020, Sec. 3.2) only on a discrete schedule's steps.
PATH_PREDICTIONS = ("eps", "x0", "v")
VARIANCES = ("fixed_small", "fixed_large", "learned", "learned_range")


def extract(values: jnp.ndarray, t: jnp.ndarray, ndim: int) -> jnp.ndarray:
    """Gathers ``values[t]`` ([T] -> [B]) and reshapes it to ``[B, 1, ..., 1]`` of rank ``ndim``."""
    out = jnp.take(values, t, axis=0)
    return out.reshape(out.shape + (1,) * (ndim - 1))


def _alpha_sigma(schedule: Schedule, t, ndim: int):
    """sqrt(abar_t) and sqrt(1 - abar_t), gathered to ``[B, 1, ...]`` of rank ``ndim``."""
    return (
        extract(schedule.sqrt_alphas_cumprod, t, ndim),
        extract(schedule.sqrt_one_minus_alphas_cumprod, t, ndim),
    )


def _check_xt(schedule: Schedule, x, t, name: str = "x_t") -> None:
    _checks.batched(name, x)
    _checks.timesteps(t, batch=x.shape[0], num_timesteps=schedule.num_timesteps)


# --- the forward process q -------------------------------------------------------------------


def q_sample(schedule: Schedule, x0: jnp.ndarray, t: jnp.ndarray, noise: jnp.ndarray) -> jnp.ndarray:
    """Samples x_t ~ q(x_t | x_0) by reparametrisation (Ho et al. 2020, eq. 4):

    .. math:: x_t = \\sqrt{\\bar\\alpha_t} x_0 + \\sqrt{1 - \\bar\\alpha_t} \\epsilon

    Args:
      schedule: the noise schedule.
      x0: ``[B, ...]`` clean data.
      t: ``[B]`` int 0-based timesteps.
      noise: ``[B, ...]`` standard normal noise epsilon.

    Returns:
      ``[B, ...]`` x_t.
    """
    _check_xt(schedule, x0, t, "x0")
    _checks.same_shape("x0", x0, "noise", noise)
    return (
        extract(schedule.sqrt_alphas_cumprod, t, x0.ndim) * x0
        + extract(schedule.sqrt_one_minus_alphas_cumprod, t, x0.ndim) * noise
    )


def q_mean_variance(schedule: Schedule, x0: jnp.ndarray, t: jnp.ndarray):
    """Mean, variance and log variance of q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)
    (Ho et al. 2020, eq. 4). Variances broadcast as ``[B, 1, ..., 1]``."""
    _check_xt(schedule, x0, t, "x0")
    mean = extract(schedule.sqrt_alphas_cumprod, t, x0.ndim) * x0
    variance = 1.0 - extract(schedule.alphas_cumprod, t, x0.ndim)
    log_variance = extract(schedule.log_one_minus_alphas_cumprod, t, x0.ndim)
    return mean, variance, log_variance


def q_posterior(schedule: Schedule, x0: jnp.ndarray, x_t: jnp.ndarray, t: jnp.ndarray):
    """The forward-process posterior q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I)
    (Ho et al. 2020, eqs. 6-7):

    .. math::
        \\tilde\\mu_t = \\frac{\\sqrt{\\bar\\alpha_{t-1}}\\beta_t}{1-\\bar\\alpha_t} x_0
          + \\frac{\\sqrt{\\alpha_t}(1-\\bar\\alpha_{t-1})}{1-\\bar\\alpha_t} x_t,
        \\qquad \\tilde\\beta_t = \\frac{1-\\bar\\alpha_{t-1}}{1-\\bar\\alpha_t}\\beta_t

    Returns:
      ``(mean [B, ...], variance [B, 1, ...], log_variance_clipped [B, 1, ...])``; the log
      variance at t = 0 (where beta~ = 0) is clipped to that of t = 1.
    """
    _check_xt(schedule, x_t, t)
    _checks.same_shape("x0", x0, "x_t", x_t)
    nd = x_t.ndim
    mean = extract(schedule.posterior_mean_coef1, t, nd) * x0 + extract(
        schedule.posterior_mean_coef2, t, nd
    ) * x_t
    variance = extract(schedule.posterior_variance, t, nd)
    log_variance = extract(schedule.posterior_log_variance_clipped, t, nd)
    return mean, variance, log_variance


# --- the conversions on a schedule's steps: thin forms of :mod:`jaxdiff.parametrize` ----------


def predict_x0_from_eps(schedule: Schedule, x_t, t, eps) -> jnp.ndarray:
    """x_0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t) (Ho et al. 2020, eq. 4 solved for x_0)."""
    return x0_from_eps(x_t, eps, *_alpha_sigma(schedule, t, x_t.ndim))


def predict_eps_from_x0(schedule: Schedule, x_t, t, x0) -> jnp.ndarray:
    """eps = (x_t - sqrt(abar_t) x_0) / sqrt(1 - abar_t) (Ho et al. 2020, eq. 4 solved for eps)."""
    return eps_from_x0(x_t, x0, *_alpha_sigma(schedule, t, x_t.ndim))


def v_from_x0_eps(schedule: Schedule, x0, t, eps) -> jnp.ndarray:
    """The velocity v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0 (Salimans & Ho 2022, Sec. 4)."""
    return v_from_eps_x0(eps, x0, *_alpha_sigma(schedule, t, x0.ndim))


def predict_x0_from_v(schedule: Schedule, x_t, t, v) -> jnp.ndarray:
    """x_0 = sqrt(abar_t) x_t - sqrt(1 - abar_t) v (Salimans & Ho 2022, Sec. 4)."""
    return eps_x0_from_v(x_t, v, *_alpha_sigma(schedule, t, x_t.ndim))[1]


def predict_eps_from_v(schedule: Schedule, x_t, t, v) -> jnp.ndarray:
    """eps = sqrt(1 - abar_t) x_t + sqrt(abar_t) v (Salimans & Ho 2022, Sec. 4)."""
    return eps_x0_from_v(x_t, v, *_alpha_sigma(schedule, t, x_t.ndim))[0]


def score_from_eps(schedule: Schedule, t, eps) -> jnp.ndarray:
    """grad_x log q(x_t) ~= -eps / sqrt(1 - abar_t) (Song et al. 2021, Sec. 3.3 / Vincent 2011)."""
    return parametrize.score_from_eps(eps, _alpha_sigma(schedule, t, eps.ndim)[1])


def eps_from_score(schedule: Schedule, t, score) -> jnp.ndarray:
    """eps = -sqrt(1 - abar_t) * score, the inverse of :func:`score_from_eps`."""
    return parametrize.eps_from_score(score, _alpha_sigma(schedule, t, score.ndim)[1])


def predict_eps_and_x0(
    schedule: Schedule, x_t, t, model_output, *, prediction: str = "eps", clip_denoised: bool = False
):
    """Reads a network output as both eps and x_0, for any prediction type.

    With ``clip_denoised`` the x_0 estimate is clipped to [-1, 1] and eps is recomputed from the
    clipped x_0, so that the two stay consistent with x_t (as DDIM samplers do).

    Args:
      schedule: the noise schedule.
      x_t: ``[B, ...]`` noisy input.
      t: ``[B]`` timesteps.
      model_output: ``[B, ...]`` the mean part of the network output (same shape as x_t).
      prediction: what the network predicts: ``"eps"``, ``"x0"``, ``"v"`` or ``"mean"`` (the
        posterior mean mu~_t of p(x_{t-1} | x_t)).
      clip_denoised: clip the x_0 estimate to the data range [-1, 1].

    Returns:
      ``(eps, x0)``, each ``[B, ...]``.
    """
    _checks.one_of("prediction", prediction, PREDICTIONS)
    return parametrize.eps_x0_from_prediction(
        model_output, x_t, schedule, t, prediction=prediction, clip_denoised=clip_denoised
    )


def training_target(schedule: Schedule, x0, t, noise, *, prediction: str = "eps") -> jnp.ndarray:
    """The regression target of the simple loss for a prediction type: eps (Ho et al. 2020,
    eq. 14), x_0, v (Salimans & Ho 2022, Sec. 4), or the posterior mean mu~_t(x_t, x_0) (Ho
    et al. 2020, Table 2's unweighted "mu~ MSE")."""
    _checks.one_of("prediction", prediction, PREDICTIONS)
    x_t = q_sample(schedule, x0, t, noise)
    return parametrize.prediction_from_eps_x0(noise, x0, x_t, schedule, t, prediction=prediction)


# --- the reverse process p -------------------------------------------------------------------


class PMeanVariance(NamedTuple):
    """The Gaussian p(x_{t-1} | x_t) and the estimates it was built from."""

    mean: jnp.ndarray  # [B, ...]
    variance: jnp.ndarray  # [B, ...] or broadcastable [B, 1, ...]
    log_variance: jnp.ndarray  # like variance
    pred_x0: jnp.ndarray  # [B, ...]
    pred_eps: jnp.ndarray  # [B, ...]


def split_learned_variance(model_output, channels: int, variance: str):
    """Splits a network output into its mean part and its variance part.

    For ``learned``/``learned_range`` the network outputs ``2 * channels`` channels: the first
    half is the mean prediction, the second the variance (Nichol & Dhariwal 2021, Sec. 3.1).
    For fixed variances the output is the mean part alone and the variance part is ``None``.
    """
    _checks.one_of("variance", variance, VARIANCES)
    learned = variance in ("learned", "learned_range")
    expected = 2 * channels if learned else channels
    if model_output.shape[-1] != expected:
        raise ValueError(
            f"model output must have {expected} channels for variance={variance!r} "
            f"(x_t has {channels}), got shape {model_output.shape}"
        )
    if not learned:
        return model_output, None
    return jnp.split(model_output, 2, axis=-1)


def _learned_range_log_variance(schedule: Schedule, t, frac_output, ndim):
    """log Sigma = v log beta_t + (1 - v) log beta~_t with v = (output + 1) / 2
    (Nichol & Dhariwal 2021, eq. 15)."""
    frac = (frac_output + 1.0) / 2.0
    max_log = jnp.log(extract(schedule.betas, t, ndim))
    min_log = extract(schedule.posterior_log_variance_clipped, t, ndim)
    return frac * max_log + (1.0 - frac) * min_log


def _fixed_log_variance(schedule: Schedule, t, ndim, variance: str):
    """Ho et al. (2020), Sec. 3.2: sigma_t^2 = beta~_t ("fixed_small") or beta_t
    ("fixed_large"; at t = 0 beta~_1 is used instead of beta_1, so the decoder term of the
    bound is not needlessly wide, as in Ho et al.'s code)."""
    if variance == "fixed_small":
        return extract(schedule.posterior_log_variance_clipped, t, ndim)
    first = schedule.posterior_variance[1] if schedule.num_timesteps > 1 else schedule.betas[0]
    beta_t = extract(schedule.betas, t, ndim)
    return jnp.log(jnp.where((t == 0).reshape(beta_t.shape), first, beta_t))


def p_mean_variance(
    schedule: Schedule,
    model_output: jnp.ndarray,
    x_t: jnp.ndarray,
    t: jnp.ndarray,
    *,
    variance: str = "fixed_small",
    prediction: str = "eps",
    clip_denoised: bool = False,
) -> PMeanVariance:
    """Turns a raw network output into the reverse step p(x_{t-1} | x_t) = N(mu, Sigma).

    The mean is the posterior mean of q(x_{t-1} | x_t, x_0) evaluated at the model's x_0
    estimate (Ho et al. 2020, eqs. 7 and 11); the variance is fixed (Ho et al. 2020, Sec. 3.2)
    or learned (Nichol & Dhariwal 2021, Sec. 3.1, eq. 15).

    Args:
      schedule: the noise schedule.
      model_output: ``[B, ..., C]`` or, for learned variances, ``[B, ..., 2C]``.
      x_t: ``[B, ..., C]`` the noisy input.
      t: ``[B]`` timesteps (indices into ``schedule``).
      variance: ``"fixed_small"``, ``"fixed_large"``, ``"learned"`` (the output is log Sigma)
        or ``"learned_range"`` (the output interpolates between log beta~_t and log beta_t).
      prediction: ``"eps"``, ``"x0"`` or ``"v"``.
      clip_denoised: clip the x_0 estimate to [-1, 1] before forming the mean.

    Returns:
      A :class:`PMeanVariance`.
    """
    _check_xt(schedule, x_t, t)
    mean_output, var_output = split_learned_variance(model_output, x_t.shape[-1], variance)
    _checks.same_shape("model output (mean part)", mean_output, "x_t", x_t)
    pred_eps, pred_x0 = predict_eps_and_x0(
        schedule, x_t, t, mean_output, prediction=prediction, clip_denoised=clip_denoised
    )
    mean, _, _ = q_posterior(schedule, pred_x0, x_t, t)
    if variance == "learned":
        log_var = var_output
    elif variance == "learned_range":
        log_var = _learned_range_log_variance(schedule, t, var_output, x_t.ndim)
    else:
        log_var = _fixed_log_variance(schedule, t, x_t.ndim, variance)
    return PMeanVariance(mean, jnp.exp(log_var), log_var, pred_x0, pred_eps)


# --- noise levels sigma (NCSN / variance exploding) ------------------------------------------


def _expand_sigma(sigma, ndim):
    sigma = jnp.asarray(sigma)
    return sigma.reshape(sigma.shape + (1,) * (ndim - sigma.ndim))


def perturb_sigma(x0, sigma, noise) -> jnp.ndarray:
    """x~ = x + sigma z, the perturbation kernel of NCSN (Song & Ermon 2019, Sec. 4.2).

    Args:
      x0: ``[B, ...]`` data; sigma: ``[B]`` (or scalar) noise levels; noise: ``[B, ...]`` N(0, I).
    """
    _checks.same_shape("x0", x0, "noise", noise)
    return x0 + _expand_sigma(sigma, x0.ndim) * noise


def score_from_eps_sigma(eps, sigma) -> jnp.ndarray:
    """grad log q_sigma(x~ | x) = -(x~ - x) / sigma^2 = -eps / sigma (Song & Ermon 2019, eq. 5)."""
    return parametrize.score_from_eps(eps, _expand_sigma(sigma, eps.ndim))


def eps_from_score_sigma(score, sigma) -> jnp.ndarray:
    """eps = -sigma * score, the inverse of :func:`score_from_eps_sigma`."""
    return parametrize.eps_from_score(score, _expand_sigma(sigma, score.ndim))


def x0_from_score_sigma(x, sigma, score) -> jnp.ndarray:
    """Tweedie's formula E[x_0 | x] = x + sigma^2 grad log p_sigma(x) (Efron 2011, eq. 2.8);
    the final denoising step of Song & Ermon (2019) / Jolicoeur-Martineau et al. (2021)."""
    return x + _expand_sigma(sigma, x.ndim) ** 2 * score

