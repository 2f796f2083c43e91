"""Post-hoc EMA (Karras et al. 2024, "Analyzing and Improving the Training Dynamics of
Diffusion Models", EDM2, Sec. 3 and App. C).

A *power-function* EMA averages the training trajectory theta(tau), 0 <= tau <= t, with weights
proportional to tau^gamma: its length grows with the run, so its shape is the same at every t and
is named by one number, the relative standard deviation sigma_rel of the weight profile. Training
tracks two such averages (two gammas) and saves both every few steps. After training, the average
of *any* sigma_rel at (or before) the last snapshot is the least-squares combination of the stored
snapshots whose profiles best match the wanted one.

Time is the update count t = 1, 2, ... (the profile is a function of t / t_end, so its unit does
not matter). Everything here is a pure function: NumPy float64 for the small solves, ``jax.tree``
for parameter pytrees.

    gammas = ema.sigma_rel_to_gamma(np.array([0.05, 0.10]))
    averages = ema.power_ema_init(params, num_profiles=2)
    averages = ema.power_ema_update(averages, params, step=t, gammas=gammas)   # t = 1, 2, ...
    # ... keep (t, gammas[k], averages[k]) every N steps, then:
    params = ema.posthoc_ema(snapshots, sigma_rel=0.08)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "SIGMA_REL_MAX",
    "gamma_to_sigma_rel",
    "sigma_rel_to_gamma",
    "power_ema_beta",
    "power_ema_init",
    "power_ema_update",
    "profile_inner_product",
    "Snapshot",
    "posthoc_weights",
    "combine",
    "posthoc_ema",
]


def gamma_to_sigma_rel(gamma):
    """The relative standard deviation of the power-function profile of exponent gamma
    (EDM2, Sec. 3.1):

    .. math:: \\sigma_{rel} = (\\gamma + 1)^{1/2} (\\gamma + 2)^{-1} (\\gamma + 3)^{-1/2}

    Args:
      gamma: exponent(s) > -1.

    Returns:
      sigma_rel, same shape as ``gamma``.
    """
    gamma = np.asarray(gamma, np.float64)
    return np.sqrt(gamma + 1.0) / ((gamma + 2.0) * np.sqrt(gamma + 3.0))


def sigma_rel_to_gamma(sigma_rel):
    """The inverse of :func:`gamma_to_sigma_rel` (EDM2, App. C.2, Alg. 2): the largest real root of

    .. math:: \\gamma^3 + 7\\gamma^2 + (16 - \\sigma_{rel}^{-2})\\gamma + (12 - \\sigma_{rel}^{-2}) = 0

    (that is, (gamma + 2)^2 (gamma + 3) = sigma_rel^{-2} (gamma + 1)).

    Args:
      sigma_rel: value(s) in (0, SIGMA_REL_MAX] (0.3003, reached at gamma = (sqrt(5) - 3) / 2;
        a uniform average, gamma = 0, is 12^{-1/2} = 0.289; the root taken is the branch
        gamma >= (sqrt(5) - 3) / 2).

    Returns:
      gamma, a float64 array of ``sigma_rel``'s shape.

    Raises:
      ValueError: if a sigma_rel is not in (0, SIGMA_REL_MAX].
    """
    sigma_rel = np.asarray(sigma_rel, np.float64)
    if np.any(~(sigma_rel > 0) | ~(sigma_rel <= SIGMA_REL_MAX)):
        raise ValueError(f"sigma_rel must be in (0, {SIGMA_REL_MAX:.4f}], got {sigma_rel}")
    inv = sigma_rel.ravel() ** -2.0
    roots = [np.roots([1.0, 7.0, 16.0 - s, 12.0 - s]) for s in inv]
    gamma = [r.real.max() for r in roots]  # real for sigma_rel < max; a double root at it
    return np.asarray(gamma).reshape(sigma_rel.shape)


SIGMA_REL_MAX = float(gamma_to_sigma_rel((np.sqrt(5.0) - 3.0) / 2.0))
"""The longest power-function EMA (about 0.3003): sigma_rel of gamma = (sqrt(5) - 3) / 2."""


def power_ema_beta(step, gamma) -> jnp.ndarray:
    """The decay of a power-function EMA at update ``step`` (EDM2, Sec. 3.1):

    .. math:: \\beta_\\gamma(t) = (1 - 1/t)^{\\gamma + 1}

    so that theta_hat(t) = beta theta_hat(t - 1) + (1 - beta) theta(t) weighs update tau with
    (tau^{gamma+1} - (tau - 1)^{gamma+1}) / t^{gamma+1}, the discrete form of the profile
    (gamma + 1) tau^gamma / t^{gamma+1}. At t = 1 the decay is 0: the average starts at theta(1).

    Args:
      step: the 1-based number of the update just made (int or traced scalar).
      gamma: the exponent(s), e.g. ``[K]`` for K profiles.
    """
    t = jnp.asarray(step, jnp.float32)
    return jnp.power(1.0 - 1.0 / t, jnp.asarray(gamma, jnp.float32) + 1.0)


def power_ema_init(params, *, num_profiles: int) -> tuple:
    """``num_profiles`` averages, each a copy of ``params`` (overwritten by the first update)."""
    return tuple(params for _ in range(num_profiles))


def power_ema_update(averages: tuple, params, *, step, gammas) -> tuple:
    """One update of every power-function average after the optimizer's update number ``step``
    (1-based): ``theta_hat_k <- beta_k theta_hat_k + (1 - beta_k) theta`` with
    ``beta_k = power_ema_beta(step, gammas[k])``.

    Args:
      averages: a tuple of K parameter pytrees (from :func:`power_ema_init`).
      params: the parameters after update ``step``.
      step: int or traced int scalar >= 1.
      gammas: K exponents (a sequence of floats or a ``[K]`` array).

    Returns:
      the K updated averages.
    """
    betas = power_ema_beta(step, gammas)
    return tuple(
        jax.tree.map(lambda a, p, b=betas[k]: b * a + (1.0 - b) * p, avg, params)
        for k, avg in enumerate(averages)
    )


def profile_inner_product(t_a, gamma_a, t_b, gamma_b) -> np.ndarray:
    """The inner product of two power-function profiles (EDM2, App. C.3),

    .. math:: \\langle p_a, p_b \\rangle = \\int_0^{\\min(t_a, t_b)} p_a(\\tau) p_b(\\tau) d\\tau
        = \\frac{(\\gamma_a + 1)(\\gamma_b + 1)\\, \\min(t_a, t_b)^{\\gamma_a + \\gamma_b + 1}}
          {(\\gamma_a + \\gamma_b + 1)\\, t_a^{\\gamma_a + 1}\\, t_b^{\\gamma_b + 1}}

    with p(tau) = (gamma + 1) tau^gamma / t^{gamma + 1} on [0, t]. Written with ratios of the
    times, so large t and gamma do not overflow. Broadcasts over its arguments.
    """
    t_a, gamma_a, t_b, gamma_b = (np.asarray(v, np.float64) for v in (t_a, gamma_a, t_b, gamma_b))
    # min^{ga+gb+1} / (ta^{ga+1} tb^{gb+1}) = (min/ta)^{ga+1} (min/tb)^{gb+1} / min
    t_min = np.minimum(t_a, t_b)
    ratio = (t_min / t_a) ** (gamma_a + 1.0) * (t_min / t_b) ** (gamma_b + 1.0) / t_min
    return (gamma_a + 1.0) * (gamma_b + 1.0) / (gamma_a + gamma_b + 1.0) * ratio


class Snapshot(NamedTuple):
    """One stored power-function average.

    Attributes:
      step: the update count t at which it was taken (>= 1).
      gamma: its profile's exponent.
      params: the average, a parameter pytree.
    """

    step: int
    gamma: float
    params: Any


def posthoc_weights(steps, gammas, *, sigma_rel: float, step: int | None = None) -> np.ndarray:
    """The least-squares weights of the stored profiles that best reproduce the profile of
    ``sigma_rel`` at ``step`` (EDM2, App. C.3, Alg. 3): x solves the normal equations

    .. math:: A x = b, \\quad A_{ij} = \\langle p_i, p_j \\rangle,
        \\quad b_i = \\langle p_i, p_{target} \\rangle

    (minimising the L2 distance between sum_i x_i p_i and p_target), by ``np.linalg.lstsq``.

    Args:
      steps: ``[N]`` the snapshots' update counts.
      gammas: ``[N]`` their exponents.
      sigma_rel: the wanted EMA length.
      step: the wanted average's update count; ``None``: the last snapshot's.

    Returns:
      ``[N]`` float64 weights (they sum to about 1).

    Raises:
      ValueError: if there are no snapshots, the shapes disagree, or ``step`` is past the last
        snapshot (the profile would need updates that were never stored).
    """
    steps = np.asarray(steps, np.float64)
    gammas = np.asarray(gammas, np.float64)
    if steps.ndim != 1 or steps.shape != gammas.shape or steps.size == 0:
        raise ValueError(
            f"steps and gammas must be equal-length non-empty lists, got shapes {steps.shape} "
            f"and {gammas.shape}"
        )
    if np.any(steps < 1):
        raise ValueError(f"snapshot steps must be >= 1, got {steps.min()}")
    step = steps.max() if step is None else float(step)
    if not 1 <= step <= steps.max():
        raise ValueError(f"step must be in [1, {int(steps.max())}] (the last snapshot), got {step}")
    gamma = sigma_rel_to_gamma(sigma_rel)
    gram = profile_inner_product(steps[:, None], gammas[:, None], steps[None, :], gammas[None, :])
    target = profile_inner_product(steps, gammas, step, gamma)
    return np.linalg.lstsq(gram, target, rcond=None)[0]


def combine(trees: Sequence, weights) -> Any:
    """sum_i weights[i] * trees[i], leaf by leaf (each leaf keeps its dtype)."""
    if len(trees) != len(weights):
        raise ValueError(f"got {len(trees)} pytrees but {len(weights)} weights")
    weights = [float(w) for w in weights]

    def leaf(*xs):
        total = sum(w * jnp.asarray(x, jnp.float32) for w, x in zip(weights, xs))
        return total.astype(jnp.asarray(xs[0]).dtype)

    return jax.tree.map(leaf, *trees)


def posthoc_ema(snapshots: Sequence[Snapshot], *, sigma_rel: float, step: int | None = None):
    """The power-function EMA of length ``sigma_rel`` at ``step`` (default: the last snapshot),
    reconstructed from stored snapshots by :func:`posthoc_weights` (EDM2, App. C.3).

    Args:
      snapshots: the stored averages, of two or more gammas and several steps.
      sigma_rel: the wanted EMA length (EDM2's range is 0.01 to 0.25 or so).
      step: the update count of the wanted average.

    Returns:
      the reconstructed parameter pytree.
    """
    if not snapshots:
        raise ValueError("posthoc_ema needs at least one snapshot, got none")
    weights = posthoc_weights(
        [s.step for s in snapshots], [s.gamma for s in snapshots], sigma_rel=sigma_rel, step=step
    )
    return combine([s.params for s in snapshots], weights)
