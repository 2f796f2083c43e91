"""Exact models for data whose noisy marginals are known in closed form.

For Gaussian data, and for mixtures of isotropic Gaussians, every noise level's marginal is
again such a mixture, so the optimal eps-predictor, the exact score and the exact
probability-flow map are available. They are the ground truth that the bound, the losses and
the samplers are tested against, and a research user can check a new sampler with them.

Data: x_0 ~ sum_k w_k N(mu_k, s_k^2 I) over ``[..., D]`` (any event shape; components act
elementwise). Under the variance-preserving process x_t = a x_0 + b eps (a = sqrt(abar_t),
b = sqrt(1 - abar_t)) component k becomes N(a mu_k, (a^2 s_k^2 + b^2) I); under the
variance-exploding one x = x_0 + sigma z it becomes N(mu_k, (s_k^2 + sigma^2) I).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdiff.diffusion import eps_from_score, extract
from jaxdiff.schedules import Schedule

__all__ = [
    "mixture_log_prob",
    "mixture_score",
    "mixture_score_fn",
    "mixture_eps_fn",
    "process_mixture_eps_fn",
    "gaussian_eps_fn",
    "mixture_vdm_eps_fn",
    "gaussian_vdm_eps_fn",
    "gaussian_flow_map",
    "mixture_denoiser_fn",
    "gaussian_denoiser_fn",
    "mixture_velocity_fn",
    "gaussian_velocity_fn",
    "gaussian_edm_flow_map",
    "gaussian_linear_flow_map",
]


def _as_components(weights, means, variances):
    weights = jnp.asarray(weights, dtype=float)
    means = jnp.asarray(means, dtype=float)
    variances = jnp.asarray(variances, dtype=float)
    if variances.ndim == 1:  # one scalar variance per component
        variances = variances.reshape(variances.shape + (1,) * (means.ndim - 1))
    variances = jnp.broadcast_to(variances, means.shape)
    return weights, means, variances


def _component_log_probs(x, means, variances):
    """log N(x; mu_k, s_k^2 I) for every k, summed over the event axes: ``[B, K]``."""
    axes = tuple(range(1, x.ndim))
    x = x[:, None]
    lp = -0.5 * ((x - means) ** 2 / variances + jnp.log(2 * jnp.pi * variances))
    return jnp.sum(lp, axis=tuple(a + 1 for a in axes))


def mixture_log_prob(x, weights, means, variances) -> jnp.ndarray:
    """log p(x) of the mixture sum_k w_k N(mu_k, s_k^2 I).

    Args:
      x: ``[B, ...]`` points.
      weights: ``[K]`` mixture weights (summing to 1).
      means: ``[K, ...]`` component means, each of x's event shape (or broadcastable to it).
      variances: ``[K, ...]`` per-dimension component variances (broadcastable to means).

    Returns:
      ``[B]`` log densities in nats.
    """
    weights, means, variances = _as_components(weights, means, variances)
    return jax.nn.logsumexp(_component_log_probs(x, means, variances) + jnp.log(weights), axis=1)


def mixture_score(x, weights, means, variances) -> jnp.ndarray:
    """grad_x log p(x) of the mixture: sum_k r_k(x) (mu_k - x) / s_k^2 with posterior
    responsibilities r_k(x) = w_k N_k(x) / p(x).  Returns ``[B, ...]``."""
    weights, means, variances = _as_components(weights, means, variances)
    resp = jax.nn.softmax(_component_log_probs(x, means, variances) + jnp.log(weights), axis=1)
    per_component = (means - x[:, None]) / variances  # [B, K, ...]
    resp = resp.reshape(resp.shape + (1,) * (x.ndim - 1))
    return jnp.sum(resp * per_component, axis=1)


def mixture_score_fn(weights, means, variances):
    """The exact score of the mixture convolved with N(0, sigma^2 I), as NCSN's
    ``score_fn(x, sigma)`` with ``sigma`` of shape [B] (Song & Ermon 2019, Sec. 3)."""
    weights, means, variances = _as_components(weights, means, variances)

    def score_fn(x, sigma):
        sig2 = jnp.asarray(sigma, x.dtype).reshape((-1,) + (1,) * x.ndim) ** 2  # [B, 1(K), ...]
        return jax.vmap(mixture_score, in_axes=(0, None, None, 0))(
            x[:, None], weights, means, variances + sig2
        )[:, 0]

    return score_fn


def mixture_eps_fn(schedule: Schedule, weights, means, variances):
    """The optimal eps-predictor E[eps | x_t] of the variance-preserving process for mixture
    data: eps* = -sqrt(1 - abar_t) grad log q_t(x_t) (Vincent 2011; Ho et al. 2020, Sec. 3.2).
    Returns ``model_fn(x_t, t)``; t indexes ``schedule`` (0-based)."""

    def model_fn(x_t, t):
        a = extract(schedule.sqrt_alphas_cumprod, t, x_t.ndim + 1)
        b2 = extract(1.0 - schedule.alphas_cumprod, t, x_t.ndim + 1)
        return eps_from_score(schedule, t, _vp_score(x_t, a, b2, weights, means, variances))

    return model_fn


def process_mixture_eps_fn(process, weights, means, variances):
    """The optimal eps-predictor of mixture data on any Gaussian process, at every real time:
    x = alpha (x_0 + (sigma / alpha) eps), so eps* = -sigma grad log q_t(x), the mixture's score
    smoothed to sigma / alpha (:func:`mixture_score_fn`) read at x / alpha. Returns
    ``model_fn(x, t)`` with t the process's own time."""
    score_fn = mixture_score_fn(weights, means, variances)

    def model_fn(x, t):
        alpha, sigma = (jnp.reshape(v, (-1,) + (1,) * (x.ndim - 1)) for v in process.alpha_sigma(t))
        level = jnp.broadcast_to((sigma / alpha).reshape(-1), x.shape[:1])
        return -sigma / alpha * score_fn(x / alpha, level)

    return model_fn


def _vp_score(x_t, a, b2, weights, means, variances):
    """The score of the mixture's marginal under x_t = a x_0 + b eps, with per-example a and
    b^2 shaped ``[B, 1, ...]`` (one axis for the components): the mixture of N(a mu_k,
    a^2 s_k^2 + b^2)."""
    weights, means, variances = _as_components(weights, means, variances)
    return jax.vmap(mixture_score, in_axes=(0, None, 0, 0))(
        x_t[:, None], weights, a * means, a**2 * variances + b2
    )[:, 0]


def mixture_vdm_eps_fn(gamma_fn, weights, means, variances):
    """The optimal eps-predictor E[eps | z_t] of the variance-preserving process of Kingma et
    al. (2021), alpha_t^2 = sigmoid(-gamma(t)), sigma_t^2 = sigmoid(gamma(t)), for mixture
    data: eps* = -sigma_t grad log q_t(z_t). Returns ``model_fn(z_t, u)`` with float u ``[B]``
    in [0, 1] the normalized gamma, gamma = gamma(0) + (gamma(1) - gamma(0)) u (t itself for a
    linear schedule), as :func:`jaxdiff.losses.vdm_loss` and
    :meth:`jaxdiff.processes.VPGamma.model_time` call it."""

    def model_fn(z_t, u):
        gamma_0, gamma_1 = gamma_fn(jnp.zeros(())), gamma_fn(jnp.ones(()))
        gamma = jnp.reshape(gamma_0 + (gamma_1 - gamma_0) * u, (-1,) + (1,) * z_t.ndim)
        b2 = jax.nn.sigmoid(gamma)
        score = _vp_score(z_t, jnp.sqrt(jax.nn.sigmoid(-gamma)), b2, weights, means, variances)
        return -jnp.sqrt(b2[:, 0]) * score

    return model_fn


def gaussian_vdm_eps_fn(gamma_fn, mean, variance):
    """:func:`mixture_vdm_eps_fn` for Gaussian data x_0 ~ N(mean, diag(variance)): linear in
    z_t, eps* = sigma_t (z_t - alpha_t mu) / (alpha_t^2 s^2 + sigma_t^2)."""
    return mixture_vdm_eps_fn(
        gamma_fn, jnp.ones((1,)), jnp.asarray(mean)[None], jnp.asarray(variance)[None]
    )


def gaussian_eps_fn(schedule: Schedule, mean, variance):
    """The optimal eps-predictor for Gaussian data x_0 ~ N(mean, diag(variance)):

    .. math:: \\mathbb{E}[\\epsilon | x_t] = \\frac{b (x_t - a \\mu)}{a^2 s^2 + b^2},
      \\quad a = \\sqrt{\\bar\\alpha_t},\\ b = \\sqrt{1 - \\bar\\alpha_t}

    (the Gaussian conditional expectation of eps given x_t). Linear in x_t.
    """
    return mixture_eps_fn(schedule, jnp.ones((1,)), jnp.asarray(mean)[None], jnp.asarray(variance)[None])


def gaussian_flow_map(x, abar_from, abar_to, mean, variance) -> jnp.ndarray:
    """The exact probability-flow ODE map between two noise levels for Gaussian data.

    For x_0 ~ N(mu, s^2) the marginal at abar is N(sqrt(abar) mu, abar s^2 + 1 - abar), and the
    probability-flow ODE (Song et al. 2021, eq. 13) moves every point along its standardised
    coordinate, which it keeps fixed: a 1-D monotone transport between Gaussians is affine.

    Args:
      x: ``[B, ...]`` points at level ``abar_from``.
      abar_from, abar_to: alpha-bar of the start and end levels (abar_to = 1 is the data).
      mean, variance: the data's mean and variance (broadcastable to x's event shape).

    Returns:
      ``[B, ...]`` the transported points.
    """
    return _gaussian_transport(
        x,
        (jnp.sqrt(abar_from) * mean, abar_from * variance + 1.0 - abar_from),
        (jnp.sqrt(abar_to) * mean, abar_to * variance + 1.0 - abar_to),
    )


def _gaussian_transport(x, moments_from, moments_to) -> jnp.ndarray:
    """The monotone (affine) map between two Gaussians that keeps the standardised coordinate:
    m_to + sqrt(v_to / v_from) (x - m_from), with ``moments = (mean, variance)``. Every
    deterministic flow of this module's Gaussian paths is this map between its marginals."""
    (m_from, v_from), (m_to, v_to) = moments_from, moments_to
    return m_to + jnp.sqrt(v_to / v_from) * (x - m_from)


def mixture_denoiser_fn(weights, means, variances):
    """The optimal denoiser D*(x; sigma) = E[x_0 | x_0 + sigma n = x] for mixture data, by
    Tweedie's formula D* = x + sigma^2 grad log p_sigma(x) (Karras et al. 2022, eq. 3; Efron
    2011). Returns ``denoiser_fn(x, sigma)`` with ``sigma`` a float ``[B]`` (0 allowed)."""
    score_fn = mixture_score_fn(weights, means, variances)

    def denoiser_fn(x, sigma):
        sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), x.shape[:1])
        return x + sigma.reshape((-1,) + (1,) * (x.ndim - 1)) ** 2 * score_fn(x, sigma)

    return denoiser_fn


def gaussian_denoiser_fn(mean, variance):
    """The optimal denoiser for x_0 ~ N(mean, diag(variance)):

    .. math:: D^*(x; \\sigma) = \\mu + \\frac{s^2}{s^2 + \\sigma^2} (x - \\mu)

    (:func:`mixture_denoiser_fn` with one component). Linear in x."""
    return mixture_denoiser_fn(jnp.ones((1,)), jnp.asarray(mean)[None], jnp.asarray(variance)[None])


def mixture_velocity_fn(weights, means, variances):
    """The optimal velocity of the linear path x_t = (1 - t) x_0 + t eps (Lipman et al. 2023;
    Liu et al. 2023) for mixture data, v*(x, t) = E[eps - x_0 | x_t = x]:

    .. math:: v^*(x, t) = \\sum_k r_k(x, t) \\Big(-\\mu_k + \\frac{t - (1 - t) s_k^2}{V_k}
        \\big(x - (1 - t) \\mu_k\\big)\\Big), \\quad V_k = (1 - t)^2 s_k^2 + t^2,

    the Gaussian conditional expectation within component k, weighted by the posterior
    responsibilities r_k of the marginal components N((1 - t) mu_k, V_k I). Defined on all of
    t in [0, 1] (for s_k > 0). Returns ``velocity_fn(x, t)`` with ``t`` a float ``[B]``."""
    weights, means, variances = _as_components(weights, means, variances)

    def one(x, t):  # x [...], t scalar
        a, b = 1.0 - t, t
        var = a**2 * variances + b**2  # [K, ...]
        log_r = _component_log_probs(x[None], a * means, var)[0] + jnp.log(weights)
        per_component = -means + (b - a * variances) / var * (x - a * means)
        return jnp.tensordot(jax.nn.softmax(log_r), per_component, axes=1)

    def velocity_fn(x, t):
        return jax.vmap(one)(x, jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:1]))

    return velocity_fn


def gaussian_velocity_fn(mean, variance):
    """The optimal velocity of the linear path for x_0 ~ N(mean, diag(variance)):
    :func:`mixture_velocity_fn` with one component, linear in x."""
    return mixture_velocity_fn(jnp.ones((1,)), jnp.asarray(mean)[None], jnp.asarray(variance)[None])


def gaussian_edm_flow_map(x, sigma_from, sigma_to, mean, variance) -> jnp.ndarray:
    """The exact map of EDM's probability-flow ODE dx/dsigma = (x - D*(x; sigma)) / sigma
    (Karras et al. 2022, eq. 4 with s = 1, sigma(t) = t) between two noise levels, for Gaussian
    data: the marginal at sigma is N(mu, s^2 + sigma^2), and the flow is the affine transport
    between those marginals. sigma_to = 0 is the data.

    Args:
      x: ``[B, ...]`` points at level ``sigma_from``.
      sigma_from, sigma_to: the noise levels.
      mean, variance: the data's mean and variance (broadcastable to x's event shape).
    """
    return _gaussian_transport(
        x, (mean, variance + sigma_from**2), (mean, variance + sigma_to**2)
    )


def gaussian_linear_flow_map(x, t_from, t_to, mean, variance) -> jnp.ndarray:
    """The exact map of the flow dx/dt = v*(x, t) of the linear path x_t = (1 - t) x_0 + t eps
    (:func:`gaussian_velocity_fn`) from time ``t_from`` to ``t_to``, for Gaussian data: the
    affine transport between the marginals N((1 - t) mu, (1 - t)^2 s^2 + t^2). t_to = 0 is the
    data, t_from = 1 the noise N(0, I)."""

    def moments(t):
        return (1.0 - t) * mean, (1.0 - t) ** 2 * variance + t**2

    return _gaussian_transport(x, moments(t_from), moments(t_to))
