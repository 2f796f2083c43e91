"""Samplers and the bound compile once per architecture: a second ``nnx.Module`` of the same
graph (or a new ``functools.partial(model.apply, variables)`` of a linen module) with other
values of the same shapes runs the cached program, with its own parameters."""

import functools

import jax
import jax.numpy as jnp
import flax.linen as nn
import numpy as np
import pytest
from compile_counter import count_compilations
from flax import nnx

from jaxdiff import elbo, models, samplers, schedules

SCHEDULE = schedules.linear(20)
X = jax.random.normal(jax.random.key(0), (8, 2))
KEY = jax.random.key(1)


def _mlp(seed):
    """An NNX MLP, perturbed so that every layer (the zero-initialised output too) matters."""
    model = models.MLP(2, features=16, num_blocks=1, rngs=nnx.Rngs(seed))
    leaves, treedef = jax.tree.flatten(nnx.state(model))
    keys = jax.random.split(jax.random.key(100 + seed), len(leaves))
    nnx.update(model, jax.tree.unflatten(
        treedef, [p + 0.3 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)]
    ))
    return model


class LinenMLP(nn.Module):
    """A user's linen network (two layers, conditioned on t)."""

    @nn.compact
    def __call__(self, x, t):
        h = nn.Dense(16)(jnp.concatenate([x, t[:, None] / 20.0], -1))
        return nn.Dense(x.shape[-1])(jnp.tanh(h))


def _labelled(model_fn, x, t, y):
    """A conditional model made of an unconditional one, for the guidance wrapper."""
    return model_fn(x, t) * (1.0 + y[:, None])


CALLS = {
    "ddpm": lambda f: samplers.ddpm_sample(f, SCHEDULE, X, KEY),
    "ddim": lambda f: samplers.ddim_sample(f, SCHEDULE, X, num_steps=5),
    "ddim_invert": lambda f: samplers.ddim_invert(f, SCHEDULE, X, num_steps=5),
    "pc": lambda f: samplers.pc_sample(f, SCHEDULE, X, KEY, num_steps=5),
    "dpm_solver": lambda f: samplers.dpm_solver_sample(f, SCHEDULE, X, num_steps=5),
    "heun": lambda f: samplers.ode_sample(f, SCHEDULE, X, num_steps=3),
    "ode_likelihood": lambda f: samplers.ode_likelihood(
        f, SCHEDULE, jnp.clip(X, -1, 1), KEY, method="heun", num_steps=3)["logp"],
    "nll_bpd": lambda f: elbo.nll_bpd(f, SCHEDULE, jnp.clip(X, -1, 1), KEY)["total"],
    "guided_ddim": lambda f: samplers.ddim_sample(
        samplers.classifier_free_guidance(functools.partial(_labelled, f), jnp.ones(8),
                                          scale=2.0, null_label=0.0),
        SCHEDULE, X, num_steps=5),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_two_nnx_modules_of_one_graph_compile_once(name):
    call = CALLS[name]
    first = call(_mlp(0))
    # A second module of the same graph with other weights: no compilation.
    module = _mlp(1)
    with count_compilations() as compiles:
        second = jax.block_until_ready(call(module))
    assert compiles.value == 0
    # ...and the cached program used the new weights: it equals the same chain on a closure
    # that bakes them in as constants (a separate compilation).
    closure = call(lambda x, t, *rest: module(x, t, *rest))
    np.testing.assert_allclose(second, closure, rtol=1e-5, atol=1e-5)
    assert not np.allclose(first, second)


@pytest.mark.parametrize("name", ["ddim", "nll_bpd"])
def test_two_linen_parameter_sets_compile_once(name):
    """A user's linen module as ``functools.partial(module.apply, variables)``."""
    call = CALLS[name]
    v1, v2 = (LinenMLP().init(jax.random.key(s), X, jnp.zeros(8)) for s in (0, 1))
    first = call(functools.partial(LinenMLP().apply, v1))
    with count_compilations() as compiles:
        second = jax.block_until_ready(call(functools.partial(LinenMLP().apply, v2)))
    assert compiles.value == 0
    closure = call(lambda x, t, *rest: LinenMLP().apply(v2, x, t, *rest))
    np.testing.assert_allclose(second, closure, rtol=1e-5, atol=1e-5)
    assert not np.allclose(first, second)


def test_a_train_step_compiles_once_for_two_modules_of_one_graph():
    """The driver's train step on the shipped NNX MLP: the module's state is in the train state,
    an argument of the compiled step, so a second initialisation (other weights) compiles
    nothing; the step's loss is the objective on that state's module."""
    from jaxdiff import cli, sharding, train

    config = cli.load_config_file("toy2d_ddpm")
    cli.apply_overrides(config, {"model.features": "16", "model.num_blocks": "1",
                                 "diffusion.num_timesteps": "20"})
    experiment = train.build_experiment(config, data_shape=(2,))
    step = train.make_train_step(
        experiment, sharding.make_mesh(jax.devices()[:1]), ema=0.9, ema_warmup=False
    )
    batch = {"x": X}
    first = train.initial_state(experiment, jax.random.key(0), rng=jax.random.key(9))
    # other weights of the same graph (all moved: the zero-initialised output layer too)
    other = jax.tree.map(lambda p: p + 0.1, first.params)
    states = [first, first.replace(params=other, ema_params=other)]
    losses = [float(step(states[0], batch)[1]["loss"])]
    with count_compilations() as compiles:
        losses.append(float(step(states[1], batch)[1]["loss"]))
    assert compiles.value == 0 and losses[0] != losses[1]
    # the loss of the second state's module on the step's key, outside the compiled step
    key = jax.random.fold_in(jax.random.key(9), 0)
    direct = jnp.mean(train.make_loss_fn(experiment)(states[1].params, batch, key))
    np.testing.assert_allclose(losses[1], direct, rtol=1e-5)
