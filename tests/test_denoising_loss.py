"""denoising_loss on a process defined by alpha_sigma, t_noise and t_data alone, at the exact
denoiser of Gaussian data x_0 ~ N(m, v): its value is the closed-form MMSE of each prediction.

With x = alpha x_0 + sigma eps, the posterior of x_0 is Gaussian with mean
m + alpha v (x - alpha m) / (alpha^2 v + sigma^2) and variance V = v sigma^2 / (alpha^2 v + sigma^2);
every target is affine in x_0 given x (coefficient c), so the MMSE is c^2 V. The exact outputs
and the coefficients below are written out by hand for the cosine path."""

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import losses, processes, samplers

MEAN, VAR = jnp.array([0.4, -0.2]), jnp.array([0.3, 0.05])
SIGMA_DATA = 0.5


@flax.struct.dataclass
class Cosine(processes.GaussianProcess):
    """A user's process: three members."""

    t_noise = 0.95
    t_data = 0.05

    def alpha_sigma(self, t):
        return jnp.cos(0.5 * jnp.pi * t), jnp.sin(0.5 * jnp.pi * t)


def _by_hand(t):
    """alpha, sigma, alpha', sigma' of the cosine path, [B, 1]."""
    t = t[:, None]
    a, s = jnp.cos(0.5 * jnp.pi * t), jnp.sin(0.5 * jnp.pi * t)
    return a, s, -0.5 * jnp.pi * s, 0.5 * jnp.pi * a


def _posterior(x, a, s):
    total = a**2 * VAR + s**2
    x0 = MEAN + a * VAR * (x - a * MEAN) / total
    return x0, (x - a * x0) / s  # E[x_0 | x], E[eps | x]


def exact_model(prediction):
    def model_fn(x, time):
        if prediction == "edm":  # called with c_in x / alpha and c_noise = ln(sigma / alpha) / 4
            ratio = jnp.exp(4.0 * time)  # sigma / alpha = tan(pi t / 2)
            t = 2.0 / jnp.pi * jnp.arctan(ratio)
            a, s, _, _ = _by_hand(t)
            x = x * a * jnp.sqrt(ratio[:, None] ** 2 + SIGMA_DATA**2)
        else:
            a, s, da, ds = _by_hand(time)
        x0, eps = _posterior(x, a, s)
        if prediction == "eps":
            return eps
        if prediction == "x0":
            return x0
        if prediction == "v":
            return a * eps - s * x0
        if prediction == "score":
            return -(x - a * MEAN) / (a**2 * VAR + s**2)
        if prediction == "velocity":
            return da * x0 + ds * eps
        r = s / a  # edm: F = (x0 - c_skip x / alpha) / c_out
        c_skip = SIGMA_DATA**2 / (r**2 + SIGMA_DATA**2)
        c_out = r * SIGMA_DATA / jnp.sqrt(r**2 + SIGMA_DATA**2)
        return (x0 - c_skip * x / a) / c_out

    return model_fn


def mmse(prediction, t):
    """c^2 V per dimension, [len(t), D], in float64."""
    t = np.asarray(t, np.float64)[:, None]
    a, s = np.cos(np.pi * t / 2), np.sin(np.pi * t / 2)
    da, ds = -np.pi / 2 * s, np.pi / 2 * a
    var = np.asarray(VAR, np.float64)
    post = var * s**2 / (a**2 * var + s**2)
    r = s / a
    c = {
        "x0": 1.0,
        "eps": -a / s,  # eps = (x - a x_0) / s
        "v": -(a**2 + s**2) / s,  # v = a eps - s x_0
        "score": a / s**2,  # -eps / s
        "velocity": da - ds * a / s,
        "edm": np.sqrt(r**2 + SIGMA_DATA**2) / (r * SIGMA_DATA),  # 1 / c_out
    }[prediction]
    return c**2 * post


@pytest.mark.parametrize("prediction", ["eps", "x0", "v", "score", "velocity", "edm"])
def test_denoising_loss_at_the_exact_denoiser_is_the_mmse(prediction):
    process = Cosine()
    n = 20_000
    x0 = MEAN + jnp.sqrt(VAR) * jax.random.normal(jax.random.key(0), (n, 2))
    loss = losses.denoising_loss(exact_model(prediction), process, x0, jax.random.key(1),
                                 prediction=prediction, sigma_data=SIGMA_DATA)
    assert loss.shape == (n,)
    grid = np.linspace(0.05, 0.95, 20_001)  # t ~ U(t_data, t_noise): the mean over t
    expected = float(np.mean(np.trapezoid(mmse(prediction, grid).mean(axis=1), grid) / 0.9))
    sem = float(jnp.std(loss)) / np.sqrt(n)
    assert abs(float(jnp.mean(loss)) - expected) < 4 * sem, (float(jnp.mean(loss)), expected, sem)


def test_logit_normal_time_and_a_weighting_on_a_users_process():
    """t = t_data + (t_noise - t_data) sigmoid(n) and min-SNR-5 (w = min(SNR, 5) / SNR on the eps
    MSE, Hang et al. 2023): the expectation by quadrature against the logit-normal density."""
    process = Cosine()
    n = 20_000
    x0 = MEAN + jnp.sqrt(VAR) * jax.random.normal(jax.random.key(2), (n, 2))
    loss = losses.denoising_loss(exact_model("eps"), process, x0, jax.random.key(3),
                                 weighting=losses.min_snr_weight, time_sampling="logit_normal")
    u = np.linspace(-8, 8, 20_001)
    t = 0.05 + 0.9 / (1 + np.exp(-u))
    snr = 1 / np.tan(np.pi * t / 2) ** 2
    density = np.exp(-0.5 * u**2) / np.sqrt(2 * np.pi)
    expected = np.trapezoid(np.minimum(snr, 5.0) / snr * mmse("eps", t).mean(axis=1) * density, u)
    sem = float(jnp.std(loss)) / np.sqrt(n)
    assert abs(float(jnp.mean(loss)) - expected) < 4 * sem, (float(jnp.mean(loss)), expected, sem)


@flax.struct.dataclass
class LongCosine(Cosine):
    """The same path run to t = 0.999, where the prior N(0, I) is the marginal to ~1e-6."""

    t_noise = 0.999


def test_ode_likelihood_of_a_users_process_is_the_exact_density():
    """The probability-flow likelihood on the three-member process, with the exact eps of
    Gaussian data, is log N(x; alpha m, alpha^2 v + sigma^2) at t_data."""
    process = LongCosine()

    def eps_fn(x, t):
        a, s, _, _ = _by_hand(t)
        return s * (x - a * MEAN) / (a**2 * VAR + s**2)

    x = MEAN + jnp.sqrt(VAR) * jax.random.normal(jax.random.key(4), (8, 2))
    out = samplers.ode_likelihood(eps_fn, process, x, jax.random.key(5), trace="exact",
                                  dequantize=False)
    a, s = np.cos(np.pi * 0.05 / 2), np.sin(np.pi * 0.05 / 2)
    var = a**2 * np.asarray(VAR, np.float64) + s**2
    exact = np.sum(-0.5 * (np.asarray(x, np.float64) - a * np.asarray(MEAN)) ** 2 / var
                   - 0.5 * np.log(2 * np.pi * var), axis=1)
    np.testing.assert_allclose(out["logp"], exact, atol=5e-3)
