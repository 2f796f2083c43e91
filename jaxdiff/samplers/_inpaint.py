"""Inpainting / imputation with a mask of known pixels.

After every update of the chain, the known pixels are replaced by a sample of the forward
process at the chain's current noise level, so the unknown pixels are generated conditionally
on them (Song & Ermon 2019, App. B.3, Alg. 2 for NCSN; Song et al. 2021, App. I.2 for diffusion
models). At the end of a chain the known pixels hold the known values exactly.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.diffusion import perturb_sigma, q_sample
from jaxdiff.samplers._common import run_chain
from jaxdiff.schedules import Schedule

__all__ = ["Inpaint", "inpaint_spec", "impute", "impute_vp", "impute_sigma", "reverse_chain"]


class Inpaint(NamedTuple):
    """The known part of the sample.

    Attributes:
      mask: bool array broadcastable to the sample's shape ``[B, ...]``; True where known.
      known: ``[B, ...]`` the known values (entries outside the mask are ignored).
    """

    mask: jnp.ndarray
    known: jnp.ndarray


def inpaint_spec(mask, known, x) -> Inpaint | None:
    """Checks ``mask``/``known`` against the sample ``x`` and bundles them (``None`` when
    neither is given). A numeric mask counts its nonzero entries as known.

    Raises:
      ValueError: if only one of them is given, ``known`` does not have x's shape, or ``mask``
        does not broadcast to it.
    """
    if mask is None and known is None:
        return None
    if mask is None or known is None:
        raise ValueError("inpainting needs both mask and known (or neither)")
    if np.shape(known) != np.shape(x):
        raise ValueError(f"known must have the sample's shape {np.shape(x)}, got {np.shape(known)}")
    try:
        shape = np.broadcast_shapes(np.shape(mask), np.shape(x))
    except ValueError:
        shape = None
    if shape != np.shape(x):
        raise ValueError(
            f"mask must broadcast to the sample's shape {np.shape(x)}, got {np.shape(mask)}"
        )
    return Inpaint(jnp.asarray(mask).astype(bool), jnp.asarray(known, dtype=x.dtype))


def impute(x, mask, values) -> jnp.ndarray:
    """``x`` with its known pixels (``mask`` True) replaced by ``values``; all ``[B, ...]``."""
    return jnp.where(mask, values, x)


def impute_vp(schedule: Schedule, x_prev, t, inpaint: Inpaint, rng) -> jnp.ndarray:
    """Replaces the known pixels of x_{t-1}, the output of a reverse step from ``t``, by a
    sample of q(x_{t-1} | x_0 = known) (Ho et al. 2020, eq. 4; Song et al. 2021, App. I.2);
    after the last step (t = 0) by the known values themselves.

    Args:
      schedule: the (possibly respaced) schedule of the chain.
      x_prev: ``[B, ...]`` the state after the step.
      t: ``[B]`` the index of the step that was taken.
      inpaint: the known pixels.
      rng: key for the forward noise.
    """
    noise = jax.random.normal(rng, x_prev.shape, x_prev.dtype)
    noisy = q_sample(schedule, inpaint.known, jnp.maximum(t - 1, 0), noise)
    first = (t == 0).reshape(t.shape + (1,) * (x_prev.ndim - 1))
    noisy = jnp.where(first, inpaint.known, noisy)
    return impute(x_prev, inpaint.mask, noisy)


def impute_sigma(x, sigma, inpaint: Inpaint, noise) -> jnp.ndarray:
    """Replaces the known pixels of ``x`` by ``known + sigma z`` (Song & Ermon 2019, Alg. 2).

    Args:
      x: ``[B, ...]``; sigma: ``[B]`` the current noise level; noise: ``[B, ...]`` z ~ N(0, I).
    """
    return impute(x, inpaint.mask, perturb_sigma(inpaint.known, sigma, noise))


def reverse_chain(update, schedule: Schedule, x_T, rng, inpaint: Inpaint | None, *, trajectory_every):
    """Runs ``x = update(x, t, key)`` for t = T-1, ..., 0 of ``schedule`` as one scan, the key of
    step t being ``fold_in(rng, t)`` (None without an rng), with the known pixels re-imposed
    after every step (:func:`impute_vp`) when ``inpaint`` is given. Shared by the DDPM and DDIM
    chains.

    Returns:
      ``(x_0, trajectory)`` as :func:`~jaxdiff.samplers._common.run_chain`.
    """

    def step(x, i):
        t = jnp.full(x.shape[:1], i, dtype=jnp.int32)
        key = None if rng is None else jax.random.fold_in(rng, i)
        if inpaint is not None:
            key, key_known = jax.random.split(key)
        x = update(x, t, key)
        if inpaint is not None:
            x = impute_vp(schedule, x, t, inpaint, key_known)
        return x

    steps = jnp.arange(schedule.num_timesteps - 1, -1, -1)
    return run_chain(step, x_T, steps, state=lambda x: x, trajectory_every=trajectory_every)
