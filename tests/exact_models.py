"""The optimal eps-predictor of mixture or Gaussian data on any Gaussian process, at every real
time (:func:`jaxdiff.analytic.process_mixture_eps_fn`)."""

import jax.numpy as jnp

from jaxdiff import analytic

mixture_eps = analytic.process_mixture_eps_fn


def gaussian_eps(process, mean, variance):
    return mixture_eps(process, jnp.ones((1,)), jnp.asarray(mean)[None], jnp.asarray(variance)[None])
