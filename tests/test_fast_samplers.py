"""DPM-Solver++, the probability-flow ODE (Heun, adaptive), its exact likelihood and
classifier-free guidance, checked on Gaussian data against the exact flow map and density."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from compile_counter import count_compilations
from exact_models import mixture_eps
from jax.scipy.stats import norm

from jaxdiff import analytic, samplers, schedules

SCHED = schedules.linear(1000)
T = SCHED.num_timesteps
ABAR = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))  # float64 (Ho et al. 2020, Sec. 4)
MEAN = jnp.array([0.5, -0.3, 0.0, 0.2])
VAR = jnp.array([0.25, 0.04, 0.5, 0.09])
X_T = jax.random.normal(jax.random.key(0), (64, 4))


def optimal_eps(weights, means, variances):
    """The optimal eps-predictor of mixture data at every real timestep, from the schedule's
    continuous log-SNR (at the integers it is the table model, checked below)."""
    return mixture_eps(SCHED, weights, means, variances)


GAUSS = optimal_eps([1.0], MEAN[None], VAR[None])


def flow_error(x, x_T, abar_from, abar_to):
    exact = analytic.gaussian_flow_map(x_T, abar_from, abar_to, MEAN, VAR)
    return float(jnp.sqrt(jnp.mean((x - exact) ** 2)))


def dpm_error(num_steps, order, **kw):
    kw.setdefault("grid", samplers.uniform_logsnr_grid)  # the real-valued grid of Lu et al.
    x = samplers.dpm_solver_sample(GAUSS, SCHED, X_T, num_steps=num_steps, order=order, **kw)
    return flow_error(x, X_T, ABAR[-1], ABAR[0])


def slope(steps, errors):
    return -np.polyfit(np.log(steps), np.log(errors), 1)[0]


# --- continuous time ----------------------------------------------------------------------------


def test_continuous_time_is_the_schedule_at_the_integers():
    k = jnp.arange(0, T, 37).astype(jnp.float32)
    ls = SCHED.log_snr_at(k)
    np.testing.assert_allclose(ls, np.log(ABAR / (1 - ABAR))[::37], rtol=1e-5, atol=1e-5)
    alpha, sigma = SCHED.alpha_sigma(k)
    np.testing.assert_allclose(alpha, np.sqrt(ABAR[::37]), rtol=1e-5)
    np.testing.assert_allclose(sigma, np.sqrt(1 - ABAR[::37]), rtol=1e-5)
    tau = jnp.array([0.0, 0.25, 17.5, 998.9])
    roundtrip = SCHED.time_at_log_snr(SCHED.log_snr_at(tau))
    np.testing.assert_allclose(roundtrip, tau, atol=2e-3)
    # A respaced schedule calls the network with the original timesteps, interpolated.
    sub = schedules.respace(SCHED, [0, 10, 30])
    np.testing.assert_allclose(sub.model_time(jnp.array([0.0, 1.0, 1.5, 2.0])),
                               [0.0, 10.0, 20.0, 30.0])
    # The real-time optimal model is the integer-time one at the integers.
    x, t = X_T[:4], jnp.array([0, 5, 500, 999])
    np.testing.assert_allclose(GAUSS(x, t.astype(jnp.float32)),
                               analytic.gaussian_eps_fn(SCHED, MEAN, VAR)(x, t),
                               rtol=1e-5, atol=1e-6)
    for grid in (samplers.uniform_time_grid, samplers.uniform_logsnr_grid,
                 samplers.quadratic_time_grid, samplers.karras_grid):
        taus = np.asarray(grid(SCHED, 7))
        assert taus.shape == (8,) and np.all(np.diff(taus) < 0)
        np.testing.assert_allclose(taus[[0, -1]], [T - 1, 0], atol=1e-3)
    lam = np.asarray(SCHED.log_snr_at(samplers.uniform_logsnr_grid(SCHED, 7)))
    np.testing.assert_allclose(np.diff(lam), np.full(7, (lam[-1] - lam[0]) / 7), rtol=1e-3)


# --- DPM-Solver++ -------------------------------------------------------------------------------


def test_first_order_update_is_the_ddim_step():
    """DPM-Solver++(1) = DDIM (Song, Meng & Ermon 2021, eq. 12 with sigma_t = 0), closed form."""
    x = jax.random.normal(jax.random.key(1), (5, 4))
    x0 = jax.random.normal(jax.random.key(2), (5, 4))
    ls, ls_next = jnp.array([-1.3]), jnp.array(2.1)
    got = samplers.dpm_solver_pp_update(x, x0[None], ls, ls_next, order=1)
    abar, abar_next = jax.nn.sigmoid(ls[0]), jax.nn.sigmoid(ls_next)
    eps = (x - jnp.sqrt(abar) * x0) / jnp.sqrt(1 - abar)
    np.testing.assert_allclose(got, jnp.sqrt(abar_next) * x0 + jnp.sqrt(1 - abar_next) * eps,
                               rtol=1e-5, atol=1e-6)


def test_first_order_chain_on_ddims_timesteps_is_ddim_sample():
    """On DDIM's integer timesteps (20 of 1000: 950, ..., 0, then abar = 1), order 1 plus the
    final denoising call reproduces the independent ddim_sample."""
    ddim_grid = lambda schedule, n: jnp.arange(n, -1, -1) * 50.0  # noqa: E731
    ours = samplers.dpm_solver_sample(GAUSS, SCHED, X_T, num_steps=19, order=1, grid=ddim_grid,
                                      denoise_last=True, return_info=True)
    theirs = samplers.ddim_sample(GAUSS, SCHED, X_T, num_steps=20)
    np.testing.assert_allclose(ours.samples, theirs, rtol=1e-4, atol=1e-4)
    assert ours.nfe == 20


@pytest.mark.parametrize("order, band", [(1, (0.8, 1.2)), (2, (1.7, 2.3)), (3, (2.7, 4.5))])
def test_dpm_solver_converges_to_the_exact_flow_at_its_order(order, band):
    """The slope of log-error against log-steps is each method's order: a band that excludes
    the orders next to it. Order 3 is at least third order; on this problem its fitted order
    is ~4 (its warm-up steps act where the data prediction barely moves)."""
    steps = [20, 40, 80]
    errors = [dpm_error(n, order) for n in steps]
    rate = slope(steps, errors)
    table = ", ".join(f"N={n}: {e:.2e}" for n, e in zip(steps, errors))
    print(f"\nDPM-Solver++ order {order}: {table}; fitted order {rate:.2f}")
    assert band[0] < rate < band[1]


def test_integer_logsnr_grid_is_distinct_integers_near_equal_in_log_snr():
    for n in (10, 40, T - 1):
        taus = np.asarray(samplers.integer_logsnr_grid(SCHED, n))
        assert taus[0] == T - 1 and taus[-1] == 0 and np.all(np.diff(taus) < 0)
        np.testing.assert_array_equal(taus, np.round(taus))
    # At 10 steps no level collides: each is the nearest integer to the equal log-SNR step.
    lam = np.log(ABAR / (1 - ABAR))
    targets = np.linspace(lam[-1], lam[0], 11)
    nearest = [np.argmin(np.abs(np.interp(np.arange(T), np.arange(T), lam) - v)) for v in targets]
    assert np.all(np.abs(np.asarray(samplers.integer_logsnr_grid(SCHED, 10)) - nearest) <= 1)


def int_only(model_fn):
    """``model_fn`` that insists on the int32 t of the integer-time contract."""
    def call(x, t):
        assert t.dtype == jnp.int32, t.dtype
        return model_fn(x, t)
    return call


def test_dpm_solver_on_its_default_grid_has_under_half_ddims_error():
    """DPM-Solver++(2) on its default grid (int32 t, near-equal log-SNR steps) against DDIM at
    10 and 20 model calls, each measured against the exact flow map from its own start."""
    rows = []
    for nfe in (10, 20):
        x_ddim = samplers.ddim_sample(GAUSS, SCHED, X_T, num_steps=nfe)
        start = (nfe - 1) * (T // nfe)  # DDIM runs from its first timestep to abar = 1
        ddim = flow_error(x_ddim, X_T, ABAR[start], 1.0)
        x_dpm = samplers.dpm_solver_sample(int_only(GAUSS), SCHED, X_T, num_steps=nfe)
        rows.append((nfe, ddim, flow_error(x_dpm, X_T, ABAR[-1], ABAR[0])))
    print("\n NFE   DDIM      DPM-Solver++(2), default grid")
    for nfe, ddim, dpm in rows:
        print(f"{nfe:4d}  {ddim:.2e}  {dpm:.2e}")
        assert dpm < 0.5 * ddim


def test_dpm_solver_on_the_real_logsnr_grid_beats_ddim():
    rows = []
    for nfe in (10, 20):
        x_ddim = samplers.ddim_sample(GAUSS, SCHED, X_T, num_steps=nfe)
        start = (nfe - 1) * (T // nfe)  # DDIM runs from its first timestep to abar = 1
        ddim = flow_error(x_ddim, X_T, ABAR[start], 1.0)
        first, second, third = (dpm_error(nfe, k) for k in (1, 2, 3))
        heun = samplers.ode_sample(GAUSS, SCHED, X_T, num_steps=nfe // 2, return_info=True,
                                   trajectory_every=0)
        assert heun.nfe == nfe
        rows.append((nfe, ddim, first, second, third,
                     flow_error(heun.samples, X_T, ABAR[-1], ABAR[0])))
    print("\n NFE   DDIM      DPM++1    DPM++2M   DPM++3M   Heun")
    for row in rows:
        print(f"{row[0]:4d}  " + "  ".join(f"{e:.2e}" for e in row[1:]))
    for nfe, ddim, first, second, third, _ in rows:
        assert second < 0.5 * ddim and third < 0.5 * ddim and second < first


def test_orders_warm_up_and_lower_at_the_end():
    np.testing.assert_array_equal(samplers.dpm_solver_orders(6, 3), [1, 2, 3, 3, 2, 1])
    np.testing.assert_array_equal(samplers.dpm_solver_orders(12, 3), [1, 2] + [3] * 10)
    np.testing.assert_array_equal(
        samplers.dpm_solver_orders(6, 2, lower_order_final=False), [1, 2, 2, 2, 2, 2])


def test_trajectory_nfe_and_no_recompilation():
    out = samplers.dpm_solver_sample(GAUSS, SCHED, X_T, num_steps=10, return_info=True,
                                     trajectory_every=4)
    assert out.trajectory.shape == (3, 64, 4) and out.nfe == 10
    np.testing.assert_array_equal(out.trajectory[-1], out.samples)
    shifted = X_T + 1.0
    with count_compilations() as compiles:
        samplers.dpm_solver_sample(GAUSS, SCHED, shifted, num_steps=10, return_info=True,
                                   trajectory_every=4)
    assert compiles.value == 0
    # Under an outer jit, with the schedule traced (its grid is then not checked).
    jitted = jax.jit(lambda s, x: samplers.dpm_solver_sample(GAUSS, s, x, num_steps=10))
    np.testing.assert_allclose(jitted(SCHED, X_T), out.samples, rtol=1e-5, atol=1e-5)


def test_prediction_types_give_the_same_chain():
    """An x0- or v-predicting model that agrees with the eps model gives the same samples."""
    def as_prediction(kind):
        def model_fn(x, t):
            alpha, sigma = SCHED.alpha_sigma(t)
            a, s, eps = alpha[:, None], sigma[:, None], GAUSS(x, t)
            x0 = (x - s * eps) / a
            return x0 if kind == "x0" else a * eps - s * x0
        return model_fn

    ref = samplers.dpm_solver_sample(GAUSS, SCHED, X_T, num_steps=10)
    for kind in ("x0", "v"):
        got = samplers.dpm_solver_sample(as_prediction(kind), SCHED, X_T, num_steps=10,
                                         prediction=kind)
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


# --- the probability-flow ODE -------------------------------------------------------------------


def test_default_ode_sample_is_adaptive_heun_within_tolerance():
    """The contract's defaults (method="heun", num_steps=None) adapt Heun's steps to rtol/atol."""
    errors = {}
    for tol in (1e-3, 1e-5):
        out = samplers.ode_sample(GAUSS, SCHED, X_T, rtol=tol, atol=tol, return_info=True)
        errors[tol] = flow_error(out.samples, X_T, ABAR[-1], ABAR[0])
        print(f"\nadaptive Heun rtol=atol={tol:g}: NFE {int(out.nfe)}, error {errors[tol]:.2e}")
    assert errors[1e-5] < 1e-3 and errors[1e-5] < errors[1e-3]


def test_heun_converges_at_second_order():
    steps = [10, 20, 40]
    errors = [flow_error(samplers.ode_sample(GAUSS, SCHED, X_T, method="heun", num_steps=n),
                         X_T, ABAR[-1], ABAR[0]) for n in steps]
    rate = slope(steps, errors)
    print("\nHeun: " + ", ".join(f"NFE={2 * n}: {e:.2e}" for n, e in zip(steps, errors))
          + f"; fitted order {rate:.2f}")
    assert 1.7 < rate < 2.5
    # The trajectory holds x (not y = x / alpha) at the grid's levels.
    out = samplers.ode_sample(GAUSS, SCHED, X_T, num_steps=10, return_info=True,
                              trajectory_every=5)
    taus = samplers.uniform_logsnr_grid(SCHED, 10)
    abar_5 = float(jax.nn.sigmoid(SCHED.log_snr_at(taus[5])))
    assert out.trajectory.shape == (2, 64, 4)
    assert flow_error(out.trajectory[0], X_T, ABAR[-1], abar_5) < errors[0]  # y: off by ~0.5
    np.testing.assert_array_equal(out.trajectory[-1], out.samples)


def test_adaptive_solver_meets_its_tolerance_and_counts_model_calls():
    calls = np.zeros((), np.int64)

    def counted(x, t):
        def bump(_):
            calls[...] += 1
        jax.debug.callback(bump, t[0])
        return GAUSS(x, t)

    out = samplers.ode_sample(counted, SCHED, X_T, method="tsit5", rtol=1e-5, atol=1e-5,
                              num_steps=10, trajectory_every=5, return_info=True)
    error = flow_error(out.samples, X_T, ABAR[-1], ABAR[0])
    print(f"\ntsit5 rtol=atol=1e-5: NFE {int(out.nfe)}, error {error:.2e}")
    assert error < 2e-5
    assert int(out.nfe) == int(calls)
    # The trajectory is saved at the grid's levels 5 and 10 (dense output).
    taus = samplers.uniform_logsnr_grid(SCHED, 10)
    abar_5 = float(jax.nn.sigmoid(SCHED.log_snr_at(taus[5])))
    assert out.trajectory.shape == (2, 64, 4)
    assert flow_error(out.trajectory[0], X_T, ABAR[-1], abar_5) < 2e-5
    np.testing.assert_allclose(out.trajectory[-1], out.samples, atol=1e-6)


# --- exact likelihood ---------------------------------------------------------------------------


def model_logp(x, mean, variance, rotation=None):
    """The log density of the ODE model at tau = 0 in closed form: N(0, I) at tau = T - 1
    pushed through the exact flow map (change of variables of an affine map)."""
    z = x if rotation is None else x @ rotation
    std_0 = jnp.sqrt(ABAR[0] * variance + 1 - ABAR[0])
    std_T = jnp.sqrt(ABAR[-1] * variance + 1 - ABAR[-1])
    x_T = analytic.gaussian_flow_map(z, ABAR[0], ABAR[-1], mean, variance)
    return jnp.sum(norm.logpdf(x_T) + jnp.log(std_T / std_0), axis=-1)


def test_likelihood_with_exact_trace_matches_the_density_and_bits_per_dim():
    """Exact divergence: the ODE log-density agrees with the closed form to solver tolerance;
    on dequantised 8-bit data the bits/dim agree with the discrete Gaussian's probabilities."""
    x = jnp.clip(MEAN + jnp.sqrt(VAR) * jax.random.normal(jax.random.key(3), (256, 4)), -1, 1)
    x8 = jnp.round((x + 1) * 127.5) / 127.5 - 1  # 8-bit values in [-1, 1]
    out = samplers.ode_likelihood(GAUSS, SCHED, x8, jax.random.key(4), trace="exact")
    # The dequantised point lies in the bin of width 2/256 centred on the 8-bit value.
    lo = np.asarray(x8) - 1 / 256
    assert np.all((out["x"] >= lo - 1e-6) & (out["x"] < lo + 1 / 128 + 1e-6))
    truth = model_logp(out["x"], MEAN, VAR)
    err = np.abs(np.asarray(out["logp"] - truth))
    print(f"\nexact trace, tsit5 1e-5: max |logp - closed form| = {err.max():.2e} nats, "
          f"NFE {int(out['nfe'])}")
    assert err.max() < 2e-3
    # The data's own marginal at abar_0 differs from the model only by the prior at T - 1.
    std_0 = jnp.sqrt(ABAR[0] * VAR + 1 - ABAR[0])
    marginal = jnp.sum(norm.logpdf(out["x"], jnp.sqrt(ABAR[0]) * MEAN, std_0), axis=-1)
    assert float(jnp.max(jnp.abs(out["logp"] - marginal))) < 0.01
    # bits/dim of the 8-bit values from the Gaussian's probability of each bin.
    prob = norm.cdf(lo + 1 / 128, jnp.sqrt(ABAR[0]) * MEAN, std_0) - norm.cdf(
        lo, jnp.sqrt(ABAR[0]) * MEAN, std_0)
    discrete_bpd = -jnp.sum(jnp.log2(prob), axis=-1) / 4
    # Per example the density at one dequantised point differs from the bin's mean density to
    # first order in the bin width; over the batch these differences average out.
    gap = np.asarray(out["bpd"] - discrete_bpd)
    print(f"bits/dim: ODE {float(out['bpd'].mean()):.4f}, discrete Gaussian "
          f"{float(discrete_bpd.mean()):.4f} (difference {gap.mean():+.4f} +- "
          f"{gap.std() / math.sqrt(gap.size):.4f})")
    assert np.abs(gap).max() < 0.05
    assert abs(gap.mean()) < 3 * gap.std() / math.sqrt(gap.size) + 1e-3
    np.testing.assert_allclose(out["logp"], out["prior_logp"] + out["delta_logp"], rtol=1e-6)


ROTATION = jnp.linalg.qr(jax.random.normal(jax.random.key(5), (4, 4)))[0]


def rotated_gauss(x, t):
    """The optimal eps of the rotated data R z, z ~ N(MEAN, diag VAR): R eps(R^T x)."""
    return GAUSS(x @ ROTATION, t) @ ROTATION.T


@pytest.mark.parametrize("trace", ["gaussian", "hutchinson"])
def test_hutchinson_likelihood_is_unbiased(trace):
    """A full-covariance Gaussian (so neither probe is exact): the Hutchinson estimates scatter
    around the closed form, their mean within 3 standard errors of it."""
    x = (MEAN + jnp.sqrt(VAR) * jax.random.normal(jax.random.key(6), (512, 4))) @ ROTATION.T
    out = samplers.ode_likelihood(rotated_gauss, SCHED, x, jax.random.key(7), trace=trace,
                                  dequantize=False, method="heun", num_steps=200)
    diff = np.asarray(out["logp"] - model_logp(x, MEAN, VAR, ROTATION))
    stderr = diff.std(ddof=1) / math.sqrt(diff.size)
    print(f"\n{trace} probes: mean error {diff.mean():+.4f} nats, standard error {stderr:.4f}, "
          f"per-example sd {diff.std():.3f}")
    assert diff.std() > 1e-3  # the estimator is noisy ...
    # ... and unbiased, up to Heun's own error on 200 steps (0.008 nats with the exact trace).
    assert abs(diff.mean()) < 3 * stderr + 0.02


# --- classifier-free guidance -------------------------------------------------------------------

COMPONENT_MEANS = jnp.array([[-0.5, 0.5, 0.0, 0.3], [0.6, -0.2, 0.1, 0.0]])
COMPONENT_VARS = jnp.array([[0.1, 0.2, 0.3, 0.1], [0.2, 0.05, 0.1, 0.3]])
CLASS_MODELS = [optimal_eps([1.0], m[None], v[None])
                for m, v in zip(COMPONENT_MEANS, COMPONENT_VARS)]
UNCONDITIONAL = optimal_eps([0.5, 0.5], COMPONENT_MEANS, COMPONENT_VARS)
NULL = 2


def conditional(x, t, y):
    """Class 0 or 1 of the mixture, and the whole mixture for the null label 2."""
    y = y[:, None]
    return jnp.where(y == NULL, UNCONDITIONAL(x, t),
                     jnp.where(y == 0, CLASS_MODELS[0](x, t), CLASS_MODELS[1](x, t)))


def test_guidance_scale_one_is_conditional_and_zero_unconditional():
    x = jax.random.normal(jax.random.key(8), (6, 4))
    t = jnp.full((6,), 300.0)
    y = jnp.array([0, 1, 1, 0, 0, 1])

    @jax.jit
    def outputs(x, t):
        cond = jnp.where(y[:, None] == 0, CLASS_MODELS[0](x, t), CLASS_MODELS[1](x, t))
        guided = [samplers.classifier_free_guidance(conditional, y, scale=s, null_label=NULL)(x, t)
                  for s in (1.0, 0.0, 3.0)]
        return cond, UNCONDITIONAL(x, t), guided

    cond, uncond, (one, zero, three) = outputs(x, t)
    np.testing.assert_array_equal(one, cond)
    np.testing.assert_array_equal(zero, uncond)
    # Ho & Salimans (2022), eq. 6 with w = 2: (1 + w) eps_c - w eps_u.
    np.testing.assert_allclose(three, 3 * cond - 2 * uncond, rtol=1e-5, atol=1e-6)


def test_guided_model_runs_in_every_sampler():
    y = jnp.zeros((64,), jnp.int32)
    guided = samplers.classifier_free_guidance(conditional, y, scale=1.0, null_label=NULL)
    ref = samplers.dpm_solver_sample(CLASS_MODELS[0], SCHED, X_T, num_steps=8)
    np.testing.assert_allclose(samplers.dpm_solver_sample(guided, SCHED, X_T, num_steps=8), ref,
                               rtol=1e-5, atol=1e-5)
    # At scale 1 the guided model is the conditional one: every sampler gives its samples.
    for sample in (lambda f: samplers.ode_sample(f, SCHED, X_T, num_steps=4),
                   lambda f: samplers.ddim_sample(f, SCHED, X_T, num_steps=8)):
        np.testing.assert_allclose(sample(guided), sample(CLASS_MODELS[0]), rtol=1e-5, atol=1e-5)


def test_guidance_reads_the_null_label_from_the_model():
    class Model:
        null_label = NULL

        def __call__(self, x, t, y):
            return conditional(x, t, y)

    x, t, y = X_T[:3], jnp.full((3,), 10.0), jnp.array([1, 1, 0])
    guided = samplers.classifier_free_guidance(Model(), y, scale=0.0)
    got, expected = jax.jit(lambda x, t: (guided(x, t), UNCONDITIONAL(x, t)))(x, t)
    np.testing.assert_array_equal(got, expected)


# --- errors -------------------------------------------------------------------------------------


def test_clear_errors():
    with pytest.raises(ValueError, match="order must be 1, 2 or 3"):
        samplers.dpm_solver_sample(GAUSS, SCHED, X_T, num_steps=10, order=4)
    with pytest.raises(ValueError, match="order must be 1, 2 or 3"):
        samplers.dpm_solver_pp_update(X_T, X_T[None], jnp.zeros(1), 1.0, order=0)
    for bad in (0, T + 1):
        with pytest.raises(ValueError, match="num_steps"):
            samplers.dpm_solver_sample(GAUSS, SCHED, X_T, num_steps=bad)
        with pytest.raises(ValueError, match="num_steps"):
            samplers.ode_sample(GAUSS, SCHED, X_T, num_steps=bad)
    with pytest.raises(ValueError, match="method must be one of"):
        samplers.ode_sample(GAUSS, SCHED, X_T, method="rk4", num_steps=10)
    with pytest.raises(ValueError, match="euler' needs num_steps"):
        samplers.ode_likelihood(GAUSS, SCHED, X_T * 0, jax.random.key(0), method="euler")
    with pytest.raises(ValueError, match="rtol must be positive"):
        samplers.ode_sample(GAUSS, SCHED, X_T, method="tsit5", rtol=0.0)
    with pytest.raises(ValueError, match="strictly decreasing"):
        samplers.dpm_solver_sample(GAUSS, SCHED, X_T, num_steps=3,
                                   grid=lambda s, n: jnp.linspace(0.0, 999.0, n + 1))
    with pytest.raises(ValueError, match="trace must be one of"):
        samplers.ode_likelihood(GAUSS, SCHED, X_T * 0, jax.random.key(0), trace="hutchinsn")
    with pytest.raises(ValueError, match="num_probes"):
        samplers.ode_likelihood(GAUSS, SCHED, X_T * 0, jax.random.key(0), num_probes=0)
    with pytest.raises(ValueError, match=r"x0 must be data in \[-1, 1\]"):
        samplers.ode_likelihood(GAUSS, SCHED, X_T * 5, jax.random.key(0))
    with pytest.raises(ValueError, match="null label"):
        samplers.classifier_free_guidance(conditional, jnp.zeros(3, jnp.int32), scale=2.0)
    with pytest.raises(ValueError, match="batch size"):
        samplers.classifier_free_guidance(conditional, jnp.zeros(3, jnp.int32), scale=2.0,
                                          null_label=NULL)(X_T, jnp.zeros(64))
    with pytest.raises(ValueError, match="at least 2 steps"):
        samplers.dpm_solver_sample(GAUSS, schedules.linear(1), X_T, num_steps=1)
