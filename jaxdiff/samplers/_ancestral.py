"""Ancestral sampling on any Gaussian process: the step x_t -> x_s ~ q(x_s | x_t, x_0 = x0_hat)
(the generative step of DDPM and VDM), and VDM's sampler built on it."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxdiff import _checks
from jaxdiff.processes import VPGamma
from jaxdiff.samplers._common import sample
from jaxdiff.samplers._denoise import coefficients
from jaxdiff.samplers._grids import uniform_time_grid
from jaxdiff.vdm import decoder_log_probs, grid_values

__all__ = ["ancestral_step", "vdm_sample"]


def ancestral_step(denoise: Callable, process, x, t, t_next, key=None) -> jnp.ndarray:
    """One step x_t -> x_s (s = ``t_next`` < t) of the generative chain p(x_s | x_t) =
    q(x_s | x_t, x_0 = x0_hat) (Kingma et al. 2021, App. A, eqs. 32-34; Ho et al. 2020, eq. 7,
    in continuous time), with c = 1 - SNR(t) / SNR(s) = -expm1(lambda_t - lambda_s):

    .. math:: x_s = \\frac{\\alpha_s}{\\alpha_t}(x_t - c\\, \\sigma_t\\, \\hat\\epsilon)
        + \\sigma_s \\sqrt{c}\\; n, \\quad n \\sim \\mathcal N(0, I)

    Args:
      denoise: ``denoise(x, t) -> (eps, x0)``.
      process: any Gaussian process.
      x: ``[B, ...]`` the state at ``t``.
      t, t_next: scalar times.
      key: the key of n; ``None`` gives the posterior mean.

    Returns:
      ``[B, ...]`` x_s.
    """
    eps, _ = denoise(x, t)
    alpha_t, sigma_t = coefficients(process, t, x)[:2]
    alpha_s, sigma_s = coefficients(process, t_next, x)[:2]
    c = -jnp.expm1(process.log_snr_at(t) - process.log_snr_at(t_next)).astype(x.dtype)
    mean = alpha_s / alpha_t * (x - c * sigma_t * eps)
    if key is None:
        return mean
    return mean + sigma_s * jnp.sqrt(c) * jax.random.normal(key, x.shape, x.dtype)


def vdm_sample(
    model_fn: Callable, gamma_fn: Callable, z_1, rng: jax.Array, *, num_steps: int,
    decode: bool = True,
) -> jnp.ndarray:
    """Ancestral sampling of the T-step generative model of Kingma et al. (2021), eq. 6:
    z_1 ~ N(0, I), T steps of :func:`ancestral_step` on :class:`~jaxdiff.processes.VPGamma`
    from t = i / T to s = (i - 1) / T (step i's noise from ``fold_in(rng, i)``), then
    x ~ p(x | z_0) (:func:`~jaxdiff.vdm.decoder_log_probs`, drawn with ``fold_in(rng, 0)``).

    Args:
      model_fn: ``model_fn(z_t, t) -> eps_hat`` with float t ``[B]`` in [0, 1]. The arrays a
        ``functools.partial`` binds are arguments of the compiled chain: a new checkpoint of
        the same architecture reuses it.
      gamma_fn: the schedule gamma(t) = -log SNR(t), elementwise (bound arrays likewise
        arguments).
      z_1: ``[B, ...]`` the starting latents (standard normal).
      rng: key for the chain's noise and the decoder's draw.
      num_steps: T.
      decode: draw x from the decoder (values on the 256-level grid); else return z_0.

    Returns:
      ``[B, ...]`` samples in [-1, 1].
    """
    _checks.batched("z_1", z_1)
    process = VPGamma(gamma_fn)
    z_0 = sample(ancestral_step, model_fn, process, z_1, rng, num_steps=num_steps,
                 grid=uniform_time_grid)
    return _decode(process, z_0, rng) if decode else z_0


@jax.jit
def _decode(process, z_0, rng):
    log_probs = decoder_log_probs(z_0, -process.log_snr_at(jnp.zeros((), z_0.dtype)))
    index = jax.random.categorical(jax.random.fold_in(rng, 0), log_probs)
    return grid_values(z_0.dtype)[index]
