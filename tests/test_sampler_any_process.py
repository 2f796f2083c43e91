"""A new process is three members: a user's cosine path, defined by alpha_sigma, t_noise and
t_data alone, samples with every continuous sampler and gives its likelihood, checked with the
exact model of Gaussian data against the exact flow map (an affine transport between the
Gaussian marginals) and its closed-form density."""

import math

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

from jaxdiff import analytic, processes, samplers, schedules


@flax.struct.dataclass
class Cosine(processes.GaussianProcess):
    t_noise = 0.999
    t_data = 0.002

    def alpha_sigma(self, t):
        return jnp.cos(0.5 * jnp.pi * t), jnp.sin(0.5 * jnp.pi * t)


PROCESS = Cosine()
MEAN = jnp.array([0.5, -0.3, 0.0, 0.2])
VAR = jnp.array([0.25, 0.04, 0.5, 0.09])
X_T = jax.random.normal(jax.random.key(0), (64, 4))


def alpha_sigma(t):  # the closed form, independent of the process object
    return math.cos(0.5 * math.pi * t), math.sin(0.5 * math.pi * t)


def EXACT_EPS(x, t):  # noqa: N802 - a model
    """The exact eps of Gaussian data, sigma (x - alpha m) / (alpha^2 v + sigma^2), in closed form."""
    t = t[:, None]
    a, s = jnp.cos(0.5 * jnp.pi * t), jnp.sin(0.5 * jnp.pi * t)
    return s * (x - a * MEAN) / (a**2 * VAR + s**2)


def exact_velocity(x, t):
    """dx/dt = alpha' E[x0 | x] + sigma' E[eps | x] of the cosine path, for Gaussian data."""
    t = t[:, None]
    a, s = jnp.cos(0.5 * jnp.pi * t), jnp.sin(0.5 * jnp.pi * t)
    da, ds = -0.5 * jnp.pi * s, 0.5 * jnp.pi * a
    z = (x - a * MEAN) / (a**2 * VAR + s**2)
    return da * (MEAN + a * VAR * z) + ds * s * z


def flow_error(x, t_from, t_to):
    """RMS distance to the exact probability-flow map from t_from to t_to (abar = alpha^2)."""
    (a_from, _), (a_to, _) = alpha_sigma(t_from), alpha_sigma(t_to)
    exact = analytic.gaussian_flow_map(X_T, a_from**2, a_to**2, MEAN, VAR)
    return float(jnp.sqrt(jnp.mean((x - exact) ** 2)))


def order(steps, errors):
    return -np.polyfit(np.log(steps), np.log(errors), 1)[0]


def check_order(name, steps, errors, band):
    rate = order(steps, errors)
    print(f"\n{name}: " + ", ".join(f"N={n}: {e:.2e}" for n, e in zip(steps, errors))
          + f"; fitted order {rate:.2f}")
    assert band[0] < rate < band[1]


def test_ode_sample_heun_converges_at_second_order():
    steps = [8, 16, 32]
    errors = [flow_error(samplers.ode_sample(EXACT_EPS, PROCESS, X_T, num_steps=n),
                         PROCESS.t_noise, PROCESS.t_data) for n in steps]
    check_order("ode_sample Heun", steps, errors, (1.7, 2.4))


def test_dpm_solver_converges_at_its_order():
    steps = [20, 40, 80]
    for k, band in ((1, (0.8, 1.2)), (2, (1.7, 2.3))):
        errors = [flow_error(samplers.dpm_solver_sample(EXACT_EPS, PROCESS, X_T, num_steps=n,
                                                        order=k),
                             PROCESS.t_noise, PROCESS.t_data) for n in steps]
        check_order(f"DPM-Solver++({k})", steps, errors, band)


def test_edm_heun_on_the_process_denoiser_converges_at_second_order():
    """Karras et al. Alg. 1 on the process's own noise range in the scaled state y = x / alpha
    (Table 1's columns for any process), then back to x at t_data."""
    sigma_min, sigma_max = samplers.sigma_range(PROCESS)
    alpha_T, alpha_0 = alpha_sigma(PROCESS.t_noise)[0], alpha_sigma(PROCESS.t_data)[0]
    denoiser = samplers.process_denoiser(EXACT_EPS, PROCESS)
    steps = [8, 16, 32]
    errors = []
    for n in steps:
        sigmas = schedules.karras_sigmas(n, sigma_min, sigma_max)[:-1]  # end at sigma_min
        y = samplers.edm_sample(denoiser, sigmas, X_T / alpha_T)
        errors.append(flow_error(alpha_0 * y, PROCESS.t_noise, PROCESS.t_data))
    check_order("EDM Heun", steps, errors, (1.7, 2.4))


def test_flow_style_euler_in_the_process_time_converges_at_first_order():
    steps = [16, 32, 64]
    errors = [flow_error(samplers.flow_sample(exact_velocity, X_T, num_steps=n, process=PROCESS),
                         PROCESS.t_noise, PROCESS.t_data) for n in steps]
    check_order("flow-style Euler", steps, errors, (0.85, 1.2))


@pytest.mark.parametrize("prediction", ["eps", "velocity"])
def test_ode_likelihood_equals_the_exact_density(prediction):
    """The model's density at t_data: N(0, I) at t_noise pushed through the exact flow map,
    an affine map (change of variables in closed form)."""
    model = EXACT_EPS if prediction == "eps" else exact_velocity
    x = MEAN + jnp.sqrt(VAR) * jax.random.normal(jax.random.key(1), (64, 4))
    out = samplers.ode_likelihood(model, PROCESS, x, jax.random.key(2), trace="exact",
                                  dequantize=False, prediction=prediction, rtol=1e-6, atol=1e-6)
    (a0, s0), (aT, sT) = alpha_sigma(PROCESS.t_data), alpha_sigma(PROCESS.t_noise)
    std_0, std_T = jnp.sqrt(a0**2 * VAR + s0**2), jnp.sqrt(aT**2 * VAR + sT**2)
    z = analytic.gaussian_flow_map(x, a0**2, aT**2, MEAN, VAR)
    exact = jnp.sum(norm.logpdf(z) + jnp.log(std_T / std_0), axis=-1)
    err = float(jnp.max(jnp.abs(out["logp"] - exact)))
    print(f"\node_likelihood ({prediction}): max |logp - exact| = {err:.2e} nats")
    assert err < 1e-3  # tsit5 at 1e-6 (1e-5 leaves 4e-3 here)


def test_ancestral_step_on_the_driver_samples_the_data():
    """A sampler is a step on the driver: samplers.sample with the ancestral step (any process)
    and the exact model draws the process's marginal at t_data (the data, up to sigma(t_data)),
    checked on its mean and variance."""
    z = jax.random.normal(jax.random.key(3), (4096, 4))
    x = samplers.sample(samplers.ancestral_step, EXACT_EPS, PROCESS, z, jax.random.key(4),
                        num_steps=200, grid=samplers.uniform_time_grid)
    a0, s0 = alpha_sigma(PROCESS.t_data)
    mean, var = a0 * MEAN, a0**2 * VAR + s0**2
    n = x.shape[0]
    x = np.asarray(x, np.float64)
    assert np.all(np.abs(x.mean(0) - mean) < 4 * np.sqrt(var / n))
    assert np.all(np.abs(x.var(0) - var) < 4 * var * np.sqrt(2 / n) + 0.01 * var)
