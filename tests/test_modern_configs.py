"""The EDM, flow-matching and DiT configs: they build and trace, and `jaxdiff train`, `sample`
and `eval` run them end to end (one step of a tiny model); the eval's parts of an exact
likelihood add up to its total."""

import functools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

from jaxdiff import cli, train

TINY_DIT = {"model.hidden_size": 16, "model.depth": 1, "model.num_heads": 2}


@pytest.mark.parametrize("name", ["digits_edm", "digits_flow", "digits_dit"])
def test_config_builds_and_traces(name):
    _trace(cli.load_config_file(name))


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


@pytest.mark.parametrize("name", ["digits_ddpm", "digits_ncsn", "digits_edm", "digits_flow"])
def test_dit_is_the_network_of_every_process(name):
    """The DiT preset in place of the U-Net: int timesteps (DDPM), noise levels (NCSN), EDM's
    c_noise and flow times; its train step and sampler trace."""
    config = cli.load_config_file(name)
    config.model = dict(preset="dit_digits", hidden_size=16, depth=1, num_heads=2)
    _trace(config)


@pytest.mark.slow
def test_train_sample_eval_end_to_end(tmp_path):
    """digits_dit (flow matching on a DiT); digits_edm and digits_flow differ from it only in
    the entries traced above."""
    name = "digits_dit"
    workdir = tmp_path / "run"
    settings = {**TINY_DIT, "training.batch_size": 4, "training.num_steps": 1, "sampling.num_samples": 0,
                "sampling.num_steps": 2}
    overrides = [f"--config.{k}={v}" for k, v in settings.items()]
    assert cli.main(["train", "--config", name, "--workdir", str(workdir), *overrides]) == 0
    out = tmp_path / "s.npz"
    assert cli.main(["sample", "--workdir", str(workdir), "--num", "3", "--steps", "2",
                     "--output", str(out)]) == 0
    samples = np.load(out)["samples"]
    assert samples.shape == (3, 8, 8, 1) and samples.dtype == np.uint8
    report = tmp_path / "eval.json"
    assert cli.main(["eval", "--workdir", str(workdir), "--max_examples", "4", "--output", str(report)]) == 0
    r = json.loads(report.read_text())
    assert r["num_examples"] == 4 and np.isfinite(r["total_bpd"])
    np.testing.assert_allclose(r["prior_bpd"] + r["diffusion_bpd"] + r["decoder_bpd"], r["total_bpd"], rtol=1e-5)
    np.testing.assert_allclose(r["decoder_bpd"], -math.log2(2 / 256), rtol=1e-5)  # the bin width


def test_a_ddpm_run_samples_with_edms_sampler_through_the_vp_column():
    """`--sampler edm` on a DDPM run: Alg. 1 through Table 1's VP column, from N(0, I) noise."""
    config = cli.load_config_file("digits_ddpm")
    cli.apply_overrides(config, {"model.ch": "8", "model.ch_mult": "(1,)"})
    exp = train.build_experiment(config, data_shape=(8, 8, 1))
    key = jax.random.PRNGKey(0)
    state = jax.eval_shape(functools.partial(train.initial_state, exp, rng=key), key)
    sample = train.build_sampler(config, exp, sampler="edm", num_steps=3)
    assert jax.eval_shape(lambda p: sample({"params": p}, key, 2), state.ema_params).shape == (2, 8, 8, 1)
    with pytest.raises(ValueError, match="edm sampler"):
        ncsn = cli.load_config_file("digits_ncsn")
        train.build_sampler(ncsn, train.build_experiment(ncsn, data_shape=(8, 8, 1)), sampler="edm")
