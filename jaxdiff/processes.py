"""Gaussian noise processes: every forward process x_t = alpha(t) x_0 + sigma(t) eps in one shape.

A *process* is an immutable pytree with

- ``alpha_sigma(t) -> (alpha, sigma)``: the marginal q(x_t | x_0) = N(alpha x_0, sigma^2 I);
- ``log_snr_at(t)``: lambda(t) = log(alpha^2 / sigma^2), decreasing in t (Kingma et al. 2021);
- ``time_at_log_snr(log_snr)``: its inverse;
- ``model_time(t)``: what the network is called with at time t;
- ``t_noise`` and ``t_data``: the ends of its time interval; samplers run from ``t_noise`` to
  ``t_data``.

The discrete :class:`~jaxdiff.schedules.Schedule` of DDPM is one (real t = tau in [0, T - 1],
its tables at the integers, the log-SNR linear in between); this module adds the continuous
ones. The continuous-time solvers (``samplers.dpm_solver_sample``, ``samplers.ode_sample``,
``samplers.ode_likelihood``) take any of them; a new process is one small class with these
methods. Alpha and sigma follow from the log-SNR for a variance-preserving process and are
given directly otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.struct
import jax
import jax.numpy as jnp

__all__ = ["vp_alpha_sigma", "VPGamma", "linear_gamma", "VE", "EDM", "LinearFlow"]


def vp_alpha_sigma(log_snr):
    """alpha and sigma of a variance-preserving process (alpha^2 + sigma^2 = 1) from its log-SNR:
    alpha^2 = sigmoid(lambda), sigma^2 = sigmoid(-lambda) (Kingma et al. 2021, eq. 3 with
    gamma = -lambda), computed in log space."""
    return jnp.exp(0.5 * jax.nn.log_sigmoid(log_snr)), jnp.exp(0.5 * jax.nn.log_sigmoid(-log_snr))


def linear_gamma(gamma_min: float = -13.3, gamma_max: float = 5.0) -> Callable:
    """VDM's fixed linear noise schedule gamma(t) = gamma_min + (gamma_max - gamma_min) t
    (Kingma et al. 2021, Sec. 5; their defaults -13.3 and 5)."""

    def gamma(t):
        return gamma_min + (gamma_max - gamma_min) * t

    return gamma


@flax.struct.dataclass
class VPGamma:
    """The continuous variance-preserving process of VDM in its gamma(t) = -log SNR(t) form
    (Kingma et al. 2021, eqs. 1-3): alpha^2 = sigmoid(-gamma), sigma^2 = sigmoid(gamma),
    t in [0, 1]. The network is called with t itself.

    Attributes:
      gamma: ``gamma(t)``, strictly increasing on [0, 1] (e.g. :func:`linear_gamma`; static).
      t_min: the data end (t = 0 unless the network was not trained there).
    """

    gamma: Callable = flax.struct.field(pytree_node=False)
    t_min: float = flax.struct.field(pytree_node=False, default=0.0)

    @property
    def t_noise(self):
        return 1.0

    @property
    def t_data(self):
        return self.t_min

    def log_snr_at(self, t):
        return -self.gamma(jnp.asarray(t, jnp.float32))

    def alpha_sigma(self, t):
        return vp_alpha_sigma(self.log_snr_at(t))

    def time_at_log_snr(self, log_snr, *, iterations: int = 40):
        """The t with -gamma(t) = log_snr, by bisection on [0, 1] (gamma is monotone)."""
        target = jnp.asarray(log_snr, jnp.float32)
        lo, hi = jnp.zeros_like(target), jnp.ones_like(target)

        def halve(_, bounds):
            lo, hi = bounds
            mid = 0.5 * (lo + hi)
            above = self.log_snr_at(mid) > target  # too little noise at mid: go later
            return jnp.where(above, mid, lo), jnp.where(above, hi, mid)

        lo, hi = jax.lax.fori_loop(0, iterations, halve, (lo, hi))
        return 0.5 * (lo + hi)

    def model_time(self, t):
        return jnp.asarray(t, jnp.float32)


class _AlphaOne:
    """Processes with alpha = 1 and an increasing ``sigma(t)`` with inverse ``sigma_inverse``:
    log-SNR = -2 log sigma."""

    def alpha_sigma(self, t):
        sigma = self.sigma(t)
        return jnp.ones_like(sigma), sigma

    def log_snr_at(self, t):
        return -2.0 * jnp.log(self.sigma(t))

    def time_at_log_snr(self, log_snr):
        return self.sigma_inverse(jnp.exp(-0.5 * jnp.asarray(log_snr)))

    def model_time(self, t):
        """Noise-conditional networks (NCSN, EDM's denoiser) take sigma."""
        return self.sigma(t)


@flax.struct.dataclass
class VE(_AlphaOne):
    """The variance-exploding process of NCSN / score SDEs (Song & Ermon 2019; Song et al.
    2021, eq. 30): alpha = 1, sigma(t) = sigma_min (sigma_max / sigma_min)^t, t in [0, 1]; the
    network is called with sigma(t)."""

    sigma_min: float = flax.struct.field(pytree_node=False, default=0.01)
    sigma_max: float = flax.struct.field(pytree_node=False, default=50.0)

    t_noise = 1.0
    t_data = 0.0

    def sigma(self, t):
        t = jnp.asarray(t, jnp.float32)
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def sigma_inverse(self, sigma):
        return jnp.log(sigma / self.sigma_min) / jnp.log(self.sigma_max / self.sigma_min)


@flax.struct.dataclass
class EDM(_AlphaOne):
    """The process of Karras et al. (2022), Sec. 2 / Table 1: alpha = 1, sigma(t) = t, t in
    [sigma_min, sigma_max] (their defaults 0.002 and 80); the network is called with sigma."""

    sigma_min: float = flax.struct.field(pytree_node=False, default=0.002)
    sigma_max: float = flax.struct.field(pytree_node=False, default=80.0)

    @property
    def t_noise(self):
        return self.sigma_max

    @property
    def t_data(self):
        return self.sigma_min

    def sigma(self, t):
        return jnp.asarray(t, jnp.float32)

    def sigma_inverse(self, sigma):
        return sigma


@flax.struct.dataclass
class LinearFlow:
    """The linear (rectified-flow / flow-matching) path x_t = (1 - t) x_0 + t eps (Lipman et al.
    2023; Liu et al. 2023), t in [t_min, t_max]: noise at t = 1, data at t = 0. The scaled ODE
    of the solvers needs alpha > 0, so ``t_max`` stays below 1 for them; ``samplers.flow_sample``
    integrates the velocity from t = 1 itself."""

    t_min: float = flax.struct.field(pytree_node=False, default=0.0)
    t_max: float = flax.struct.field(pytree_node=False, default=0.999)

    @property
    def t_noise(self):
        return self.t_max

    @property
    def t_data(self):
        return self.t_min

    def alpha_sigma(self, t):
        t = jnp.asarray(t, jnp.float32)
        return 1.0 - t, t

    def log_snr_at(self, t):
        alpha, sigma = self.alpha_sigma(t)
        return 2.0 * (jnp.log(alpha) - jnp.log(sigma))

    def time_at_log_snr(self, log_snr):
        """alpha / sigma = (1 - t) / t = exp(lambda / 2): t = sigmoid(-lambda / 2)."""
        return jax.nn.sigmoid(-0.5 * jnp.asarray(log_snr))

    def model_time(self, t):
        return jnp.asarray(t, jnp.float32)
