"""Consistency models (Song et al. 2023, "Consistency Models"; Song & Dhariwal 2024, "Improved
Techniques for Training Consistency Models"): a network f(x, sigma) that maps any point of a
probability-flow trajectory to the trajectory's data end, so one evaluation generates.

Everything here is in EDM's form (Karras et al. 2022): x = x_0 + sigma n, sigma in
[sigma_min, sigma_max]. A teacher trained on another Gaussian process enters as its EDM-form
denoiser, ``jaxdiff.samplers.process_denoiser(model_fn, process, prediction=...)``.

* :func:`consistency_precondition` is the parametrisation f = c_skip x + c_out F, with
  f(x, sigma_min) = x exactly (the boundary condition).
* :func:`consistency_training_loss` trains from scratch with the improved recipe: pseudo-Huber
  distance, log-normal choice of the discretised levels, the doubling curriculum N(k) and the
  target network theta^- = stopgrad(theta) (no EMA teacher).
* :func:`consistency_distillation_loss` distils a teacher denoiser through one Euler or Heun
  step of its probability-flow ODE.
* :func:`multistep_consistency_sample` is Alg. 1 of Song et al. (2023).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import _checks, models, schedules, samplers
from jaxdiff.elbo import mean_flat

__all__ = [
    "consistency_scalings",
    "consistency_denoise",
    "consistency_precondition",
    "pseudo_huber",
    "huber_constant",
    "DISTANCES",
    "discretization_steps",
    "curriculum_sigmas",
    "lognormal_level_logits",
    "consistency_training_loss",
    "consistency_distillation_loss",
    "multistep_consistency_sample",
]


def consistency_scalings(sigma, *, sigma_min: float = 0.002, sigma_data: float = 0.5):
    """c_skip and c_out of a consistency model (Song et al. 2023, App. C, eq. 24):

    .. math:: c_{skip}(\\sigma) = \\frac{\\sigma_d^2}{(\\sigma - \\sigma_{min})^2 + \\sigma_d^2},
        \\quad c_{out}(\\sigma) = \\frac{\\sigma_d (\\sigma - \\sigma_{min})}
        {\\sqrt{\\sigma_d^2 + \\sigma^2}}

    so c_skip(sigma_min) = 1 and c_out(sigma_min) = 0: f(x, sigma_min) = x whatever the network.

    Returns:
      ``(c_skip, c_out)``, each of ``sigma``'s shape.
    """
    sigma = jnp.asarray(sigma)
    shifted = sigma - sigma_min
    return (
        sigma_data**2 / (shifted**2 + sigma_data**2),
        sigma_data * shifted / jnp.sqrt(sigma_data**2 + sigma**2),
    )


def consistency_denoise(
    raw_fn: Callable, x, sigma, *, sigma_min: float = 0.002, sigma_data: float = 0.5
):
    """The consistency function f_theta (Song et al. 2023, eq. 5 with App. C's scalings):

    .. math:: f_\\theta(x, \\sigma) = c_{skip}(\\sigma)\\, x
        + c_{out}(\\sigma)\\, F_\\theta\\big(c_{in}(\\sigma)\\, x;\\ c_{noise}(\\sigma)\\big)

    with c_skip, c_out of :func:`consistency_scalings` and c_in, c_noise of EDM
    (:func:`jaxdiff.models.edm_scalings`).

    Args:
      raw_fn: ``raw_fn(x, c_noise) -> F`` of x's shape, c_noise a float ``[B]``.
      x: ``[B, ...]`` a point at level sigma.
      sigma: ``[B]`` (or scalar) levels >= sigma_min.

    Returns:
      ``[B, ...]`` the estimate of the trajectory's data end.
    """
    sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), x.shape[:1])
    _, _, c_in, c_noise = models.edm_scalings(sigma, sigma_data)
    c_skip, c_out = consistency_scalings(sigma, sigma_min=sigma_min, sigma_data=sigma_data)
    shape = (-1,) + (1,) * (x.ndim - 1)
    out = raw_fn(c_in.reshape(shape) * x, c_noise)
    _checks.same_shape("network output", out, "x", x)
    return c_skip.reshape(shape) * x + c_out.reshape(shape) * out


def consistency_precondition(
    raw_fn: Callable, *, sigma_min: float = 0.002, sigma_data: float = 0.5
) -> Callable:
    """A raw network as the consistency function ``f(x, sigma)`` (:func:`consistency_denoise`)."""
    if not sigma_data > 0 or not sigma_min > 0:
        raise ValueError(f"sigma_min and sigma_data must be positive, got {sigma_min}, {sigma_data}")
    return functools.partial(consistency_denoise, raw_fn, sigma_min=sigma_min, sigma_data=sigma_data)


def pseudo_huber(a, b, *, c: float) -> jnp.ndarray:
    """The pseudo-Huber distance (Song & Dhariwal 2024, Sec. 3.3):

    .. math:: d(a, b) = \\sqrt{\\|a - b\\|_2^2 + c^2} - c

    quadratic (||a - b||^2 / 2c) near 0 and linear far away. Returns ``[B]``."""
    sq = jnp.sum((a - b) ** 2, axis=tuple(range(1, a.ndim)))
    return jnp.sqrt(sq + c**2) - c


def huber_constant(data_shape) -> float:
    """c = 0.00054 sqrt(d) for data of d dimensions (Song & Dhariwal 2024, Sec. 3.3)."""
    return 0.00054 * math.sqrt(float(np.prod(data_shape)))


def _squared_l2(a, b):
    return mean_flat((a - b) ** 2)


# name -> distance(a, b) -> [B]: pseudo-Huber (c from the data's size) or the squared L2
# distance per dimension of Song et al. (2023).
DISTANCES: dict[str, Callable] = {
    "pseudo_huber": lambda a, b: pseudo_huber(a, b, c=huber_constant(a.shape[1:])),
    "l2": _squared_l2,
}


def discretization_steps(step, *, total_steps: int, s0: int = 10, s1: int = 1280):
    """The doubling curriculum of the number of levels (Song & Dhariwal 2024, eq. 8):

    .. math:: N(k) = \\min(s_0 2^{\\lfloor k / K' \\rfloor}, s_1) + 1, \\quad
        K' = \\Big\\lfloor \\frac{K}{\\log_2 \\lfloor s_1 / s_0 \\rfloor + 1} \\Big\\rfloor

    Args:
      step: k, the training step (int, traced or not).
      total_steps: K, the length of training.
      s0, s1: the first and the last number of intervals (their 10 and 1280).

    Returns:
      N(k), the number of levels (an int32 array).
    """
    stages = int(math.log2(s1 // s0)) + 1
    per_stage = max(total_steps // stages, 1)
    doublings = jnp.minimum(jnp.asarray(step) // per_stage, stages - 1)
    return jnp.minimum(s0 * 2**doublings, s1).astype(jnp.int32) + 1


def curriculum_sigmas(*, sigma_min: float, sigma_max: float, rho: float, s0: int, s1: int):
    """The Karras grids of every stage of :func:`discretization_steps`, increasing, padded with
    sigma_max: ``[stages, s1 + 1]``; row j has the N = s0 2^j + 1 levels sigma_min = sigma_0 <
    ... < sigma_{N-1} = sigma_max of :func:`jaxdiff.schedules.karras_sigmas` (eq. 5)."""
    rows = []
    for j in range(int(math.log2(s1 // s0)) + 1):
        n = min(s0 * 2**j, s1) + 1
        levels = np.asarray(schedules.karras_sigmas(n, sigma_min, sigma_max, rho))[:-1][::-1]
        rows.append(np.pad(levels, (0, s1 + 1 - n), constant_values=sigma_max))
    return jnp.asarray(np.stack(rows), jnp.float32)


def lognormal_level_logits(sigmas, num_levels, *, p_mean: float = -1.1, p_std: float = 2.0):
    """Log-probabilities of the intervals [sigma_i, sigma_{i+1}] of a grid (Song & Dhariwal
    2024, eq. 10): the log-normal mass of log sigma ~ N(P_mean, P_std^2) in each,

    .. math:: p(\\sigma_i) \\propto \\mathrm{erf}\\Big(\\frac{\\ln \\sigma_{i+1} - P_{mean}}
        {\\sqrt2 P_{std}}\\Big) - \\mathrm{erf}\\Big(\\frac{\\ln \\sigma_i - P_{mean}}
        {\\sqrt2 P_{std}}\\Big)

    Args:
      sigmas: ``[M]`` increasing levels, of which the first ``num_levels`` are the grid.
      num_levels: N (may be traced).

    Returns:
      ``[M - 1]`` logits; -inf for intervals beyond the grid.
    """
    cdf = jax.scipy.special.erf((jnp.log(sigmas) - p_mean) / (math.sqrt(2.0) * p_std))
    mass = cdf[1:] - cdf[:-1]
    inside = jnp.arange(mass.shape[0]) < num_levels - 1
    return jnp.where(inside & (mass > 0), jnp.log(jnp.maximum(mass, 1e-30)), -jnp.inf)


def consistency_training_loss(
    consistency_fn: Callable,
    x0: jnp.ndarray,
    rng: jax.Array,
    *,
    sigmas: jnp.ndarray,
    num_levels,
    p_mean: float = -1.1,
    p_std: float = 2.0,
    distance: str = "pseudo_huber",
) -> jnp.ndarray:
    """Consistency training (Song et al. 2023, eq. 10; improved, Song & Dhariwal 2024, Alg. 1):

    .. math:: L = \\lambda(\\sigma_i)\\, d\\big(f_\\theta(x_0 + \\sigma_{i+1} z, \\sigma_{i+1}),\\
        \\mathrm{sg}[f_\\theta(x_0 + \\sigma_i z, \\sigma_i)]\\big), \\quad
        \\lambda(\\sigma_i) = \\frac{1}{\\sigma_{i+1} - \\sigma_i}

    with one z ~ N(0, I) for both points, i drawn by :func:`lognormal_level_logits`, and the
    target network theta^- = stopgrad(theta) (no EMA: their Sec. 3.2).

    Args:
      consistency_fn: ``f(x, sigma) -> [B, ...]`` (e.g. :func:`consistency_precondition`).
      x0: ``[B, ...]`` data.
      rng: key of the levels and the noise.
      sigmas: ``[M]`` increasing levels (a row of :func:`curriculum_sigmas`).
      num_levels: N, how many of them form the grid (may be traced: the curriculum).
      p_mean, p_std: the log-normal of the levels.
      distance: a name in :data:`DISTANCES`.

    Returns:
      ``[B]`` losses.
    """
    _checks.batched("x0", x0)
    _checks.one_of("distance", distance, DISTANCES)
    level_key, noise_key = jax.random.split(rng)
    logits = lognormal_level_logits(sigmas, num_levels, p_mean=p_mean, p_std=p_std)
    cdf = jnp.cumsum(jax.nn.softmax(logits))
    u = jax.random.uniform(level_key, x0.shape[:1], cdf.dtype) * cdf[-1]
    i = jnp.minimum(jnp.searchsorted(cdf, u, side="right"), num_levels - 2)  # inverse CDF
    sigma, sigma_next = sigmas[i], sigmas[i + 1]
    z = jax.random.normal(noise_key, x0.shape, x0.dtype)
    shape = (-1,) + (1,) * (x0.ndim - 1)
    student = consistency_fn(x0 + sigma_next.reshape(shape) * z, sigma_next)
    target = jax.lax.stop_gradient(consistency_fn(x0 + sigma.reshape(shape) * z, sigma))
    return DISTANCES[distance](student, target) / (sigma_next - sigma)


def consistency_distillation_loss(
    consistency_fn: Callable,
    denoiser_fn: Callable,
    x0: jnp.ndarray,
    rng: jax.Array,
    *,
    sigmas: jnp.ndarray,
    method: str = "heun",
    distance: str = "pseudo_huber",
) -> jnp.ndarray:
    """Consistency distillation (Song et al. 2023, eq. 7 and Alg. 2), the target network
    theta^- = stopgrad(theta):

    .. math:: L = d\\big(f_\\theta(x_{n+1}, \\sigma_{n+1}),\\
        \\mathrm{sg}[f_\\theta(\\hat x_n, \\sigma_n)]\\big), \\quad
        x_{n+1} = x_0 + \\sigma_{n+1} z

    where x-hat_n is one Euler or Heun step of the teacher's probability-flow ODE dx/dsigma =
    (x - D(x; sigma)) / sigma from sigma_{n+1} to sigma_n (:func:`jaxdiff.samplers.edm_step`)
    and n ~ U{0, ..., N - 2}. With the exact consistency function and the exact denoiser the
    loss is the solver's local error: O(h^4) in the squared L2 distance for Euler, O(h^6) for
    Heun.

    Args:
      consistency_fn: ``f(x, sigma)``, the student.
      denoiser_fn: ``D(x, sigma) -> [B, ...]``, the teacher in EDM's form (sigma ``[B]``).
      x0: ``[B, ...]`` data.
      rng: key of the levels and the noise.
      sigmas: ``[N]`` the increasing grid (N >= 2).
      method: ``"euler"`` or ``"heun"``.
      distance: a name in :data:`DISTANCES`.

    Returns:
      ``[B]`` losses.
    """
    _checks.batched("x0", x0)
    _checks.one_of("distance", distance, DISTANCES)
    _checks.one_of("method", method, ("euler", "heun"))
    sigmas = jnp.asarray(sigmas, x0.dtype)
    if sigmas.ndim != 1 or sigmas.shape[0] < 2:
        raise ValueError(f"sigmas must be a grid of at least 2 levels, got shape {sigmas.shape}")
    level_key, noise_key = jax.random.split(rng)
    n = jax.random.randint(level_key, x0.shape[:1], 0, sigmas.shape[0] - 1)
    sigma, sigma_next = sigmas[n], sigmas[n + 1]
    z = jax.random.normal(noise_key, x0.shape, x0.dtype)
    x_next = x0 + sigma_next.reshape((-1,) + (1,) * (x0.ndim - 1)) * z

    def ode_step(x, s_from, s_to):  # one example, as a batch of one
        return samplers.edm_step(denoiser_fn, x[None], s_from, s_to, method=method)[0]

    x_hat = jax.lax.stop_gradient(jax.vmap(ode_step)(x_next, sigma_next, sigma))
    student = consistency_fn(x_next, sigma_next)
    target = jax.lax.stop_gradient(consistency_fn(x_hat, sigma))
    return DISTANCES[distance](student, target)


def multistep_consistency_sample(
    consistency_fn: Callable,
    x_T: jnp.ndarray,
    rng: jax.Array | None = None,
    *,
    sigmas,
    sigma_min: float = 0.002,
) -> jnp.ndarray:
    """Multistep consistency sampling (Song et al. 2023, Alg. 1): x = f(x_T, sigma_max), then
    for each tau of ``sigmas[1:]``

    .. math:: x_\\tau = x + \\sqrt{\\tau^2 - \\sigma_{min}^2}\\, z,\\quad x = f(x_\\tau, \\tau)

    One network evaluation per level; ``len(sigmas) = 1`` is one-step generation.

    Args:
      consistency_fn: ``f(x, sigma)``.
      x_T: ``[B, ...]`` the start, sigma_max n with n ~ N(0, I).
      rng: key of the re-noising (unused with one level).
      sigmas: ``[K]`` decreasing levels, sigma_max first.
      sigma_min: the data end of ``consistency_fn``.

    Returns:
      ``[B, ...]`` samples.
    """
    _checks.batched("x_T", x_T)
    sigmas = jnp.asarray(sigmas, x_T.dtype)
    if sigmas.ndim != 1 or sigmas.shape[0] < 1:
        raise ValueError(f"sigmas must be a non-empty 1-D array of levels, got shape {sigmas.shape}")
    x = consistency_fn(x_T, jnp.full(x_T.shape[:1], sigmas[0], x_T.dtype))
    if sigmas.shape[0] == 1:
        return x
    if rng is None:
        raise ValueError("rng is needed for more than one level (the re-noising)")

    def step(x, level):
        tau, key = level
        z = jax.random.normal(key, x.shape, x.dtype)
        x_tau = x + jnp.sqrt(tau**2 - sigma_min**2) * z
        return consistency_fn(x_tau, jnp.full(x.shape[:1], tau, x.dtype)), None

    keys = jax.random.split(rng, sigmas.shape[0] - 1)
    x, _ = jax.lax.scan(step, x, (sigmas[1:], keys))
    return x
