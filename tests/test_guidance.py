"""Guidance against exact answers: the guided score of a Gaussian mixture at every noise level
(classifier-free guidance, with and without the guidance interval); guided DDIM and EDM chains of
Gaussian classes against the closed-form guided flow (a linear ODE, solved to 1e-10 by scipy);
autoguidance with a wider Gaussian as the weak model against its closed-form map."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from jaxdiff import analytic, processes, samplers, schedules

SCHED = schedules.linear(1000)
NULL = 2
MEANS = np.array([[-0.6, 0.3], [0.6, -0.3]])
VAR = 0.16  # class variance (isotropic); the classes overlap, so guidance has work to do
WEIGHTS = np.array([0.5, 0.5])


def _score(x, a, b2, weights, means):
    """The exact score of the VP marginal of sum_k w_k N(mu_k, VAR I) at per-example (a, b^2)
    ``[B, 1]``: sum_k r_k(x) (a mu_k - x) / (a^2 VAR + b^2), in NumPy float64."""
    x, var = np.asarray(x, np.float64), a * a * VAR + b2  # [B, 2], [B, 1]
    diff = a[:, None] * np.asarray(means)[None] - x[:, None]  # [B, K, 2]
    logits = np.log(weights)[None] - 0.5 * np.sum(diff**2, -1) / var
    resp = np.exp(logits - logits.max(1, keepdims=True))
    resp /= resp.sum(1, keepdims=True)
    return np.sum(resp[..., None] * diff, 1) / var


CLASS_EPS = [analytic.gaussian_eps_fn(SCHED, m, jnp.full(2, VAR)) for m in MEANS]
MIXTURE_EPS = analytic.mixture_eps_fn(SCHED, WEIGHTS, MEANS, jnp.full((2, 2), VAR))
CLASS_DENOISER = [analytic.gaussian_denoiser_fn(m, jnp.full(2, VAR)) for m in MEANS]
MIXTURE_DENOISER = analytic.mixture_denoiser_fn(WEIGHTS, MEANS, jnp.full((2, 2), VAR))


def _labelled(per_class, unconditional):
    """A conditional model of the mixture: class y's exact model, the mixture's for y = NULL."""

    def model_fn(x, t, y):
        y = y[:, None]
        return jnp.where(y == NULL, unconditional(x, t),
                         jnp.where(y == 0, per_class[0](x, t), per_class[1](x, t)))

    return model_fn


COND_EPS = _labelled(CLASS_EPS, MIXTURE_EPS)
COND_DENOISER = _labelled(CLASS_DENOISER, MIXTURE_DENOISER)


@pytest.mark.parametrize("w", [0.0, 1.5, 4.0])
def test_guided_score_inside_and_outside_the_interval(w):
    """Every timestep of the schedule at once: the guided eps, read as a score, is
    (1 + w) s_cond - w s_uncond where lo < sigma / alpha <= hi and s_cond elsewhere."""
    t = jnp.arange(SCHED.num_timesteps)
    x = jax.random.normal(jax.random.key(0), (t.size, 2))
    y = jnp.arange(t.size) % 2
    lo, hi = 0.4, 3.0
    abar = np.asarray(SCHED.alphas_cumprod, np.float64)
    a, b2 = np.sqrt(abar)[:, None], (1.0 - abar)[:, None]
    cond = np.where(y[:, None] == 0,
                    _score(x, a, b2, [1.0], MEANS[:1]), _score(x, a, b2, [1.0], MEANS[1:]))
    uncond = _score(x, a, b2, WEIGHTS, MEANS)
    level = np.sqrt(b2 / a**2)[:, 0]
    inside = (level > lo) & (level <= hi)
    assert 0 < inside.sum() < t.size
    for interval in (None, (lo, hi)):
        guided = samplers.classifier_free_guidance(
            COND_EPS, y, scale=1.0 + w, null_label=NULL, interval=interval, process=SCHED)
        score = -np.asarray(jax.jit(guided)(x, t)) / np.sqrt(b2)
        expected = (1 + w) * cond - w * uncond
        if interval is not None:
            expected = np.where(inside[:, None], expected, cond)
        np.testing.assert_allclose(score, expected, rtol=2e-4, atol=2e-4 * np.abs(expected).max())


def test_noise_level_is_sigma_over_alpha_for_every_process():
    t = jnp.array([0.1, 0.5, 0.9])
    for process in (processes.EDM(), processes.VE(), processes.LinearFlow(t_max=0.99)):
        alpha, sigma = process.alpha_sigma(t)
        np.testing.assert_allclose(samplers.noise_level(process, t), sigma / alpha, rtol=1e-5)
    abar = SCHED.alphas_cumprod[jnp.array([0, 500, 999])]
    np.testing.assert_allclose(samplers.noise_level(SCHED, jnp.array([0, 500, 999])),
                               np.sqrt((1 - abar) / abar), rtol=1e-4)


def _guided_flow_map(x, sigma_from, *, scale, mean, var, weak_mean, weak_var, interval=None):
    """The exact probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma (Karras et al. 2022,
    eq. 3) from ``sigma_from`` to 0, for the guided Gaussian denoiser
    D = s D_strong + (1 - s) D_weak with D = mu + v / (v + sigma^2) (x - mu). The field is
    affine in x, so x(0) = A x + p mu + q mu_weak; (A, p, q) solve a 3-dimensional linear ODE,
    integrated by scipy to 1e-11."""

    def field(sigma, state):
        s = scale if interval is None or interval[0] < sigma <= interval[1] else 1.0
        g, g_weak = sigma / (var + sigma**2), sigma / (weak_var + sigma**2)
        rate = s * g + (1.0 - s) * g_weak  # (1 - dD/dx) / sigma
        a, p, q = state
        return [rate * a, rate * p - s * g, rate * q - (1.0 - s) * g_weak]

    points = [] if interval is None else [v for v in interval if 0 < v < sigma_from]
    state, edges = np.array([1.0, 0.0, 0.0]), [sigma_from, *sorted(points, reverse=True), 0.0]
    for hi, lo in zip(edges[:-1], edges[1:]):  # integrate piecewise across the interval's ends
        state = integrate.solve_ivp(field, (hi, lo), state, rtol=1e-11, atol=1e-12).y[:, -1]
    a, p, q = state
    return a * x + p * mean + q * weak_mean


GAUSS_MEAN, GAUSS_VAR = np.array([0.6, -0.3]), 0.16
UNCOND_MEAN, UNCOND_VAR = np.array([0.0, 0.0]), 0.16 + 0.45  # moment-matched to the mixture


@pytest.mark.parametrize("interval", [None, (0.3, 2.0)])
def test_guided_edm_and_ddim_match_the_closed_form_guided_flow(interval):
    """Gaussian classes: the conditional class N(mu, v I) guided by a Gaussian unconditional
    N(mu_u, v_u I). Heun (EDM, 80 steps) and DDIM (500 steps) land on the exact map (the steps
    across the interval's ends are first order: a looser tolerance there), and the
    samples move toward their class as w grows (the exact classifier's log-odds of the class
    rise)."""
    x = np.asarray(jax.random.normal(jax.random.key(3), (256, 2)), np.float64)
    strong = analytic.gaussian_denoiser_fn(GAUSS_MEAN, jnp.full(2, GAUSS_VAR))
    weak = analytic.gaussian_denoiser_fn(UNCOND_MEAN, jnp.full(2, UNCOND_VAR))
    strong_eps = analytic.gaussian_eps_fn(SCHED, GAUSS_MEAN, jnp.full(2, GAUSS_VAR))
    weak_eps = analytic.gaussian_eps_fn(SCHED, UNCOND_MEAN, jnp.full(2, UNCOND_VAR))
    sigmas = schedules.karras_sigmas(80, 0.002, 80.0)
    ddim_steps = 500
    t_first = (SCHED.num_timesteps // ddim_steps) * (ddim_steps - 1)
    abar = float(SCHED.alphas_cumprod[t_first])
    ddim_sigma = np.sqrt((1 - abar) / abar)
    log_odds = []
    for w in (0.0, 1.0, 3.0):
        kw = dict(scale=1.0 + w, interval=interval)
        exact = functools.partial(_guided_flow_map, mean=GAUSS_MEAN, var=GAUSS_VAR,
                                  weak_mean=UNCOND_MEAN, weak_var=UNCOND_VAR, **kw)
        edm = samplers.edm_sample(
            samplers.autoguidance(strong, weak, process=processes.EDM(), **kw), sigmas,
            jnp.asarray(x * 80.0, jnp.float32))
        # measured 3.7e-3 (second order); 1.0e-2 with the interval (first order across its ends)
        np.testing.assert_allclose(edm, exact(x * 80.0, 80.0), atol=5e-3 if interval is None else 2e-2)
        ddim = samplers.ddim_sample(
            samplers.autoguidance(strong_eps, weak_eps, process=SCHED, **kw), SCHED,
            jnp.asarray(x * np.sqrt(abar), jnp.float32), num_steps=ddim_steps)
        np.testing.assert_allclose(ddim, exact(x, ddim_sigma), atol=2e-2)
        other = -GAUSS_MEAN  # the other class of the mixture
        log_odds.append(np.mean(np.sum((edm - other) ** 2 - (edm - GAUSS_MEAN) ** 2, 1)))
    assert log_odds[0] < log_odds[1] < log_odds[2]


@pytest.mark.parametrize("sampler", ["edm", "ddim"])
def test_guided_mixture_samples_move_toward_their_class(sampler):
    """The exact mixture (unconditional) and its classes: the exact posterior of the requested
    class rises with w, for both labels, with and without the interval."""
    x = jax.random.normal(jax.random.key(5), (256, 2))
    y = jnp.arange(256) % 2
    posterior = []
    for w, interval in ((0.0, None), (1.0, None), (3.0, None), (3.0, (0.2, 3.0))):
        if sampler == "edm":
            guided = samplers.classifier_free_guidance(
                COND_DENOISER, y, scale=1.0 + w, null_label=NULL, interval=interval,
                process=processes.EDM())
            out = samplers.edm_sample(guided, schedules.karras_sigmas(16, 0.002, 80.0), x * 80.0)
        else:
            guided = samplers.classifier_free_guidance(
                COND_EPS, y, scale=1.0 + w, null_label=NULL, interval=interval, process=SCHED)
            out = samplers.ddim_sample(guided, SCHED, x, num_steps=20)
        logp = jax.vmap(lambda m: -jnp.sum((out - m) ** 2, 1) / (2 * VAR))(jnp.asarray(MEANS))
        posterior.append(float(jnp.mean(jax.nn.softmax(logp, axis=0)[y, jnp.arange(256)])))
    assert posterior[0] < posterior[1] < posterior[2]
    assert posterior[0] < posterior[3] < posterior[2]  # the interval guides, but less


@pytest.mark.parametrize("scale", [1.0, 2.0, 4.0])
def test_autoguidance_with_a_wider_gaussian_is_the_closed_form_field_and_map(scale):
    """Karras et al. (2024): the model N(mu, v I) guided by the weak N(mu, v_w I), v_w > v. The
    guided flow is x(0) = mu + (x - mu) Phi(0) / Phi(sigma) with
    Phi(sigma) = (v + sigma^2)^{s/2} (v_w + sigma^2)^{(1 - s)/2}: guidance narrows the class."""
    mean, var, weak_var = np.array([0.3, -0.2]), 0.1, 0.3
    strong = analytic.gaussian_denoiser_fn(mean, jnp.full(2, var))
    weak = analytic.gaussian_denoiser_fn(mean, jnp.full(2, weak_var))
    guided = samplers.autoguidance(strong, weak, scale=scale)
    x = np.asarray(jax.random.normal(jax.random.key(7), (128, 2)))
    sigma = np.full(128, 1.7)
    field = scale * (mean + var / (var + 1.7**2) * (x - mean)) + (1 - scale) * (
        mean + weak_var / (weak_var + 1.7**2) * (x - mean))
    np.testing.assert_allclose(guided(jnp.asarray(x), jnp.asarray(sigma)), field, rtol=1e-5, atol=1e-6)

    def phi(s):
        return (var + s**2) ** (scale / 2) * (weak_var + s**2) ** ((1 - scale) / 2)

    out = samplers.edm_sample(guided, schedules.karras_sigmas(64, 0.002, 80.0), jnp.asarray(x * 80.0))
    expected = mean + (x * 80.0 - mean) * phi(0.0) / phi(80.0)
    np.testing.assert_allclose(out, expected, atol=1e-2)  # Heun, 64 steps: measured 4.5e-3


def test_the_weak_model_is_not_evaluated_outside_the_interval():
    calls = []

    def weak(x, t):
        jax.debug.callback(lambda: calls.append(1))
        return x

    guided = samplers.autoguidance(lambda x, t: 2 * x, weak, scale=3.0, interval=(1.0, 2.0),
                                   process=processes.EDM())
    x = jnp.ones((4, 2))
    np.testing.assert_array_equal(guided(x, jnp.full(4, 5.0)), 2 * x)  # outside: the model
    assert not calls
    np.testing.assert_allclose(guided(x, jnp.full(4, 1.5)), 3 * 2 * x - 2 * x)  # inside
    assert calls


def test_bad_options_are_clear_errors():
    y = jnp.zeros(3, jnp.int32)
    with pytest.raises(ValueError, match="scale must be >= 0"):
        samplers.classifier_free_guidance(COND_EPS, y, scale=-1.0, null_label=NULL)
    with pytest.raises(ValueError, match="0 <= lo < hi"):
        samplers.classifier_free_guidance(COND_EPS, y, scale=2.0, null_label=NULL,
                                          interval=(3.0, 1.0), process=SCHED)
    with pytest.raises(ValueError, match="pass process="):
        samplers.autoguidance(CLASS_EPS[0], MIXTURE_EPS, scale=2.0, interval=(0.1, 1.0))
