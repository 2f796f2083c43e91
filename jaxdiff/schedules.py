"""Noise schedules: the betas of discrete-time diffusion and NCSN's noise levels.

A :class:`Schedule` is an immutable pytree of precomputed float arrays, so it can be passed
into, and closed over by, jitted functions. Every array has shape ``[T]`` and is indexed by the
0-based timestep ``t`` (``t = 0`` is the papers' ``t = 1``).

Example::

    schedule = jaxdiff.schedules.linear(1000)
    schedule.alphas_cumprod[-1]      # ~4e-5: x_T is almost pure noise
"""

from __future__ import annotations

import math
from collections.abc import Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.processes import GaussianProcess, vp_alpha_sigma

__all__ = [
    "Schedule",
    "from_betas",
    "from_alphas_cumprod",
    "linear",
    "scaled_linear",
    "cosine",
    "sigmoid",
    "respace",
    "get",
    "geometric_sigmas",
    "karras_sigmas",
]


@flax.struct.dataclass
class Schedule(GaussianProcess):
    """Precomputed quantities of a variance-preserving diffusion with T steps, and the
    :class:`~jaxdiff.processes.GaussianProcess` they define: int32 t gathers its tables, a real
    t (tau in [0, T - 1]) interpolates its log-SNR linearly.

    Attributes (all ``[T]`` float arrays, ``abar`` = ``alphas_cumprod``):
      betas: beta_t, the variance of q(x_t | x_{t-1}) (Ho et al. 2020, eq. 2).
      alphas_cumprod: abar_t = prod_{s<=t} (1 - beta_s) (Ho et al. 2020, eq. 4).
      alphas_cumprod_prev: abar_{t-1}, with abar_{-1} = 1.
      sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod: sqrt(abar_t), sqrt(1 - abar_t).
      log_one_minus_alphas_cumprod: log(1 - abar_t).
      posterior_variance: beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t (eq. 7).
      posterior_log_variance_clipped: log beta~_t, with beta~_0 (= 0) replaced by beta~_1.
      posterior_mean_coef1, posterior_mean_coef2: the coefficients of x_0 and x_t in the
        posterior mean mu~_t(x_t, x_0) (eq. 7).
      timesteps: int32 model timesteps of each step. The identity for a fresh schedule; a
        :func:`respace`-d schedule keeps the original model's t here, so samplers call
        ``model_fn(x, schedule.timesteps[i])``.
    """

    betas: jnp.ndarray
    alphas_cumprod: jnp.ndarray
    alphas_cumprod_prev: jnp.ndarray
    sqrt_alphas_cumprod: jnp.ndarray
    sqrt_one_minus_alphas_cumprod: jnp.ndarray
    log_one_minus_alphas_cumprod: jnp.ndarray
    posterior_variance: jnp.ndarray
    posterior_log_variance_clipped: jnp.ndarray
    posterior_mean_coef1: jnp.ndarray
    posterior_mean_coef2: jnp.ndarray
    timesteps: jnp.ndarray

    @property
    def num_timesteps(self) -> int:
        """T, the number of diffusion steps (static: read from the array shape)."""
        return self.betas.shape[0]

    @property
    def log_snr(self) -> jnp.ndarray:
        """log(abar_t / (1 - abar_t)), the log signal-to-noise ratio of x_t (Kingma et al. 2021)."""
        return jnp.log(self.alphas_cumprod) - self.log_one_minus_alphas_cumprod

    # --- the schedule as a GaussianProcess ------------------------------------------------------
    # An int32 t reads the tables (the training loss and the discrete samplers); a real t = tau
    # interpolates: at an integer the level is that step's, in between the log-SNR is linear
    # in tau (as Lu et al. 2022a, Sec. 3.4, interpolate a discrete schedule; they interpolate
    # log sqrt(abar), which agrees at the integers).

    @property
    def t_noise(self) -> float:
        """tau = T - 1, the papers' x_T."""
        return float(self.num_timesteps - 1)

    @property
    def t_data(self) -> float:
        """tau = 0, the papers' x_1 (abar_0 = 1 - beta_0), the last level the network saw."""
        return 0.0

    def _index(self) -> jnp.ndarray:
        return jnp.arange(self.num_timesteps, dtype=self.alphas_cumprod.dtype)

    def log_snr_at(self, t) -> jnp.ndarray:
        """The log-SNR at timesteps ``t``: the table at int t, linear in between (T >= 2)."""
        if _is_int(t):
            return self.log_snr[t]
        return jnp.interp(t, self._index(), self.log_snr)

    def alpha_sigma(self, t):
        """sqrt(abar) and sqrt(1 - abar) at timesteps ``t`` (int: the tables; real: from the
        interpolated log-SNR)."""
        if _is_int(t):
            return self.sqrt_alphas_cumprod[t], self.sqrt_one_minus_alphas_cumprod[t]
        return vp_alpha_sigma(self.log_snr_at(t))

    def time_at_log_snr(self, log_snr) -> jnp.ndarray:
        """The inverse of :meth:`log_snr_at` (the log-SNR decreases strictly in tau)."""
        return jnp.interp(log_snr, self.log_snr[::-1], self._index()[::-1])

    def model_time(self, t) -> jnp.ndarray:
        """The network's time input: the int32 model timestep :attr:`timesteps` ``[t]`` at int
        ``t``; at a real tau, the timesteps interpolated linearly (float)."""
        if _is_int(t):
            return self.timesteps[t]
        return jnp.interp(t, self._index(), self.timesteps.astype(self.betas.dtype))

    def sample_time(self, rng, batch: int) -> jnp.ndarray:
        """t ~ Uniform{0, ..., T-1}, ``[batch]`` int32 (Ho et al. 2020, Alg. 1)."""
        return jax.random.randint(rng, (batch,), 0, self.num_timesteps, dtype=jnp.int32)

    @property
    def prior_std(self):
        """1: the prior N(0, I) of Ho et al. (2020)."""
        return jnp.ones((), self.betas.dtype)


def _is_int(t) -> bool:
    """Whether ``t`` has an integer dtype (static under ``jit``)."""
    return jnp.issubdtype(jnp.result_type(t), jnp.integer)


def from_betas(betas) -> Schedule:
    """Builds a :class:`Schedule` from a beta sequence (Ho et al. 2020, eqs. 2, 4 and 7).

    The arrays are computed in float64 with NumPy and stored as float32 (or float64 when x64 is
    enabled), so the precision does not depend on the JAX configuration.

    Args:
      betas: ``[T]`` non-decreasing array of betas, each in (0, 1] (the forward process adds
        at least as much noise at each step as at the one before, as every published schedule
        does).

    Returns:
      The schedule.

    Raises:
      ValueError: if ``betas`` is not a non-empty 1-D array of non-decreasing values in (0, 1].
    """
    betas = np.asarray(betas, dtype=np.float64)
    if betas.ndim != 1 or betas.shape[0] < 1:
        raise ValueError(f"betas must be a non-empty 1-D array, got shape {betas.shape}")
    if not np.all(np.isfinite(betas)) or np.any(betas <= 0) or np.any(betas > 1):
        raise ValueError(
            f"betas must lie in (0, 1], got min {betas.min():.3g} and max {betas.max():.3g}"
        )
    if np.any(np.diff(betas) < 0):
        t = int(np.argmax(np.diff(betas) < 0))
        raise ValueError(
            f"betas must be non-decreasing, got betas[{t}] = {betas[t]:.3g} > betas[{t + 1}] = "
            f"{betas[t + 1]:.3g}"
        )
    alphas_cumprod = np.cumprod(1.0 - betas)
    return _from_float64(betas, alphas_cumprod, np.arange(betas.shape[0]))


def from_alphas_cumprod(alphas_cumprod) -> Schedule:
    """Builds a :class:`Schedule` from abar_t, with beta_t = 1 - abar_t / abar_{t-1}.

    Args:
      alphas_cumprod: ``[T]`` strictly decreasing values in (0, 1).
    """
    alphas_cumprod = np.asarray(alphas_cumprod, dtype=np.float64)
    if alphas_cumprod.ndim != 1 or alphas_cumprod.shape[0] < 1:
        raise ValueError(
            f"alphas_cumprod must be a non-empty 1-D array, got shape {alphas_cumprod.shape}"
        )
    if np.any(alphas_cumprod <= 0) or np.any(alphas_cumprod >= 1) or np.any(
        np.diff(alphas_cumprod) >= 0
    ):
        raise ValueError("alphas_cumprod must be strictly decreasing values in (0, 1)")
    return from_betas(_betas_from_alphas_cumprod(alphas_cumprod))


def _betas_from_alphas_cumprod(alphas_cumprod: np.ndarray) -> np.ndarray:
    """beta_t = 1 - abar_t / abar_{t-1} with abar_{-1} = 1 (Ho et al. 2020, eq. 4 inverted)."""
    return 1.0 - alphas_cumprod / np.append(1.0, alphas_cumprod[:-1])


def _from_float64(betas: np.ndarray, alphas_cumprod: np.ndarray, timesteps) -> Schedule:
    alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
    posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    # beta~_0 = 0; its log is replaced by log beta~_1 (as in Ho et al.'s code). With T = 1 there
    # is no beta~_1, and the decoder variance beta_0 takes its place.
    clip_value = posterior_variance[1] if betas.shape[0] > 1 else betas[0]
    arrays = dict(
        betas=betas,
        alphas_cumprod=alphas_cumprod,
        alphas_cumprod_prev=alphas_cumprod_prev,
        sqrt_alphas_cumprod=np.sqrt(alphas_cumprod),
        sqrt_one_minus_alphas_cumprod=np.sqrt(1.0 - alphas_cumprod),
        log_one_minus_alphas_cumprod=np.log1p(-alphas_cumprod),
        posterior_variance=posterior_variance,
        posterior_log_variance_clipped=np.log(np.append(clip_value, posterior_variance[1:])),
        posterior_mean_coef1=betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod),
        posterior_mean_coef2=(1.0 - alphas_cumprod_prev) * np.sqrt(1.0 - betas)
        / (1.0 - alphas_cumprod),
    )
    float_dtype = jnp.result_type(float)  # float32, or float64 under jax_enable_x64
    fields = {k: jnp.asarray(v, dtype=float_dtype) for k, v in arrays.items()}
    return Schedule(timesteps=jnp.asarray(timesteps, dtype=jnp.int32), **fields)


def _check_num_timesteps(num_timesteps) -> None:
    if isinstance(num_timesteps, bool) or not isinstance(num_timesteps, (int, np.integer)):
        raise ValueError(f"num_timesteps must be an integer, got {num_timesteps!r}")
    if num_timesteps < 1:
        raise ValueError(f"num_timesteps must be positive, got {num_timesteps}")


def linear(num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
    """The linear schedule of Ho et al. (2020), Sec. 4: betas evenly spaced in [start, end].

    Following improved DDPM (Nichol & Dhariwal 2021), ``beta_start`` and ``beta_end`` are for
    T = 1000 and are scaled by 1000 / T for other T, so the total noise stays comparable.
    """
    _check_num_timesteps(num_timesteps)
    scale = 1000.0 / num_timesteps
    betas = np.linspace(beta_start * scale, beta_end * scale, num_timesteps)
    return from_betas(np.minimum(betas, 0.999))


def scaled_linear(
    num_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012
) -> Schedule:
    """The "scaled linear" schedule of latent diffusion (Rombach et al. 2022): sqrt(beta) linear."""
    _check_num_timesteps(num_timesteps)
    return from_betas(np.linspace(beta_start**0.5, beta_end**0.5, num_timesteps) ** 2)


def _cosine_alpha_bar(u: np.ndarray, s: float) -> np.ndarray:
    """f(u) = cos^2((u + s) / (1 + s) * pi / 2) (Nichol & Dhariwal 2021, eq. 17), u in [0, 1]."""
    return np.cos((u + s) / (1 + s) * math.pi / 2) ** 2


def cosine(num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
    """The cosine schedule of improved DDPM (Nichol & Dhariwal 2021, eq. 17).

    abar_t = f(t) / f(0), with betas clipped to ``max_beta`` to avoid singularities at t = T.
    """
    _check_num_timesteps(num_timesteps)
    if not 0 < max_beta <= 1:
        raise ValueError(f"max_beta must lie in (0, 1], got {max_beta}")
    return _from_continuous_alpha_bar(lambda u: _cosine_alpha_bar(u, s), num_timesteps, max_beta)


def _sigmoid_alpha_bar(u: np.ndarray, start: float, end: float, tau: float) -> np.ndarray:
    """abar(u) from a sigmoid in u (Jabri et al. 2022, Alg. 1; Chen 2023, "On the importance
    of noise scheduling", eq. 2), normalised so that abar(0) = 1 and abar(1) = 0."""
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    v_start, v_end = sig(start / tau), sig(end / tau)
    return (v_end - sig((u * (end - start) + start) / tau)) / (v_end - v_start)


def sigmoid(
    num_timesteps: int = 1000,
    start: float = -3.0,
    end: float = 3.0,
    tau: float = 1.0,
    max_beta: float = 0.999,
) -> Schedule:
    """The sigmoid schedule of Jabri et al. (2022) / Chen (2023), eq. 2."""
    _check_num_timesteps(num_timesteps)
    if not start < end or tau <= 0:
        raise ValueError(f"sigmoid needs start < end and tau > 0, got {start}, {end}, {tau}")
    fn = lambda u: _sigmoid_alpha_bar(u, start, end, tau)  # noqa: E731
    return _from_continuous_alpha_bar(fn, num_timesteps, max_beta)


def _from_continuous_alpha_bar(
    alpha_bar: Callable[[np.ndarray], np.ndarray], num_timesteps: int, max_beta: float
) -> Schedule:
    """Discretises a continuous abar(u), u in [0, 1]: beta_t = 1 - abar((t+1)/T) / abar(t/T)."""
    u = np.arange(num_timesteps + 1, dtype=np.float64) / num_timesteps
    ab = alpha_bar(u)
    betas = 1.0 - ab[1:] / ab[:-1]
    return from_betas(np.clip(betas, 1e-12, max_beta))


def respace(schedule: Schedule, timesteps) -> Schedule:
    """Restricts a schedule to a subset of its timesteps (Nichol & Dhariwal 2021, Sec. 4).

    The new betas are beta'_i = 1 - abar_{t_i} / abar_{t_{i-1}}, so the respaced chain has the
    same marginals q(x_{t_i} | x_0) as the original one at the kept steps. ``timesteps`` of the
    result hold the original t_i, with which the model must be called.

    Args:
      schedule: the schedule the model was trained with.
      timesteps: strictly increasing 0-based timesteps to keep (concrete ints).

    Returns:
      A schedule with ``len(timesteps)`` steps.
    """
    keep = np.asarray(timesteps)
    num = schedule.num_timesteps
    if keep.ndim != 1 or keep.shape[0] < 1:
        raise ValueError(f"timesteps must be a non-empty 1-D sequence, got shape {keep.shape}")
    if not np.issubdtype(keep.dtype, np.integer) or keep.min() < 0 or keep.max() >= num:
        raise ValueError(f"timesteps must be integers in [0, {num - 1}], got {keep.tolist()}")
    if np.any(np.diff(keep) <= 0):
        raise ValueError("timesteps must be strictly increasing")
    abar = np.asarray(schedule.alphas_cumprod, dtype=np.float64)[keep]
    betas = _betas_from_alphas_cumprod(abar)
    model_t = np.asarray(schedule.timesteps)[keep]
    return _from_float64(betas, abar, model_t)


_NAMED: dict[str, Callable[..., Schedule]] = {
    "linear": linear,
    "scaled_linear": scaled_linear,
    "cosine": cosine,
    "sigmoid": sigmoid,
}


def get(name: str, num_timesteps: int = 1000, **kwargs) -> Schedule:
    """Resolves a schedule by name (for configs and the command line): one of
    ``linear``, ``scaled_linear``, ``cosine``, ``sigmoid``."""
    if name not in _NAMED:
        raise ValueError(f"unknown schedule name {name!r}; expected one of {sorted(_NAMED)}")
    return _NAMED[name](num_timesteps, **kwargs)


def geometric_sigmas(sigma_max: float, sigma_min: float, num: int) -> jnp.ndarray:
    """NCSN noise levels: a geometric sequence from sigma_max down to sigma_min.

    Song & Ermon (2019), Sec. 4.2: {sigma_i}_{i=1}^L with sigma_1 / sigma_2 = ... =
    sigma_{L-1} / sigma_L > 1.

    Returns:
      ``[num]`` float array, largest first.
    """
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
        raise ValueError(f"num must be a positive integer, got {num!r}")
    if not (sigma_min > 0 and sigma_max > sigma_min):
        raise ValueError(
            f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}"
        )
    sigmas = np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), num))
    return jnp.asarray(sigmas, dtype=jnp.result_type(float))


def karras_sigmas(num: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> jnp.ndarray:
    """The noise levels of Karras et al. (2022), eq. 5, followed by sigma_N = 0:

    .. math:: \\sigma_{i < N} = \\Big(\\sigma_{\\max}^{1/\\rho} + \\frac{i}{N - 1}
        \\big(\\sigma_{\\min}^{1/\\rho} - \\sigma_{\\max}^{1/\\rho}\\big)\\Big)^{\\rho},
        \\quad \\sigma_N = 0

    (rho = 7 there; rho = 1 is uniform in sigma, rho -> inf uniform in log sigma). With
    ``num = 1`` the grid is [sigma_max, 0].

    Args:
      num: N, the number of nonzero levels (the number of sampler steps).
      sigma_min, sigma_max: the smallest and largest nonzero levels, 0 < sigma_min <= sigma_max.
      rho: the exponent, > 0.

    Returns:
      ``[num + 1]`` float array, decreasing, ending with 0.
    """
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
        raise ValueError(f"num must be a positive integer, got {num!r}")
    if not (sigma_min > 0 and sigma_max >= sigma_min):
        raise ValueError(
            f"need 0 < sigma_min <= sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}"
        )
    if not rho > 0:
        raise ValueError(f"rho must be positive, got {rho}")
    ramp = np.linspace(0.0, 1.0, num) if num > 1 else np.zeros(1)
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    sigmas = np.append((hi + ramp * (lo - hi)) ** rho, 0.0)
    return jnp.asarray(sigmas, dtype=jnp.result_type(float))
