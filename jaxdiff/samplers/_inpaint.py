"""Inpainting / imputation with a mask of known pixels.

After every update of the chain, the known pixels are replaced by a sample of the forward
process at the chain's current noise level, so the unknown pixels are generated conditionally
on them (Song & Ermon 2019, App. B.3, Alg. 2 for NCSN; Song et al. 2021, App. I.2 for diffusion
models). At the end of a chain the known pixels hold the known values exactly. The driver
(:func:`~jaxdiff.samplers._common.drive`) does this for every fixed-step sampler.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

__all__ = ["Inpaint", "inpaint_spec", "fixed_step_inpaint", "impute"]


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


def fixed_step_inpaint(mask, known, x, solver) -> Inpaint | None:
    """:func:`inpaint_spec` for an ODE sampler: inpainting re-imposes the known pixels between
    steps, so it needs a fixed-step method (``solver`` "euler" or "heun"), not an adaptive one."""
    inpaint = inpaint_spec(mask, known, x)
    if inpaint is not None and not isinstance(solver, str):
        raise ValueError(
            "mask: inpainting needs fixed steps (method 'euler' or 'heun' with num_steps), "
            "not an adaptive solver"
        )
    return inpaint
