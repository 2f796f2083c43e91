"""Samplers and the bound compile once per architecture: a new ``functools.partial(model.apply, variables)`` with
other values of the same shapes runs the cached program, with its own parameters."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from compile_counter import count_compilations

from jaxdiff import elbo, models, samplers, schedules

SCHEDULE = schedules.linear(20)
X = jax.random.normal(jax.random.key(0), (8, 2))
KEY = jax.random.key(1)


def _variables(seed):
    """MLP variables, perturbed so that every layer (the zero-initialised output too) matters."""
    model = models.MLP(features=16, num_blocks=1)
    variables = model.init(jax.random.key(seed), X, jnp.zeros((8,), jnp.int32))
    leaves, treedef = jax.tree.flatten(variables)
    keys = jax.random.split(jax.random.key(100 + seed), len(leaves))
    return jax.tree.unflatten(
        treedef, [p + 0.3 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)]
    )


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
def test_two_parameter_sets_compile_once(name):
    call = CALLS[name]
    v1, v2 = _variables(0), _variables(1)
    first = call(functools.partial(models.MLP(features=16, num_blocks=1).apply, v1))
    # A new module instance and new parameter values of the same shapes: no compilation.
    with count_compilations() as compiles:
        second = jax.block_until_ready(
            call(functools.partial(models.MLP(features=16, num_blocks=1).apply, v2)))
    assert compiles.value == 0
    # ...and the cached program used the new parameters: it equals the same chain on a
    # closure that bakes v2 in as constants (a separate compilation).
    module = models.MLP(features=16, num_blocks=1)
    closure = call(lambda x, t, *rest: module.apply(v2, x, t, *rest))
    np.testing.assert_allclose(second, closure, rtol=1e-5, atol=1e-5)
    assert not np.allclose(first, second)
