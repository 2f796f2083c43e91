"""The EDM, flow-matching, DiT and VDM configs: they build and trace, and `jaxdiff train`,
`sample` and `eval` run them end to end (one step of a tiny model); the eval's parts of an exact
likelihood or a bound add up to its total."""

import functools
import json
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

from jaxdiff import cli, data, train

TINY_DIT = {"model.hidden_size": 16, "model.depth": 1, "model.num_heads": 2}


@pytest.mark.parametrize("name", ["digits_edm", "digits_flow", "digits_dit", "digits_vdm"])
def test_config_builds_and_traces(name):
    _trace(cli.load_config_file(name))


@pytest.mark.parametrize("overrides", [{"diffusion.gamma": "linear", "diffusion.fourier_exponents": "()"},
                                       {"diffusion.num_timesteps": "10"},
                                       {"diffusion.head": "eps"}])
def test_vdm_variants_trace(overrides):
    """digits_vdm with the fixed linear schedule and no Fourier features; the T-step model; the
    network predicting eps itself (one output channel per data channel, not per input one)."""
    config = cli.load_config_file("digits_vdm")
    cli.apply_overrides(config, overrides)
    _trace(config)


def _trace(config):
    exp = train.build_experiment(config, data_shape=(8, 8, 1))
    key = jax.random.PRNGKey(0)
    state = jax.eval_shape(functools.partial(train.initial_state, exp, rng=key), key)
    step = train.make_train_step(exp, Mesh(np.array(jax.devices()[:1]), ("data",)), ema=0.999,
                                 ema_warmup=True)
    _, metrics = jax.eval_shape(step, state, {"x": jax.ShapeDtypeStruct((2, 8, 8, 1), jnp.uint8)})
    assert metrics["loss"].shape == ()
    sample = train.build_sampler(config, exp)
    assert jax.eval_shape(lambda p: sample({"params": p}, key, 3), state.ema_params).shape == (3, 8, 8, 1)


@pytest.mark.parametrize("name", ["digits_ddpm", "digits_ncsn", "digits_edm", "digits_flow", "digits_vdm"])
def test_dit_is_the_network_of_every_process(name):
    """The DiT preset in place of the U-Net: int timesteps (DDPM), noise levels (NCSN), EDM's
    c_noise, flow times and VDM's t with Fourier features; its train step and sampler trace."""
    config = cli.load_config_file(name)
    config.model = dict(name="dit_digits", hidden_size=16, depth=1, num_heads=2)
    _trace(config)


def _train_sample_eval(tmp_path, name, settings, num_examples, *eval_args):
    """`jaxdiff train` (one step), `sample` (3 samples, 2 steps) and `eval` (with ``eval_args``)
    of a config; the eval's JSON, after checking the samples and that the parts add up to the
    total."""
    workdir = tmp_path / "run"
    settings = {"training.batch_size": 4, "training.num_steps": 1, "sampling.num_samples": 0,
                **settings}
    overrides = [f"--config.{k}={v}" for k, v in settings.items()]
    assert cli.main(["train", "--config", name, "--workdir", str(workdir), *overrides]) == 0
    out = tmp_path / "s.npz"
    assert cli.main(["sample", "--workdir", str(workdir), "--num", "3", "--steps", "2",
                     "--output", str(out)]) == 0
    samples = np.load(out)["samples"]
    assert samples.shape == (3, 8, 8, 1) and samples.dtype == np.uint8
    report = tmp_path / "eval.json"
    assert cli.main(["eval", "--workdir", str(workdir), "--max_examples", str(num_examples),
                     "--output", str(report), *eval_args]) == 0
    r = json.loads(report.read_text())
    assert r["num_examples"] == num_examples and np.isfinite(r["total_bpd"])
    np.testing.assert_allclose(r["prior_bpd"] + r["diffusion_bpd"] + r["decoder_bpd"], r["total_bpd"], rtol=1e-5)
    return r


@pytest.mark.slow
def test_train_sample_eval_end_to_end(tmp_path):
    """digits_dit (flow matching on a DiT); digits_edm and digits_flow differ from it only in
    the entries traced above."""
    r = _train_sample_eval(tmp_path, "digits_dit", {**TINY_DIT, "sampling.num_steps": 2}, 4)
    np.testing.assert_allclose(r["decoder_bpd"], -math.log2(2 / 256), rtol=1e-5)  # the bin width


@pytest.mark.slow
def test_vdm_train_sample_eval_end_to_end(tmp_path):
    """digits_vdm through the command line (one step of a tiny U-Net, at learning rate 0: the
    warmup's first step). The eval's prior term is KL(N(alpha_1 x, sigma_1^2) || N(0, 1)) at the
    initial gamma(1) = 5, computed here in closed form from the test digits; the decoder term at
    gamma(0) = -13.3 (sigma_0 / alpha_0 = 0.0013, a sixth of the bin width) is near zero. Both
    are the same for any number of draws of the bound: 4 per example, not the eval's 256."""
    validation = {"training.validation.every": 1, "training.validation.num_timesteps": 2}
    r = _train_sample_eval(
        tmp_path, "digits_vdm", {"model.ch": 8, "model.ch_mult": "(1,)", **validation}, 8,
        "--bound_draws", "4",
    )
    alpha2, sigma2 = 1.0 / (1.0 + math.exp(5.0)), 1.0 / (1.0 + math.exp(-5.0))

    def prior_bpd(split):
        x = np.stack([e["x"] for e in data.digits(split)]).astype(np.float64) / 127.5 - 1.0
        kl = 0.5 * (sigma2 + alpha2 * x**2 - 1.0 - math.log(sigma2))
        return np.mean(kl, axis=(1, 2, 3)) / math.log(2.0)

    np.testing.assert_allclose(r["prior_bpd"], prior_bpd("test")[:8].mean(), rtol=1e-4)
    assert 0.0 <= r["decoder_bpd"] < 0.01
    # early stopping on the held-out bound: at least its prior term on the 144 valid digits
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert best["step"] == 1 and prior_bpd("valid").mean() < best["valid_bpd"] < 20.0


class _ExactEps(nn.Module):
    """E[eps | x_t] of zero-mean Gaussian data of variance ``var`` on ``schedule``, at the real
    timesteps the sampler calls it with: sigma x / (alpha^2 var + sigma^2)."""

    schedule: object
    var: float

    def __call__(self, x, t, train=False):
        alpha, sigma = (v.reshape((-1, 1, 1, 1)) for v in self.schedule.alpha_sigma(t))
        return sigma * x / (alpha**2 * self.var + sigma**2)


def test_a_ddpm_run_samples_with_edms_sampler_through_the_vp_column():
    """`--sampler edm` on a DDPM run: Alg. 1 through Table 1's VP column, from N(0, I) noise. With
    the exact model of Gaussian data N(0, v) the flow in x~ = x / alpha keeps each point's
    standardised coordinate, x~ ~ N(0, v + sigma~^2), and the last step returns the posterior
    mean v x~ / (v + sigma~_min^2): the sample is sqrt(1 + sigma~_max^2) x_T mapped so."""
    config = cli.load_config_file("digits_ddpm")
    exp = train.build_experiment(config, data_shape=(8, 8, 1))
    var = 0.25
    exp = exp._replace(model=_ExactEps(exp.process, var))
    key = jax.random.PRNGKey(0)
    sample = train.build_sampler(config, exp, sampler="edm", num_steps=160)  # Heun: 0.06% off
    got = np.asarray(sample({"params": {}}, key, 4), np.float64)
    abar = np.cumprod(1.0 - np.asarray(exp.process.betas, np.float64))  # sigma~^2 = (1 - abar) / abar
    s2_min, s2_max = (1 - abar[0]) / abar[0], (1 - abar[-1]) / abar[-1]
    x_T = np.asarray(jax.random.normal(jax.random.split(key)[0], (4, 8, 8, 1)), np.float64)
    x_tilde = np.sqrt(1 + s2_max) * x_T * np.sqrt((var + s2_min) / (var + s2_max))
    np.testing.assert_allclose(got, var * x_tilde / (var + s2_min), rtol=2e-3, atol=1e-4)
    with pytest.raises(ValueError, match="sampler=edm does not fit"):
        ncsn = cli.load_config_file("digits_ncsn")
        train.build_sampler(ncsn, train.build_experiment(ncsn, data_shape=(8, 8, 1)), sampler="edm")


@pytest.mark.parametrize("overrides, message", [
    ({"diffusion.gamma": "cubic"}, "config.diffusion.gamma must be one of learned, linear"),
    ({"diffusion.gamma_max": "-20.0"}, "config.diffusion.gamma_max must be > config.diffusion.gamma_min"),
    ({"diffusion.num_timesteps": "0"}, "config.diffusion.num_timesteps must be an integer >= 1"),
])
def test_vdm_config_is_checked_by_field_name(overrides, message):
    config = cli.load_config_file("digits_vdm")
    cli.apply_overrides(config, overrides)
    with pytest.raises(ValueError, match=message):
        train.resolve(config, (8, 8, 1))
