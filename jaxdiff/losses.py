"""Training losses. Each returns a per-example loss ``[B]`` and is differentiable with
``jax.grad``; average it (or weight it) outside.

One loss, :func:`denoising_loss`, trains a network on any
:class:`~jaxdiff.processes.GaussianProcess` with any prediction type
(:mod:`jaxdiff.parametrize`): the weighted squared error to its target at a drawn time. The
papers' losses are instances of it, each a process, a prediction, a weighting and a time
sampling: :func:`simple_loss` (Ho et al. 2020), :func:`edm_loss` (Karras et al. 2022),
:func:`flow_matching_loss` (Lipman et al. 2023), :func:`dsm_loss` (Song & Ermon 2019) and the
diffusion term of :func:`vdm_loss` (Kingma et al. 2021). Every loss draws its own times and
noise from the ``rng`` it is given::

    graphdef, params = nnx.split(model)           # an nnx.Module: its state is the pytree

    def loss_fn(params, x0, rng):
        model_fn = nnx.merge(graphdef, params)
        return jnp.mean(jaxdiff.losses.denoising_loss(model_fn, process, x0, rng))

Weightings are functions ``weight(process, t, prediction) -> [B]``; variants are partials,
e.g. ``functools.partial(min_snr_weight, gamma=5.0)``. Time samplings are ``"uniform"``
(the process's :meth:`~jaxdiff.processes.GaussianProcess.sample_time`), ``"logit_normal"`` or
functions ``sample(rng, batch, dtype) -> t``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxdiff import _checks, vdm
from jaxdiff.diffusion import (
    PATH_PREDICTIONS,
    PREDICTIONS,
    q_sample,
    split_learned_variance,
    training_target,
)
from jaxdiff.elbo import mean_flat as mean_flat
from jaxdiff.elbo import mean_flat_bits
from jaxdiff.elbo import vb_terms_bpd
from jaxdiff.parametrize import PREDICTIONS as ADAPTER_PREDICTIONS
from jaxdiff.parametrize import network_input, prediction_from_eps_x0
from jaxdiff.processes import EDM, GaussianProcess, LinearFlow, VELevels, VPGamma, linear_gamma
from jaxdiff.schedules import Schedule

__all__ = [
    "denoising_loss",
    "sample_timesteps",
    "snr",
    "snr_weight",
    "min_snr_weight",
    "truncated_snr_weight",
    "edm_weight",
    "simple_loss",
    "vlb_loss",
    "hybrid_loss",
    "dsm_loss",
    "edm_loss",
    "uniform_time",
    "logit_normal_time",
    "log_normal_sigma",
    "flow_matching_loss",
    "vdm_loss",
]

WeightFn = Callable[[GaussianProcess, jnp.ndarray, str], jnp.ndarray]


def sample_timesteps(rng: jax.Array, batch: int, num_timesteps: int) -> jnp.ndarray:
    """t ~ Uniform{0, ..., T-1}, ``[B]`` int32 (Ho et al. 2020, Alg. 1)."""
    return jax.random.randint(rng, (batch,), 0, num_timesteps, dtype=jnp.int32)


def _noised(schedule: Schedule, x0, rng):
    """Draws (t, eps) and returns ``(t, noise, x_t)`` for a training step."""
    _checks.batched("x0", x0)
    t_key, noise_key = jax.random.split(rng)
    t = schedule.sample_time(t_key, x0.shape[0])
    noise = jax.random.normal(noise_key, x0.shape, x0.dtype)
    return t, noise, q_sample(schedule, x0, t, noise)


# --- weightings --------------------------------------------------------------------------------


def snr(process: GaussianProcess, t: jnp.ndarray) -> jnp.ndarray:
    """SNR(t) = alpha^2 / sigma^2 (Kingma et al. 2021, eq. 2; abar_t / (1 - abar_t) on a
    schedule), ``[B]``."""
    alpha, sigma = process.alpha_sigma(t)
    return (alpha / sigma) ** 2


def _eps_mse_to(prediction: str, snr_t):
    """Factor that turns an MSE on ``prediction`` into the same error measured on x_0:
    ||x0 - x0^||^2 = ||eps - eps^||^2 / SNR = ||v - v^||^2 / (1 + SNR) (Salimans & Ho 2022)."""
    _checks.one_of("prediction", prediction, PATH_PREDICTIONS)
    return {"eps": snr_t, "x0": jnp.ones_like(snr_t), "v": 1.0 + snr_t}[prediction]


def snr_weight(process: GaussianProcess, t, prediction: str = "eps") -> jnp.ndarray:
    """Weights that make any prediction's MSE equal to the x_0-MSE scaled by SNR(t), i.e. the
    eps-MSE of Ho et al. (2020), eq. 14 (the bound's weighting up to a constant for eps)."""
    s = snr(process, t)
    return s / _eps_mse_to(prediction, s)


def min_snr_weight(process: GaussianProcess, t, prediction: str = "eps", *, gamma: float = 5.0):
    """Min-SNR-gamma weighting (Hang et al. 2023, eq. 9): the x_0-MSE weighted by
    min(SNR(t), gamma), expressed for the given prediction type."""
    s = snr(process, t)
    return jnp.minimum(s, gamma) / _eps_mse_to(prediction, s)


def truncated_snr_weight(process: GaussianProcess, t, prediction: str = "eps") -> jnp.ndarray:
    """The "truncated SNR" weighting max(SNR(t), 1) on the x_0-MSE (Salimans & Ho 2022, Sec. 4)."""
    s = snr(process, t)
    return jnp.maximum(s, 1.0) / _eps_mse_to(prediction, s)


def edm_weight(process: GaussianProcess, t, prediction: str = "x0", *, sigma_data: float = 0.5):
    """EDM's lambda(sigma) = (sigma^2 + sigma_d^2) / (sigma sigma_d)^2 on the x_0-MSE (Karras et
    al. 2022, Table 1, "Ours"), sigma = sigma(t) / alpha(t); with the ``"edm"`` prediction (the
    raw network F) the weight is 1, as lambda c_out^2 = 1."""
    _checks.one_of("prediction", prediction, ("x0", "edm"))
    if prediction == "edm":
        return jnp.ones(jnp.shape(t))
    alpha, sigma = process.alpha_sigma(t)
    sigma = sigma / alpha
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


# --- time samplings --------------------------------------------------------------------------


def uniform_time(rng: jax.Array, batch: int, dtype=jnp.float32) -> jnp.ndarray:
    """t ~ U(0, 1), ``[B]`` (Lipman et al. 2023, eq. 23; Liu et al. 2023, eq. 1)."""
    return jax.random.uniform(rng, (batch,), dtype)


def logit_normal_time(
    rng: jax.Array, batch: int, dtype=jnp.float32, *, mean: float = 0.0, std: float = 1.0
) -> jnp.ndarray:
    """t = sigmoid(u), u ~ N(mean, std^2): the logit-normal density of Esser et al. (2024),
    eq. 19, which puts more training weight on the middle of the path (their best: mean 0, std
    1). Other parameters as ``functools.partial(logit_normal_time, mean=..., std=...)``."""
    return jax.nn.sigmoid(mean + std * jax.random.normal(rng, (batch,), dtype))


def log_normal_sigma(
    rng: jax.Array, batch: int, dtype=jnp.float32, *, p_mean: float = -1.2, p_std: float = 1.2
) -> jnp.ndarray:
    """ln sigma ~ N(P_mean, P_std^2), ``[B]``: EDM's training noise levels (Karras et al. 2022,
    Table 1, "Ours"), the time of the :class:`~jaxdiff.processes.EDM` process."""
    return jnp.exp(p_mean + p_std * jax.random.normal(rng, (batch,), dtype))


_TIME_SAMPLING = ("uniform", "logit_normal")


def _time_sampler(time_sampling, process: GaussianProcess) -> Callable:
    """``sample(rng, batch, dtype) -> t`` of a ``time_sampling`` argument on ``process``: the
    names map U and the logit-normal onto [t_data, t_noise]."""
    if isinstance(time_sampling, str):
        _checks.one_of("time_sampling", time_sampling, _TIME_SAMPLING)
        if time_sampling == "uniform":
            return lambda rng, batch, dtype: process.sample_time(rng, batch)
        lo, hi = process.t_data, process.t_noise
        return lambda rng, batch, dtype: lo + (hi - lo) * logit_normal_time(rng, batch, dtype)
    if not callable(time_sampling):
        raise TypeError(
            "time_sampling must be 'uniform', 'logit_normal' or a function "
            f"(rng, batch, dtype) -> t, got {time_sampling!r}"
        )
    return time_sampling


# --- losses ------------------------------------------------------------------------------------


def denoising_loss(
    model_fn,
    process: GaussianProcess,
    x0: jnp.ndarray,
    rng: jax.Array,
    *,
    prediction: str = "eps",
    weighting: WeightFn | None = None,
    time_sampling="uniform",
    sigma_data: float = 0.5,
) -> jnp.ndarray:
    """The denoising loss on any Gaussian process: the squared error of the network's output to
    its target at x_t = alpha(t) x_0 + sigma(t) eps, averaged over dimensions and weighted,

    .. math:: L = w(t)\\, \\| \\mathrm{target}(x_0, \\epsilon, t)
        - f_\\theta(x_t, \\mathrm{model\\_time}(t)) \\|^2 / D,
        \\quad t \\sim p(t),\\ \\epsilon \\sim \\mathcal N(0, I)

    (Ho et al. 2020, eq. 14, on any process and prediction; the target is
    :func:`~jaxdiff.parametrize.prediction_from_eps_x0`). The network is called as
    :func:`~jaxdiff.parametrize.network_input` says: with the process's model time (int32 on a
    :class:`~jaxdiff.schedules.Schedule`), or EDM's c_in x and c_noise for ``"edm"``.

    Args:
      model_fn: ``model_fn(x_t, time) -> [B, ..., C]`` (a learned-variance output of 2C
        channels is allowed; its variance half is ignored).
      process: the :class:`~jaxdiff.processes.GaussianProcess`.
      x0: ``[B, ..., C]`` data.
      rng: key for t and the noise.
      prediction: what the network predicts (:data:`jaxdiff.parametrize.PREDICTIONS`: eps, x0,
        v, velocity, score, edm, mean).
      weighting: ``weight(process, t, prediction) -> [B]``, or None for w = 1.
      time_sampling: ``"uniform"`` (t ~ U(t_data, t_noise), uniform integers on a schedule:
        :meth:`~jaxdiff.processes.GaussianProcess.sample_time`), ``"logit_normal"`` (Esser et
        al. 2024, mapped onto [t_data, t_noise]) or ``sample(rng, batch, dtype) -> t [B]``.
      sigma_data: sigma_d of the ``"edm"`` prediction.

    Returns:
      ``[B]`` losses.
    """
    _checks.batched("x0", x0)
    _checks.one_of("prediction", prediction, ADAPTER_PREDICTIONS)
    sample = _time_sampler(time_sampling, process)
    t_key, noise_key = jax.random.split(rng)
    t = sample(t_key, x0.shape[0], x0.dtype)
    noise = jax.random.normal(noise_key, x0.shape, x0.dtype)
    x_t = process.perturb(x0, t, noise)
    out = model_fn(*network_input(x_t, process, t, prediction=prediction, sigma_data=sigma_data))
    if out.shape[-1] == 2 * x0.shape[-1]:
        out = jnp.split(out, 2, axis=-1)[0]
    _checks.same_shape("model output", out, "x0", x0)
    target = prediction_from_eps_x0(
        noise, x0, x_t, process, t, prediction=prediction, sigma_data=sigma_data
    )
    loss = mean_flat((target - out) ** 2)
    if weighting is not None:
        loss = loss * weighting(process, t, prediction)
    return loss


def simple_loss(
    model_fn,
    schedule: Schedule,
    x0: jnp.ndarray,
    rng: jax.Array,
    *,
    prediction: str = "eps",
    weighting: WeightFn | None = None,
) -> jnp.ndarray:
    """L_simple (Ho et al. 2020, eq. 14): the MSE between the network output and its target
    (eps, x_0, v or the posterior mean), at t ~ U{0..T-1}, optionally weighted per timestep:
    :func:`denoising_loss` on the schedule.

    .. math:: L = w(t)\\, \\| \\mathrm{target} - f_\\theta(x_t, t) \\|^2 / D

    Args:
      model_fn: ``model_fn(x_t, t) -> [B, ..., C]``, t int32 (a learned-variance output of 2C
        channels is allowed; its variance half is ignored).
      schedule: the noise schedule.
      x0: ``[B, ..., C]`` data in [-1, 1].
      rng: key for t and the noise.
      prediction: ``"eps"``, ``"x0"``, ``"v"`` or ``"mean"`` (the posterior mean mu~_t).
      weighting: ``weight(schedule, t, prediction) -> [B]``, or None for uniform weights.

    Returns:
      ``[B]`` losses.
    """
    _checks.one_of("prediction", prediction, PREDICTIONS)
    return denoising_loss(model_fn, schedule, x0, rng, prediction=prediction, weighting=weighting)


def vlb_loss(
    model_fn,
    schedule: Schedule,
    x0: jnp.ndarray,
    rng: jax.Array,
    *,
    prediction: str = "eps",
    variance: str = "learned_range",
) -> jnp.ndarray:
    """L_vlb = sum_t L_t estimated by one uniformly drawn t: T * L_t in bits/dim (Nichol &
    Dhariwal 2021, Sec. 3.1; the terms are those of Ho et al. 2020, eq. 5, without L_T,
    which has no parameters). Unbiased for the bound minus L_T."""
    t, _, x_t = _noised(schedule, x0, rng)
    out = model_fn(x_t, schedule.timesteps[t])
    return _vlb_estimate(schedule, out, x0, x_t, t, variance=variance, prediction=prediction)


def _vlb_estimate(schedule, model_output, x0, x_t, t, *, variance, prediction):
    """T * L_t: the one-sample estimate of sum_t L_t at a uniformly drawn t."""
    terms = vb_terms_bpd(
        schedule, model_output, x0, x_t, t, variance=variance, prediction=prediction,
        clip_denoised=False,
    )
    return schedule.num_timesteps * terms


def hybrid_loss(
    model_fn,
    schedule: Schedule,
    x0: jnp.ndarray,
    rng: jax.Array,
    *,
    prediction: str = "eps",
    variance: str = "learned_range",
    vlb_weight: float = 0.001,
) -> jnp.ndarray:
    """L_hybrid = L_simple + lambda L_vlb (Nichol & Dhariwal 2021, eq. 16, lambda = 0.001).

    The mean's gradient is stopped in the L_vlb term, so L_vlb trains only the variance and
    L_simple only the mean (their Sec. 3.1). Both terms share one draw of (t, eps) and one
    forward pass.
    """
    _checks.one_of("prediction", prediction, PREDICTIONS)
    t, noise, x_t = _noised(schedule, x0, rng)
    out = model_fn(x_t, schedule.timesteps[t])
    mean_out, var_out = split_learned_variance(out, x0.shape[-1], variance)
    target = training_target(schedule, x0, t, noise, prediction=prediction)
    mse = mean_flat((target - mean_out) ** 2)
    if var_out is None:  # a fixed variance has nothing for L_vlb to train
        return mse
    frozen = jnp.concatenate([jax.lax.stop_gradient(mean_out), var_out], axis=-1)
    vlb = _vlb_estimate(schedule, frozen, x0, x_t, t, variance=variance, prediction=prediction)
    return mse + vlb_weight * vlb


def dsm_loss(score_fn, sigmas: jnp.ndarray, x0: jnp.ndarray, rng: jax.Array) -> jnp.ndarray:
    """NCSN's denoising score matching loss with lambda(sigma) = sigma^2 (Song & Ermon 2019,
    eqs. 5-6), at one noise level drawn uniformly from ``sigmas`` per example:

    .. math:: \\tfrac12 \\sigma^2 \\| s_\\theta(\\tilde x, \\sigma) + (\\tilde x - x)/\\sigma^2 \\|^2
        = \\tfrac12 \\| \\sigma s_\\theta(\\tilde x, \\sigma) + z \\|^2,
        \\quad \\tilde x = x + \\sigma z

    (summed over dimensions, as in the paper).

    Args:
      score_fn: ``score_fn(x, sigma) -> [B, ...]`` with sigma ``[B]``.
      sigmas: ``[L]`` noise levels.
      x0: ``[B, ...]`` data.
      rng: key for the noise level and the noise.

    Returns:
      ``[B]`` losses.
    """
    _checks.batched("x0", x0)
    sigmas = jnp.asarray(sigmas)
    if sigmas.ndim != 1 or sigmas.shape[0] < 1:
        raise ValueError(f"sigmas must be a non-empty 1-D array, got shape {sigmas.shape}")
    dims = x0[0].size  # the paper sums over dimensions; denoising_loss averages
    loss = denoising_loss(
        score_fn, VELevels(sigmas), x0, rng, prediction="score", weighting=_dsm_weight
    )
    return dims * loss


def _dsm_weight(process: GaussianProcess, t, prediction: str):
    """lambda(sigma) / 2 = sigma^2 / 2 (Song & Ermon 2019, eq. 6 and Sec. 4.2)."""
    return 0.5 * process.alpha_sigma(t)[1] ** 2


def edm_loss(
    denoiser_fn,
    x0: jnp.ndarray,
    rng: jax.Array,
    *,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    sigma_data: float = 0.5,
) -> jnp.ndarray:
    """EDM's training loss (Karras et al. 2022, eq. 8 with Table 1's "Ours" column):

    .. math:: \\lambda(\\sigma)\\, \\| D_\\theta(x_0 + \\sigma n; \\sigma) - x_0 \\|^2 / D,
        \\quad \\ln \\sigma \\sim \\mathcal N(P_{mean}, P_{std}^2),\
        \\lambda(\\sigma) = \\frac{\\sigma^2 + \\sigma_d^2}{(\\sigma \\sigma_d)^2}

    (the mean over dimensions, as :func:`simple_loss`). With :func:`~jaxdiff.models.
    edm_precondition`'s denoiser, lambda c_out^2 = 1: the raw network's target has unit weight.

    Args:
      denoiser_fn: ``denoiser_fn(x, sigma) -> [B, ...]``, sigma a float ``[B]``.
      x0: ``[B, ...]`` data.
      rng: key for sigma and the noise.
      p_mean, p_std: the log-normal distribution of sigma.
      sigma_data: sigma_d of the weighting.

    Returns:
      ``[B]`` losses.
    """
    _checks.batched("x0", x0)
    if not (p_std >= 0 and sigma_data > 0):
        raise ValueError(f"need p_std >= 0 and sigma_data > 0, got p_std={p_std}, sigma_data={sigma_data}")
    return denoising_loss(
        denoiser_fn,
        EDM(),
        x0,
        rng,
        prediction="x0",
        weighting=functools.partial(edm_weight, sigma_data=sigma_data),
        time_sampling=functools.partial(log_normal_sigma, p_mean=p_mean, p_std=p_std),
    )


def flow_matching_loss(
    velocity_fn, x0: jnp.ndarray, rng: jax.Array, *, time_sampling="uniform"
) -> jnp.ndarray:
    """Conditional flow matching on the linear path (Lipman et al. 2023, eqs. 9 and 23 with
    sigma_min = 0; rectified flow, Liu et al. 2023, eq. 1), noise at t = 1:

    .. math:: x_t = (1 - t)\\, x_0 + t\\, \\epsilon,\\quad
        L = \\| v_\\theta(x_t, t) - (\\epsilon - x_0) \\|^2 / D

    (the mean over dimensions). Its minimiser is v*(x, t) = E[eps - x_0 | x_t = x], the velocity
    of a flow whose marginals are those of the path.

    Args:
      velocity_fn: ``velocity_fn(x_t, t) -> [B, ...]``, t a float ``[B]`` in [0, 1].
      x0: ``[B, ...]`` data.
      rng: key for t and the noise.
      time_sampling: ``"uniform"`` (:func:`uniform_time`), ``"logit_normal"``
        (:func:`logit_normal_time`), or any ``sample(rng, batch, dtype) -> t [B]``.

    Returns:
      ``[B]`` losses.
    """
    if time_sampling == "uniform":
        time_sampling = uniform_time  # U(0, 1) in the data's dtype
    return denoising_loss(
        velocity_fn, LinearFlow(0.0, 1.0), x0, rng, prediction="velocity",
        time_sampling=time_sampling,
    )


def vdm_loss(
    model_fn,
    gamma_fn,
    x0: jnp.ndarray,
    rng: jax.Array,
    *,
    num_timesteps: int | None = None,
    schedule_gradient: str = "variance",
) -> dict[str, jnp.ndarray]:
    """The variational bound of a VDM (Kingma et al. 2021, eq. 11), in bits/dim per example:
    -log p(x) <= prior + diffusion + decoder, all three estimated from one draw each.

    * prior: KL(q(z_1 | x) || N(0, I)) (:func:`jaxdiff.vdm.prior_kl`), exact;
    * diffusion: the continuous-time loss L_infinity (eq. 17) at low-discrepancy times
      (:func:`jaxdiff.vdm.stratified_times`), or with ``num_timesteps=T`` the T-step loss L_T
      (eq. 13) at the steps i = ceil(T t): :func:`denoising_loss` of eps on the process in the
      schedule's normalized time u = (gamma - gamma(0)) / (gamma(1) - gamma(0)), weighted by
      gamma'(t) / 2 (resp. T expm1(gamma(t) - gamma(s)) / 2), in bits;
    * decoder: -log p(x | z_0) with the discretised decoder over the 256 values
      (:func:`jaxdiff.vdm.decoder_nll`).

    The schedule enters through its end points gamma(0), gamma(1) and its shape
    (gamma(t) - gamma(0)) / (gamma(1) - gamma(0)) at the drawn times. Gradients through the
    end points are the bound's; with ``schedule_gradient="variance"`` those through the shape
    are the gradient of the second moment of the diffusion term (the paper's Sec. 5.3:
    :func:`jaxdiff.vdm.second_moment_tap`), which trains a learned schedule's interior to
    reduce the estimator's variance; ``"bound"`` gives the bound's gradient everywhere. The
    returned values are the same either way. The network sees u, the shape at the drawn time,
    after the tap (and a :class:`~jaxdiff.vdm.VDMModel`'s categorical head the same gamma_t), so
    in continuous time the bound's expectation depends on the end points alone and the shape's
    gradient reduces the variance without biasing the bound.

    Args:
      model_fn: ``model_fn(z_t, u) -> eps_hat`` with u a float ``[B]`` in [0, 1], the
        normalized gamma (t itself for a linear schedule; :class:`~jaxdiff.vdm.VDMModel`).
      gamma_fn: the schedule gamma(t) = -log SNR(t), increasing and elementwise on float t
        (:func:`jaxdiff.vdm.linear_gamma`, a bound :class:`jaxdiff.vdm.LearnedGamma`).
      x0: ``[B, ...]`` data in [-1, 1], on the 8-bit grid for the decoder term to be a
        likelihood.
      rng: key for the times, the noise of z_t and that of z_0.
      num_timesteps: None for continuous time, T for the T-step model.
      schedule_gradient: ``"variance"`` or ``"bound"``.

    Returns:
      ``dict(total, diffusion, prior, decoder)``, each ``[B]`` bits/dim.
    """
    _checks.batched("x0", x0)
    if num_timesteps is not None:
        _checks.positive_int("num_timesteps", num_timesteps)
    _checks.one_of("schedule_gradient", schedule_gradient, ("variance", "bound"))
    t_key, eps_key, decoder_key = jax.random.split(rng, 3)
    u = vdm.stratified_times(t_key, x0.shape[0])
    gamma_0, gamma_1 = gamma_fn(jnp.zeros(())), gamma_fn(jnp.ones(()))
    span = gamma_1 - gamma_0
    if num_timesteps is None:  # the shape at t and its derivative
        gamma_t, dgamma_t = vdm.gamma_and_derivative(gamma_fn, u)
        shape = ((gamma_t - gamma_0) / span, dgamma_t / span)
    else:  # the shape at t = i / T and at s = (i - 1) / T, i in 1..T
        t = (jnp.floor(u * num_timesteps) + 1.0) / num_timesteps
        s = t - 1.0 / num_timesteps
        shape = ((gamma_fn(t) - gamma_0) / span, (gamma_fn(s) - gamma_0) / span)
    if schedule_gradient == "variance":
        shape, scale, unit = vdm.second_moment_tap(shape)
    shape_t, shape_other = shape
    if num_timesteps is None:
        weight = vdm.continuous_weight(span * shape_other)
    else:
        weight = vdm.discrete_weight(
            span * shape_other, span * shape_t, num_timesteps=num_timesteps
        )
    diffusion = denoising_loss(
        model_fn,
        VPGamma(linear_gamma(gamma_0, gamma_1)),  # gamma = gamma(0) + span u
        x0,
        eps_key,
        weighting=lambda process, u, prediction: weight / math.log(2.0),
        time_sampling=lambda rng, batch, dtype: shape_t,  # drawn above, through the tap
    )
    if schedule_gradient == "variance":
        diffusion = diffusion + scale * jax.lax.stop_gradient(2.0 * diffusion) + unit

    prior = mean_flat_bits(vdm.prior_kl(gamma_1, x0))
    alpha_0, sigma_0 = vdm.alpha_sigma(gamma_0)
    z_0 = alpha_0 * x0 + sigma_0 * jax.random.normal(decoder_key, x0.shape, x0.dtype)
    decoder = mean_flat_bits(vdm.decoder_nll(x0, z_0, gamma_0))
    total = prior + diffusion + decoder
    return dict(total=total, diffusion=diffusion, prior=prior, decoder=decoder)
