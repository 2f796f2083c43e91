"""Samplers against independent truths: the DDIM algorithm written in float64 NumPy, the
moments of Gaussian data under its optimal model, the exact probability-flow map, the weights
of a two-component mixture under its exact score, and identities between the samplers."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import analytic, diffusion, processes, schedules
from jaxdiff import samplers as S

MEAN = np.array([0.5, -0.3])
VAR = np.array([0.25, 0.1])
N = 4000  # Monte-Carlo batch
ABAR = np.cumprod(1.0 - np.linspace(1e-4, 0.02, 1000))  # Ho et al.'s linear schedule, float64


def _optimal_eps(x, abar):
    """E[eps | x_t] for x_0 ~ N(MEAN, diag(VAR)): b (x - a mu) / (a^2 s^2 + b^2)."""
    a, b = np.sqrt(abar), np.sqrt(1.0 - abar)
    return b * (x - a * MEAN) / (a**2 * VAR + b**2)


def _ddim_update_reference(x, t, t_next, *, eta=0.0, noise=0.0):
    """One DDIM step (Song, Meng & Ermon 2021, eqs. 12 and 16) in float64 from timestep t to
    t_next, with alpha = 1 at t_next = -1, as in the paper's code."""
    a_t, a_next = ABAR[t], (ABAR[t_next] if t_next >= 0 else 1.0)
    eps = _optimal_eps(x, a_t)
    x0 = (x - np.sqrt(1 - a_t) * eps) / np.sqrt(a_t)
    sigma = eta * np.sqrt((1 - a_next) / (1 - a_t) * (1 - a_t / a_next))
    return np.sqrt(a_next) * x0 + np.sqrt(1 - a_next - sigma**2) * eps + sigma * noise


def _ddim_reference(x_T, timesteps):
    """Deterministic DDIM over ``timesteps``, visited in reverse, landing on alpha = 1."""
    x = np.asarray(x_T, np.float64)
    seq = [int(t) for t in timesteps]
    for t, t_next in zip(reversed(seq), reversed([-1] + seq[:-1])):
        x = _ddim_update_reference(x, t, t_next)
    return x


@functools.cache
def _gaussian(num_timesteps):
    """The linear schedule and the optimal eps-model of N(MEAN, diag(VAR)) in closed form."""
    schedule = schedules.linear(num_timesteps)

    def eps_fn(x, t):
        a = schedule.sqrt_alphas_cumprod[t][:, None]
        b = schedule.sqrt_one_minus_alphas_cumprod[t][:, None]
        return b * (x - a * MEAN) / (a**2 * VAR + b**2)

    return schedule, eps_fn


def _gaussian_score_fn():
    """The exact score of N(MEAN, diag(VAR)) convolved with N(0, sigma^2 I)."""
    return analytic.mixture_score_fn(jnp.ones(1), jnp.asarray(MEAN)[None], jnp.asarray(VAR)[None])


def _x_T(batch=N, dim=2, seed=0):
    return jax.random.normal(jax.random.key(seed), (batch, dim))


def _assert_moments(x, mean=MEAN, var=VAR, *, bias=0.02):
    """Sample mean and variance within 4 Monte-Carlo standard errors (+ a small bias)."""
    x = np.asarray(x, np.float64)
    n = x.shape[0]
    np.testing.assert_array_less(np.abs(x.mean(0) - mean), 4 * np.sqrt(var / n) + bias)
    np.testing.assert_array_less(np.abs(x.var(0) / var - 1), 4 * np.sqrt(2 / n) + bias)


# --- timesteps -----------------------------------------------------------------------------


def test_uniform_timesteps_of_the_ddim_paper():
    np.testing.assert_array_equal(S.uniform_timesteps(1000, 50), np.arange(0, 1000, 20))
    np.testing.assert_array_equal(S.uniform_timesteps(1000, 1000), np.arange(1000))
    # 3 does not divide 1000: 333 apart, exactly num_steps of them
    np.testing.assert_array_equal(S.uniform_timesteps(1000, 3), [0, 333, 666])


def test_quadratic_and_linspace_timesteps():
    # floor((i * sqrt(800) / 9)^2): the last one is 0.8 T
    np.testing.assert_array_equal(
        S.quadratic_timesteps(1000, 10), [0, 9, 39, 88, 158, 246, 355, 483, 632, 800]
    )
    # improved DDPM: both ends kept
    np.testing.assert_array_equal(S.linspace_timesteps(1000, 4), [0, 333, 666, 999])


# --- DDIM against the paper's algorithm ----------------------------------------------------


def _paper_code_timesteps(kind, num_timesteps, num_steps):
    """The DDIM code's selections: range(0, T, T // S) and int(linspace(0, sqrt(0.8 T), S)^2)."""
    if kind == "uniform":
        return list(range(0, num_timesteps, num_timesteps // num_steps))
    return [int(s) for s in np.linspace(0, np.sqrt(num_timesteps * 0.8), num_steps) ** 2]


@pytest.mark.parametrize("kind", ["uniform", "quadratic"])
def test_ddim_matches_float64_reference(kind):
    schedule, eps_fn = _gaussian(1000)
    x_T = _x_T(256)
    spacing = {"uniform": S.uniform_timesteps, "quadratic": S.quadratic_timesteps}[kind]
    out = S.ddim_sample(eps_fn, schedule, x_T, num_steps=50, spacing=spacing, return_info=True,
                        trajectory_every=0)
    expected = _ddim_reference(x_T, _paper_code_timesteps(kind, 1000, 50))
    np.testing.assert_allclose(out.samples, expected, rtol=1e-5, atol=1e-5)
    # the quadratic selection repeats timestep 0 (a no-op step), which is skipped
    assert out.nfe == {"uniform": 50, "quadratic": 49}[kind]


def test_ddim_last_step_lands_on_alpha_bar_one():
    steps = schedules.respace(schedules.linear(1000), S.uniform_timesteps(1000, 50))
    np.testing.assert_array_equal(steps.timesteps[::-1], np.arange(980, -1, -20))
    assert float(steps.alphas_cumprod_prev[0]) == 1.0


def test_ddim_step_with_eta_matches_eqs_12_and_16():
    schedule, eps_fn = _gaussian(1000)
    taus = S.uniform_timesteps(1000, 50)
    steps = schedules.respace(schedule, taus)
    x = _x_T(64)
    key = jax.random.key(3)
    noise = np.asarray(jax.random.normal(key, x.shape), np.float64)
    step = jax.jit(functools.partial(S.ddim_step, eps_fn, eta=0.5))
    for i in (49, 20, 1, 0):
        got = step(steps, x, jnp.full((64,), i, jnp.int32), key)
        t_next = taus[i - 1] if i > 0 else -1
        expected = _ddim_update_reference(np.asarray(x, np.float64), taus[i], t_next, eta=0.5,
                                          noise=noise)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-5)


# --- identities between the samplers -------------------------------------------------------


def test_ddim_with_eta_one_is_the_ddpm_posterior_step():
    schedule, eps_fn = _gaussian(1000)
    steps = schedules.respace(schedule, S.uniform_timesteps(1000, 20))
    x, key = _x_T(64), jax.random.key(5)
    ddim_step = jax.jit(functools.partial(S.ddim_step, eps_fn, eta=1.0))
    ddpm_step = jax.jit(functools.partial(S.ddpm_step, eps_fn, clip_denoised=False))
    for i in (19, 7, 0):
        t = jnp.full((64,), i, jnp.int32)
        ddim = ddim_step(steps, x, t, key)
        ddpm = ddpm_step(steps, x, t, key)
        np.testing.assert_allclose(ddim, ddpm, rtol=1e-5, atol=1e-5)


def test_ancestral_predictor_is_ddpm_with_fixed_large_variance():
    schedule, eps_fn = _gaussian(100)
    x = _x_T(64)
    for i in (99, 50, 1):
        t = jnp.full((64,), i, jnp.int32)
        score = -eps_fn(x, t) / schedule.sqrt_one_minus_alphas_cumprod[t][:, None]
        mean, std = S.ancestral_predictor(schedule, x, t, score)
        p = diffusion.p_mean_variance(schedule, eps_fn(x, t), x, t, variance="fixed_large")
        np.testing.assert_allclose(mean, p.mean, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(std**2, p.variance, rtol=1e-5)


@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_prediction_types_give_the_same_chain(prediction):
    schedule, eps_fn = _gaussian(100)

    def model_fn(x, t):
        a = schedule.sqrt_alphas_cumprod[t][:, None]
        b = schedule.sqrt_one_minus_alphas_cumprod[t][:, None]
        eps = eps_fn(x, t)
        x0 = (x - b * eps) / a
        return x0 if prediction == "x0" else a * eps - b * x0

    x_T, key = _x_T(128), jax.random.key(1)
    kw = dict(clip_denoised=False)
    np.testing.assert_allclose(
        S.ddpm_sample(model_fn, schedule, x_T, key, prediction=prediction, **kw),
        S.ddpm_sample(eps_fn, schedule, x_T, key, **kw), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        S.ddim_sample(model_fn, schedule, x_T, num_steps=20, prediction=prediction),
        S.ddim_sample(eps_fn, schedule, x_T, num_steps=20), rtol=1e-4, atol=1e-4)


# --- Gaussian data with its optimal model: every sampler reproduces its moments -------------


def _exact_variance_model(schedule, steps, variance):
    """The optimal eps of ``schedule`` together with the exact reverse variance of the (respaced)
    chain ``steps``, Var(x_{t-1} | x_t) = beta~_t + coef1_t^2 Var(x_0 | x_t) (Gaussian
    conditioning), written as a ``learned`` (log variance) or ``learned_range`` output."""
    _, eps_fn = _gaussian(schedule.num_timesteps)

    def model_fn(x, t):
        i = jnp.searchsorted(steps.timesteps, t)[:, None]  # model t -> index into steps
        abar = steps.alphas_cumprod[i]
        var_x0 = VAR * (1 - abar) / (abar * VAR + 1 - abar)
        log_var = jnp.log(steps.posterior_variance[i] + steps.posterior_mean_coef1[i] ** 2 * var_x0)
        if variance == "learned_range":
            lo, hi = steps.posterior_log_variance_clipped[i], jnp.log(steps.betas[i])
            log_var = 2 * (log_var - lo) / (hi - lo) - 1
        return jnp.concatenate([eps_fn(x, t), log_var], axis=-1)

    return model_fn


@pytest.mark.parametrize("variance", ["learned", "learned_range"])
@pytest.mark.parametrize("num_steps", [None, 50])
def test_ddpm_with_exact_reverse_variance_reproduces_gaussian(variance, num_steps):
    schedule = _gaussian(1000 if num_steps else 100)[0]
    steps = schedule
    if num_steps:
        steps = schedules.respace(schedule, S.linspace_timesteps(1000, num_steps))
    model_fn = _exact_variance_model(schedule, steps, variance)
    x = S.ddpm_sample(model_fn, schedule, _x_T(), jax.random.key(1), variance=variance,
                      clip_denoised=False, num_steps=num_steps)
    # exact but for the last step, which adds no noise: Var(x_0 | x_1) <= beta_1 is missing
    _assert_moments(x, bias=0.01)


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_ddpm_fixed_variances_reproduce_gaussian(variance):
    schedule, eps_fn = _gaussian(1000)
    x = S.ddpm_sample(eps_fn, schedule, _x_T(), jax.random.key(2), variance=variance,
                      clip_denoised=False)
    _assert_moments(x)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_reproduces_gaussian(eta):
    schedule, eps_fn = _gaussian(1000)
    x = S.ddim_sample(eps_fn, schedule, _x_T(), jax.random.key(3), num_steps=1000, eta=eta)
    _assert_moments(x)


@pytest.mark.parametrize("predictor", [S.reverse_diffusion_predictor, S.ancestral_predictor])
def test_pc_reproduces_gaussian(predictor):
    schedule, eps_fn = _gaussian(1000)
    x = S.pc_sample(eps_fn, schedule, _x_T(), jax.random.key(4), predictor=predictor,
                    corrector_steps=1, snr=0.16)
    _assert_moments(x)


def test_annealed_langevin_reproduces_gaussian():
    score_fn = _gaussian_score_fn()
    x_init = jax.random.uniform(jax.random.key(0), (N, 2), minval=-3.0, maxval=3.0)
    sigmas = schedules.geometric_sigmas(2.0, 0.01, 10)
    x = S.annealed_langevin(score_fn, sigmas, x_init, jax.random.key(5), steps_per_sigma=100,
                            step_lr=4e-5)
    _assert_moments(x)


# --- DDIM and the probability-flow ODE -----------------------------------------------------


def test_ddim_converges_to_the_exact_flow_map_at_first_order():
    schedule, eps_fn = _gaussian(1000)
    x_T = _x_T(256)
    errors = []
    for num_steps in (10, 20, 50, 100):
        first = S.uniform_timesteps(1000, num_steps)[-1]
        exact = analytic.gaussian_flow_map(x_T, schedule.alphas_cumprod[first], 1.0, MEAN, VAR)
        got = S.ddim_sample(eps_fn, schedule, x_T, num_steps=num_steps)
        errors.append(float(jnp.sqrt(jnp.mean((got - exact) ** 2))))
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    slope = np.polyfit(np.log([10, 20, 50, 100]), np.log(errors), 1)[0]
    assert -1.3 < slope < -0.7, (slope, errors)


def test_ddim_invert_follows_the_flow_map_and_reconstructs():
    schedule, eps_fn = _gaussian(1000)
    x_0 = jnp.asarray(MEAN + np.sqrt(VAR) * np.asarray(_x_T(256)), jnp.float32)
    rms = lambda a, b: float(jnp.sqrt(jnp.mean((a - b) ** 2)))  # noqa: E731
    encode_errors, roundtrip_errors = [], []
    for num_steps in (20, 100):
        last = S.uniform_timesteps(1000, num_steps)[-1]
        exact = analytic.gaussian_flow_map(x_0, 1.0, schedule.alphas_cumprod[last], MEAN, VAR)
        x_T = S.ddim_invert(eps_fn, schedule, x_0, num_steps=num_steps)
        encode_errors.append(rms(x_T, exact))
        roundtrip_errors.append(rms(S.ddim_sample(eps_fn, schedule, x_T, num_steps=num_steps), x_0))
    # first order: 5x the steps, about 1/5 of the error
    assert encode_errors[1] < encode_errors[0] / 3 and encode_errors[1] < 0.04, encode_errors
    assert roundtrip_errors[1] < roundtrip_errors[0] / 3 and roundtrip_errors[1] < 0.03, (
        roundtrip_errors
    )


# --- NCSN: annealing recovers the relative weights of separated modes ------------------------


def test_annealed_langevin_recovers_mixture_weights_and_plain_langevin_does_not():
    # Song & Ermon (2019), Sec. 3.2.2: 1/5 N((-5, -5), I) + 4/5 N((5, 5), I), uniform start
    means = jnp.array([[-5.0, -5.0], [5.0, 5.0]])
    score_fn = analytic.mixture_score_fn(jnp.array([0.2, 0.8]), means, jnp.ones(2))
    x_init = jax.random.uniform(jax.random.key(0), (2000, 2), minval=-8.0, maxval=8.0)
    sigmas = schedules.geometric_sigmas(20.0, 1.0, 10)
    annealed = S.annealed_langevin(score_fn, sigmas, x_init, jax.random.key(1), steps_per_sigma=100,
                                   step_lr=0.1)
    plain = S.langevin(score_fn, 0.01, x_init, jax.random.key(1), num_steps=300, step_size=0.1)
    weight = lambda x: float(jnp.mean(x.sum(axis=1) > 0))  # noqa: E731
    assert abs(weight(annealed) - 0.8) < 0.05
    assert abs(weight(plain) - 0.8) > 0.2  # stays near the starting proportion 1/2


# --- clipping, inpainting, trajectories ----------------------------------------------------


def test_clip_denoised_keeps_samples_in_the_data_range():
    schedule = schedules.linear(100)
    eps_fn = analytic.gaussian_eps_fn(schedule, jnp.full((2,), 3.0), jnp.full((2,), 0.01))
    x_T, key = _x_T(256), jax.random.key(0)
    free = S.ddpm_sample(eps_fn, schedule, x_T, key, clip_denoised=False)
    np.testing.assert_allclose(free.mean(0), 3.0, atol=0.05)
    for clipped in (S.ddpm_sample(eps_fn, schedule, x_T, key, clip_denoised=True),
                    S.ddim_sample(eps_fn, schedule, x_T, num_steps=20, clip_denoised=True)):
        assert float(jnp.abs(clipped).max()) <= 1.0


def _mirror_mixture():
    """Two modes, (0.8, 0.8) and (-0.8, -0.8): the second coordinate follows the first."""
    return jnp.array([0.5, 0.5]), jnp.array([[0.8, 0.8], [-0.8, -0.8]]), jnp.full((2,), 0.01)


def _inpaint_run(name):
    """Inpaints the first coordinate of the mirror mixture with every fixed-step sampler, each
    driven by the mixture's exact score, eps, denoiser or velocity."""
    weights, means, variances = _mirror_mixture()
    sign = jnp.where(jnp.arange(512) % 2 == 0, 1.0, -1.0)[:, None]
    known = jnp.concatenate([0.8 * sign, jnp.full_like(sign, 7.0)], axis=1)  # [:, 1] is ignored
    mask = np.array([True, False])
    x, key = _x_T(512), jax.random.key(0)
    inpaint = dict(mask=mask, known=known)
    schedule = schedules.linear(100)
    eps_fn = analytic.mixture_eps_fn(schedule, weights, means, variances)
    process = processes.VPGamma(processes.linear_gamma(-10.0, 8.0))
    vdm_eps_fn = analytic.mixture_vdm_eps_fn(process.gamma, weights, means, variances)
    runs = {
        "annealed_langevin": lambda: S.annealed_langevin(
            analytic.mixture_score_fn(weights, means, variances),
            schedules.geometric_sigmas(2.0, 0.05, 10), x, key, steps_per_sigma=50, step_lr=5e-4,
            **inpaint),
        "ddpm": lambda: S.ddpm_sample(eps_fn, schedule, x, key, clip_denoised=False, **inpaint),
        "ddim": lambda: S.ddim_sample(eps_fn, schedule, x, key, num_steps=50, **inpaint),
        "pc": lambda: S.pc_sample(eps_fn, schedule, x, key, num_steps=50, **inpaint),
        "dpm_solver": lambda: S.dpm_solver_sample(eps_fn, schedule, x, key, num_steps=20,
                                                  **inpaint),
        "ode_heun": lambda: S.ode_sample(vdm_eps_fn, process, x, key, num_steps=30, **inpaint),
        "edm": lambda: S.edm_sample(analytic.mixture_denoiser_fn(weights, means, variances),
                                    schedules.karras_sigmas(30, 0.002, 80.0), 80.0 * x, key,
                                    **inpaint),
        "flow": lambda: S.flow_sample(analytic.mixture_velocity_fn(weights, means, variances), x,
                                      key, num_steps=50, **inpaint),
    }
    return runs[name](), known, sign


@pytest.mark.parametrize(
    "name", ["ddpm", "ddim", "annealed_langevin", "pc", "dpm_solver", "ode_heun", "edm", "flow"]
)
def test_inpainting_keeps_known_pixels_and_conditions_the_rest(name):
    """The second coordinate of the mirror mixture follows the first: the exact conditional
    puts it on the same sign, an unconditional sample on either sign half the time. Replacement
    is an approximation of the conditional (Song et al. 2021, App. I.2) that the ODE samplers,
    which add no noise of their own, follow less closely (0.92 of the signs here)."""
    out, known, sign = _inpaint_run(name)
    np.testing.assert_array_equal(out[:, 0], known[:, 0])
    deterministic = name in ("dpm_solver", "ode_heun", "edm")
    assert float(jnp.mean(jnp.sign(out[:, 1:]) == sign)) > (0.88 if deterministic else 0.95)


def test_inpainting_with_an_adaptive_solver_is_refused():
    schedule, eps_fn = _gaussian(100)
    x = _x_T(4)
    with pytest.raises(ValueError, match="mask: inpainting needs fixed steps"):
        S.ode_sample(eps_fn, schedule, x, jax.random.key(0), method="tsit5", mask=np.ones(2, bool),
                     known=x)


def test_trajectory_and_nfe():
    schedule, eps_fn = _gaussian(100)
    x_T = _x_T(8)
    out = S.ddim_sample(eps_fn, schedule, x_T, num_steps=10, return_info=True, trajectory_every=3)
    assert out.trajectory.shape == (4, 8, 2) and out.nfe == 10
    np.testing.assert_array_equal(out.trajectory[-1], out.samples)
    steps = schedules.respace(schedule, S.uniform_timesteps(100, 10))
    x, step = x_T, jax.jit(functools.partial(S.ddim_step, eps_fn))
    for i in (9, 8, 7):  # three steps by hand with the public step
        x = step(steps, x, jnp.full((8,), i, jnp.int32))
    np.testing.assert_allclose(out.trajectory[0], x, rtol=1e-6, atol=1e-6)

    key = jax.random.key(0)
    ddpm = S.ddpm_sample(eps_fn, schedule, x_T, key, return_info=True, trajectory_every=0)
    assert ddpm.nfe == 100 and ddpm.trajectory is None
    pc = S.pc_sample(eps_fn, schedule, x_T, key, num_steps=20, corrector_steps=2, return_info=True)
    assert pc.nfe == 60 and pc.trajectory.shape == (20, 8, 2)
    score_fn = _gaussian_score_fn()
    ald = S.annealed_langevin(score_fn, jnp.array([1.0, 0.5]), x_T, key, steps_per_sigma=4,
                              step_lr=1e-2, return_info=True, trajectory_every=4)
    assert ald.nfe == 9 and ald.trajectory.shape == (3, 8, 2)  # 2 levels + the denoised output
    np.testing.assert_array_equal(ald.trajectory[-1], ald.samples)


# --- compilation ---------------------------------------------------------------------------


def _counting(fn):
    """``fn`` with a count of its Python calls, i.e. of the traces of a jitted caller."""
    traces = []

    def counted(*args):
        traces.append(None)
        return fn(*args)

    return counted, traces


SAMPLERS = {
    "ddpm": lambda f, s, x, n: S.ddpm_sample(f, s, x, jax.random.key(0), num_steps=n),
    "ddim": lambda f, s, x, n: S.ddim_sample(f, s, x, num_steps=n),
    "pc": lambda f, s, x, n: S.pc_sample(f, s, x, jax.random.key(0), num_steps=n),
    "annealed_langevin": lambda f, s, x, n: S.annealed_langevin(
        f, schedules.geometric_sigmas(1.0, 0.1, n), x, jax.random.key(0), steps_per_sigma=2,
        step_lr=1e-3),
}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_one_compilation_per_shape_and_number_of_steps(name):
    schedule, eps_fn = _gaussian(50)
    if name == "annealed_langevin":
        eps_fn = _gaussian_score_fn()
    model_fn, traces = _counting(eps_fn)
    sample = functools.partial(SAMPLERS[name], model_fn, schedule)
    sample(_x_T(16, seed=1), 10)
    once = len(traces)
    assert once > 0
    sample(_x_T(16, seed=2), 10)  # a new batch of the same shape
    assert len(traces) == once
    sample(_x_T(16, seed=3), 20)  # another number of steps: one more compilation
    assert len(traces) == 2 * once
    sample(_x_T(16, seed=4), 20)
    assert len(traces) == 2 * once


# --- errors --------------------------------------------------------------------------------


def _bad_calls():
    schedule, eps_fn = _gaussian(50)
    x, key = _x_T(4), jax.random.key(0)
    score_fn = _gaussian_score_fn()
    return {
        "num_steps > T": (lambda: S.ddim_sample(eps_fn, schedule, x, num_steps=51), "at most 50"),
        "num_steps < 1": (lambda: S.ddim_sample(eps_fn, schedule, x, num_steps=0), "positive"),
        "ddpm num_steps": (lambda: S.ddpm_sample(eps_fn, schedule, x, key, num_steps=99),
                           "at most"),
        "invert num_steps": (lambda: S.ddim_invert(eps_fn, schedule, x, num_steps=2.5), "integer"),
        "eta < 0": (lambda: S.ddim_sample(eps_fn, schedule, x, key, num_steps=5, eta=-0.1), "eta"),
        "eta > 1": (lambda: S.ddim_sample(eps_fn, schedule, x, key, num_steps=5, eta=1.5), "eta"),
        "eta without rng": (lambda: S.ddim_sample(eps_fn, schedule, x, num_steps=5, eta=0.5),
                            "rng"),
        "model output shape": (lambda: S.ddim_sample(lambda x_t, t: x_t[..., :1], schedule, x,
                                                     num_steps=5), "the model output and x"),
        "inpainting without rng": (lambda: S.dpm_solver_sample(eps_fn, schedule, x, num_steps=5,
                                                               mask=np.ones(2, bool), known=x),
                                   "pass an rng"),
        "variance": (lambda: S.ddpm_sample(eps_fn, schedule, x, key, variance="small"), "variance"),
        "empty sigmas": (lambda: S.annealed_langevin(score_fn, jnp.zeros((0,)), x, key,
                                                     steps_per_sigma=2, step_lr=0.1), "non-empty"),
        "negative sigma": (lambda: S.annealed_langevin(score_fn, jnp.array([1.0, -0.1]), x, key,
                                                       steps_per_sigma=2, step_lr=0.1), "sigmas"),
        "step_lr": (lambda: S.annealed_langevin(score_fn, jnp.ones(2), x, key, steps_per_sigma=2,
                                                step_lr=0.0), "step_lr"),
        "mask shape": (lambda: S.ddpm_sample(eps_fn, schedule, x, key, mask=np.ones((4, 3), bool),
                                             known=x), "mask must broadcast"),
        "known shape": (lambda: S.ddim_sample(eps_fn, schedule, x, key, num_steps=5,
                                              mask=np.ones(2, bool), known=x[:2]), "known must"),
        "mask alone": (lambda: S.annealed_langevin(score_fn, jnp.ones(2), x, key, steps_per_sigma=2,
                                                   step_lr=0.1, mask=np.ones(2, bool)), "both"),
        "corrector_steps": (lambda: S.pc_sample(eps_fn, schedule, x, key, corrector_steps=-1),
                            "corrector_steps"),
        "x_T rank": (lambda: S.ddim_sample(eps_fn, schedule, x[0], num_steps=5), "x_T"),
    }


@pytest.mark.parametrize("case", list(_bad_calls()))
def test_bad_arguments_raise_clear_errors(case):
    call, match = _bad_calls()[case]
    with pytest.raises((ValueError, TypeError), match=match):
        call()
