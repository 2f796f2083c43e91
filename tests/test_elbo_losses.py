"""The variational bound and the losses, against closed forms, Monte Carlo and entropy."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from jaxdiff import analytic, diffusion, elbo, losses, schedules

GRID = np.arange(256) / 127.5 - 1.0  # the 8-bit data grid in [-1, 1]


def test_normal_kl_matches_monte_carlo():
    m1, lv1, m2, lv2 = 0.3, math.log(0.5), -0.2, math.log(2.0)
    x = m1 + math.exp(0.5 * lv1) * np.random.default_rng(0).normal(size=400_000)
    mc = np.mean(norm.logpdf(x, m1, math.exp(0.5 * lv1)) - norm.logpdf(x, m2, math.exp(0.5 * lv2)))
    assert abs(float(elbo.normal_kl(m1, lv1, m2, lv2)) - mc) < 5e-3


@pytest.mark.parametrize("mean, scale", [(0.0, 0.1), (0.93, 1e-3), (-4.0, 0.02), (3.0, 0.05),
                                         (0.2, 50.0), (-1.0, 1e-4)])
def test_discretized_likelihood_bins_sum_to_one_and_are_finite(mean, scale):
    logp = elbo.discretized_gaussian_log_likelihood(jnp.asarray(GRID), mean, math.log(scale))
    assert bool(jnp.all(jnp.isfinite(logp)))
    np.testing.assert_allclose(float(jnp.exp(jax.nn.logsumexp(logp))), 1.0, rtol=1e-5)


def test_discretized_likelihood_matches_scipy_cdf():
    mean, scale = 0.1, 0.2
    edges = np.concatenate([[-np.inf], (GRID[:-1] + GRID[1:]) / 2, [np.inf]])
    expected = np.log(np.diff(norm.cdf(edges, mean, scale)))
    got = elbo.discretized_gaussian_log_likelihood(jnp.asarray(GRID), mean, math.log(scale))
    ok = expected > -30
    np.testing.assert_allclose(np.asarray(got)[ok], expected[ok], rtol=2e-4, atol=2e-4)


def test_prior_term_is_closed_form_and_negligible_for_linear_schedule():
    s = schedules.linear(1000)
    x0 = jnp.asarray(np.random.default_rng(0).choice(GRID, size=(8, 4, 4, 3)), jnp.float32)
    got = elbo.prior_bpd(s, x0)
    abar = float(np.prod(1 - np.asarray(s.betas, np.float64)))
    kl = 0.5 * (-1 - np.log(1 - abar) + (1 - abar) + abar * np.asarray(x0, np.float64) ** 2)
    np.testing.assert_allclose(got, kl.mean(axis=(1, 2, 3)) / np.log(2), rtol=1e-3, atol=1e-9)
    # DDPM (Ho et al. 2020, Sec. 4.2): L_T ~ 1e-5 bits/dim with this schedule.
    assert float(got.max()) < 1e-4


def _exact_gaussian_model(s, sd, mu):
    """The exact reverse process of Gaussian data N(mu, sd^2): the optimal eps and the true
    variance Var(x_{t-1} | x_t) = beta~_t + coef1_t^2 Var(x_0 | x_t), as a 'learned' output."""
    eps_fn = analytic.gaussian_eps_fn(s, jnp.array([mu]), jnp.array([sd**2]))

    def model_fn(x, t):
        a2 = s.alphas_cumprod[t][:, None]
        var_x0 = sd**2 * (1 - a2) / (a2 * sd**2 + 1 - a2)
        log_var = jnp.log(s.posterior_variance[t][:, None]
                          + s.posterior_mean_coef1[t][:, None] ** 2 * var_x0)
        return jnp.concatenate([eps_fn(x, t), jnp.broadcast_to(log_var, x.shape)], -1)

    return eps_fn, model_fn


def test_bound_is_above_and_close_to_the_entropy_of_gaussian_data():
    """For 8-bit data from a discretised Gaussian and the exact reverse process, the bound on
    -log2 p(x_0) is not below the data's true per-example information and close to it."""
    s = schedules.linear(1000)
    mu, sd = 0.05, 0.25
    edges = np.concatenate([[-np.inf], (GRID[:-1] + GRID[1:]) / 2, [np.inf]])
    probs = np.diff(norm.cdf(edges, mu, sd))
    idx = np.random.default_rng(0).choice(256, size=(1024, 1), p=probs)
    x0 = jnp.asarray(GRID[idx], jnp.float32)
    _, exact = _exact_gaussian_model(s, sd, mu)
    out = jax.jit(lambda x, k: elbo.nll_bpd(exact, s, x, k, variance="learned",
                                            clip_denoised=False))(x0, jax.random.key(0))
    gap = np.asarray(out["total"]) + np.log2(probs[idx][:, 0])  # bound - (-log2 P(x0))
    stderr = gap.std() / np.sqrt(gap.size)
    print(f"bound - information: {gap.mean():.4f} +- {stderr:.4f} bits/dim "
          f"(entropy {-(probs * np.log2(probs)).sum():.3f} bits)")
    assert gap.mean() > -3 * stderr
    assert gap.mean() < 0.05 + 3 * stderr
    np.testing.assert_allclose(out["total"], out["prior"] + out["decoder"] + out["diffusion"],
                               rtol=1e-5)
    np.testing.assert_allclose(out["diffusion"], out["vb"][:, 1:].sum(1), rtol=1e-5)


def test_vb_term_matches_closed_form_for_gaussian_data():
    """For continuous Gaussian data and fixed_small variance, E[L_{t-1}] is closed form:
    coef1_t^2 Var(x_0 | x_t) / (2 beta~_t) nats per dimension."""
    s = schedules.linear(1000)
    mu, sd, t_index = -0.1, 0.3, 40
    eps_fn, _ = _exact_gaussian_model(s, sd, mu)
    keys = jax.random.split(jax.random.key(1), 2)
    x0 = mu + sd * jax.random.normal(keys[0], (200_000, 1))
    t = jnp.full((x0.shape[0],), t_index)
    xt = diffusion.q_sample(s, x0, t, jax.random.normal(keys[1], x0.shape))
    vb = elbo.vb_terms_bpd(s, eps_fn(xt, t), x0, xt, t, clip_denoised=False)
    a2 = float(s.alphas_cumprod[t_index])
    var_x0 = sd**2 * (1 - a2) / (a2 * sd**2 + 1 - a2)
    expected = float(s.posterior_mean_coef1[t_index]) ** 2 * var_x0 / (
        2 * float(s.posterior_variance[t_index])) / math.log(2)
    np.testing.assert_allclose(float(vb.mean()), expected, rtol=0.02)


def test_vlb_loss_is_an_unbiased_estimate_of_the_bound():
    s = schedules.linear(100)
    mu, sd = 0.0, 0.3
    _, exact = _exact_gaussian_model(s, sd, mu)
    x0 = jnp.asarray(np.random.default_rng(1).choice(GRID, size=(4, 1)), jnp.float32)
    full = jax.jit(jax.vmap(lambda k: elbo.nll_bpd(exact, s, x0, k, variance="learned",
                                                   clip_denoised=False)))(
        jax.random.split(jax.random.key(0), 400))
    bound = full["total"] - full["prior"]  # [400, B]: every term, fresh noise per draw
    keys = jax.random.split(jax.random.key(2), 8000)
    sampled = jax.jit(jax.vmap(lambda k: losses.vlb_loss(exact, s, x0, k, variance="learned")))(keys)
    diff = sampled.mean(0) - bound.mean(0)
    se = np.sqrt(sampled.var(0) / len(keys) + bound.var(0) / len(bound))
    assert np.all(np.abs(np.asarray(diff)) < 4 * np.asarray(se))


def test_stratified_bound_is_unbiased_and_exact_in_its_known_terms():
    s = schedules.linear(100)
    _, exact = _exact_gaussian_model(s, 0.3, 0.0)
    x0 = jnp.asarray(np.random.default_rng(1).choice(GRID, size=(4, 1)), jnp.float32)
    opts = dict(variance="learned", clip_denoised=False)
    full = jax.jit(jax.vmap(lambda k: elbo.nll_bpd(exact, s, x0, k, **opts)))(
        jax.random.split(jax.random.key(0), 400))
    estimate = functools.partial(elbo.stratified_nll_bpd, exact, s, x0, num_timesteps=7, **opts)
    est = jax.jit(jax.vmap(estimate))(jax.random.split(jax.random.key(3), 3000))
    diff = est["total"].mean(0) - full["total"].mean(0)
    se = np.sqrt(est["total"].var(0) / 3000 + full["total"].var(0) / 400)
    assert np.all(np.abs(np.asarray(diff)) < 4 * np.asarray(se))
    # L_T is deterministic, and L_0 is computed as in the full bound, not sampled
    np.testing.assert_allclose(est["prior"][0], full["prior"][0], rtol=1e-6)
    np.testing.assert_allclose(est["decoder"].mean(0), full["decoder"].mean(0), rtol=0.05)
    with pytest.raises(ValueError, match="num_timesteps must be at most T - 1 = 99"):
        elbo.stratified_nll_bpd(exact, s, x0, jax.random.key(0), num_timesteps=100)


def test_simple_loss_of_optimal_model_is_the_posterior_variance_of_eps():
    """E||eps - E[eps | x_t]||^2 / D = E_t[a^2 s^2 / (a^2 s^2 + b^2)] for Gaussian data."""
    s = schedules.cosine(200)
    mu, var = jnp.array([0.2, -0.1]), jnp.array([0.05, 0.2])
    model = analytic.gaussian_eps_fn(s, mu, var)
    x0 = mu + jnp.sqrt(var) * jax.random.normal(jax.random.key(0), (200_000, 2))
    loss = losses.simple_loss(model, s, x0, jax.random.key(1))
    a2 = np.asarray(s.alphas_cumprod, np.float64)[:, None]
    expected = np.mean(a2 * np.asarray(var) / (a2 * np.asarray(var) + 1 - a2))
    np.testing.assert_allclose(float(loss.mean()), expected, rtol=0.01)


def test_weightings_agree_across_prediction_types():
    """A weighting measures the same error whatever the network predicts: the eps-, x0- and
    v-MSE of one prediction, each with its weight, are equal."""
    s = schedules.linear(1000)
    t = jnp.array([5, 300, 700, 990])
    x0 = jax.random.uniform(jax.random.key(0), (4, 6), minval=-1, maxval=1)
    eps = jax.random.normal(jax.random.key(1), (4, 6))
    xt = diffusion.q_sample(s, x0, t, eps)
    eps_hat = eps + 0.1 * jax.random.normal(jax.random.key(2), (4, 6))
    x0_hat = diffusion.predict_x0_from_eps(s, xt, t, eps_hat)
    predicted = {"eps": eps_hat, "x0": x0_hat, "v": diffusion.v_from_x0_eps(s, x0_hat, t, eps_hat)}
    for weighting in (losses.snr_weight, functools.partial(losses.min_snr_weight, gamma=5.0),
                      losses.truncated_snr_weight):
        values = [
            losses.mean_flat((diffusion.training_target(s, x0, t, eps, prediction=p) - predicted[p]) ** 2)
            * weighting(s, t, p)
            for p in ("eps", "x0", "v")
        ]
        np.testing.assert_allclose(values[1], values[0], rtol=2e-3)
        np.testing.assert_allclose(values[2], values[0], rtol=2e-3)
    # min-SNR on eps is min(SNR, gamma) / SNR (Hang et al. 2023), SNR from Ho et al.'s betas.
    abar = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))[np.asarray(t)]
    snr = abar / (1 - abar)
    np.testing.assert_allclose(losses.min_snr_weight(s, t, "eps", gamma=5.0),
                               np.minimum(snr, 5.0) / snr, rtol=1e-5)


@jax.enable_x64(True)
def test_hybrid_loss_trains_mean_only_through_simple_term():
    s = schedules.cosine(100)
    x0 = jax.random.uniform(jax.random.key(0), (8, 3), minval=-1, maxval=1)

    def model(params):
        def fn(x, t):
            temb = jnp.sin(t[:, None] / 10.0)
            return jnp.concatenate([params["m"] * x + temb, jnp.tanh(params["v"] * x)], -1)
        return fn

    params = {"m": jnp.float64(0.3), "v": jnp.float64(0.5)}
    rng = jax.random.key(3)
    hybrid = lambda p: losses.hybrid_loss(model(p), s, x0, rng, vlb_weight=0.5).mean()
    simple = lambda p: losses.simple_loss(model(p), s, x0, rng).mean()
    g_h, g_s = jax.grad(hybrid)(params), jax.grad(simple)(params)
    np.testing.assert_allclose(g_h["m"], g_s["m"], rtol=1e-5)
    assert float(g_s["v"]) == 0.0 and abs(float(g_h["v"])) > 0
    # The gradient agrees with a finite difference (a different derivation).
    h = 1e-3
    fd = (hybrid({**params, "v": params["v"] + h}) - hybrid({**params, "v": params["v"] - h})) / (2 * h)
    np.testing.assert_allclose(g_h["v"], fd, rtol=1e-4)


def test_dsm_loss_of_exact_score_is_closed_form():
    """With the exact score of N(mu, s^2) data, 0.5 ||sigma s + z||^2 has mean
    0.5 D mean_i s^2 / (s^2 + sigma_i^2)."""
    mu, var = 0.3, 0.04
    sigmas = schedules.geometric_sigmas(1.0, 0.01, 10)
    score_fn = analytic.mixture_score_fn([1.0], [[mu, mu]], [var])
    x0 = mu + math.sqrt(var) * jax.random.normal(jax.random.key(0), (100_000, 2))
    loss = losses.dsm_loss(score_fn, sigmas, x0, jax.random.key(1))
    expected = 0.5 * 2 * np.mean(var / (var + np.asarray(sigmas) ** 2))
    np.testing.assert_allclose(float(loss.mean()), expected, rtol=0.02)


def test_bound_runs_under_vmap_and_x64():
    s = schedules.linear(20)
    model = analytic.gaussian_eps_fn(s, jnp.zeros(2), jnp.ones(2) * 0.1)
    x0 = jnp.asarray(np.random.default_rng(0).choice(GRID, size=(3, 2)), jnp.float32)
    keys = jax.random.split(jax.random.key(0), 3)
    batched = jax.vmap(lambda k: elbo.nll_bpd(model, s, x0, k)["vb"])(keys)
    for key, vb in zip(keys, batched):
        np.testing.assert_allclose(vb, elbo.nll_bpd(model, s, x0, key)["vb"], rtol=1e-5, atol=1e-8)
    with jax.enable_x64(True):
        s64 = schedules.linear(20)
        m64 = analytic.gaussian_eps_fn(s64, jnp.zeros(2), jnp.ones(2) * 0.1)
        out = jax.jit(lambda x: elbo.nll_bpd(m64, s64, x, keys[0]))(x0.astype(jnp.float64))
        assert out["total"].dtype == jnp.float64
        # float64 draws other noise, so compare the noise-free term.
        np.testing.assert_allclose(out["prior"], elbo.prior_bpd(s, x0), rtol=1e-4)
        assert bool(jnp.all(jnp.isfinite(out["vb"])))
        loss = jax.grad(lambda x: losses.simple_loss(m64, s64, x, jax.random.key(0)).sum())(
            x0.astype(jnp.float64))
        assert loss.dtype == jnp.float64


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda s, f: elbo.nll_bpd(f, s, jnp.ones((3,)), jax.random.key(0)), "x0 must be a batch"),
        (lambda s, f: elbo.nll_bpd(f, s, jnp.ones((3, 2)), jax.random.key(0), prediction="mu"),
         "prediction must be one of"),
        (lambda s, f: losses.simple_loss(f, s, jnp.ones((3, 2)), jax.random.key(0), prediction="e"),
         "prediction must be one of"),
        (lambda s, f: losses.hybrid_loss(f, s, jnp.ones((3, 2)), jax.random.key(0)),
         "must have 4 channels for variance='learned_range'"),
        (lambda s, f: losses.dsm_loss(lambda x, sg: x, jnp.array([]), jnp.ones((3, 2)),
                                      jax.random.key(0)), "sigmas must be a non-empty"),
    ],
)
def test_bound_and_loss_errors(call, match):
    s = schedules.linear(10)
    with pytest.raises(ValueError, match=match):
        call(s, analytic.gaussian_eps_fn(s, jnp.zeros(2), jnp.ones(2)))
