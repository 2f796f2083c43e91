"""The independent-pixel baseline: every pixel (and channel) its own categorical distribution
over the 8-bit values, fitted on the train split.

Its bits/dim is what a model gets from the marginal statistics of single pixels alone; a
diffusion model's bound should be well below it if it learns how pixels depend on each other.

Example::

    log_probs = fit_pixel_categoricals(train_uint8)             # 256 levels, add-one smoothing
    pixel_nll_bpd(log_probs, test_uint8).mean()                  # bits/dim
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.elbo import mean_flat_bits

__all__ = ["fit_pixel_categoricals", "pixel_nll_bpd", "posterior_log_probs", "posterior_mean"]


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


_VALUES = (np.arange(256) / 127.5 - 1.0).astype(np.float32)  # in [-1, 1]; NumPy: no JAX at import


def posterior_log_probs(log_probs, z, alpha, sigma) -> jnp.ndarray:
    """The independent-pixel model's posterior of each clean pixel given its own noisy value,
    z_d = alpha x_d + sigma eps_d (Bayes' rule over the 256 values v):

    .. math:: \\log p(x_d = v \\mid z_d) = \\log p_d(v) - \\frac{(z_d - \\alpha v)^2}{2 \\sigma^2}
        - \\log \\sum_{v'} p_d(v') \\, e^{-(z_d - \\alpha v')^2 / 2 \\sigma^2}

    Args:
      log_probs: ``[..., 256]`` from :func:`fit_pixel_categoricals`.
      z: ``[B, ...]`` noisy data in the model range.
      alpha, sigma: ``[B]`` (or scalars) the signal and noise scales of z.

    Returns:
      ``[B, ..., 256]`` log-probabilities (nats).
    """
    z = jnp.asarray(z)
    scale = jnp.reshape(jnp.asarray(alpha, z.dtype), (-1,) + (1,) * z.ndim)
    noise = jnp.reshape(jnp.asarray(sigma, z.dtype), (-1,) + (1,) * z.ndim)
    logits = jnp.asarray(log_probs, z.dtype) - 0.5 * ((z[..., None] - scale * _VALUES) / noise) ** 2
    return jax.nn.log_softmax(logits, axis=-1)


def posterior_mean(log_probs, z, alpha, sigma) -> jnp.ndarray:
    """E[x_d | z_d] under the independent-pixel model (:func:`posterior_log_probs`): the best
    denoiser, in squared error, among those that see only their own pixel. ``[B, ...]``."""
    return jnp.sum(jnp.exp(posterior_log_probs(log_probs, z, alpha, sigma)) * _VALUES, axis=-1)
