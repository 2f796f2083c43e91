"""The variational bound of Ho et al. (2020), eq. 5, term by term.

    L = L_T + sum_{t>1} L_{t-1} + L_0
    L_T     = KL(q(x_T | x_0) || p(x_T))                                   -> prior_bpd
    L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t))          -> vb_terms_bpd, t > 0
    L_0     = -log p_theta(x_0 | x_1), discretised to 256 bins (eq. 13)     -> vb_terms_bpd, t = 0

``nll_bpd`` evaluates every term; ``stratified_nll_bpd`` estimates the sum of L_{t-1} from a
few stratified timesteps (cheap enough to watch a validation bound during training).

Elementwise functions are in nats; functions named ``_bpd`` return bits per dimension (the
mean over all non-batch axes, divided by log 2), per example.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import log_ndtr

from jaxdiff import _checks
from jaxdiff._compile import compiled
from jaxdiff.diffusion import p_mean_variance, q_mean_variance, q_posterior, q_sample
from jaxdiff.schedules import Schedule

__all__ = [
    "normal_kl",
    "discretized_gaussian_log_likelihood",
    "mean_flat",
    "mean_flat_bits",
    "prior_bpd",
    "vb_terms_bpd",
    "nll_bpd",
    "stratified_nll_bpd",
]

_HALF_BIN = 1.0 / 255.0  # data in [-1, 1] with 256 levels: bins of width 2/255


def normal_kl(mean1, logvar1, mean2, logvar2) -> jnp.ndarray:
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise, in nats:

    .. math:: \\tfrac12\\left(-1 + \\log\\sigma_2^2 - \\log\\sigma_1^2
        + \\frac{\\sigma_1^2 + (\\mu_1 - \\mu_2)^2}{\\sigma_2^2}\\right)
    """
    return 0.5 * (
        -1.0
        + logvar2
        - logvar1
        + jnp.exp(logvar1 - logvar2)
        + (mean1 - mean2) ** 2 * jnp.exp(-logvar2)
    )


def _log_normal_interval(lo, hi) -> jnp.ndarray:
    """log(Phi(hi) - Phi(lo)) for lo < hi, stable in both tails.

    An interval in the upper tail is reflected to the lower one (Phi(hi) - Phi(lo) =
    Phi(-lo) - Phi(-hi)), where log Phi is accurate; then
    log(Phi(b) - Phi(a)) = log Phi(b) + log(1 - exp(log Phi(a) - log Phi(b))).
    """
    upper = lo > 0
    a = jnp.where(upper, -hi, lo)
    b = jnp.where(upper, -lo, hi)
    log_b = log_ndtr(b)
    diff = jnp.minimum(log_ndtr(a) - log_b, -1e-30)
    return log_b + jnp.log(-jnp.expm1(diff))


def discretized_gaussian_log_likelihood(x, mean, log_scale) -> jnp.ndarray:
    """log p(x) of 8-bit data under a Gaussian discretised to 256 bins on [-1, 1]
    (Ho et al. 2020, eq. 13), elementwise, in nats.

    Bin i covers [x - 1/255, x + 1/255]; the outer bins extend to -inf and +inf. The
    probabilities of the 256 bins sum to one. Computed with log Phi (``log_ndtr``), so it is
    finite far in the tails.

    Args:
      x: data in [-1, 1] on the 256-level grid (2 k / 255 - 1).
      mean: mean of the Gaussian (broadcastable to x).
      log_scale: log standard deviation (broadcastable to x).
    """
    inv_std = jnp.exp(-log_scale)
    lo = (x - mean - _HALF_BIN) * inv_std
    hi = (x - mean + _HALF_BIN) * inv_std
    return jnp.where(
        x < -0.999,
        log_ndtr(hi),
        jnp.where(x > 0.999, log_ndtr(-lo), _log_normal_interval(lo, hi)),
    )


def mean_flat(x: jnp.ndarray) -> jnp.ndarray:
    """Mean over all non-batch axes: ``[B, ...] -> [B]``."""
    return jnp.mean(x, axis=tuple(range(1, x.ndim)))


def mean_flat_bits(nats: jnp.ndarray) -> jnp.ndarray:
    """Mean over all non-batch axes, converted from nats to bits: ``[B, ...] -> [B]``."""
    return mean_flat(nats) / math.log(2.0)


def prior_bpd(schedule: Schedule, x0: jnp.ndarray) -> jnp.ndarray:
    """L_T = KL(q(x_T | x_0) || N(0, I)) in bits/dim (Ho et al. 2020, eq. 5).

    Args:
      schedule: the noise schedule; x0: ``[B, ...]`` data in [-1, 1].

    Returns:
      ``[B]`` bits per dimension.
    """
    _checks.batched("x0", x0)
    t = jnp.full((x0.shape[0],), schedule.num_timesteps - 1, dtype=jnp.int32)
    mean, _, log_var = q_mean_variance(schedule, x0, t)
    return mean_flat_bits(normal_kl(mean, log_var, 0.0, 0.0))


def vb_terms_bpd(
    schedule: Schedule,
    model_output: jnp.ndarray,
    x0: jnp.ndarray,
    x_t: jnp.ndarray,
    t: jnp.ndarray,
    *,
    variance: str = "fixed_small",
    prediction: str = "eps",
    clip_denoised: bool = True,
) -> jnp.ndarray:
    """The terms L_{t-1} (t > 0) and L_0 (t = 0) of the bound, in bits/dim (Ho et al. 2020,
    eqs. 5 and 13).

    L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)); at t = 0 the decoder term
    L_0 = -log p(x_0 | x_1) with the discretised Gaussian of eq. 13.

    Args:
      schedule: the noise schedule.
      model_output: ``[B, ..., C]`` (``[B, ..., 2C]`` for learned variances), the network's
        output at ``(x_t, t)``.
      x0: ``[B, ..., C]`` the data in [-1, 1] (on the 8-bit grid for L_0 to be a likelihood).
      x_t: ``[B, ..., C]`` a sample of q(x_t | x_0).
      t: ``[B]`` timesteps.
      variance, prediction, clip_denoised: as in :func:`jaxdiff.diffusion.p_mean_variance`.

    Returns:
      ``[B]`` bits per dimension.
    """
    _checks.same_shape("x0", x0, "x_t", x_t)
    p = p_mean_variance(
        schedule,
        model_output,
        x_t,
        t,
        variance=variance,
        prediction=prediction,
        clip_denoised=clip_denoised,
    )
    true_mean, _, true_log_var = q_posterior(schedule, x0, x_t, t)
    kl = mean_flat_bits(normal_kl(true_mean, true_log_var, p.mean, p.log_variance))
    decoder_nll = -mean_flat_bits(
        discretized_gaussian_log_likelihood(x0, p.mean, 0.5 * p.log_variance)
    )
    return jnp.where(t == 0, decoder_nll, kl)


def nll_bpd(
    model_fn,
    schedule: Schedule,
    x0: jnp.ndarray,
    rng: jax.Array,
    *,
    variance: str = "fixed_small",
    prediction: str = "eps",
    clip_denoised: bool = True,
) -> dict[str, jnp.ndarray]:
    """The complete variational bound on -log p(x_0) in bits/dim, every term (Ho et al. 2020,
    eq. 5; the table of bits/dim in their Sec. 4.2).

    Evaluates L_{t-1} at every t with a ``lax.scan`` over t, so only one model output is alive
    at a time: T = 1000 runs on a batch in the memory of a single forward pass.

    Args:
      model_fn: ``model_fn(x_t, t) -> output``; called with the schedule's model timesteps.
      schedule: the noise schedule the model was trained with.
      x0: ``[B, ...]`` data in [-1, 1] on the 8-bit grid.
      rng: key for the forward-process noise (fresh noise at every t).
      variance, prediction, clip_denoised: as in :func:`jaxdiff.diffusion.p_mean_variance`.

    Returns:
      dict with ``total`` [B], ``prior`` [B] (L_T), ``vb`` [B, T] (``vb[:, t]`` is L_{t-1}
      for t > 0 and L_0 at t = 0), ``decoder`` [B] (L_0) and ``diffusion`` [B] (the sum of
      L_{t-1} for t > 0); ``total = prior + decoder + diffusion``.
    """
    _checks.batched("x0", x0)
    return _nll_bpd(
        model_fn,
        schedule,
        jnp.asarray(x0),
        rng,
        variance=variance,
        prediction=prediction,
        clip_denoised=clip_denoised,
    )


@compiled(static_argnames=("variance", "prediction", "clip_denoised"))
def _nll_bpd(model_fn, schedule, x0, rng, *, variance, prediction, clip_denoised):
    batch = x0.shape[0]

    def term(t_index):
        t = jnp.full((batch,), t_index, dtype=jnp.int32)
        noise = jax.random.normal(jax.random.fold_in(rng, t_index), x0.shape, x0.dtype)
        x_t = q_sample(schedule, x0, t, noise)
        out = model_fn(x_t, schedule.timesteps[t])
        return vb_terms_bpd(
            schedule,
            out,
            x0,
            x_t,
            t,
            variance=variance,
            prediction=prediction,
            clip_denoised=clip_denoised,
        )

    vb = jax.lax.map(term, jnp.arange(schedule.num_timesteps)).T  # [B, T]
    prior = prior_bpd(schedule, x0)
    decoder, diffusion = vb[:, 0], jnp.sum(vb[:, 1:], axis=1)
    return dict(
        total=prior + decoder + diffusion,
        prior=prior,
        vb=vb,
        decoder=decoder,
        diffusion=diffusion,
    )


def stratified_nll_bpd(
    model_fn,
    schedule: Schedule,
    x0: jnp.ndarray,
    rng: jax.Array,
    *,
    num_timesteps: int,
    variance: str = "fixed_small",
    prediction: str = "eps",
    clip_denoised: bool = True,
) -> dict[str, jnp.ndarray]:
    """An unbiased estimate of the bound of :func:`nll_bpd` from ``K = num_timesteps`` model
    calls besides L_0: L_T and L_0 exactly, and the sum of L_{t-1} over t = 1, ..., T-1 by
    stratified sampling,

    .. math:: \\sum_{t=1}^{T-1} L_{t-1} \\approx \\frac{T-1}{K} \\sum_{k=0}^{K-1} L_{t_k - 1},
        \\qquad t_k = 1 + \\lfloor (k + u_k)(T-1)/K \\rfloor,\\; u_k \\sim U[0, 1),

    (each t is hit with probability K/(T-1) in total, so the estimate is unbiased; with K =
    T - 1 every t is hit once). Each example draws its own offsets u_k, so the error of the
    strata averages out over a batch. The same ``rng`` gives the same timesteps and noise, so
    two models compared on one key share their randomness.

    Args:
      model_fn, schedule, x0, variance, prediction, clip_denoised: as in :func:`nll_bpd`.
      rng: key for the strata offsets and the forward-process noise.
      num_timesteps: K, at most T - 1 (static).

    Returns:
      dict with ``total``, ``prior``, ``decoder`` and ``diffusion`` (the estimate), each [B].
    """
    _checks.batched("x0", x0)
    _checks.positive_int("num_timesteps", num_timesteps)
    if num_timesteps > schedule.num_timesteps - 1:
        raise ValueError(
            f"num_timesteps must be at most T - 1 = {schedule.num_timesteps - 1}, "
            f"got {num_timesteps}"
        )
    return _stratified_nll_bpd(
        model_fn,
        schedule,
        jnp.asarray(x0),
        rng,
        num_timesteps=num_timesteps,
        variance=variance,
        prediction=prediction,
        clip_denoised=clip_denoised,
    )


@compiled(static_argnames=("num_timesteps", "variance", "prediction", "clip_denoised"))
def _stratified_nll_bpd(
    model_fn, schedule, x0, rng, *, num_timesteps, variance, prediction, clip_denoised
):
    batch, span = x0.shape[0], schedule.num_timesteps - 1
    offset_key, noise_key = jax.random.split(rng)
    offsets = jax.random.uniform(offset_key, (num_timesteps, batch))  # per example and stratum
    strata = jnp.arange(num_timesteps)[:, None] + offsets
    strata_t = 1 + jnp.floor(strata * span / num_timesteps).astype(jnp.int32)
    times = jnp.concatenate([jnp.zeros((1, batch), jnp.int32), strata_t])  # [1 + K, B]: L_0 first

    def term(index):
        t = times[index]
        noise = jax.random.normal(jax.random.fold_in(noise_key, index), x0.shape, x0.dtype)
        x_t = q_sample(schedule, x0, t, noise)
        out = model_fn(x_t, schedule.timesteps[t])
        return vb_terms_bpd(
            schedule, out, x0, x_t, t, variance=variance, prediction=prediction,
            clip_denoised=clip_denoised,
        )

    vb = jax.lax.map(term, jnp.arange(num_timesteps + 1)).T  # [B, 1 + K]: L_0, then the strata
    prior = prior_bpd(schedule, x0)
    decoder = vb[:, 0]
    diffusion = (span / num_timesteps) * jnp.sum(vb[:, 1:], axis=1)
    total = prior + decoder + diffusion
    return dict(total=total, prior=prior, decoder=decoder, diffusion=diffusion)
