"""The exact models used as ground truth elsewhere, checked against autodiff and sampling."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import analytic, diffusion, schedules

WEIGHTS, MEANS, VARIANCES = [0.2, 0.8], [[-1.0, 0.5], [1.0, 0.0]], [0.05, 0.1]


def test_mixture_score_is_the_gradient_of_its_log_density():
    x = jax.random.normal(jax.random.key(0), (7, 2))
    sigma = jnp.linspace(0.1, 2.0, 7)
    score = analytic.mixture_score_fn(WEIGHTS, MEANS, VARIANCES)(x, sigma)

    def log_p(xi, si):
        return analytic.mixture_log_prob(xi[None], WEIGHTS, MEANS,
                                         jnp.asarray(VARIANCES) + si**2)[0]

    np.testing.assert_allclose(score, jax.vmap(jax.grad(log_p))(x, sigma), rtol=1e-4, atol=1e-5)


def test_mixture_eps_is_the_posterior_mean_of_the_noise():
    """E[eps | x_t] by self-normalised importance sampling over x_0 ~ data."""
    s = schedules.linear(100)
    t = jnp.array([30])
    rng = np.random.default_rng(0)
    comp = rng.choice(2, size=400_000, p=WEIGHTS)
    x0 = np.asarray(MEANS)[comp] + np.sqrt(np.asarray(VARIANCES))[comp, None] * rng.normal(size=(400_000, 2))
    a = float(s.sqrt_alphas_cumprod[30])
    b = float(s.sqrt_one_minus_alphas_cumprod[30])
    xt = np.array([[0.3, 0.1]])
    w = np.exp(-0.5 * np.sum((xt - a * x0) ** 2, 1) / b**2)
    eps_mc = (w[:, None] * (xt - a * x0) / b).sum(0) / w.sum()
    got = analytic.mixture_eps_fn(s, WEIGHTS, MEANS, VARIANCES)(jnp.asarray(xt, jnp.float32), t)
    np.testing.assert_allclose(got[0], eps_mc, atol=0.02)


def test_gaussian_flow_map_transports_the_marginals():
    s = schedules.linear(1000)
    mean, var = 0.4, 0.09
    abar_from, abar_to = float(s.alphas_cumprod[-1]), 1.0
    x_T = jnp.sqrt(abar_from * var + 1 - abar_from) * jax.random.normal(jax.random.key(0), (100_000, 1)) \
        + jnp.sqrt(abar_from) * mean
    x0 = analytic.gaussian_flow_map(x_T, abar_from, abar_to, mean, var)
    np.testing.assert_allclose([float(x0.mean()), float(x0.var())], [mean, var], rtol=0.02, atol=0.005)
    # Its velocity is the probability-flow ODE's: d x / d abar along the map equals the drift
    # written with the optimal eps (DDIM's ODE, Song et al. 2021a, eq. 14, in abar).
    model = analytic.gaussian_eps_fn(s, jnp.array([mean]), jnp.array([var]))
    t = jnp.array([500])
    ab = float(s.alphas_cumprod[500])
    x = jnp.array([[0.7]])
    _, dx = jax.jvp(lambda u: analytic.gaussian_flow_map(x, ab, u, mean, var), (ab,), (1.0,))
    eps = model(x, t)
    x0_hat = diffusion.predict_x0_from_eps(s, x, t, eps)
    drift = 0.5 * (x0_hat / np.sqrt(ab) - eps / np.sqrt(1 - ab))  # d/d abar of sqrt(abar) x0 + sqrt(1-abar) eps
    np.testing.assert_allclose(dx, drift, rtol=1e-4)
