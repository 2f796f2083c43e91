"""The variational autoencoder (Kingma & Welling 2014) and its importance-weighted bound
(Burda et al. 2016).

The bound is a pure function of an encoder ``encode_fn(x) -> (mean, logvar)`` (a diagonal
Gaussian posterior q(z | x), ``[B, D]`` each) and a likelihood ``log_likelihood_fn(x, z) -> [B]``
(log p(x | z) in nats, summed over the dimensions of x). Any pair works: the NNX networks of
:class:`VAE` with the decoder discretised over the 256 pixel values
(:func:`discretized_decoder_log_likelihood`), or the exact linear-Gaussian model of
probabilistic PCA that the tests use.

    L(x) = E_q[log p(x | z)] - KL(q(z | x) || N(0, I)) <= log p(x)        (elbo_terms)
    L_k(x) = E[log 1/k sum_i p(x, z_i) / q(z_i | x)],  L_1 = L <= L_k <= log p(x)   (iwae_bound)

With the discretised decoder the bound is a bound on the same discrete likelihood as the
diffusion bound of :mod:`jaxdiff.elbo`, so :func:`vae_bpd` is in the same bits/dim.

Example::

    model = VAE(latent_dim=16, rngs=nnx.Rngs(0))
    encode_fn, log_likelihood_fn = bind(model)
    terms = vae_bpd(encode_fn, log_likelihood_fn, x, rng)      # total, prior, decoder: [B]
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdiff import _checks
from jaxdiff.elbo import discretized_gaussian_log_likelihood, normal_kl
from jaxdiff.generative.gan import _check_image_shape, upsample

__all__ = [
    "reparameterize",
    "kl_standard_normal",
    "diagonal_gaussian_log_density",
    "elbo_terms",
    "iwae_bound",
    "discretized_decoder_log_likelihood",
    "vae_bpd",
    "VAE",
    "bind",
    "sample_prior",
]

EncodeFn = Callable[[jnp.ndarray], tuple[jnp.ndarray, jnp.ndarray]]
LogLikelihoodFn = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]


def reparameterize(mean, logvar, noise) -> jnp.ndarray:
    """The reparameterization trick (Kingma & Welling 2014, Sec. 2.4 and eq. 10):

    .. math:: z = \\mu + \\sigma \\odot \\epsilon, \\quad \\epsilon \\sim \\mathcal N(0, I)

    a sample of q(z | x) = N(mu, diag sigma^2) that is differentiable in (mu, log sigma^2).
    """
    return mean + jnp.exp(0.5 * logvar) * noise


def kl_standard_normal(mean, logvar) -> jnp.ndarray:
    """KL(N(mu, diag sigma^2) || N(0, I)) in nats, summed over the last axis (Kingma & Welling
    2014, App. B):

    .. math:: -\\tfrac12 \\sum_j \\left(1 + \\log\\sigma_j^2 - \\mu_j^2 - \\sigma_j^2\\right)
    """
    return jnp.sum(normal_kl(mean, logvar, 0.0, 0.0), axis=-1)


def diagonal_gaussian_log_density(z, mean, logvar) -> jnp.ndarray:
    """log N(z; mu, diag exp(logvar)) in nats, summed over the last axis."""
    return -0.5 * jnp.sum(
        math.log(2.0 * math.pi) + logvar + (z - mean) ** 2 * jnp.exp(-logvar), axis=-1
    )


def _posterior_samples(mean, logvar, rng, num_samples: int) -> jnp.ndarray:
    """``[K, B, D]`` reparameterized samples of q(z | x)."""
    _checks.positive_int("num_samples", num_samples)
    _checks.same_shape("mean", mean, "logvar", logvar)
    return reparameterize(mean, logvar, jax.random.normal(rng, (num_samples, *mean.shape)))


def elbo_terms(
    log_likelihood_fn: LogLikelihoodFn, mean, logvar, x, rng, *, num_samples: int = 1
) -> dict[str, jnp.ndarray]:
    """The evidence lower bound with the KL in closed form: the SGVB estimator B of Kingma &
    Welling (2014), eq. 10:

    .. math:: \\mathcal L(x) = -\\mathrm{KL}(q(z|x) \\,\\|\\, \\mathcal N(0, I))
        + \\frac1K \\sum_{k=1}^K \\log p(x | z_k), \\quad z_k = \\mu + \\sigma\\odot\\epsilon_k

    Args:
      log_likelihood_fn: ``(x, z [B, D]) -> [B]`` log p(x | z) in nats.
      mean, logvar: ``[B, D]`` the posterior q(z | x) of each example.
      x: ``[B, ...]`` the data.
      rng: key of the posterior noise.
      num_samples: K.

    Returns:
      dict of ``[B]`` nats: ``reconstruction`` (the Monte Carlo E_q log p(x | z)), ``kl`` and
      ``elbo`` = reconstruction - kl.
    """
    z = _posterior_samples(mean, logvar, rng, num_samples)
    reconstruction = jnp.mean(jax.vmap(lambda zk: log_likelihood_fn(x, zk))(z), axis=0)
    kl = kl_standard_normal(mean, logvar)
    return {"reconstruction": reconstruction, "kl": kl, "elbo": reconstruction - kl}


def iwae_bound(
    log_likelihood_fn: LogLikelihoodFn, mean, logvar, x, rng, *, num_samples: int
) -> jnp.ndarray:
    """The importance-weighted bound of Burda et al. (2016), eq. 8, one estimate per example:

    .. math:: \\mathcal L_k(x) = \\log \\frac1k \\sum_{i=1}^k
        \\frac{p(x | z_i)\\, p(z_i)}{q(z_i | x)}, \\quad z_i \\sim q(z | x)

    Its expectation rises with k from the ELBO (k = 1) to log p(x) (their Theorem 1). The k
    decoder calls run one after another (``lax.map``), so k can be large.

    Args:
      log_likelihood_fn, mean, logvar, x, rng: as for :func:`elbo_terms`.
      num_samples: k.

    Returns:
      ``[B]`` nats.
    """
    z = _posterior_samples(mean, logvar, rng, num_samples)
    zeros = jnp.zeros_like(mean)

    def log_weight(zk):
        return (
            log_likelihood_fn(x, zk)
            + diagonal_gaussian_log_density(zk, zeros, zeros)
            - diagonal_gaussian_log_density(zk, mean, logvar)
        )

    log_w = jax.lax.map(log_weight, z)  # [K, B]
    return jax.nn.logsumexp(log_w, axis=0) - math.log(num_samples)


def discretized_decoder_log_likelihood(x, mean, log_scale) -> jnp.ndarray:
    """log p(x | z) of 8-bit images under independent Gaussians discretised to the 256 bins
    (Ho et al. 2020, eq. 13: the decoder of the diffusion bound, here of the VAE), ``[B]`` nats
    summed over the pixels.

    Args:
      x: ``[B, H, W, C]`` images in [-1, 1] on the 256-level grid.
      mean, log_scale: ``[B, H, W, C]`` the decoder's output.
    """
    ll = discretized_gaussian_log_likelihood(x, mean, log_scale)
    return jnp.sum(ll, axis=tuple(range(1, x.ndim)))


def _bits_per_dim(nats, x) -> jnp.ndarray:
    return nats / (math.prod(x.shape[1:]) * math.log(2.0))


def vae_bpd(
    encode_fn: EncodeFn,
    log_likelihood_fn: LogLikelihoodFn,
    x,
    rng,
    *,
    num_samples: int = 1,
    iwae_samples: int | None = None,
) -> dict[str, jnp.ndarray]:
    """The negative ELBO of :func:`elbo_terms` and its parts, in bits/dim per example (nats
    divided by the number of dimensions of x and by log 2), terms returned apart:

    * ``prior``: KL(q(z | x) || N(0, I)), the rate;
    * ``decoder``: -E_q log p(x | z), the distortion;
    * ``total`` = prior + decoder, an upper bound on -log2 p(x) / dim;
    * ``iwae`` (when ``iwae_samples`` is set): -L_k of :func:`iwae_bound`, a tighter bound.

    Args:
      encode_fn: ``x -> (mean, logvar)``, each ``[B, D]``.
      log_likelihood_fn: ``(x, z) -> [B]`` nats.
      x: ``[B, ...]`` data.
      rng: key.
      num_samples: posterior samples of the reconstruction term.
      iwae_samples: k of the importance-weighted bound; None skips it.

    Returns:
      dict of ``[B]`` bits/dim.
    """
    _checks.batched("x", x)
    mean, logvar = encode_fn(x)
    elbo_key, iwae_key = jax.random.split(rng)
    terms = elbo_terms(log_likelihood_fn, mean, logvar, x, elbo_key, num_samples=num_samples)
    out = {
        "total": _bits_per_dim(-terms["elbo"], x),
        "prior": _bits_per_dim(terms["kl"], x),
        "decoder": _bits_per_dim(-terms["reconstruction"], x),
    }
    if iwae_samples is not None:
        iwae = iwae_bound(log_likelihood_fn, mean, logvar, x, iwae_key, num_samples=iwae_samples)
        out["iwae"] = _bits_per_dim(-iwae, x)
    return out


# --- the networks --------------------------------------------------------------------------------


class VAE(nnx.Module):
    """A convolutional encoder and decoder for small images (DCGAN-like: strided convolutions
    down, resize-convolutions up (:func:`jaxdiff.generative.gan.upsample`); H and W divisible
    by 4).

    ``encode(x [B, H, W, C]) -> (mean, logvar)`` each ``[B, latent_dim]``: the diagonal
    Gaussian posterior q(z | x). ``decode(z [B, latent_dim]) -> (mean, log_scale)`` each
    ``[B, H, W, C]``: the per-pixel discretised Gaussian p(x | z). ``__call__(x, z)`` runs both.
    The parameters are ``{"encoder": ..., "decoder": ...}``, their layers named as jaxdiff
    0.2's linen VAE named them, lower-cased.

    Args:
      latent_dim: D.
      ch: channels after the first convolution (twice that at the lower resolutions).
      image_shape: ``(H, W, C)`` of the images.
      rngs: the initialisation keys.
    """

    def __init__(self, *, latent_dim: int = 16, ch: int = 32, image_shape=(8, 8, 1),
                 rngs: nnx.Rngs):
        image_shape = _check_image_shape("VAE", image_shape)
        self.latent_dim = latent_dim
        self.encoder = _Encoder(latent_dim, ch, image_shape, rngs)
        self.decoder = _Decoder(latent_dim, ch, image_shape, rngs)

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        return self.decoder(z)

    def __call__(self, x, z):
        return self.encode(x), self.decode(z)


class _Encoder(nnx.Module):
    def __init__(self, latent_dim, ch, image_shape, rngs):
        height, width, channels = image_shape
        self.conv_0 = nnx.Conv(channels, ch, (3, 3), rngs=rngs)
        self.conv_1 = nnx.Conv(ch, 2 * ch, (3, 3), strides=2, rngs=rngs)
        self.conv_2 = nnx.Conv(2 * ch, 2 * ch, (3, 3), strides=2, rngs=rngs)
        self.dense_0 = nnx.Linear(height // 4 * width // 4 * 2 * ch, 2 * latent_dim, rngs=rngs)

    def __call__(self, x):
        h = nnx.swish(self.conv_0(x))
        h = nnx.swish(self.conv_1(h))
        h = nnx.swish(self.conv_2(h))
        mean, logvar = jnp.split(self.dense_0(h.reshape(h.shape[0], -1)), 2, axis=-1)
        return mean, logvar


class _Decoder(nnx.Module):
    def __init__(self, latent_dim, ch, image_shape, rngs):
        height, width, channels = image_shape
        self.low = (height // 4, width // 4, 2 * ch)
        self.dense_0 = nnx.Linear(latent_dim, math.prod(self.low), rngs=rngs)
        self.conv_0 = nnx.Conv(2 * ch, 2 * ch, (3, 3), rngs=rngs)
        self.conv_1 = nnx.Conv(2 * ch, ch, (3, 3), rngs=rngs)
        self.conv_2 = nnx.Conv(ch, 2 * channels, (3, 3), rngs=rngs)

    def __call__(self, z):
        h = nnx.swish(self.dense_0(z)).reshape(z.shape[0], *self.low)
        h = nnx.swish(self.conv_0(upsample(h)))
        h = nnx.swish(self.conv_1(upsample(h)))
        mean, log_scale = jnp.split(self.conv_2(h), 2, axis=-1)
        return mean, log_scale


def bind(model: VAE) -> tuple[EncodeFn, LogLikelihoodFn]:
    """``(encode_fn, log_likelihood_fn)`` of a :class:`VAE`: the arguments of :func:`vae_bpd`
    for the discretised decoder."""

    def log_likelihood_fn(x, z):
        return discretized_decoder_log_likelihood(x, *model.decode(z))

    return model.encode, log_likelihood_fn


def sample_prior(model: VAE, rng, num: int, *, decoder_noise: bool = False) -> jnp.ndarray:
    """Ancestral samples: z ~ N(0, I), then the decoder's mean (the usual picture of a VAE's
    samples) or, with ``decoder_noise``, x ~ p(x | z) itself (Gaussian noise of the decoder's
    scale, clipped to [-1, 1]).

    Returns:
      ``[num, H, W, C]`` images in [-1, 1].
    """
    _checks.positive_int("num", num)
    z_key, x_key = jax.random.split(rng)
    z = jax.random.normal(z_key, (num, model.latent_dim))
    mean, log_scale = model.decode(z)
    if decoder_noise:
        mean = mean + jnp.exp(log_scale) * jax.random.normal(x_key, mean.shape)
    return jnp.clip(mean, -1.0, 1.0)
