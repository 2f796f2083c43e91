"""Conditional runs through the driver and the command line: labels with dropout in training,
``jaxdiff sample --label/--guidance/--guidance_interval/--autoguide/--ema_std`` and
``jaxdiff eval --ema_std`` on a tiny class-conditional EDM run, and every bad value as one line
with exit code 2 and nothing written."""

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import cli, ema, train

REPO = Path(__file__).resolve().parent.parent
TINY_UNET = {
    "model.ch": 8, "model.ch_mult": "(1,)", "training.batch_size": 8, "training.num_steps": 4,
    "training.ema.snapshot_every": 2, "training.log_every": 2, "sampling.num_samples": 0,
    "training.checkpoint_every": 4,
}


def _train(workdir, config, overrides):
    args = [f"--config.{k}={v}" for k, v in overrides.items()]
    assert cli.main(["train", "--config", config, "--workdir", str(workdir), *args]) == 0
    return workdir


@pytest.fixture(scope="module")
def cond_run(tmp_path_factory):
    """digits_cond (class-conditional EDM, post-hoc EMA snapshots) on a tiny U-Net, 4 steps."""
    return _train(tmp_path_factory.mktemp("cond") / "run", "digits_cond", TINY_UNET)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """An unconditional run of other data (2-d points), without snapshots."""
    overrides = {"training.num_steps": 1, "sampling.num_samples": 0, "diffusion.num_timesteps": 10}
    return _train(tmp_path_factory.mktemp("toy") / "run", str(REPO / "configs" / "toy2d_ddpm.py"),
                  overrides)


def _sample(workdir, out, *extra):
    return cli.main(["sample", "--workdir", str(workdir), "--num", "10", "--steps", "2",
                     "--output", str(out), *extra])


def test_sample_labels_guidance_and_posthoc_ema(cond_run, tmp_path):
    out = tmp_path / "s.npz"
    assert _sample(cond_run, out, "--label", "all", "--guidance", "2", "--guidance_interval",
                   "0.1,2", "--ema_std", "0.08") == 0
    with np.load(out) as f:
        np.testing.assert_array_equal(f["labels"], np.arange(10) % 10)
        assert f["samples"].shape == (10, 8, 8, 1) and f["samples"].dtype == np.uint8
    assert _sample(cond_run, tmp_path / "a.npz", "--label", "3", "--guidance", "1.5",
                   "--autoguide", str(cond_run)) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "a.npz")["labels"], np.full(10, 3))
    assert _sample(cond_run, tmp_path / "u.npz") == 0  # no label: the null label (unconditional)
    np.testing.assert_array_equal(np.load(tmp_path / "u.npz")["labels"], np.full(10, -1))


def test_snapshots_hold_the_power_averages_and_ema_std_reconstructs_them(cond_run):
    """The last snapshot of the 0.05 profile is what --ema_std 0.05 loads (the least squares
    returns a stored profile), and eval --ema_std runs on it."""
    files = sorted((cond_run / ema.SNAPSHOT_DIR).glob("*.npz"))
    assert [f.stem for f in files] == ["000000002", "000000004"]
    run = train.load_run(cond_run, ema_std=0.05)
    snapshots = ema.load_snapshots(cond_run / ema.SNAPSHOT_DIR, run.state.params)
    last = [s for s in snapshots if s.step == 4]
    np.testing.assert_allclose(last[0].gamma, ema.sigma_rel_to_gamma(0.05))
    for a, b in zip(jax.tree.leaves(run.variables["params"]), jax.tree.leaves(last[0].params)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # the run's state carries them too: the checkpoint of step 4 holds the same averages
    for a, b in zip(jax.tree.leaves(run.state.power_ema[0]), jax.tree.leaves(last[0].params)):
        np.testing.assert_allclose(a, b, atol=1e-7)


def test_guided_model_fn_mixes_the_conditional_and_null_predictions(cond_run):
    run = train.load_run(cond_run)
    model = run.experiment.model
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    t = jnp.full((4,), 0.3)
    labels = jnp.array([1, 2, 3, 4])
    apply = jax.jit(model.apply)
    cond = apply(run.variables, x, t, y=labels)
    null = apply(run.variables, x, t, y=jnp.full((4,), 10))

    @functools.partial(jax.jit, static_argnums=2)
    def guided(variables, x, scale):
        base = functools.partial(model.apply, variables)
        return train.guided_model_fn(run.experiment, base, train.Guidance(labels, scale))(x, t)

    for scale in (1.0, 0.0, 3.0):
        np.testing.assert_allclose(guided(run.variables, x, scale), scale * cond + (1 - scale) * null,
                                   rtol=1e-5, atol=1e-5)
    # The interval is in sigma: EDM's network sees c_noise = ln(sigma) / 4 (Karras et al. 2022,
    # Table 1). sigma = 1 is inside (0.3, 5], sigma = 10 outside.
    t = 0.25 * jnp.log(jnp.array([1.0, 1.0, 10.0, 10.0]))
    cond = apply(run.variables, x, t, y=labels)
    null = apply(run.variables, x, t, y=jnp.full((4,), 10))
    interval = train.guided_model_fn(run.experiment, functools.partial(model.apply, run.variables),
                                     train.Guidance(labels, 3.0, (0.3, 5.0)))
    expected = jnp.concatenate([3 * cond[:2] - 2 * null[:2], cond[2:]])
    np.testing.assert_allclose(jax.jit(interval)(x, t), expected, rtol=1e-5, atol=1e-5)


def test_label_dropout_rate():
    labels = jnp.arange(20000) % 10
    dropped = train.drop_labels(labels, jax.random.key(1), rate=0.1, null_label=10)
    share = float(jnp.mean(dropped == 10))
    assert abs(share - 0.1) < 4 * np.sqrt(0.1 * 0.9 / 20000)  # four standard errors
    kept = dropped != 10
    np.testing.assert_array_equal(dropped[kept], labels[kept])


def _error(capsys, argv):
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse's own checks of a flag's value
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("extra, message", [
    (["--label", "10"], "--label must be a class in [0, 9]"),
    (["--label", "seven"], "--label must be a class in [0, 9] or 'all'"),
    (["--guidance", "-1"], "--guidance: must be >= 0"),
    (["--label", "1", "--guidance_interval", "2,1"], "--guidance_interval: must be LO,HI with 0 <= LO < HI"),
    (["--guidance", "2"], "needs a class-conditional run and --label"),
    (["--ema_std", "0.5"], "--ema_std: must be in (0, 0.3003]"),
])
def test_bad_sample_values_of_a_conditional_run(capsys, cond_run, tmp_path, extra, message):
    out = tmp_path / "s.npz"
    err = _error(capsys, ["sample", "--workdir", str(cond_run), "--num", "2", "--output", str(out), *extra])
    assert message in err
    assert not out.exists() and not out.with_suffix(".png").exists()


def test_bad_values_against_an_unconditional_run(capsys, cond_run, toy_run, tmp_path):
    out = tmp_path / "s.npz"
    base = ["sample", "--num", "2", "--output", str(out)]
    assert "this run is unconditional" in _error(capsys, [*base, "--workdir", str(toy_run), "--label", "1"])
    err = _error(capsys, [*base, "--workdir", str(cond_run), "--label", "1", "--autoguide", str(toy_run)])
    assert "--autoguide" in err and "another shape" in err
    err = _error(capsys, [*base, "--workdir", str(toy_run), "--ema_std", "0.1"])
    assert "--ema_std needs the post-hoc EMA snapshots" in err
    err = _error(capsys, ["eval", "--workdir", str(toy_run), "--ema_std", "0.1",
                          "--output", str(tmp_path / "e.json")])
    assert "--ema_std needs the post-hoc EMA snapshots" in err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("config_name", ["digits_ddpm", "digits_edm", "digits_flow", "digits_vdm", "digits_dit"])
def test_every_process_and_network_trains_on_the_labels(config_name):
    """One loss gradient of each process (DDPM, EDM, flow, VDM) and network (U-Net, DiT) with
    num_classes: exactly the class-embedding rows of the batch's labels get a gradient."""
    config = cli.load_config_file(config_name)
    config.model.num_classes = 10
    config.training.label_dropout = 0.0
    if "ch" in config.model:
        config.model.ch, config.model.ch_mult = 8, (1,)
    else:
        config.model.update(hidden_size=16, depth=1, num_heads=2)
    experiment = train.build_experiment(config, data_shape=(8, 8, 1))
    state = train.initial_state(experiment, jax.random.key(0), rng=jax.random.key(1))
    # random weights everywhere (the shipped networks zero-initialise their output layers, which
    # would stop every gradient at initialisation)
    leaves, treedef = jax.tree.flatten(state.params)
    keys = jax.random.split(jax.random.key(3), len(leaves))
    params = jax.tree.unflatten(treedef, [0.1 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])
    batch = {"x": jnp.zeros((6, 8, 8, 1), jnp.uint8) + 128, "label": jnp.array([0, 1, 2, 0, 1, 2])}
    loss_fn = train.make_loss_fn(experiment)
    grads = jax.jit(jax.grad(lambda p: jnp.mean(loss_fn(p, batch, jax.random.key(2)))))(params)
    rows = [g for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]
            if any(getattr(k, "key", None) in ("class_embed", "y_embed") for k in path)]
    assert rows, "no class embedding in the parameters"
    used = np.abs(np.asarray(rows[0])).sum(axis=1) > 0
    np.testing.assert_array_equal(used, np.arange(11) < 3)
