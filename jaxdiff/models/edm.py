"""EDM's preconditioning (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based
Generative Models", Sec. 5 and Table 1): a raw network F becomes a denoiser D(x; sigma) whose
input and training target have unit variance at every noise level.

The denoiser works on x = x_0 + sigma n (alpha = 1, sigma(t) = t): the form of
:func:`jaxdiff.samplers.edm_sample` and :func:`jaxdiff.losses.edm_loss`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp

from jaxdiff._compile import PytreeFn, as_pytree_fn
from jaxdiff.parametrize import edm_scalings as edm_scalings

__all__ = ["edm_scalings", "edm_denoise", "edm_precondition"]


def edm_denoise(raw_fn: Callable, x, sigma, *args, sigma_data: float = 0.5, **kwargs):
    """The preconditioned denoiser (Karras et al. 2022, eq. 7):

    .. math:: D_\\theta(x; \\sigma) = c_{skip}(\\sigma)\\, x
        + c_{out}(\\sigma)\\, F_\\theta\\big(c_{in}(\\sigma)\\, x;\\ c_{noise}(\\sigma)\\big)

    Args:
      raw_fn: ``raw_fn(x, c_noise, *args, **kwargs) -> F`` of x's shape, c_noise a float ``[B]``.
      x: ``[B, ...]`` noisy data x_0 + sigma n.
      sigma: ``[B]`` (or scalar) noise levels, > 0.
      *args, **kwargs: passed on to ``raw_fn`` (e.g. class labels ``y=...``).
      sigma_data: sigma_d.

    Returns:
      ``[B, ...]`` D(x; sigma), the estimate of x_0.
    """
    sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), x.shape[:1])
    c_skip, c_out, c_in, c_noise = (
        c.reshape((-1,) + (1,) * (x.ndim - 1)) for c in edm_scalings(sigma, sigma_data)
    )
    out = raw_fn(c_in * x, c_noise.reshape(-1), *args, **kwargs)
    if out.shape != x.shape:
        raise ValueError(f"raw_fn must return x's shape {x.shape}, got {out.shape}")
    return c_skip * x + c_out * out


def edm_precondition(raw_fn: Callable, *, sigma_data: float = 0.5) -> Callable:
    """Wraps a raw network into EDM's denoiser ``denoiser_fn(x, sigma, *args, **kwargs)``
    (:func:`edm_denoise`, Karras et al. 2022, eq. 7 and Table 1).

    Args:
      raw_fn: ``raw_fn(x, c_noise, ...)``, e.g. an ``nnx.Module`` or
        ``functools.partial(model.apply, variables)``.
      sigma_data: the data's standard deviation (0.5 for images in [-1, 1]).

    Returns:
      ``denoiser_fn(x, sigma) -> D(x; sigma)``, a :class:`~jaxdiff._compile.PytreeFn` whose
      leaves are ``raw_fn``'s bound arrays: passed to a sampler, they are arguments of its
      compiled program, so another checkpoint of the same network reuses it.
    """
    if not sigma_data > 0:
        raise ValueError(f"sigma_data must be positive, got {sigma_data}")
    return PytreeFn(edm_denoise, (as_pytree_fn(raw_fn),), dict(sigma_data=sigma_data))
