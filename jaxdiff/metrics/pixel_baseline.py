"""The independent-pixel baseline: every pixel (and channel) its own categorical distribution
over the 8-bit values, fitted on the train split.

Its bits/dim is what a model gets from the marginal statistics of single pixels alone; a
diffusion model's bound should be well below it if it learns how pixels depend on each other.

Example::

    log_probs = fit_pixel_categoricals(train_uint8)             # 256 levels, add-one smoothing
    pixel_nll_bpd(log_probs, test_uint8).mean()                  # bits/dim
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxdiff.elbo import mean_flat_bits

__all__ = ["fit_pixel_categoricals", "pixel_nll_bpd"]


def fit_pixel_categoricals(images, *, levels=None, alpha: float = 1.0) -> np.ndarray:
    """Fits one categorical per pixel and channel with additive (Laplace) smoothing:

    .. math:: p_d(v) = \\frac{n_d(v) + \\alpha}{N + \\alpha K}, \\quad v \\in \\text{levels}

    where n_d(v) counts the training images whose dimension d has value v, and K is the number
    of levels; values outside ``levels`` get probability zero.

    Args:
      images: ``[N, ...]`` uint8 training data.
      levels: the values the data can take (e.g. the 17 grey levels of the digits); all 256
        when None.
      alpha: the pseudo-count (1: add-one smoothing; 0: the maximum-likelihood fit).

    Returns:
      ``[..., 256]`` float64 log-probabilities (nats) of each value at each dimension.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim < 2:
        raise ValueError(f"images must be uint8 [N, ...], got {images.dtype} {list(images.shape)}")
    if alpha < 0:
        raise ValueError(f"alpha must be non-negative, got {alpha}")
    support = np.zeros(256, bool)
    support[np.arange(256) if levels is None else np.asarray(levels, np.int64)] = True
    if not support[images].all():
        raise ValueError("images take values outside levels")
    flat = images.reshape(images.shape[0], -1)
    counts = np.zeros((flat.shape[1], 256))
    np.add.at(counts, (np.arange(flat.shape[1])[None, :], flat), 1.0)
    counts = np.where(support, counts + alpha, 0.0)
    with np.errstate(divide="ignore"):
        log_probs = np.log(counts) - np.log(counts.sum(axis=1, keepdims=True))
    return log_probs.reshape(*images.shape[1:], 256)


def pixel_nll_bpd(log_probs, images) -> jnp.ndarray:
    """-log2 p(x) / D under the independent-pixel model, per image.

    Args:
      log_probs: ``[..., 256]`` from :func:`fit_pixel_categoricals`.
      images: ``[B, ...]`` uint8 images of the same shape.

    Returns:
      ``[B]`` bits per dimension.
    """
    log_probs = jnp.asarray(log_probs)
    images = jnp.asarray(images)
    if images.shape[1:] != log_probs.shape[:-1]:
        raise ValueError(
            f"images must have shape [B, {', '.join(map(str, log_probs.shape[:-1]))}], "
            f"got {list(images.shape)}"
        )
    picked = jnp.take_along_axis(
        jnp.broadcast_to(log_probs, images.shape + (256,)),
        images[..., None].astype(jnp.int32),
        axis=-1,
    )[..., 0]
    return -mean_flat_bits(picked)
