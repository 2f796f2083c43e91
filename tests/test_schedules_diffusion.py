"""Schedules and the forward process, each checked against an independent derivation."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import diffusion, schedules


def test_linear_betas_are_ddpm_values():
    s = schedules.linear(1000)
    np.testing.assert_allclose(np.asarray(s.betas)[[0, 500, 999]], [1e-4, 1e-4 + 500 * (0.02 - 1e-4) / 999, 0.02],
                               rtol=1e-6)
    # Ho et al. (2020), Sec. 4: with this schedule abar_T ~ 4e-5, so x_T ~ N(0, I).
    assert 3e-5 < float(s.alphas_cumprod[-1]) < 5e-5


def test_cosine_alphas_cumprod_is_closed_form():
    s = schedules.cosine(1000)
    t = np.arange(1, 1001) / 1000
    f = lambda u: np.cos((u + 0.008) / 1.008 * np.pi / 2) ** 2
    expected = f(t) / f(0)
    # Betas are clipped at 0.999 only in the last step(s); compare before that.
    np.testing.assert_allclose(s.alphas_cumprod[:-1], expected[:-1], rtol=1e-5, atol=1e-7)
    assert float(s.betas.max()) <= 0.999 + 1e-7


def test_sigmoid_and_scaled_linear_are_valid_schedules():
    for s in (schedules.sigmoid(200), schedules.scaled_linear(200), schedules.get("cosine", 50)):
        abar = np.asarray(s.alphas_cumprod)
        assert np.all(np.diff(abar) < 0) and abar[0] < 1 and abar[-1] > 0
        np.testing.assert_allclose(np.cumprod(1 - np.asarray(s.betas, np.float64)), abar, rtol=1e-4)


def test_posterior_coefficients_from_betas_match_definitions():
    betas = np.linspace(0.01, 0.3, 7)
    s = schedules.from_betas(betas)
    abar = np.cumprod(1 - betas)
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    np.testing.assert_allclose(s.posterior_variance, betas * (1 - abar_prev) / (1 - abar), rtol=1e-6)
    # t = 0: beta~_0 = 0 is replaced by beta~_1 = beta_1 (1 - abar_0) / (1 - abar_1), by hand
    beta_tilde_1 = betas[1] * betas[0] / (1 - (1 - betas[0]) * (1 - betas[1]))
    np.testing.assert_allclose(s.posterior_log_variance_clipped[0], np.log(beta_tilde_1), rtol=1e-6)
    np.testing.assert_array_equal(s.timesteps, np.arange(7))
    assert s.num_timesteps == 7


def test_respace_keeps_the_marginals_and_model_timesteps():
    s = schedules.linear(1000)
    keep = np.arange(0, 1000, 100)
    r = schedules.respace(s, keep)
    np.testing.assert_allclose(r.alphas_cumprod, np.asarray(s.alphas_cumprod)[keep], rtol=1e-6)
    np.testing.assert_array_equal(r.timesteps, keep)
    # Respacing a respaced schedule maps back to the original model timesteps.
    np.testing.assert_array_equal(schedules.respace(r, [0, 5, 9]).timesteps, [0, 500, 900])


def test_geometric_sigmas():
    sig = np.asarray(schedules.geometric_sigmas(50.0, 0.01, 232))
    assert sig.shape == (232,)
    np.testing.assert_allclose(sig[[0, -1]], [50.0, 0.01], rtol=1e-5)
    ratios = sig[:-1] / sig[1:]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-4)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: schedules.linear(0), "num_timesteps must be positive"),
        (lambda: schedules.linear(2.5), "num_timesteps must be an integer"),
        (lambda: schedules.from_betas([0.1, 1.5]), r"betas must lie in \(0, 1\]"),
        (lambda: schedules.from_betas([0.0, 0.1]), r"betas must lie in \(0, 1\]"),
        (lambda: schedules.from_betas(np.ones((2, 2)) * 0.1), "1-D"),
        (lambda: schedules.geometric_sigmas(0.01, 1.0, 10), "sigma_min < sigma_max"),
        (lambda: schedules.geometric_sigmas(1.0, 0.01, 0), "num must be a positive integer"),
        (lambda: schedules.get("quadratic"), "unknown schedule name 'quadratic'"),
        (lambda: schedules.respace(schedules.linear(10), [3, 2]), "strictly increasing"),
        (lambda: schedules.respace(schedules.linear(10), [0, 10]), r"\[0, 9\]"),
    ],
)
def test_schedule_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- forward process -------------------------------------------------------------------------


def test_q_sample_at_last_step_is_standard_normal():
    s = schedules.linear(1000)
    x0 = jnp.ones((4096, 8)) * 0.7
    t = jnp.full((4096,), 999)
    xt = diffusion.q_sample(s, x0, t, jax.random.normal(jax.random.key(0), x0.shape))
    assert abs(float(xt.mean())) < 0.02
    assert abs(float(xt.std()) - 1.0) < 0.02


def test_q_posterior_is_the_conditional_of_the_joint_gaussian():
    """q(x_{t-1} | x_t, x_0) from conditioning the joint Gaussian of (x_{t-1}, x_t) given x_0."""
    s = schedules.linear(1000)
    rng = np.random.default_rng(0)
    x0 = rng.uniform(-1, 1, size=(5, 3)).astype(np.float32)
    xt = rng.normal(size=(5, 3)).astype(np.float32)
    t = np.array([1, 10, 200, 600, 999])
    betas = np.asarray(s.betas, np.float64)
    abar = np.cumprod(1 - betas)
    ab_prev, ab_t, alpha_t = abar[t - 1], abar[t], 1 - betas[t]
    # x_{t-1} = sqrt(ab_prev) x0 + sqrt(1 - ab_prev) e1;  x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) e2
    v1, cov, v2 = 1 - ab_prev, np.sqrt(alpha_t) * (1 - ab_prev), 1 - ab_t
    m1, m2 = np.sqrt(ab_prev)[:, None] * x0, np.sqrt(ab_t)[:, None] * x0
    mean = m1 + (cov / v2)[:, None] * (xt - m2)
    var = v1 - cov**2 / v2
    got_mean, got_var, got_logvar = diffusion.q_posterior(s, x0, xt, jnp.asarray(t))
    np.testing.assert_allclose(got_mean, mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got_var[:, 0], var, rtol=1e-4)
    np.testing.assert_allclose(got_logvar[:, 0], np.log(var), rtol=1e-4)


def test_q_mean_variance_matches_sampling():
    s = schedules.cosine(100)
    x0 = jnp.full((20000, 1), 0.5)
    t = jnp.full((20000,), 40)
    xt = diffusion.q_sample(s, x0, t, jax.random.normal(jax.random.key(1), x0.shape))
    mean, var, logvar = diffusion.q_mean_variance(s, x0[:1], t[:1])
    np.testing.assert_allclose(xt.mean(), mean[0, 0], atol=0.02)
    np.testing.assert_allclose(xt.var(), var[0, 0], rtol=0.03)
    np.testing.assert_allclose(jnp.exp(logvar), var, rtol=1e-5)


def test_v_is_the_angular_velocity():
    """v = d x_phi / d phi for x_phi = cos(phi) x0 + sin(phi) eps (Salimans & Ho 2022, Sec. 4)."""
    s = schedules.linear(1000)
    t = jnp.array([3, 400, 900])
    x0 = jax.random.normal(jax.random.key(0), (3, 4))
    eps = jax.random.normal(jax.random.key(1), (3, 4))
    phi = jnp.arctan2(s.sqrt_one_minus_alphas_cumprod[t], s.sqrt_alphas_cumprod[t])[:, None]
    x_phi = lambda p: jnp.cos(p) * x0 + jnp.sin(p) * eps
    _, velocity = jax.jvp(x_phi, (phi,), (jnp.ones_like(phi),))
    np.testing.assert_allclose(diffusion.v_from_x0_eps(s, x0, t, eps), velocity, atol=1e-5)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_every_prediction_recovers_x0_and_eps(prediction):
    s = schedules.cosine(1000)
    t = jnp.array([0, 250, 999])
    x0 = jax.random.uniform(jax.random.key(0), (3, 2, 2, 1), minval=-1, maxval=1)
    eps = jax.random.normal(jax.random.key(1), x0.shape)
    xt = diffusion.q_sample(s, x0, t, eps)
    target = diffusion.training_target(s, x0, t, eps, prediction=prediction)
    got_eps, got_x0 = diffusion.predict_eps_and_x0(s, xt, t, target, prediction=prediction)
    # x0 from eps at t = 999 divides by sqrt(abar) ~ 0.006: compare on the matching scale.
    np.testing.assert_allclose(got_x0 * s.sqrt_alphas_cumprod[t][:, None, None, None],
                               x0 * s.sqrt_alphas_cumprod[t][:, None, None, None], atol=2e-5)
    np.testing.assert_allclose(got_eps * s.sqrt_one_minus_alphas_cumprod[t][:, None, None, None],
                               eps * s.sqrt_one_minus_alphas_cumprod[t][:, None, None, None],
                               atol=2e-5)


def test_score_conversions_match_gaussian_score():
    s = schedules.linear(100)
    t = jnp.array([10, 50])
    x0 = jnp.zeros((2, 3))
    xt = jax.random.normal(jax.random.key(0), (2, 3))
    # With x0 = 0, q(x_t | x_0) = N(0, (1 - abar) I): score = -x_t / (1 - abar).
    score = -xt / (1 - s.alphas_cumprod[t])[:, None]
    eps = diffusion.predict_eps_from_x0(s, xt, t, x0)
    np.testing.assert_allclose(diffusion.score_from_eps(s, t, eps), score, rtol=1e-5)
    np.testing.assert_allclose(diffusion.eps_from_score(s, t, score), eps, rtol=1e-5)
    sigma = jnp.array([0.5, 2.0])
    z = jax.random.normal(jax.random.key(1), (2, 3))
    x = diffusion.perturb_sigma(x0, sigma, z)
    sc = diffusion.score_from_eps_sigma(z, sigma)
    np.testing.assert_allclose(sc, -(x - x0) / sigma[:, None] ** 2, rtol=1e-5)
    np.testing.assert_allclose(diffusion.x0_from_score_sigma(x, sigma, sc), x0, atol=1e-6)
    np.testing.assert_allclose(diffusion.eps_from_score_sigma(sc, sigma), z, rtol=1e-5)


def test_p_mean_variance_variances():
    s = schedules.linear(1000)
    t = jnp.array([0, 1, 500])
    xt = jnp.zeros((3, 2))
    out = jnp.zeros((3, 2))
    small = diffusion.p_mean_variance(s, out, xt, t, variance="fixed_small")
    large = diffusion.p_mean_variance(s, out, xt, t, variance="fixed_large")
    np.testing.assert_allclose(small.variance[1:, 0], s.posterior_variance[t[1:]], rtol=1e-5)
    np.testing.assert_allclose(large.variance[1:, 0], s.betas[t[1:]], rtol=1e-5)
    np.testing.assert_allclose(large.variance[0, 0], s.posterior_variance[1], rtol=1e-5)
    lo = diffusion.p_mean_variance(s, jnp.concatenate([out, -jnp.ones_like(out)], -1), xt, t,
                                   variance="learned_range")
    hi = diffusion.p_mean_variance(s, jnp.concatenate([out, jnp.ones_like(out)], -1), xt, t,
                                   variance="learned_range")
    np.testing.assert_allclose(lo.log_variance[:, 0], s.posterior_log_variance_clipped[t], rtol=1e-5)
    np.testing.assert_allclose(hi.log_variance[:, 0], jnp.log(s.betas[t]), rtol=1e-5)
    learned = diffusion.p_mean_variance(s, jnp.concatenate([out, jnp.full_like(out, -3.0)], -1), xt,
                                        t, variance="learned")
    np.testing.assert_allclose(learned.variance, math.exp(-3.0), rtol=1e-5)


def test_p_mean_with_true_x0_is_the_posterior_mean():
    s = schedules.cosine(200)
    t = jnp.array([1, 100, 199])
    x0 = jax.random.uniform(jax.random.key(0), (3, 4), minval=-1, maxval=1)
    xt = jax.random.normal(jax.random.key(1), (3, 4))
    for prediction in ("eps", "x0", "v"):
        eps = diffusion.predict_eps_from_x0(s, xt, t, x0)
        out = diffusion.training_target(s, x0, t, eps, prediction=prediction)
        p = diffusion.p_mean_variance(s, out, xt, t, prediction=prediction)
        np.testing.assert_allclose(p.mean, diffusion.q_posterior(s, x0, xt, t)[0], atol=2e-5)


def test_clipping_keeps_eps_consistent():
    s = schedules.linear(100)
    t = jnp.array([50])
    xt = jnp.array([[3.0, -0.2]])
    eps, x0 = diffusion.predict_eps_and_x0(s, xt, t, jnp.array([[-5.0, 0.0]]), clip_denoised=True)
    assert float(x0.max()) <= 1.0 and float(x0.min()) >= -1.0
    np.testing.assert_allclose(diffusion.q_sample(s, x0, t, eps), xt, atol=1e-5)


def test_forward_process_runs_under_jit_vmap_and_x64():
    s = schedules.linear(50)
    x0 = jnp.ones((4, 2, 2, 1))
    t = jnp.arange(4)
    f = jax.jit(diffusion.q_sample)
    chex.assert_trees_all_close(f(s, x0, t, x0), diffusion.q_sample(s, x0, t, x0), rtol=1e-6)
    per_example = jax.vmap(lambda x, tt: diffusion.q_sample(s, x[None], tt[None], x[None])[0])
    chex.assert_trees_all_close(per_example(x0, t), diffusion.q_sample(s, x0, t, x0), rtol=1e-6)
    with jax.enable_x64(True):
        s64 = schedules.linear(50)
        assert s64.betas.dtype == jnp.float64
        out = jax.jit(diffusion.q_posterior)(s64, jnp.ones((4, 3), jnp.float64),
                                             jnp.zeros((4, 3), jnp.float64), t)
        assert out[0].dtype == jnp.float64


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda s: diffusion.q_sample(s, jnp.ones((2, 3)), jnp.array([0]), jnp.ones((2, 3))),
         ValueError, r"t must have shape \[2\]"),
        (lambda s: diffusion.q_sample(s, jnp.ones((2, 3)), jnp.array([0, 10]), jnp.ones((2, 3))),
         ValueError, r"t must lie in \[0, 9\]"),
        (lambda s: diffusion.q_sample(s, jnp.ones((2, 3)), jnp.array([0.0, 1.0]), jnp.ones((2, 3))),
         TypeError, "integer array"),
        (lambda s: diffusion.q_sample(s, jnp.ones((2, 3)), jnp.array([0, 1]), jnp.ones((2, 4))),
         ValueError, "x0 and noise must have the same shape"),
        (lambda s: diffusion.p_mean_variance(s, jnp.ones((2, 3)), jnp.ones((2, 3)), jnp.array([0, 1]),
                                             prediction="score"), ValueError, "prediction must be one of"),
        (lambda s: diffusion.p_mean_variance(s, jnp.ones((2, 3)), jnp.ones((2, 3)), jnp.array([0, 1]),
                                             variance="learned"), ValueError, "must have 6 channels"),
        (lambda s: diffusion.p_mean_variance(s, jnp.ones((2, 3)), jnp.ones((2, 3)), jnp.array([0, 1]),
                                             variance="big"), ValueError, "variance must be one of"),
    ],
)
def test_forward_process_errors(call, error, match):
    with pytest.raises(error, match=match):
        call(schedules.linear(10))
