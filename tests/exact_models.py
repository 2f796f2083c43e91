"""The optimal eps-predictor of mixture data on any Gaussian process, at every real time: the
exact score of the mixture convolved with N(0, (sigma / alpha)^2) (analytic.mixture_score_fn),
read in the process's x = alpha (x_0 + (sigma / alpha) eps): eps* = -sigma grad log q_t(x)."""

import jax.numpy as jnp

from jaxdiff import analytic


def mixture_eps(process, weights, means, variances):
    """``model_fn(x, t)`` with t the process's time (its model time must be t itself)."""
    score_fn = analytic.mixture_score_fn(weights, means, variances)

    def model_fn(x, t):
        alpha, sigma = (jnp.reshape(v, (-1,) + (1,) * (x.ndim - 1)) for v in process.alpha_sigma(t))
        level = jnp.broadcast_to((sigma / alpha).reshape(-1), x.shape[:1])
        return -sigma / alpha * score_fn(x / alpha, level)

    return model_fn


def gaussian_eps(process, mean, variance):
    return mixture_eps(process, jnp.ones((1,)), jnp.asarray(mean)[None], jnp.asarray(variance)[None])
