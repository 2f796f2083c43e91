"""Gaussian noise processes: every forward process x_t = alpha(t) x_0 + sigma(t) eps in one shape.

A process is a :class:`GaussianProcess`: an immutable pytree (a ``flax.struct.dataclass``) that
defines three members,

- ``alpha_sigma(t) -> (alpha, sigma)``: the marginal q(x_t | x_0) = N(alpha x_0, sigma^2 I);
- ``t_noise`` and ``t_data``: the ends of its time interval (samplers run from ``t_noise`` to
  ``t_data``; losses draw t between them),

and inherits everything else: the log-SNR lambda(t) = log(alpha^2 / sigma^2) (Kingma et al.
2021) and its inverse, the time derivatives of alpha and sigma, what the network is called with
(:meth:`GaussianProcess.model_time`), the time a loss draws and the prior at ``t_noise``. A
process may override any of them with a closed form, for speed or exactness. A new process::

    @flax.struct.dataclass
    class Cosine(processes.GaussianProcess):
        t_noise = 0.999
        t_data = 0.001

        def alpha_sigma(self, t):
            return jnp.cos(0.5 * jnp.pi * t), jnp.sin(0.5 * jnp.pi * t)

The discrete :class:`~jaxdiff.schedules.Schedule` of DDPM is one (int32 t on its steps, the
log-SNR linear in between); this module holds the continuous ones: VDM's :class:`VPGamma`, the
variance-exploding :class:`VE` and its discrete levels :class:`VELevels` (NCSN), :class:`EDM`,
the linear flow :class:`LinearFlow` and the trigonometric path :class:`Trig`.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable

import flax.struct
import jax
import jax.numpy as jnp

from jaxdiff._compile import as_pytree_fn

__all__ = [
    "GaussianProcess",
    "vp_alpha_sigma",
    "linear_gamma",
    "VPGamma",
    "VE",
    "VELevels",
    "EDM",
    "LinearFlow",
    "Trig",
]


def _float(t):
    """``t`` as the default float dtype (float32, or float64 under x64)."""
    return jnp.asarray(t, jnp.result_type(float))


class GaussianProcess(abc.ABC):
    """The base of every forward process x_t = alpha(t) x_0 + sigma(t) eps.

    A subclass (a ``flax.struct.dataclass``) defines :meth:`alpha_sigma` and the properties (or
    class attributes) :attr:`t_noise` and :attr:`t_data`; the log-SNR is assumed to decrease
    strictly from ``t_data`` to ``t_noise``. Times are arrays of any shape (``[B]`` in losses, a
    scalar in samplers); every method is elementwise and runs under ``jit``, ``vmap`` and
    ``grad``.
    """

    @abc.abstractmethod
    def alpha_sigma(self, t) -> tuple[jnp.ndarray, jnp.ndarray]:
        """(alpha(t), sigma(t)), each of ``t``'s shape."""

    @property
    @abc.abstractmethod
    def t_noise(self) -> float:
        """The noisy end of the time interval, where sampling starts."""

    @property
    @abc.abstractmethod
    def t_data(self) -> float:
        """The data end of the time interval, where sampling ends."""

    def log_snr_at(self, t) -> jnp.ndarray:
        """lambda(t) = log(alpha^2 / sigma^2) (Kingma et al. 2021, eq. 2 in log form)."""
        alpha, sigma = self.alpha_sigma(t)
        return 2.0 * (jnp.log(alpha) - jnp.log(sigma))

    def time_at_log_snr(self, log_snr, *, iterations: int = 60) -> jnp.ndarray:
        """The t in [t_data, t_noise] with log_snr_at(t) = ``log_snr``, by bisection (the
        log-SNR is monotone); values beyond the ends give the ends. Its derivative is the
        implicit function's, d t / d lambda = 1 / lambda'(t) (also in the process's
        parameters), so grids built on it can be differentiated."""
        target = _float(log_snr)
        lo = jnp.full_like(target, self.t_data)
        hi = jnp.full_like(target, self.t_noise)

        def halve(_, bounds):
            lo, hi = bounds
            mid = 0.5 * (lo + hi)
            later = self.log_snr_at(mid) > target  # too little noise at mid: the root is later
            return jnp.where(later, mid, lo), jnp.where(later, hi, mid)

        lo, hi = jax.lax.fori_loop(0, iterations, halve, jax.lax.stop_gradient((lo, hi)))
        t = jax.lax.stop_gradient(0.5 * (lo + hi))
        lam, dlam = jax.jvp(self.log_snr_at, (t,), (jnp.ones_like(t),))
        residual = (target - lam) / jax.lax.stop_gradient(dlam)
        return t + residual - jax.lax.stop_gradient(residual)  # value t, implicit gradient

    def alpha_sigma_derivatives(self, t) -> tuple[jnp.ndarray, jnp.ndarray]:
        """(d alpha / dt, d sigma / dt) at float ``t``, by one forward-mode pass."""
        t = _float(t)
        return jax.jvp(self.alpha_sigma, (t,), (jnp.ones_like(t),))[1]

    def model_time(self, t) -> jnp.ndarray:
        """What the network is called with at time ``t``: ``t`` itself as a float array."""
        return _float(t)

    def sample_time(self, rng: jax.Array, batch: int) -> jnp.ndarray:
        """t ~ U(t_data, t_noise), ``[batch]``: the default time sampling of the losses."""
        return jax.random.uniform(
            rng, (batch,), jnp.result_type(float), self.t_data, self.t_noise
        )

    def perturb(self, x0: jnp.ndarray, t, noise: jnp.ndarray) -> jnp.ndarray:
        """x_t = alpha(t) x_0 + sigma(t) eps, with ``t`` ``[B]`` (or a scalar) and x0, noise
        ``[B, ...]``."""
        alpha, sigma = (expand_like(v, x0) for v in self.alpha_sigma(t))
        return alpha * x0 + sigma * noise

    @property
    def prior_std(self) -> jnp.ndarray:
        """The standard deviation s of the prior N(0, s^2 I) at ``t_noise``:
        sqrt(alpha^2 + sigma^2), the marginal's of data of unit variance (1 for a
        variance-preserving process, where the prior is N(0, I) as in Ho et al. 2020)."""
        alpha, sigma = self.alpha_sigma(_float(self.t_noise))
        return jnp.sqrt(alpha**2 + sigma**2)

    def sample_prior(self, rng: jax.Array, shape, dtype=None) -> jnp.ndarray:
        """x ~ N(0, prior_std^2 I) of ``shape``: where sampling starts."""
        dtype = dtype or jnp.result_type(float)
        return (self.prior_std * jax.random.normal(rng, shape, dtype)).astype(dtype)


def expand_like(v, x) -> jnp.ndarray:
    """A per-example ``[B]`` (or scalar) array shaped to broadcast against ``x`` ``[B, ...]``."""
    v = jnp.asarray(v)
    return v.reshape(v.shape + (1,) * (jnp.ndim(x) - v.ndim))


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
class VPGamma(GaussianProcess):
    """The continuous variance-preserving process of VDM in its gamma(t) = -log SNR(t) form
    (Kingma et al. 2021, eqs. 1-3): alpha^2 = sigmoid(-gamma), sigma^2 = sigmoid(gamma),
    t in [t_min, 1]. The network is called with gamma rescaled to [0, 1],
    (gamma(t) - gamma(0)) / (gamma(1) - gamma(0)) (VDM conditions its network on gamma_t,
    their App. B; t itself for the linear schedule), so that the continuous-time bound depends
    on the schedule only through its end points (their eq. 17 after the change of variables
    t -> gamma). The log-SNR's inverse is the base's bisection.

    Attributes:
      gamma: ``gamma(t)``, strictly increasing on [0, 1]: :func:`linear_gamma`, or a learned
        schedule (a :class:`~jaxdiff.vdm.LearnedGamma` module, a method of one, or a linen
        ``functools.partial(module.apply, variables)``). It is a pytree whose leaves are the
        module's state or the bound arrays, so a learned
        schedule's parameters are arguments of a jitted function it is passed to, and
        gradients reach them.
      t_min: the data end (t = 0 unless the network was not trained there).
    """

    gamma: Callable
    t_min: float = flax.struct.field(pytree_node=False, default=0.0)

    def __post_init__(self):
        object.__setattr__(self, "gamma", as_pytree_fn(self.gamma))

    t_noise = 1.0

    @property
    def t_data(self):
        return self.t_min

    def log_snr_at(self, t):
        return -self.gamma(_float(t))

    def alpha_sigma(self, t):
        return vp_alpha_sigma(self.log_snr_at(t))

    def model_time(self, t):
        """(gamma(t) - gamma(0)) / (gamma(1) - gamma(0)): the schedule's normalized gamma."""
        gamma_0, gamma_1 = self.gamma(_float(0.0)), self.gamma(_float(1.0))
        return (self.gamma(_float(t)) - gamma_0) / (gamma_1 - gamma_0)


@flax.struct.dataclass
class VE(GaussianProcess):
    """The variance-exploding process of NCSN / score SDEs (Song & Ermon 2019; Song et al.
    2021, eq. 30): alpha = 1, sigma(t) = sigma_min (sigma_max / sigma_min)^t, t in [0, 1]; the
    network is called with sigma(t), the prior is N(0, sigma_max^2 I)."""

    sigma_min: float = flax.struct.field(pytree_node=False, default=0.01)
    sigma_max: float = flax.struct.field(pytree_node=False, default=50.0)

    t_noise = 1.0
    t_data = 0.0

    def sigma(self, t):
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** _float(t)

    def alpha_sigma(self, t):
        sigma = self.sigma(t)
        return jnp.ones_like(sigma), sigma

    def log_snr_at(self, t):
        return -2.0 * jnp.log(self.sigma(t))

    def time_at_log_snr(self, log_snr):
        """sigma = exp(-lambda / 2) solved for t."""
        log_sigma = -0.5 * _float(log_snr)
        return (log_sigma - math.log(self.sigma_min)) / math.log(self.sigma_max / self.sigma_min)

    def model_time(self, t):
        """Noise-conditional networks take sigma."""
        return self.sigma(t)

    @property
    def prior_std(self):
        return jnp.asarray(self.sigma_max, jnp.result_type(float))


@flax.struct.dataclass
class VELevels(GaussianProcess):
    """The variance-exploding process on NCSN's discrete noise levels (Song & Ermon 2019,
    Sec. 4.2): alpha = 1 and sigma one of ``sigmas``. Time t = k is the k-th smallest level
    (t in [0, L - 1]; log sigma linear in between); the network is called with sigma, and
    :meth:`sample_time` draws a level uniformly (their eq. 6).

    Attributes:
      sigmas: ``[L]`` levels, largest first (:func:`~jaxdiff.schedules.geometric_sigmas`).
    """

    sigmas: jnp.ndarray

    @property
    def t_noise(self):
        return float(self.sigmas.shape[0] - 1)

    t_data = 0.0

    def _log_sigmas(self):
        return jnp.log(self.sigmas[::-1])  # increasing in t

    def sigma(self, t):
        t = jnp.asarray(t)
        if jnp.issubdtype(t.dtype, jnp.integer):
            return self.sigmas[::-1][t]
        index = jnp.arange(self.sigmas.shape[0], dtype=self.sigmas.dtype)
        return jnp.exp(jnp.interp(t, index, self._log_sigmas()))

    def alpha_sigma(self, t):
        sigma = self.sigma(t)
        return jnp.ones_like(sigma), sigma

    def log_snr_at(self, t):
        return -2.0 * jnp.log(self.sigma(t))

    def time_at_log_snr(self, log_snr):
        index = jnp.arange(self.sigmas.shape[0], dtype=self.sigmas.dtype)
        return jnp.interp(-0.5 * _float(log_snr), self._log_sigmas(), index)

    def model_time(self, t):
        return self.sigma(t)

    def sample_time(self, rng, batch):
        """A level drawn uniformly, int32 ``[batch]``: ``sigmas[k]``, k ~ U{0..L-1}."""
        last = self.sigmas.shape[0] - 1
        return last - jax.random.randint(rng, (batch,), 0, last + 1, dtype=jnp.int32)

    @property
    def prior_std(self):
        return self.sigmas[0]


@flax.struct.dataclass
class EDM(GaussianProcess):
    """The process of Karras et al. (2022), Sec. 2 / Table 1: alpha = 1, sigma(t) = t, t in
    [sigma_min, sigma_max] (their defaults 0.002 and 80); the network is called with sigma,
    the prior is N(0, sigma_max^2 I)."""

    sigma_min: float = flax.struct.field(pytree_node=False, default=0.002)
    sigma_max: float = flax.struct.field(pytree_node=False, default=80.0)

    @property
    def t_noise(self):
        return self.sigma_max

    @property
    def t_data(self):
        return self.sigma_min

    def alpha_sigma(self, t):
        sigma = _float(t)
        return jnp.ones_like(sigma), sigma

    def time_at_log_snr(self, log_snr):
        """sigma = exp(-lambda / 2)."""
        return jnp.exp(-0.5 * _float(log_snr))

    def model_time(self, t):
        return _float(t)

    @property
    def prior_std(self):
        return jnp.asarray(self.sigma_max, jnp.result_type(float))


class _OnInterval:
    """Time runs over the fields [t_min, t_max]: data at ``t_min``, noise at ``t_max``."""

    @property
    def t_noise(self):
        return self.t_max

    @property
    def t_data(self):
        return self.t_min


@flax.struct.dataclass
class LinearFlow(_OnInterval, GaussianProcess):
    """The linear (rectified-flow / flow-matching) path x_t = (1 - t) x_0 + t eps (Lipman et al.
    2023; Liu et al. 2023), t in [t_min, t_max]: noise at t = 1, data at t = 0. The scaled ODE
    of the solvers needs alpha > 0, so ``t_max`` stays below 1 for them; ``samplers.flow_sample``
    integrates the velocity from t = 1 itself. The network is called with ``time_scale * t``
    (a sinusoidal embedding made for integer timesteps wants ~1000)."""

    t_min: float = flax.struct.field(pytree_node=False, default=0.0)
    t_max: float = flax.struct.field(pytree_node=False, default=0.999)
    time_scale: float = flax.struct.field(pytree_node=False, default=1.0)

    def alpha_sigma(self, t):
        t = _float(t)
        return 1.0 - t, t

    def time_at_log_snr(self, log_snr):
        """alpha / sigma = (1 - t) / t = exp(lambda / 2): t = sigmoid(-lambda / 2)."""
        return jax.nn.sigmoid(-0.5 * _float(log_snr))

    def model_time(self, t):
        return self.time_scale * _float(t)


@flax.struct.dataclass
class Trig(_OnInterval, GaussianProcess):
    """The trigonometric variance-preserving path alpha = cos(pi t / 2), sigma = sin(pi t / 2)
    (the cosine schedule of Nichol & Dhariwal 2021 with s = 0 in continuous time; the
    "trigonometric flow" of Albergo & Vanden-Eijnden 2023), t in [t_min, t_max]. Everything
    but alpha, sigma and the ends comes from :class:`GaussianProcess`."""

    t_min: float = flax.struct.field(pytree_node=False, default=1e-3)
    t_max: float = flax.struct.field(pytree_node=False, default=0.999)

    def alpha_sigma(self, t):
        angle = 0.5 * jnp.pi * _float(t)
        return jnp.cos(angle), jnp.sin(angle)
