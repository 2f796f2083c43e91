"""A user's own network from the command line: ``--config.model.name=package.module:factory``
returning an NNX module or a linen module trains, samples and reopens like a shipped one; a
factory that cannot be imported, returns no module or gives the wrong shape is one line and
exit code 2, with nothing written."""

import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxdiff import cli, train

REPO = Path(__file__).resolve().parent.parent
TOY = str(REPO / "configs" / "toy2d_ddpm.py")
FAST = [
    "--config.diffusion.num_timesteps=20",
    "--config.training.batch_size=16",
    "--config.training.num_steps=50",
    "--config.training.log_every=25",
    "--config.training.checkpoint_every=50",
    "--config.training.sample_every=0",
    "--config.sampling.num_samples=0",
    "--config.sampling.sampler=ddim",
    "--config.sampling.num_steps=5",
    "--config.optim.warmup_steps=0",
]

USER_MODULE = textwrap.dedent('''
    import flax.linen as nn
    import jax.numpy as jnp
    from flax import nnx


    def _embed(t):
        return jnp.stack([jnp.sin(t / 3.0), jnp.cos(t / 3.0)], -1)


    class Denoiser(nnx.Module):
        def __init__(self, in_features, *, width=32, rngs):
            self.hidden = nnx.Linear(in_features + 2, width, rngs=rngs)
            self.out = nnx.Linear(width, in_features, rngs=rngs)

        def __call__(self, x, t):
            return self.out(nnx.silu(self.hidden(jnp.concatenate([x, _embed(t)], -1))))


    def nnx_denoiser(in_features, rngs):
        return Denoiser(in_features, rngs=rngs)


    class LinenDenoiser(nn.Module):
        width: int = 32

        @nn.compact
        def __call__(self, x, t, *, train=False):
            h = nn.silu(nn.Dense(self.width)(jnp.concatenate([x, _embed(t)], -1)))
            return nn.Dense(x.shape[-1])(h)


    def linen_denoiser():
        return LinenDenoiser()


    def not_a_model():
        return "a string"


    def wrong_shape(rngs):
        return Wide(rngs=rngs)


    class Wide(nnx.Module):
        def __init__(self, *, rngs):
            self.out = nnx.Linear(2, 3, rngs=rngs)

        def __call__(self, x, t):
            return self.out(x)


    def batch_norm(in_features, rngs):
        return Normed(in_features, rngs=rngs)


    class Normed(nnx.Module):
        def __init__(self, in_features, *, rngs):
            self.norm = nnx.BatchNorm(in_features, rngs=rngs)

        def __call__(self, x, t):
            return self.norm(x)


    class LinenNormed(nn.Module):
        @nn.compact
        def __call__(self, x, t, *, train=False):
            return nn.BatchNorm(use_running_average=not train)(x)


    def linen_batch_norm():
        return LinenNormed()
''')


@pytest.fixture
def user_package(tmp_path, monkeypatch):
    (tmp_path / "usernets_a.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "usernets_a"


@pytest.mark.parametrize("factory, kind", [("nnx_denoiser", "nnx"), ("linen_denoiser", "linen")])
def test_a_users_network_trains_and_samples_from_the_command_line(
    capsys, tmp_path, user_package, factory, kind
):
    workdir = tmp_path / "run"
    name = f"--config.model.name={user_package}:{factory}"
    assert cli.main(["train", "--config", TOY, "--workdir", str(workdir), name, *FAST]) == 0
    output = tmp_path / "samples.npz"
    assert cli.main(["sample", "--workdir", str(workdir), "--num", "8", "--output", str(output)]) == 0
    with np.load(output) as f:
        samples = f["samples"]
    assert samples.shape[0] == 8 and np.all(np.isfinite(samples))
    run = train.load_run(workdir, devices=jax.devices()[:1])
    assert run.step == 50
    # the trained parameters are the user's network's: the NNX module's state, or linen's tree
    if kind == "nnx":
        module = run.experiment.model.module(run.variables["params"])
        assert type(module).__name__ == "Denoiser"
        shapes = {"hidden": {"kernel": (4, 32), "bias": (32,)}, "out": {"kernel": (32, 2), "bias": (2,)}}
    else:
        shapes = {"Dense_0": {"kernel": (4, 32), "bias": (32,)}, "Dense_1": {"kernel": (32, 2), "bias": (2,)}}
    assert jax.tree.map(np.shape, run.variables["params"]) == shapes


@pytest.mark.parametrize(
    "factory, message",
    [
        ("no_such_module:f", "config.model.name: cannot import 'no_such_module'"),
        ("{pkg}:missing", "config.model.name: '{pkg}' has no callable 'missing'"),
        ("{pkg}:not_a_model", "returned a str, not an nnx.Module or a flax.linen.Module"),
        ("{pkg}:wrong_shape", "has shape (1, 3), expected (1, 2)"),
        # the driver carries parameters only: batch statistics are refused, not silently frozen
        ("{pkg}:batch_norm", "holds variables other than nnx.Param (nnx.BatchStat)"),
        ("{pkg}:linen_batch_norm", "has variables other than params (batch_stats)"),
    ],
)
def test_a_bad_factory_is_one_line_and_exit_2(capsys, tmp_path, user_package, factory, message):
    workdir = tmp_path / "run"
    name = f"--config.model.name={factory.format(pkg=user_package)}"
    code = cli.main(["train", "--config", TOY, "--workdir", str(workdir), name, *FAST])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and message.format(pkg=user_package) in err, err
    assert not workdir.exists()
