"""Every Gaussian process in one shape: the continuous-time solvers run on each of them, checked
against the exact probability-flow map of Gaussian data, x = alpha x_0 + sigma eps with
x_0 ~ N(m, v): the marginal is N(alpha m, alpha^2 v + sigma^2) and the flow keeps every point's
standardised coordinate (a 1-D monotone transport between Gaussians is affine)."""

import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import processes, samplers, schedules

MEAN, VAR = jnp.array([0.5, -0.3]), jnp.array([0.25, 0.04])
Z = jax.random.normal(jax.random.key(0), (256, 2))

PROCESSES = {
    "schedule": schedules.linear(1000),
    "vp_gamma": processes.VPGamma(processes.linear_gamma(-10.0, 8.0)),
    "ve": processes.VE(0.01, 20.0),
    "edm": processes.EDM(0.002, 20.0),
    "linear_flow": processes.LinearFlow(1e-3, 0.999),
}


def marginal(process, t):
    alpha, sigma = process.alpha_sigma(t)
    return alpha * MEAN, jnp.sqrt(alpha**2 * VAR + sigma**2)


def optimal_eps(process, times):
    """E[eps | x_t] of Gaussian data, sigma (x - alpha m) / (alpha^2 v + sigma^2). The network
    time input is inverted to t by a lookup over the (increasing) model times of ``times``."""
    model_times = process.model_time(times)

    def model_fn(x, t):
        tau = jnp.interp(t[0], model_times, times)
        alpha, sigma = process.alpha_sigma(tau)
        return sigma * (x - alpha * MEAN) / (alpha**2 * VAR + sigma**2)

    return model_fn


@pytest.mark.parametrize("name", list(PROCESSES))
def test_solvers_follow_the_exact_flow_on_every_process(name):
    process = PROCESSES[name]
    times = jnp.linspace(process.t_data, process.t_noise, 4001)
    model_fn = optimal_eps(process, times)
    mu_T, sd_T = marginal(process, process.t_noise)
    mu_0, sd_0 = marginal(process, process.t_data)
    x_T = mu_T + sd_T * Z
    exact = mu_0 + sd_0 * Z
    grid = samplers.uniform_logsnr_grid
    dpm = samplers.dpm_solver_sample(model_fn, process, x_T, num_steps=30, order=3, grid=grid)
    heun = samplers.ode_sample(model_fn, process, x_T, num_steps=30, grid=grid)
    assert float(jnp.sqrt(jnp.mean((dpm - exact) ** 2))) < 2e-3
    assert float(jnp.sqrt(jnp.mean((heun - exact) ** 2))) < 2e-2


@pytest.mark.parametrize("name", list(PROCESSES))
def test_time_at_log_snr_inverts_log_snr_at(name):
    process = PROCESSES[name]
    t = jnp.linspace(process.t_data, process.t_noise, 9)[1:-1]
    np.testing.assert_allclose(process.time_at_log_snr(process.log_snr_at(t)), t,
                               rtol=1e-4, atol=1e-4 * float(process.t_noise))


@pytest.mark.parametrize("name", ["vp_gamma", "ve", "edm", "linear_flow"])
def test_alpha_sigma_give_the_log_snr(name):
    process = PROCESSES[name]
    t = jnp.linspace(process.t_data, process.t_noise, 7)[1:-1]
    alpha, sigma = process.alpha_sigma(t)
    np.testing.assert_allclose(2 * jnp.log(alpha / sigma), process.log_snr_at(t), rtol=1e-5,
                               atol=1e-5)


def test_integer_grid_needs_a_discrete_schedule():
    with pytest.raises(ValueError, match="uniform_logsnr_grid"):
        samplers.dpm_solver_sample(lambda x, t: x, PROCESSES["ve"], Z, num_steps=5,
                                   grid=samplers.integer_logsnr_grid)


# --- the base: a process is alpha_sigma, t_noise and t_data --------------------------------------


@flax.struct.dataclass
class Cosine(processes.GaussianProcess):
    """A user's process, three members: the cosine path of Nichol & Dhariwal (2021), s = 0."""

    t_noise = 0.99
    t_data = 0.01

    def alpha_sigma(self, t):
        return jnp.cos(0.5 * jnp.pi * t), jnp.sin(0.5 * jnp.pi * t)


def trig_time(log_snr):
    """alpha / sigma = cot(pi t / 2) = exp(lambda / 2): t = (2 / pi) arctan(exp(-lambda / 2))."""
    return 2.0 / np.pi * np.arctan(np.exp(-0.5 * np.asarray(log_snr, np.float64)))


# closed-form inverses of the log-SNR, written from each process's definition
CLOSED_FORM_TIME = {
    "vp_gamma": lambda lam: (-np.asarray(lam) + 10.0) / 18.0,  # gamma = -10 + 18 t
    "ve": lambda lam: np.log(np.exp(-0.5 * np.asarray(lam)) / 0.01) / np.log(20.0 / 0.01),
    "edm": lambda lam: np.exp(-0.5 * np.asarray(lam)),
    "linear_flow": lambda lam: 1.0 / (1.0 + np.exp(0.5 * np.asarray(lam))),
    "trig": trig_time,
    "cosine": trig_time,
}
CONTINUOUS = dict(PROCESSES, trig=processes.Trig(), cosine=Cosine())
del CONTINUOUS["schedule"]


@pytest.mark.parametrize("name", list(CLOSED_FORM_TIME))
def test_log_snr_inverse_equals_its_closed_form(name):
    process = CONTINUOUS[name]
    t = np.linspace(process.t_data, process.t_noise, 11)[1:-1]
    lam = process.log_snr_at(jnp.asarray(t))
    # the process's own inverse (a closed form or the base's bisection) and the base's bisection
    for inverse in (process.time_at_log_snr, lambda v: processes.GaussianProcess.time_at_log_snr(process, v)):
        np.testing.assert_allclose(inverse(lam), CLOSED_FORM_TIME[name](lam), rtol=2e-5, atol=2e-6)


def test_trig_and_a_users_process_are_the_same_path():
    t = jnp.linspace(0.05, 0.95, 7)
    alpha, sigma = processes.Trig().alpha_sigma(t)
    np.testing.assert_allclose(alpha, np.cos(np.pi * np.asarray(t) / 2), rtol=1e-6)
    np.testing.assert_allclose(sigma, np.sin(np.pi * np.asarray(t) / 2), rtol=1e-6)
    lam = np.log(np.cos(np.pi * np.asarray(t) / 2) ** 2 / np.sin(np.pi * np.asarray(t) / 2) ** 2)
    for process in (processes.Trig(), Cosine()):
        np.testing.assert_allclose(process.log_snr_at(t), lam, rtol=1e-5, atol=1e-5)
        dalpha, dsigma = process.alpha_sigma_derivatives(t)
        np.testing.assert_allclose(dalpha, -np.pi / 2 * np.sin(np.pi * np.asarray(t) / 2), rtol=1e-5)
        np.testing.assert_allclose(dsigma, np.pi / 2 * np.cos(np.pi * np.asarray(t) / 2), rtol=1e-5)
        np.testing.assert_allclose(process.prior_std, 1.0, rtol=1e-6)
        assert process.model_time(t).dtype == jnp.float32


def test_the_bisection_has_the_implicit_derivative():
    """d t / d lambda = 1 / lambda'(t); for gamma = -10 + 18 t that is -1 / 18."""
    process = PROCESSES["vp_gamma"]
    grad = jax.grad(lambda lam: processes.GaussianProcess.time_at_log_snr(process, lam))(2.0)
    np.testing.assert_allclose(grad, -1.0 / 18.0, rtol=1e-5)


def test_a_learned_gamma_is_a_pytree_argument():
    """The bound parameters of gamma are leaves: one compiled program serves every value, and
    gradients reach them (d alpha^2 / d gamma_max at t = 1 is -sigmoid'(gamma_max))."""

    def gamma(params, t):
        return params["lo"] + (params["hi"] - params["lo"]) * t

    traces = []

    @jax.jit
    def alpha_sq(process):
        traces.append(1)
        return process.alpha_sigma(1.0)[0] ** 2

    make = lambda hi: processes.VPGamma(functools.partial(gamma, {"lo": jnp.float32(-10.0), "hi": hi}))
    a1, a2 = alpha_sq(make(jnp.float32(4.0))), alpha_sq(make(jnp.float32(6.0)))
    assert len(traces) == 1
    np.testing.assert_allclose([a1, a2], jax.nn.sigmoid(-jnp.array([4.0, 6.0])), rtol=1e-6)
    grad = jax.grad(lambda hi: alpha_sq(make(hi)))(jnp.float32(4.0))
    s = jax.nn.sigmoid(-4.0)
    np.testing.assert_allclose(grad, -s * (1 - s), rtol=1e-5)


def test_ve_levels_are_the_ncsn_sigmas():
    sigmas = schedules.geometric_sigmas(10.0, 0.1, 5)
    process = processes.VELevels(sigmas)
    k = jnp.arange(5)
    np.testing.assert_allclose(process.alpha_sigma(k)[1], np.geomspace(0.1, 10.0, 5), rtol=1e-6)
    np.testing.assert_allclose(process.model_time(k), np.geomspace(0.1, 10.0, 5), rtol=1e-6)
    np.testing.assert_allclose(process.time_at_log_snr(-2.0 * np.log(np.geomspace(0.1, 10.0, 5))),
                               np.arange(5), atol=1e-5)
    # between the levels log sigma is linear: halfway between 0.1 and 10^-0.5, their geometric mean
    np.testing.assert_allclose(process.alpha_sigma(jnp.array(0.5))[1], np.sqrt(0.1 * 10**-0.5), rtol=1e-5)
    draws = process.sample_time(jax.random.key(1), 4000)
    assert draws.dtype == jnp.int32 and set(np.unique(draws)) == set(range(5))


def test_a_schedule_reads_its_tables_at_int_t_and_calls_the_network_with_int32():
    schedule = schedules.linear(100)
    t = jnp.array([0, 17, 99], jnp.int32)
    alpha, sigma = schedule.alpha_sigma(t)
    betas = np.linspace(1e-4 * 10, 0.02 * 10, 100)  # Ho et al.'s betas, scaled by 1000 / T
    abar = np.cumprod(1 - betas)[[0, 17, 99]]
    np.testing.assert_allclose(alpha, np.sqrt(abar), rtol=1e-5)
    np.testing.assert_allclose(sigma, np.sqrt(1 - abar), rtol=1e-5)
    assert schedule.model_time(t).dtype == jnp.int32
    np.testing.assert_array_equal(schedule.model_time(t), t)
    np.testing.assert_allclose(schedule.model_time(jnp.array(16.5)), 16.5)
    assert schedule.sample_time(jax.random.key(0), 8).dtype == jnp.int32


def test_a_process_must_define_its_three_members():
    @flax.struct.dataclass
    class NoEnds(processes.GaussianProcess):
        def alpha_sigma(self, t):
            return jnp.cos(t), jnp.sin(t)

    with pytest.raises(TypeError, match="t_data"):
        NoEnds()
