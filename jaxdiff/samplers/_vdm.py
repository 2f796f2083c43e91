"""Ancestral sampling of the T-step generative model of variational diffusion models (Kingma et
al. 2021), on the driver: the step :func:`~jaxdiff.vdm.ancestral_step` over the times i / T."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxdiff import _checks
from jaxdiff._compile import as_pytree_fn
from jaxdiff.samplers._common import compiled, drive
from jaxdiff.vdm import ancestral_step, decoder_log_probs, grid_values

__all__ = ["vdm_sample"]


def vdm_sample(
    model_fn: Callable, gamma_fn: Callable, z_1, rng: jax.Array, *, num_steps: int,
    decode: bool = True,
) -> jnp.ndarray:
    """Ancestral sampling of the T-step generative model of Kingma et al. (2021), eq. 6:
    z_1 ~ N(0, I), T steps of :func:`~jaxdiff.vdm.ancestral_step` from t = i / T to
    s = (i - 1) / T (step i's noise from ``fold_in(rng, i)``), then x ~ p(x | z_0)
    (:func:`~jaxdiff.vdm.decoder_log_probs`, drawn with ``fold_in(rng, 0)``). One compiled
    ``lax.scan``.

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
    _checks.positive_int("num_steps", num_steps)
    return _vdm_chain(model_fn, as_pytree_fn(gamma_fn), z_1, rng, num_steps=num_steps,
                      decode=decode)


@compiled(static_argnames=("num_steps", "decode"))
def _vdm_chain(model_fn, gamma_fn, z_1, rng, *, num_steps, decode):
    steps = jnp.arange(num_steps, 0, -1)  # i = T, ..., 1

    def step(z, i, key):
        t, s = i / num_steps, (i - 1) / num_steps
        eps_hat = model_fn(z, jnp.full(z.shape[:1], t, z.dtype))
        noise = jax.random.normal(key, z.shape, z.dtype)
        return ancestral_step(z, eps_hat, gamma_fn(s), gamma_fn(t), noise)

    z_0, _ = drive(step, z_1, steps, rng=rng, key_ids=steps)
    if not decode:
        return z_0
    log_probs = decoder_log_probs(z_0, gamma_fn(jnp.zeros((), z_0.dtype)))
    index = jax.random.categorical(jax.random.fold_in(rng, 0), log_probs)
    return grid_values(z_0.dtype)[index]
