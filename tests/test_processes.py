"""Every Gaussian process in one shape: the continuous-time solvers run on each of them, checked
against the exact probability-flow map of Gaussian data, x = alpha x_0 + sigma eps with
x_0 ~ N(m, v): the marginal is N(alpha m, alpha^2 v + sigma^2) and the flow keeps every point's
standardised coordinate (a 1-D monotone transport between Gaussians is affine)."""

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
