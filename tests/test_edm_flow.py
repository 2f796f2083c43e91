"""EDM (preconditioning, loss, Alg. 1 and 2, Table 1's VP and VE columns) and flow matching
(loss, Euler/Heun/adaptive sampling, likelihood, guidance), checked on Gaussian and mixture data
against their exact denoisers, velocities, flow maps, densities and loss minima."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from compile_counter import count_compilations
from exact_models import gaussian_eps, mixture_eps
from flax import nnx
from jaxdiff import analytic, losses, models, samplers, schedules

MEAN = jnp.array([0.5, -0.3, 0.0, 0.2])
VAR = jnp.array([0.25, 0.04, 0.5, 0.09])
DENOISER = analytic.gaussian_denoiser_fn(MEAN, VAR)
VELOCITY = analytic.gaussian_velocity_fn(MEAN, VAR)
NOISE = jax.random.normal(jax.random.key(0), (64, 4))
WEIGHTS, MEANS, VARIANCES = [0.3, 0.7], [[-0.6, 0.4], [0.5, -0.2]], [0.04, 0.09]


def slope(steps, errors):
    return -np.polyfit(np.log(steps), np.log(errors), 1)[0]


def rms(a, b):
    return float(jnp.sqrt(jnp.mean((a - b) ** 2)))


def mixture_data(n, seed=0):
    rng = np.random.default_rng(seed)
    comp = rng.choice(2, size=n, p=WEIGHTS)
    return np.asarray(MEANS)[comp] + np.sqrt(np.asarray(VARIANCES))[comp, None] * rng.normal(size=(n, 2))


# --- the exact answers ----------------------------------------------------------------------------


def test_exact_denoiser_and_velocity_are_posterior_means():
    """E[x_0 | x] and E[eps - x_0 | x_t] by self-normalised importance sampling over the data."""
    x0 = mixture_data(400_000)
    x = np.array([[0.2, 0.1]])
    sigma = 0.3
    w = np.exp(-0.5 * np.sum((x - x0) ** 2, 1) / sigma**2)
    d_mc = (w[:, None] * x0).sum(0) / w.sum()
    got = analytic.mixture_denoiser_fn(WEIGHTS, MEANS, VARIANCES)(jnp.asarray(x), jnp.array([sigma]))
    np.testing.assert_allclose(got[0], d_mc, atol=0.01)

    t = 0.4
    w = np.exp(-0.5 * np.sum((x - (1 - t) * x0) ** 2, 1) / t**2)
    v_mc = (w[:, None] * ((x - (1 - t) * x0) / t - x0)).sum(0) / w.sum()
    got = analytic.mixture_velocity_fn(WEIGHTS, MEANS, VARIANCES)(jnp.asarray(x), jnp.array([t]))
    np.testing.assert_allclose(got[0], v_mc, atol=0.01)


def test_exact_flow_maps_move_along_the_exact_fields():
    """d/dsigma of the EDM map is (x - D*) / sigma (Karras et al. eq. 4); d/dt of the linear-path
    map is v*; and both carry the noise to the data's moments."""
    x = jax.random.normal(jax.random.key(1), (3, 4))
    sigma = 0.7
    _, dx = jax.jvp(lambda s: analytic.gaussian_edm_flow_map(x, sigma, s, MEAN, VAR), (sigma,), (1.0,))
    np.testing.assert_allclose(dx, (x - DENOISER(x, jnp.full(3, sigma))) / sigma, rtol=1e-5, atol=1e-6)
    t = 0.3
    _, dx = jax.jvp(lambda u: analytic.gaussian_linear_flow_map(x, t, u, MEAN, VAR), (t,), (1.0,))
    np.testing.assert_allclose(dx, VELOCITY(x, jnp.full(3, t)), rtol=1e-5, atol=1e-6)
    z = jax.random.normal(jax.random.key(2), (200_000, 4))
    for x0 in (analytic.gaussian_edm_flow_map(80.0 * z, 80.0, 0.0, MEAN, VAR),
               analytic.gaussian_linear_flow_map(z, 1.0, 0.0, MEAN, VAR)):
        np.testing.assert_allclose(x0.mean(0), MEAN, atol=0.01)
        np.testing.assert_allclose(x0.var(0), VAR, rtol=0.02)


# --- EDM: grid, preconditioning, loss -------------------------------------------------------------


def test_karras_sigmas_are_equally_spaced_in_sigma_to_the_one_over_rho():
    s = np.asarray(schedules.karras_sigmas(18, 0.002, 80.0))
    assert s.shape == (19,) and s[-1] == 0
    np.testing.assert_allclose([s[0], s[-2]], [80.0, 0.002], rtol=1e-6)
    np.testing.assert_allclose(np.diff(s[:-1] ** (1 / 7)), (0.002 ** (1 / 7) - 80 ** (1 / 7)) / 17, rtol=1e-4)
    np.testing.assert_allclose(schedules.karras_sigmas(4, 1.0, 4.0, rho=1.0), [4, 3, 2, 1, 0])
    np.testing.assert_array_equal(schedules.karras_sigmas(1, 0.5, 2.0), [2.0, 0.0])
    for bad in (dict(num=0), dict(sigma_min=0.0), dict(rho=0.0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            schedules.karras_sigmas(**{"num": 5, "sigma_min": 0.1, "sigma_max": 1.0, **bad})


def test_preconditioning_gives_unit_variance_input_and_target():
    """Karras et al. App. B.6: c_in makes the network input, and c_skip / c_out its training
    target (x_0 - c_skip x) / c_out, unit-variance for data of variance sigma_d^2; and with
    F = 0 the preconditioned denoiser is already the optimal one for N(0, sigma_d^2) data."""
    sd = 0.5
    sigma = jnp.array([0.01, 0.3, 2.0, 50.0])
    c_skip, c_out, c_in, c_noise = models.edm_scalings(sigma, sd)
    np.testing.assert_allclose(c_in**2 * (sd**2 + sigma**2), 1.0, rtol=1e-6)
    target_var = ((1 - c_skip) ** 2 * sd**2 + c_skip**2 * sigma**2) / c_out**2
    np.testing.assert_allclose(target_var, 1.0, rtol=1e-5)
    np.testing.assert_allclose(c_noise, np.log(np.asarray(sigma)) / 4, rtol=1e-6)

    x = jax.random.normal(jax.random.key(0), (4, 3))
    seen = {}

    def raw_fn(x_in, noise, *, y):
        seen.update(x_in=x_in, noise=noise, y=y)
        return jnp.zeros_like(x_in)

    got = models.edm_precondition(raw_fn, sigma_data=sd)(x, sigma, y=7)
    np.testing.assert_allclose(got, analytic.gaussian_denoiser_fn(jnp.zeros(3), jnp.full(3, sd**2))(x, sigma),
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(seen["x_in"], x * np.asarray(c_in)[:, None], rtol=1e-6)
    np.testing.assert_allclose(seen["noise"], c_noise, rtol=1e-6)
    assert seen["y"] == 7
    with pytest.raises(ValueError, match="sigma_data"):
        models.edm_precondition(raw_fn, sigma_data=0.0)


def _lognormal_expectation(f, p_mean, p_std, num=80):
    """E[f(sigma)] for ln sigma ~ N(p_mean, p_std^2), by Gauss-Hermite quadrature."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(num)
    return float(np.sum(weights * f(np.exp(p_mean + p_std * nodes))) / np.sqrt(2 * np.pi))


def _check_mc(values, expected, name):
    values = np.asarray(values, np.float64)
    se = values.std() / np.sqrt(values.size)
    print(f"\n{name}: Monte Carlo {values.mean():.4f} +- {se:.4f}, closed form {expected:.4f}")
    assert abs(values.mean() - expected) < 4 * se


def test_edm_loss_of_the_exact_denoiser_is_its_closed_form():
    """E[lambda(sigma) ||D* - x_0||^2 / D] = E_sigma[lambda(sigma) s^2 sigma^2 / (s^2 + sigma^2)]
    (the posterior variance of x_0), averaged over the dimensions; it is 1 at every sigma when
    the data's variance is sigma_d^2."""
    x0 = MEAN + jnp.sqrt(VAR) * jax.random.normal(jax.random.key(3), (40_000, 4))
    loss = losses.edm_loss(DENOISER, x0, jax.random.key(4))
    sd = 0.5

    def per_sigma(sigma):
        var = np.asarray(VAR)[:, None]
        return np.mean(var * sigma**2 / (var + sigma**2), 0) * (sigma**2 + sd**2) / (sigma * sd) ** 2

    _check_mc(loss, _lognormal_expectation(per_sigma, -1.2, 1.2), "edm_loss")
    unit = analytic.gaussian_denoiser_fn(jnp.zeros(4), jnp.full(4, 0.25))
    loss = losses.edm_loss(unit, 0.5 * jax.random.normal(jax.random.key(5), (40_000, 4)), jax.random.key(6),
                           p_mean=0.3, p_std=2.0)
    _check_mc(loss, 1.0, "edm_loss, data variance sigma_d^2")


@pytest.mark.parametrize("time_sampling", ["uniform", "logit_normal"])
def test_flow_matching_loss_of_the_exact_velocity_is_its_closed_form(time_sampling):
    """E[||v* - (eps - x_0)||^2 | t] = s^2 / ((1 - t)^2 s^2 + t^2) per dimension, whose integral
    over t ~ U(0, 1) is pi s / 2; for logit-normal t, quadrature in the logit."""
    x0 = MEAN + jnp.sqrt(VAR) * jax.random.normal(jax.random.key(7), (40_000, 4))
    loss = losses.flow_matching_loss(VELOCITY, x0, jax.random.key(8), time_sampling=time_sampling)
    var = np.asarray(VAR)
    if time_sampling == "uniform":
        expected = float(np.mean(np.pi * np.sqrt(var) / 2))
    else:
        nodes, weights = np.polynomial.hermite_e.hermegauss(80)
        t = 1 / (1 + np.exp(-nodes))[:, None]
        per_t = np.mean(var / ((1 - t) ** 2 * var + t**2), 1)
        expected = float(np.sum(weights * per_t) / np.sqrt(2 * np.pi))
    _check_mc(loss, expected, f"flow_matching_loss ({time_sampling})")


def test_flow_matching_time_sampling_options():
    t = losses.logit_normal_time(jax.random.key(0), 100_000, mean=0.5, std=0.7)
    logit = np.log(t / (1 - t))
    np.testing.assert_allclose([logit.mean(), logit.std()], [0.5, 0.7], atol=0.01)
    x0 = MEAN + jnp.sqrt(VAR) * jax.random.normal(jax.random.key(7), (40_000, 4))
    half = losses.flow_matching_loss(VELOCITY, x0, jax.random.key(8),
                                     time_sampling=lambda rng, b, dtype: jnp.full((b,), 0.5, dtype))
    _check_mc(half, float(np.mean(np.asarray(VAR) / (0.25 * np.asarray(VAR) + 0.25))), "t = 1/2")
    with pytest.raises(ValueError, match="time_sampling"):
        losses.flow_matching_loss(VELOCITY, jnp.zeros((2, 4)), jax.random.key(0), time_sampling="cosine")


# --- EDM sampling -------------------------------------------------------------------------------


def test_edm_heun_converges_to_the_exact_flow_at_second_order():
    x_T = 80.0 * NOISE
    exact = analytic.gaussian_edm_flow_map(x_T, 80.0, 0.0, MEAN, VAR)
    steps = [8, 16, 32, 64]
    errors = [rms(samplers.edm_sample(DENOISER, schedules.karras_sigmas(n, 0.002, 80.0), x_T), exact)
              for n in steps]
    rate = slope(steps, errors)
    print("\nEDM Heun: " + ", ".join(f"N={n}: {e:.2e}" for n, e in zip(steps, errors))
          + f"; fitted order {rate:.2f}")
    assert 1.7 < rate < 2.5 and errors[-1] < 2e-3


@pytest.mark.parametrize("method, expected", [("euler", 1.0), ("heun", 2.0)])
def test_flow_solvers_converge_to_the_exact_flow_at_their_order(method, expected):
    exact = analytic.gaussian_linear_flow_map(NOISE, 1.0, 0.0, MEAN, VAR)
    steps = [8, 16, 32, 64]
    errors = [rms(samplers.flow_sample(VELOCITY, NOISE, num_steps=n, method=method), exact)
              for n in steps]
    rate = slope(steps, errors)
    print(f"\nflow {method}: " + ", ".join(f"N={n}: {e:.2e}" for n, e in zip(steps, errors))
          + f"; fitted order {rate:.2f}")
    assert expected - 0.3 < rate < expected + 0.5


def test_adaptive_flow_meets_its_tolerance():
    exact = analytic.gaussian_linear_flow_map(NOISE, 1.0, 0.0, MEAN, VAR)
    nfe = {}
    for method in ("tsit5", "heun"):
        out = samplers.flow_sample(VELOCITY, NOISE, method=method, rtol=1e-5, atol=1e-5, return_info=True)
        nfe[method] = int(out.nfe)
        assert rms(out.samples, exact) < 1e-4
    print(f"\nadaptive flow to 1e-5: NFE {nfe}")
    assert 0 < nfe["tsit5"] < nfe["heun"]  # the 5th-order method needs fewer calls
    out = samplers.flow_sample(VELOCITY, NOISE, method="tsit5", num_steps=4, return_info=True,
                               trajectory_every=2)
    grid_exact = analytic.gaussian_linear_flow_map(NOISE, 1.0, 0.5, MEAN, VAR)
    assert out.trajectory.shape == (2, 64, 4) and rms(out.trajectory[0], grid_exact) < 1e-4


def test_stochastic_sampler_matches_the_datas_mean_and_variance():
    """Alg. 2 with churn on the exact denoiser: the samples' moments are the data's (within
    Monte Carlo error), while the samples differ from Alg. 1's deterministic map. The churned
    steps are long (from (1 + gamma) sigma_i), so the grid is fine: at 64 steps the variance is
    still ~4% high, at 256 within the error."""
    n = 20_000
    sigmas = schedules.karras_sigmas(256, 0.002, 80.0)
    x_T = 80.0 * jax.random.normal(jax.random.key(9), (n, 4))
    x = samplers.edm_sample(DENOISER, sigmas, x_T, jax.random.key(10), churn=80.0, s_tmin=0.05,
                            s_tmax=50.0)
    mean_se, var_se = np.sqrt(np.asarray(VAR) / n), np.asarray(VAR) * np.sqrt(2 / n)
    print(f"\nAlg. 2: mean error / SE {np.asarray((x.mean(0) - MEAN) / mean_se)}, "
          f"variance error / SE {np.asarray((x.var(0) - VAR) / var_se)}")
    assert np.all(np.abs(x.mean(0) - MEAN) < 4 * mean_se)
    assert np.all(np.abs(x.var(0) - VAR) < 4 * var_se)
    deterministic = analytic.gaussian_edm_flow_map(x_T, 80.0, 0.0, MEAN, VAR)
    assert rms(x, deterministic) > 0.3 * float(jnp.sqrt(VAR.mean()))
    gammas = samplers.churn_gammas(sigmas, churn=80.0, s_tmin=0.05, s_tmax=50.0)
    inside = (sigmas[:-1] >= 0.05) & (sigmas[:-1] <= 50.0)
    np.testing.assert_allclose(gammas, np.where(inside, min(80 / 256, math.sqrt(2) - 1), 0), rtol=1e-6)


def test_edm_euler_with_the_vp_column_on_ddims_steps_is_ddim():
    """Karras et al. Table 1 (VP) + Euler on DDIM's 50 levels = deterministic DDIM (Song, Meng &
    Ermon 2021, eq. 14 in the scaled state x / alpha), for a nonlinear (mixture) model."""
    sched = schedules.linear(1000)
    model = mixture_eps(sched, WEIGHTS, MEANS, VARIANCES)
    x_T = jax.random.normal(jax.random.key(11), (32, 2))
    ddim = samplers.ddim_sample(model, sched, x_T, num_steps=50)
    timesteps = np.arange(980, -1, -20)
    sigmas = np.append(np.exp(-0.5 * np.asarray(sched.log_snr, np.float64)[timesteps]), 0.0)
    y_T = x_T * np.sqrt(1.0 + sigmas[0] ** 2)
    out = samplers.edm_sample(samplers.process_denoiser(model, sched), sigmas, y_T, method="euler",
                              return_info=True)
    np.testing.assert_allclose(out.samples, ddim, rtol=1e-4, atol=1e-4)
    assert out.nfe == 50


def test_vp_and_ve_columns_turn_exact_models_into_the_exact_denoiser():
    """Table 1: the exact eps-model of a DDPM schedule (VP) and the exact score (VE) give the
    exact denoiser, D* = mu + s^2 / (s^2 + sigma^2) (x - mu), at every level in their range."""
    sched = schedules.cosine(1000)
    sigma_min, sigma_max = samplers.sigma_range(sched)
    abar = np.asarray(sched.alphas_cumprod)[[0, -1]]
    np.testing.assert_allclose([sigma_min, sigma_max], np.sqrt((1 - abar) / abar), rtol=1e-3)
    sigma = jnp.geomspace(1.5 * sigma_min, 0.5 * sigma_max, 64)
    x = NOISE * jnp.sqrt(VAR + sigma[:, None] ** 2) + MEAN
    expected = MEAN + VAR / (VAR + sigma[:, None] ** 2) * (x - MEAN)
    eps_model = gaussian_eps(sched, MEAN, VAR)
    np.testing.assert_allclose(samplers.process_denoiser(eps_model, sched)(x, sigma), expected, rtol=2e-3, atol=2e-3)
    score_fn = analytic.mixture_score_fn([1.0], MEAN[None], VAR[None])
    np.testing.assert_allclose(samplers.ve_denoiser(score_fn)(x, sigma), expected, rtol=2e-3, atol=2e-3)


def test_edm_trajectory_nfe_no_recompilation_and_errors():
    sigmas = schedules.karras_sigmas(10, 0.002, 80.0)
    out = samplers.edm_sample(DENOISER, sigmas, 80.0 * NOISE, return_info=True, trajectory_every=4)
    assert out.nfe == 19 and out.trajectory.shape == (3, 64, 4)
    np.testing.assert_array_equal(out.trajectory[-1], out.samples)
    other_start = jax.block_until_ready(80.0 * NOISE + 1.0)
    with count_compilations() as compiles:
        samplers.edm_sample(DENOISER, sigmas, other_start, return_info=True, trajectory_every=4)
    assert compiles.value == 0
    with pytest.raises(ValueError, match="decreasing"):
        samplers.edm_sample(DENOISER, sigmas[::-1], NOISE)
    with pytest.raises(ValueError, match="rng"):
        samplers.edm_sample(DENOISER, sigmas, NOISE, churn=1.0)
    with pytest.raises(ValueError, match="method"):
        samplers.edm_sample(DENOISER, sigmas, NOISE, method="rk4")
    with pytest.raises(ValueError, match="num_steps"):
        samplers.flow_sample(VELOCITY, NOISE, method="euler")
    with pytest.raises(ValueError, match="method"):
        samplers.flow_sample(VELOCITY, NOISE, num_steps=4, method="midpoint")


# --- flow: likelihood and guidance ----------------------------------------------------------------


def test_flow_likelihood_is_the_data_density():
    """The change of variables along the exact mixture flow recovers the mixture's log density."""
    x = jnp.asarray(mixture_data(16, seed=1), jnp.float32)
    velocity = analytic.mixture_velocity_fn(WEIGHTS, MEANS, VARIANCES)
    out = samplers.flow_likelihood(velocity, x, jax.random.key(0), trace="exact", dequantize=False)
    np.testing.assert_allclose(out["logp"], analytic.mixture_log_prob(x, WEIGHTS, MEANS, VARIANCES),
                               atol=2e-3)
    hutchinson = samplers.flow_likelihood(velocity, x, jax.random.key(1), num_probes=64,
                                          dequantize=False)
    np.testing.assert_allclose(hutchinson["logp"], out["logp"], atol=0.3)
    heun = samplers.flow_likelihood(velocity, x, jax.random.key(0), trace="exact", dequantize=False,
                                    method="heun", num_steps=64)
    np.testing.assert_allclose(heun["logp"], out["logp"], atol=0.02)


def test_edm_likelihood_is_the_smoothed_data_density():
    """Along EDM's exact mixture flow, from sigma_min to sigma_max: the density of the mixture
    convolved with N(0, sigma_min^2). (At sigma_max = 80 the prior N(0, sigma_max^2) misses the
    data mean by ~ |x| |mu| / sigma_max^2 ~ 3e-3 nats per dimension; at 1000 it does not.)"""
    x = jnp.asarray(mixture_data(16, seed=2), jnp.float32)
    denoiser = analytic.mixture_denoiser_fn(WEIGHTS, MEANS, VARIANCES)
    out = samplers.edm_likelihood(denoiser, x, jax.random.key(0), sigma_min=0.01, sigma_max=1000.0,
                                  trace="exact",
                                  dequantize=False)
    smoothed = analytic.mixture_log_prob(x, WEIGHTS, MEANS, np.asarray(VARIANCES) + 0.01**2)
    np.testing.assert_allclose(out["logp"], smoothed, atol=2e-3)


def test_guided_velocity_samples_the_chosen_class():
    """Classifier-free guidance of a velocity model (Ho & Salimans 2022, eq. 6): the exact
    class-conditional and unconditional velocities of the two-component mixture; scale 1 samples
    the chosen component, scale 0 the mixture."""
    per_class = [analytic.gaussian_velocity_fn(jnp.asarray(m), jnp.full(2, v)) for m, v in zip(MEANS, VARIANCES)]
    mixture = analytic.mixture_velocity_fn(WEIGHTS, MEANS, VARIANCES)

    def model_fn(x, t, y):
        y = y[:, None]
        return jnp.where(y == 0, per_class[0](x, t), jnp.where(y == 1, per_class[1](x, t), mixture(x, t)))

    x_1 = jax.random.normal(jax.random.key(12), (4000, 2))
    y = jnp.ones(4000, jnp.int32)
    for scale, mean in ((1.0, MEANS[1]), (0.0, np.dot(WEIGHTS, MEANS))):
        guided = samplers.classifier_free_guidance(model_fn, y, scale=scale, null_label=2)
        x = samplers.flow_sample(guided, x_1, num_steps=32, method="heun")
        np.testing.assert_allclose(x.mean(0), mean, atol=0.03)


def test_a_new_checkpoint_reuses_the_compiled_samplers():
    """The network's parameters are arguments of the compiled chains, not constants."""
    x = jax.random.normal(jax.random.key(0), (2, 4, 4, 1))
    sigmas = schedules.karras_sigmas(3, 0.01, 10.0)
    counts = []
    for seed in (1, 2):  # two modules of one graph, other weights
        raw_fn = models.dit_digits(hidden_size=16, depth=1, num_heads=2, rngs=nnx.Rngs(seed))
        with count_compilations() as compiles:
            samplers.edm_sample(models.edm_precondition(raw_fn), sigmas, x)
            samplers.flow_sample(raw_fn, x, num_steps=2)
        counts.append(compiles.value)
    assert counts[0] > 0 and counts[1] == 0
