"""A noise process from the command line: ``config.diffusion.kind`` names a GaussianProcess (the
built-in trigonometric path, or a user's class as ``package.module:Class``), which then trains
with L_simple, samples with every solver of any process and evaluates by its probability-flow
likelihood, each checked against the exact model of Gaussian data."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from jaxdiff import cli, processes, train
from jaxdiff.families import diffusion
from test_sampler_any_process import Cosine
from test_train import run, tiny_config


USER_KIND = "test_sampler_any_process:Cosine"  # a user's process: three members
VAR = 0.25  # the data: N(0, VAR I)


class _ExactEps(nn.Module):
    """E[eps | x_t] of N(0, VAR I) data on ``process``: sigma x / (alpha^2 VAR + sigma^2)."""

    process: object

    def __call__(self, x, t, train=False):
        alpha, sigma = (v.reshape((-1, 1)) for v in self.process.alpha_sigma(t))
        return sigma * x / (alpha**2 * VAR + sigma**2)


def _config(kind, **overrides):
    return tiny_config(diffusion__kind=kind, sampling__sampler="dpm_solver", **overrides)


@pytest.mark.parametrize("sampler, num_steps", [("ode", 160), ("dpm_solver", 100), ("edm", 200)])
def test_every_solver_maps_the_prior_to_the_data_by_the_exact_flow(sampler, num_steps):
    """With the exact model of Gaussian data, x_t = sqrt(alpha^2 VAR + sigma^2) z along the
    probability-flow ODE (z fixed): the prior's N(0, 1) draw x_T ends at sqrt(VAR) x_T /
    sqrt(alpha_T^2 VAR + sigma_T^2) (up to the O(sigma_data^2) left at t_data); the steps give
    each solver 0.1 % (they converge at order 2: 1.4 %, 0.08 % for Heun at 40, 160 steps)."""
    config = _config("trig")
    exp = train.build_experiment(config, data_shape=(2,))
    assert type(exp.process) is processes.Trig
    exp = exp._replace(model=_ExactEps(exp.process))
    key = jax.random.PRNGKey(0)
    got = train.build_sampler(config, exp, sampler=sampler, num_steps=num_steps)({"params": {}}, key, 64)
    x_T = np.asarray(exp.prior(jax.random.split(key)[0], (64, 2)), np.float64)
    alpha, sigma = (float(v) for v in exp.process.alpha_sigma(exp.process.t_noise))
    np.testing.assert_allclose(got, np.sqrt(VAR / (alpha**2 * VAR + sigma**2)) * x_T, rtol=3e-3, atol=1e-4)


def test_ancestral_sampling_of_the_exact_model_has_the_datas_variance():
    config = _config("trig")
    exp = train.build_experiment(config, data_shape=(2,))
    exp = exp._replace(model=_ExactEps(exp.process))
    sample = train.build_sampler(config, exp, sampler="ancestral", num_steps=200)
    got = np.asarray(sample({"params": {}}, jax.random.PRNGKey(1), 4000), np.float64)
    # 8,000 values: the variance's standard error is VAR sqrt(2 / 8000) = 1.6 %
    assert abs(got.var() / VAR - 1.0) < 0.06, got.var()


def test_the_likelihood_of_the_exact_model_is_the_datas_density():
    """The family's likelihood (the probability-flow ODE of the process, exact trace) of the
    exact model at points of N(0, VAR I) is that density, in bits/dim of 8-bit data (the
    [-1, 1] range is 256 bins of width 1/128: log2(128) = 7 bits per dimension more)."""
    config = _config(USER_KIND)
    family = train.resolve(config, (2,))
    exp = family.parts._replace(model=_ExactEps(family.parts.process))
    family = family._replace(likelihood=diffusion._likelihood(exp))
    estimate = family.likelihood(dequantize=False, trace="exact")
    x0 = jax.random.normal(jax.random.PRNGKey(2), (8, 2)) * np.sqrt(VAR)
    state = type("State", (), {"ema_params": {}})()
    got = np.asarray(estimate.fn(state, x0, jax.random.PRNGKey(3))["total"])
    alpha, sigma = (float(v) for v in exp.process.alpha_sigma(exp.process.t_data))
    var = alpha**2 * VAR + sigma**2  # the density at t_data the ODE starts from
    logp = -0.5 * (np.sum(np.asarray(x0) ** 2, 1) / var + 2 * np.log(2 * np.pi * var))
    np.testing.assert_allclose(got, -logp / (2 * np.log(2.0)) + 7.0, rtol=1e-3)


def test_a_users_process_trains_and_samples_from_a_config_override(tmp_path):
    """``--config.diffusion.kind=package.module:Class``: trained by the driver (two steps of a
    tiny MLP), then sampled from the run (jitted whole) by the two samplers new to it."""
    config = _config(USER_KIND, training__num_steps=2)
    run(config, tmp_path / "run")
    loaded = train.load_run(tmp_path / "run")
    assert type(loaded.schedule) is Cosine
    for sampler in ("edm", "ancestral"):
        x = np.asarray(loaded.sample(jax.random.PRNGKey(0), 4, sampler=sampler, num_steps=2))
        assert x.shape == (4, 2) and np.all(np.isfinite(x)), sampler


@pytest.mark.parametrize("kind, message", [
    ("no_such_module:Cosine", "config.diffusion.kind: cannot import 'no_such_module'"),
    (f"{__name__}:VAR", f"config.diffusion.kind: '{__name__}' has no callable 'VAR'"),
    (f"{__name__}:run", "is not a subclass of jaxdiff.processes.GaussianProcess"),
    ("cosine", "config.diffusion.kind must be one of ddpm, edm, flow, ncsn, trig, vdm or 'package"),
])
def test_a_bad_kind_is_named(kind, message):
    with pytest.raises(ValueError, match=message):
        train.resolve(_config(kind), (2,))


def test_a_process_kind_takes_the_solvers_of_any_process_only():
    with pytest.raises(ValueError, match="sampler=ddpm does not fit .* it takes ode, dpm_solver"):
        train.resolve(tiny_config(diffusion__kind="trig"), (2,))
    config = _config("trig")
    cli.apply_overrides(config, {"diffusion.prediction": "mean"})
    with pytest.raises(ValueError, match="config.diffusion.prediction must be one of eps, x0"):
        train.resolve(config, (2,))


def test_sampling_options_are_the_configs_resolved_once():
    """config.sampling becomes a frozen SamplingOptions; --steps sets the chosen sampler's own
    step field; an unknown option or sampler is named."""
    config = _config("trig")
    exp = train.build_experiment(config, data_shape=(2,))
    options = diffusion.SamplingOptions.of(config.sampling, exp.settings)
    assert (options.sampler, options.num_steps, options.prediction) == ("dpm_solver", 50, "eps")
    assert options.replace(sampler="ddpm", num_steps=7).ddpm_num_steps == 7
    assert options.replace(sampler="langevin", num_steps=7).steps_per_sigma == 7
    with pytest.raises(ValueError, match="warp is no sampling option"):
        options.replace(warp=2)
    with pytest.raises(ValueError, match="sampler must be one of .*got 'heun'"):
        options.replace(sampler="heun")
