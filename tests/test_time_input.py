"""The time input of model_fn: samplers on a discrete schedule's integer timesteps call it with
int32 t, so a model that indexes a table by t works there; the continuous-time solvers call it
with float t and say in one line what to do when the model cannot take one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from exact_models import gaussian_eps

from jaxdiff import analytic, samplers, schedules

SCHED = schedules.linear(100)
MEAN, VAR = jnp.array([0.5, -0.3]), jnp.array([0.25, 0.04])
X_T = jax.random.normal(jax.random.key(0), (16, 2))
KEY = jax.random.key(1)

# The optimal eps of Gaussian data from the schedule's [T] tables, gathered at an int t (jnp.take
# rejects a float index), and the same model at every real t from the continuous log-SNR.
TABLE_MODEL = analytic.gaussian_eps_fn(SCHED, MEAN, VAR)
REAL_TIME_MODEL = gaussian_eps(SCHED, MEAN, VAR)

INTEGER_SAMPLERS = {
    "ddpm": lambda f: samplers.ddpm_sample(f, SCHED, X_T, KEY),
    "ddim": lambda f: samplers.ddim_sample(f, SCHED, X_T, num_steps=10),
    "pc": lambda f: samplers.pc_sample(f, SCHED, X_T, KEY, num_steps=10),
    "dpm_solver": lambda f: samplers.dpm_solver_sample(f, SCHED, X_T, num_steps=10),
}


def _int_only(model_fn):
    def checked(x, t):
        assert t.dtype == jnp.int32, t.dtype
        return model_fn(x, t)

    return checked


@pytest.mark.parametrize("name", list(INTEGER_SAMPLERS))
def test_integer_samplers_call_the_model_with_int32_t(name):
    sample = INTEGER_SAMPLERS[name]
    got = sample(_int_only(TABLE_MODEL))
    # At the integers the table model equals the real-time model (a different computation:
    # interpolated log-SNR levels instead of table gathers).
    np.testing.assert_allclose(got, sample(REAL_TIME_MODEL), rtol=1e-4, atol=1e-5)


def test_dpm_solver_real_grid_calls_with_float_t():
    seen = []

    def model_fn(x, t):
        seen.append(t.dtype)
        return REAL_TIME_MODEL(x, t)

    samplers.dpm_solver_sample(model_fn, SCHED, X_T, num_steps=7, grid=samplers.uniform_logsnr_grid)
    assert seen and all(d == jnp.float32 for d in seen)


@pytest.mark.parametrize(
    "call",
    [
        lambda f: samplers.ode_sample(f, SCHED, X_T, num_steps=5),
        lambda f: samplers.ode_sample(f, SCHED, X_T),
        lambda f: samplers.ode_likelihood(f, SCHED, jnp.clip(X_T, -1, 1), KEY),
        lambda f: samplers.dpm_solver_sample(f, SCHED, X_T, num_steps=5,
                                             grid=samplers.uniform_logsnr_grid),
    ],
    ids=["heun", "adaptive", "ode_likelihood", "dpm_real_grid"],
)
def test_continuous_solvers_name_the_fix_for_a_table_model(call):
    with pytest.raises(TypeError, match="integer timesteps") as info:
        call(TABLE_MODEL)
    assert "\n" not in str(info.value)
