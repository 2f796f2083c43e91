"""The evaluation driver: the bound over a dataset with the exact eps-predictor of a Gaussian
fitted to the digits (jaxdiff.analytic), checked against closed forms and against itself
under other noise, other batchings and other device layouts."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import analytic, cli, data, elbo, evaluate, schedules, train
from jaxdiff.metrics import digits


@pytest.fixture(scope="module")
def gaussian_model():
    """The linear schedule (T = 1000), the optimal eps-predictor for N(mean, var) with the
    digits train split's per-pixel moments, and 64 test images."""
    schedule = schedules.linear(1000)
    train_x = np.asarray(data.to_model_range(digits.digits_split("train")[0]))
    model_fn = analytic.gaussian_eps_fn(schedule, train_x.mean(0), train_x.var(0) + 1e-2)
    return schedule, model_fn, digits.digits_split("test")[0][:64]


@pytest.fixture(scope="module")
def two_evaluations(gaussian_model):
    schedule, model_fn, images = gaussian_model
    kwargs = dict(batch_size=32, variance="fixed_large")
    a = evaluate.nll_per_example(model_fn, schedule, images, jax.random.PRNGKey(0), **kwargs)
    b = evaluate.nll_per_example(model_fn, schedule, images, jax.random.PRNGKey(1), **kwargs)
    return a, b


def test_prior_term_closed_form_and_below_1e3(gaussian_model, two_evaluations):
    schedule, _, images = gaussian_model
    result = evaluate.summarize_nll(two_evaluations[0])
    # KL(N(sqrt(abar_T) x, 1 - abar_T) || N(0, 1)) per dimension, from the betas in float64.
    abar = np.prod(1.0 - np.linspace(1e-4, 0.02, 1000))
    x = images.astype(np.float64) / 127.5 - 1.0
    kl = 0.5 * (-1.0 - np.log1p(-abar) + (1.0 - abar) + abar * x**2)
    want = kl.reshape(len(x), -1).mean(axis=1) / np.log(2.0)
    np.testing.assert_allclose(two_evaluations[0]["prior"], want, rtol=1e-3, atol=1e-8)
    print(f"L_T of the linear schedule: {result['prior_bpd']:.3g} bits/dim")
    assert result["prior_bpd"] < 1e-3


def _expected_vb_term(t, x0, mean, var):
    """E_{x_t | x_0} KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)) in bits/dim, t >= 1, for the
    optimal eps-predictor of N(mean, var) without clipping and the fixed_large variance beta_t,
    in float64, per example ``[N]``. The model's x_0 estimate is linear in x_t, k x_t + j, so the means differ by
    c1 (k x_t + j - x_0), whose second moment under x_t ~ N(a x_0, b^2) is closed-form."""
    betas = np.linspace(1e-4, 0.02, 1000)
    abar = np.cumprod(1.0 - betas)
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    a2, b2 = abar[t], 1.0 - abar[t]
    c1 = np.sqrt(abar_prev[t]) * betas[t] / b2  # Ho et al. 2020, eq. 7
    var_q = betas[t] * (1.0 - abar_prev[t]) / b2
    k, j = np.sqrt(a2) * var / (a2 * var + b2), b2 * mean / (a2 * var + b2)
    d2 = c1**2 * ((k * np.sqrt(a2) - 1.0) * x0 + j) ** 2 + c1**2 * k**2 * b2
    kl = 0.5 * (np.log(betas[t] / var_q) + var_q / betas[t] + d2 / betas[t] - 1.0)
    return kl.reshape(len(x0), -1).mean(axis=1) / np.log(2.0)


def test_single_bound_terms_match_their_closed_forms(gaussian_model):
    """Single terms vb[:, t] of the bound over a split against :func:`_expected_vb_term`, to
    the Monte Carlo error of one x_t draw per example and t."""
    schedule, _, images = gaussian_model
    train_x = np.asarray(data.to_model_range(digits.digits_split("train")[0]), np.float64)
    mean, var = train_x.mean(0), train_x.var(0) + 1e-2
    model_fn = analytic.gaussian_eps_fn(schedule, mean, var)
    images = images[:64]
    r = evaluate.nll_per_example(model_fn, schedule, images, jax.random.PRNGKey(4), batch_size=64,
                                 variance="fixed_large", clip_denoised=False)
    x0 = images.astype(np.float64) / 127.5 - 1.0
    for t in (1, 30, 300, 999):
        error = np.asarray(r["vb"][:, t], np.float64) - _expected_vb_term(t, x0, mean, var)
        assert abs(error.mean()) < 4 * error.std(ddof=1) / np.sqrt(error.size), t
    json.dumps(evaluate.summarize_nll(r))  # JSON-ready


def test_two_rngs_agree_within_standard_error(two_evaluations):
    a, b = (evaluate.summarize_nll(e) for e in two_evaluations)
    paired = np.asarray(two_evaluations[0]["total"], np.float64) - two_evaluations[1]["total"]
    mc_stderr = paired.std(ddof=1) / np.sqrt(paired.size)
    print(
        f"bits/dim {a['total_bpd']:.4f} +- {a['stderr_bpd']:.4f} (rng 0) vs {b['total_bpd']:.4f} "
        f"+- {b['stderr_bpd']:.4f} (rng 1); difference {a['total_bpd'] - b['total_bpd']:+.5f}, "
        f"its Monte Carlo stderr {mc_stderr:.5f}"
    )
    # Each estimate's standard error includes its own Monte Carlo noise (one noise draw per t).
    assert abs(a["total_bpd"] - b["total_bpd"]) < 2 * np.hypot(a["stderr_bpd"], b["stderr_bpd"])
    assert abs(a["total_bpd"] - b["total_bpd"]) < 4 * mc_stderr
    np.testing.assert_allclose(
        a["stderr_bpd"], np.std(two_evaluations[0]["total"], ddof=1) / 8.0, rtol=1e-5
    )


def test_batches_pad_and_use_their_own_keys():
    """A ragged dataset (50 = 32 + 18) gives what the bound gives on each batch with key
    fold_in(rng, i); a short schedule keeps this quick."""
    schedule = schedules.linear(10)
    model_fn = analytic.gaussian_eps_fn(schedule, 0.0, 0.3)
    images = digits.digits_split("test")[0][:50]
    rng = jax.random.PRNGKey(3)
    got = evaluate.nll_per_example(model_fn, schedule, images, rng, batch_size=32)
    x0 = data.to_model_range(images)
    for i, sl in enumerate([slice(0, 32), slice(32, 50)]):
        want = elbo.nll_bpd(model_fn, schedule, x0[sl], jax.random.fold_in(rng, i))
        np.testing.assert_allclose(got["total"][sl], want["total"], rtol=1e-6)
        np.testing.assert_allclose(got["vb"][sl], want["vb"], rtol=1e-5, atol=1e-7)


def test_bad_input():
    schedule = schedules.linear(10)
    model_fn = analytic.gaussian_eps_fn(schedule, 0.0, 1.0)
    with pytest.raises(ValueError, match="batch_size"):
        evaluate.evaluate_nll(
            model_fn,
            schedule,
            np.zeros((4, 2, 2, 1), np.uint8),
            jax.random.PRNGKey(0),
            batch_size=0,
        )
    with pytest.raises(TypeError, match="data must be"):
        evaluate.evaluate_nll(model_fn, schedule, "digits", jax.random.PRNGKey(0))


def test_sharded_over_two_devices_matches_one():
    """Two host devices (a subprocess, XLA's forced device count): the batch is split over
    them and the result equals the single-device one."""
    code = textwrap.dedent("""
        import jax, numpy as np
        from jaxdiff import analytic, evaluate, schedules
        from jaxdiff.metrics import batching, digits
        assert jax.device_count() == 2
        s = schedules.linear(10)
        f = analytic.gaussian_eps_fn(s, 0.0, 0.3)
        x = digits.digits_split("test")[0][:20]
        k = jax.random.PRNGKey(0)
        two = evaluate.nll_per_example(f, s, x, k, batch_size=8)
        one = evaluate.nll_per_example(f, s, x, k, batch_size=8, mesh=batching.data_mesh(jax.devices()[:1]))
        np.testing.assert_allclose(two["total"], one["total"], rtol=1e-6)
        try:
            evaluate.nll_per_example(f, s, x, k, batch_size=5)
        except ValueError as e:
            assert "divisible" in str(e)
        else:
            raise AssertionError("batch_size 5 on 2 devices must fail")
        print("ok")
        """)
    env = dict(
        os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2",
        JAX_PLATFORMS="cpu",
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


def test_evaluate_run_table_and_json():
    """evaluate_run on a digits run (untrained U-Net, T = 10): the keys ``jaxdiff eval`` writes,
    the table, and the independent-pixel baseline computed on its own."""
    config = cli.load_config_file("digits_ddpm")
    config.diffusion.num_timesteps = 10
    config.model.update(ch=8, num_groups=4, ch_mult=(1,), num_res_blocks=1, attn_resolutions=())
    family = train.resolve(config, (8, 8, 1))
    run = train.Run(config, family, jax.jit(family.init_state)(jax.random.PRNGKey(0)), 0)
    lines = []
    results = evaluate.evaluate_run(run, max_examples=8, batch_size=8, log=lines.append)
    print("\n".join(lines))
    for key in (
        "total_bpd",
        "prior_bpd",
        "diffusion_bpd",
        "decoder_bpd",
        "stderr_bpd",
        "num_examples",
    ):
        assert key in results
    assert results["num_examples"] == 8 and results["split"] == "test"
    train_x, test_x = digits.digits_split("train")[0], digits.digits_split("test")[0][:8]
    # by hand: per-pixel counts over the 17 grey levels, add-one smoothing, bits of the test set
    levels = np.round(np.arange(17) * 255 / 16)
    train_index = np.argmin(np.abs(train_x[..., None] - levels), axis=-1)
    test_index = np.argmin(np.abs(test_x[..., None] - levels), axis=-1)
    counts = (train_index[..., None] == np.arange(17)).sum(axis=0)  # [8, 8, 1, 17]
    probs = (counts + 1.0) / (len(train_x) + 17.0)
    test_probs = np.take_along_axis(probs[None], test_index[..., None], axis=-1)
    np.testing.assert_allclose(results["pixel_baseline_bpd"], -np.log2(test_probs).mean(), rtol=1e-6)
    assert "independent pixels" in lines[-1]
    json.dumps(results)
