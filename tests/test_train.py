"""Training: the pure step against Adam's closed form, exact resume, NaN handling, checkpoints."""

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import checkpoint, cli, samplers, train

REPO = Path(__file__).resolve().parent.parent

# A toy run that compiles and trains in seconds: a width-16 MLP on the swiss roll, T = 20.
TINY = {
    "model.features": "16",
    "model.num_blocks": "1",
    "diffusion.num_timesteps": "20",
    "training.batch_size": "8",
    "training.num_steps": "6",
    "training.log_every": "1",
    "training.checkpoint_every": "2",
    "training.sample_every": "0",
    "sampling.num_samples": "0",
    "optim.warmup_steps": "2",
}


def tiny_config(**overrides):
    config = cli.load_config_file(str(REPO / "configs" / "toy2d_ddpm.py"))
    cli.apply_overrides(config, {**TINY, **{k.replace("__", "."): str(v) for k, v in overrides.items()}})
    return config


def run(config, workdir):
    return train.train(config, workdir, devices=jax.devices()[:1], log=lambda _: None)


def leaves_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_train_step_is_one_adam_step_and_one_ema_step():
    # loss = mean_i 0.5 (p - x_i)^2: g = p - mean(x). Adam's first bias-corrected update is
    # -lr * g / (|g| + eps) = -lr * sign(g) (Kingma & Ba 2015, Alg. 1).
    lr, decay = 0.1, 0.9
    tx = train.make_optimizer(learning_rate=lr, warmup_steps=0, grad_clip=1.0)
    p0 = {"w": jnp.array([0.5, -2.0, 3.0])}
    state = train.create_train_state(p0, tx, jax.random.PRNGKey(0))
    batch = {"x": jnp.array([[1.0, 1.0, 1.0], [2.0, -4.0, 5.0]])}
    loss_fn = lambda p, b, rng: 0.5 * jnp.sum((p["w"] - b["x"]) ** 2, axis=1)  # noqa: E731
    new, metrics = train.train_step(
        state, batch, jax.random.PRNGKey(1), loss_fn=loss_fn, ema=decay, ema_warmup=False
    )
    g = p0["w"] - batch["x"].mean(0)
    expected = p0["w"] - lr * np.sign(g)
    np.testing.assert_allclose(new.params["w"], expected, atol=1e-6)
    np.testing.assert_allclose(new.ema_params["w"], decay * p0["w"] + (1 - decay) * expected, atol=1e-6)
    np.testing.assert_allclose(metrics["loss"], np.mean(0.5 * np.sum((p0["w"] - batch["x"]) ** 2, 1)))
    np.testing.assert_allclose(metrics["grad_norm"], np.linalg.norm(g), rtol=1e-6)
    assert int(new.step) == 1


def test_warmup_and_ema_warmup_follow_their_formulas():
    lr = train.learning_rate_schedule(2e-4, 5000)
    np.testing.assert_allclose([lr(0), lr(2500), lr(5000), lr(9000)], [0, 1e-4, 2e-4, 2e-4], rtol=1e-6)
    d = [float(train.ema_decay(n, decay=0.999, warmup=True)) for n in (0, 90, 10**6)]
    np.testing.assert_allclose(d, [1 / 10, 91 / 100, 0.999], rtol=1e-6)


def test_resume_and_sigterm_are_bit_identical_and_nan_stops_cleanly(tmp_path):
    n = 30
    config = tiny_config(training__num_steps=n, sampling__num_samples=4)
    straight = run(config, tmp_path / "a")
    lines = [json.loads(s) for s in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == list(range(n))
    # the logged rate is the optimizer's: Ho et al.'s warmup lr * min(step / 2, 1), by hand
    lr = config.optim.learning_rate
    np.testing.assert_allclose([m["lr"] for m in lines], [lr * min(k / 2, 1) for k in range(n)], rtol=1e-6)
    assert (tmp_path / "a" / "samples" / f"step_{n:07d}.png").is_file()

    # stopped at step 3 (between checkpoints) by num_steps, then resumed
    run(tiny_config(training__num_steps=3), tmp_path / "b")
    assert checkpoint.Checkpointer(tmp_path / "b" / "checkpoints").steps() == [2, 3]
    assert leaves_equal(straight, run(tiny_config(training__num_steps=n), tmp_path / "b"))

    # stopped by a real SIGTERM to `python -m jaxdiff train`, then resumed
    args = [f"--config.{k}={v}" for k, v in {**TINY, "training.num_steps": n}.items()]
    cmd = [sys.executable, "-m", "jaxdiff", "train", "--config", str(REPO / "configs" / "toy2d_ddpm.py"),
           "--workdir", str(tmp_path / "c"), *args]
    env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    metrics = tmp_path / "c" / "metrics.jsonl"
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 128 + signal.SIGTERM, out
    stopped = checkpoint.Checkpointer(tmp_path / "c" / "checkpoints").steps()[-1]
    assert 0 < stopped < n and f"saved checkpoint at step {stopped}" in out
    assert leaves_equal(straight, run(tiny_config(training__num_steps=n), tmp_path / "c"))

    # a huge learning rate: the loss becomes NaN/Inf; the run stops, step n stays the latest
    blown = tiny_config(training__num_steps=n + 6, optim__learning_rate="1e30")
    with pytest.raises(train.TrainingError, match=rf"loss is (nan|inf).*last checkpoint: step {n} "):
        run(blown, tmp_path / "c")
    assert checkpoint.Checkpointer(tmp_path / "c" / "checkpoints").steps()[-1] == n
    reloaded = train.load_run(tmp_path / "c")
    assert reloaded.step == n and leaves_equal(reloaded.variables["params"], straight.ema_params)


def test_corrupt_checkpoint_is_skipped_with_a_warning(tmp_path):
    ckpt = checkpoint.Checkpointer(tmp_path, max_to_keep=5, asynchronous=False)
    states = {s: {"w": jnp.full((3,), float(s))} for s in (1, 2)}
    for s, st in states.items():
        ckpt.save(s, st)
    ckpt.wait()
    # a half-written save (orbax's temporary directory) and a damaged newest checkpoint
    (tmp_path / "3.orbax-checkpoint-tmp-123").mkdir()
    for f in (tmp_path / "2").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    abstract = {"w": jax.ShapeDtypeStruct((3,), jnp.float32)}
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint .*2"):
        step, state = ckpt.restore_latest(abstract)
    assert step == 1
    np.testing.assert_array_equal(state["w"], [1.0, 1.0, 1.0])
    assert (tmp_path / "2").is_dir()  # left on disk for the user to inspect
    for f in (tmp_path / "1").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint"):
        assert ckpt.restore_latest(abstract) is None


def test_incompatible_workdir_is_refused(tmp_path):
    checkpoint.save_config(tiny_config(), tmp_path)
    checkpoint.check_compatible(tiny_config(training__num_steps=99, optim__learning_rate=0.5), tmp_path)
    with pytest.raises(checkpoint.IncompatibleWorkdirError, match=r"model.features: 16 \(saved\) vs 32"):
        checkpoint.check_compatible(tiny_config(model__features=32), tmp_path)


_DEVICES_SCRIPT = r"""
import jax, numpy as np
from jax.sharding import Mesh
from jaxdiff import cli, train, data
assert jax.device_count() == 8
config = cli.load_config_file("configs/toy2d_ddpm.py")
cli.apply_overrides(config, {"model.features": "16", "model.num_blocks": "1", "model.dropout": "0.1"})
exp = train.build_experiment(config, data_shape=(2,))
batch = data.Batches(data.swiss_roll(), batch_size=16, seed=0)[3]
init = train.initial_state(exp, jax.random.PRNGKey(0), rng=jax.random.PRNGKey(1))
out = {}
for n in (1, 8):
    step = train.make_train_step(exp, Mesh(np.array(jax.devices()[:n]), ("data",)), ema=0.9, ema_warmup=False)
    state, metrics = step(init, batch)
    state, metrics = step(state, batch)
    out[n] = (float(metrics["loss"]), jax.tree.leaves(state.params))
assert len(jax.tree.leaves(state.params)[0].sharding.device_set) == 8
np.testing.assert_allclose(out[1][0], out[8][0], rtol=1e-5)
for a, b in zip(out[1][1], out[8][1]):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
# a batch that cannot be split over 8 devices is bad input: one line, exit code 2
code = cli.main(["train", "--config", "configs/toy2d_ddpm.py", "--workdir", "/nonexistent/x",
                 "--config.training.batch_size=12"])
assert code == 2, code
print("OK", out[1][0], out[8][0])
"""


def test_one_and_eight_devices_take_the_same_step():
    env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8",
           "JAX_PLATFORMS": "cpu"}
    res = subprocess.run([sys.executable, "-c", _DEVICES_SCRIPT], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "OK" in res.stdout, res.stdout + res.stderr
    assert "not divisible by the number of devices (8)" in res.stderr
    assert not Path("/nonexistent/x").exists()


@pytest.mark.parametrize(
    "name, shape, overrides",
    [("digits_ddpm", (8, 8, 1), {}), ("digits_ncsn", (8, 8, 1), {}), ("toy2d_ddpm", (2,), {}),
     ("mnist_ddpm", (28, 28, 1), {}), ("cifar10_ddpm", (32, 32, 3), {}),
     ("cifar10_iddpm", (32, 32, 3), {}),
     ("digits_ddpm", (8, 8, 1), {"model.dtype": "bfloat16", "sampling.sampler": "dpm_solver"})],
)
def test_every_config_builds_and_traces(name, shape, overrides):
    """Each shipped config resolves, and its train step and sampler trace (no compilation)."""
    from jax.sharding import Mesh

    config = cli.load_config_file(name)
    cli.apply_overrides(config, overrides)
    exp = train.build_experiment(config, data_shape=shape)
    key = jax.random.PRNGKey(0)
    state = jax.eval_shape(functools.partial(train.initial_state, exp, rng=key), key)
    step = train.make_train_step(exp, Mesh(np.array(jax.devices()[:1]), ("data",)), ema=0.999, ema_warmup=True)
    batch = {"x": jax.ShapeDtypeStruct((2, *shape), jnp.uint8 if len(shape) == 3 else jnp.float32)}
    _, metrics = jax.eval_shape(step, state, batch)
    assert metrics["loss"].shape == () and metrics["loss"].dtype == jnp.float32
    if overrides.get("model.dtype") == "bfloat16":  # bfloat16 compute, float32 parameters
        assert exp.model.module(state.params).dtype == jnp.bfloat16  # the NNX U-Net's
        assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(state.params))
    sample = train.build_sampler(config, exp)
    out = jax.eval_shape(lambda p: sample({"params": p}, key, 3), state.ema_params)
    assert out.shape == (3, *shape)
    if name == "cifar10_ddpm":  # the paper's network: 35.7M parameters
        assert sum(x.size for x in jax.tree.leaves(state.params)) == 35_746_307


class _MeanState(flax.struct.PyTreeNode):
    step: jnp.ndarray
    mu: jnp.ndarray


def _mean_family(config, data_shape):
    """A model family that is not diffusion: the mean of the data by SGD on 0.5 |mu - x|^2."""
    lr = config.optim.learning_rate

    def train_step(state, batch, rng):
        g = state.mu - batch["x"].mean(axis=0)
        loss = 0.5 * jnp.mean(jnp.sum((state.mu - batch["x"]) ** 2, axis=-1))
        return _MeanState(step=state.step + 1, mu=state.mu - lr * g), {"loss": loss}

    return train.Family(
        init_state=lambda key: _MeanState(step=jnp.zeros((), jnp.int32), mu=jnp.zeros(data_shape)),
        train_step=train_step,
        sample=lambda state, rng, num: state.mu + jax.random.normal(rng, (num, *data_shape)),
        data_shape=data_shape,
    )


def test_the_driver_trains_any_family(tmp_path, monkeypatch):
    """The loop takes a family's pure step: a registered non-diffusion family trains, logs,
    checkpoints and resumes; its result is SGD replayed in numpy on the same batches."""
    from jaxdiff import data

    monkeypatch.setitem(train.FAMILIES, "mean", _mean_family)
    config = tiny_config(training__num_steps=4, optim__learning_rate="0.5")
    config.family = "mean"
    state = run(config, tmp_path)
    batches = data.Batches(data.swiss_roll(), batch_size=8, seed=config.seed)
    mu = np.zeros(2)
    for s in range(4):
        mu = mu - 0.5 * (mu - batches[s]["x"].mean(axis=0))
    np.testing.assert_allclose(state.mu, mu, rtol=1e-5)
    assert checkpoint.Checkpointer(tmp_path / "checkpoints").steps() == [2, 4]
    config.training.num_steps = 6
    resumed = run(config, tmp_path)
    for s in range(4, 6):
        mu = mu - 0.5 * (mu - batches[s]["x"].mean(axis=0))
    np.testing.assert_allclose(resumed.mu, mu, rtol=1e-5)


@pytest.mark.parametrize(
    "sampler, direct",
    [
        ("ddpm", lambda f, p, x, rng, n: samplers.ddpm_sample(f, p, x, rng, num_steps=n,
                                                              clip_denoised=False)),
        ("ddim", lambda f, p, x, rng, n: samplers.ddim_sample(f, p, x, rng, num_steps=n)),
    ],
)
def test_build_sampler_honours_num_steps_for_every_sampler(sampler, direct):
    """``num_steps`` (the CLI's --steps) reaches each sampler's own step field: the result is
    the library sampler's with that many steps, from the same prior draw and chain key."""
    config = tiny_config()
    exp = train.build_experiment(config, data_shape=(2,))
    key = jax.random.PRNGKey(0)
    params = train.initial_state(exp, key, rng=key).params
    params = jax.tree.map(lambda p: p + 0.01 * jnp.ones_like(p), params)  # a non-zero output layer
    sample = train.build_sampler(config, exp, sampler=sampler, num_steps=5)
    got = sample({"params": params}, key, 4)
    prior_key, chain_key = jax.random.split(key)
    x_T = exp.prior(prior_key, (4, 2))
    model_fn = functools.partial(exp.model.apply, {"params": params})
    np.testing.assert_allclose(got, direct(model_fn, exp.process, x_T, chain_key, 5), rtol=1e-5,
                               atol=1e-6)
    assert not np.allclose(got, direct(model_fn, exp.process, x_T, chain_key, 10), atol=1e-3)


def test_build_sampler_maps_num_steps_of_langevin_to_steps_per_sigma():
    config = cli.load_config_file("digits_ncsn")
    exp = train.build_experiment(config, data_shape=(8, 8, 1))
    key = jax.random.PRNGKey(0)
    state = jax.eval_shape(functools.partial(train.initial_state, exp, rng=key), key)
    seen = []
    original = samplers.annealed_langevin

    def spy(*args, **kwargs):
        seen.append(kwargs["steps_per_sigma"])
        return original(*args, **kwargs)

    with mock.patch.object(samplers, "annealed_langevin", spy):
        sample = train.build_sampler(config, exp, num_steps=7)
        jax.eval_shape(lambda p: sample({"params": p}, key, 2), state.ema_params)
    assert seen == [7]


def test_early_stopping_keeps_the_best_held_out_state_and_eval_loads_it(tmp_path):
    # With an EMA decay of 1 the EMA model never moves, so its held-out bound is the same at
    # every evaluation: the first is the best and training stops `patience` evaluations later.
    # Checkpoints, sample grids and evaluations fall on the same steps.
    config = tiny_config(
        training__num_steps=20, training__ema_decay=1.0, training__ema_warmup=False,
        training__sample_every=2, sampling__num_samples=4,
        training__validation__every=2, training__validation__patience=2,
        training__validation__split="test", training__validation__num_timesteps=19,
    )
    run(config, tmp_path)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    valid = {r["step"]: r["valid_bpd"] for r in lines if "valid_bpd" in r}
    assert sorted(valid) == [2, 4, 6] and len(set(valid.values())) == 1
    assert json.loads((tmp_path / "best.json").read_text())["step"] == 2
    assert train.load_run(tmp_path).step == 2
    latest = train.load_run(tmp_path, checkpoint="latest")
    assert latest.step == 6
    # K = T - 1 strata hit every t once: the held-out value is the full bound up to the noise
    from jaxdiff import evaluate

    points = evaluate.split_images(config, "test")
    full = evaluate.evaluate_nll(latest.model_fn, latest.schedule, points, jax.random.PRNGKey(5),
                                 batch_size=4000, variance=config.diffusion.variance)
    np.testing.assert_allclose(valid[2], full["total_bpd"], rtol=0.01)
