"""prediction="mean": a network that outputs the posterior mean mu~_t of p(x_{t-1} | x_t)
directly (the DPM parametrisation of Ho et al. 2020, Table 2), accepted by the bound, the losses
and the samplers on a discrete schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import analytic, diffusion, elbo, losses, samplers, schedules

SCHED = schedules.linear(50)
MEAN, VAR = jnp.array([0.2, -0.1, 0.0, 0.3]), jnp.array([0.09, 0.04, 0.16, 0.01])
EPS_FN = analytic.gaussian_eps_fn(SCHED, MEAN, VAR)
X = jax.random.normal(jax.random.key(0), (32, 4))
KEY = jax.random.key(1)


def mean_fn(x_t, t):
    """The optimal model read as mu~: the forward posterior mean (eq. 7) at its x_0 estimate."""
    x0 = diffusion.predict_x0_from_eps(SCHED, x_t, t, EPS_FN(x_t, t))
    return diffusion.q_posterior(SCHED, x0, x_t, t)[0]


CALLS = {
    "ddpm": lambda f, p: samplers.ddpm_sample(f, SCHED, X, KEY, prediction=p, clip_denoised=False),
    "ddim": lambda f, p: samplers.ddim_sample(f, SCHED, X, num_steps=50, prediction=p),
    "pc": lambda f, p: samplers.pc_sample(f, SCHED, X, KEY, prediction=p),
    "dpm_solver": lambda f, p: samplers.dpm_solver_sample(f, SCHED, X, num_steps=10, prediction=p),
    "nll_bpd": lambda f, p: elbo.nll_bpd(f, SCHED, jnp.clip(X, -1, 1), KEY, prediction=p,
                                         clip_denoised=False)["total"],
}


@pytest.mark.parametrize("name", list(CALLS))
def test_mean_prediction_gives_the_eps_models_results(name):
    np.testing.assert_allclose(CALLS[name](mean_fn, "mean"), CALLS[name](EPS_FN, "eps"),
                               rtol=2e-4, atol=2e-4)


def test_mean_loss_of_the_optimal_model_is_the_posterior_variance_term():
    """E ||mu~ - mu*||^2 per dimension = coef1_t^2 Var(x_0 | x_t), with Var(x_0 | x_t) =
    v s^2 / (a^2 v + s^2) for Gaussian data (a = sqrt(abar_t), s = sqrt(1 - abar_t))."""
    x0 = MEAN + jnp.sqrt(VAR) * jax.random.normal(jax.random.key(2), (20000, 4))
    got = losses.simple_loss(mean_fn, SCHED, x0, jax.random.key(3), prediction="mean")
    a2 = np.asarray(SCHED.alphas_cumprod, np.float64)[:, None]
    post_var = np.asarray(VAR) * (1 - a2) / (a2 * np.asarray(VAR) + 1 - a2)
    coef1 = np.asarray(SCHED.posterior_mean_coef1, np.float64)[:, None]
    want = np.mean(coef1**2 * post_var)  # t uniform on the 50 steps, mean over dimensions
    se = np.std(np.asarray(got)) / np.sqrt(got.size)
    assert abs(float(got.mean()) - want) < 4 * se, (float(got.mean()), want, se)


def test_mean_prediction_is_refused_off_the_integer_steps():
    with pytest.raises(ValueError, match="respaced"):
        samplers.ddim_sample(mean_fn, SCHED, X, num_steps=10, prediction="mean")
    with pytest.raises(ValueError, match="mean"):
        samplers.ode_sample(mean_fn, SCHED, X, num_steps=4, prediction="mean")
    with pytest.raises(ValueError, match="integer"):
        samplers.dpm_solver_sample(mean_fn, SCHED, X, num_steps=5, prediction="mean",
                                   grid=samplers.uniform_logsnr_grid)
