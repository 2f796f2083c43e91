"""Continuous time for a model trained on a discrete schedule, as the ODE solvers need it.

A schedule of T steps defines its noise levels only at the integer timesteps. The solvers of
the probability-flow ODE (DPM-Solver++, Heun, adaptive Runge-Kutta) step between arbitrary
levels, so they work with a real-valued timestep ``tau`` in [0, T - 1]:

- at an integer ``tau = k`` the level is the schedule's step k (abar_tau = abar_k);
- in between, the log-SNR log(abar / (1 - abar)) is linear in ``tau`` (the schedule's
  :attr:`~jaxdiff.schedules.Schedule.log_snr` interpolated piecewise linearly; DPM-Solver's
  ``NoiseScheduleVP('discrete')`` interpolates log sqrt(abar) instead, Lu et al. 2022a,
  Sec. 3.4; both agree at the integers);
- the network is called as ``model_fn(x, t)`` with ``t`` a float array ``[B]``: the
  schedule's model timesteps (:attr:`~jaxdiff.schedules.Schedule.timesteps`) interpolated
  linearly at ``tau`` -- the identity ``t = tau`` for a schedule that is not respaced. A U-Net's
  sinusoidal time embedding takes a fractional t as it is; an integer-indexed model (a lookup
  table) cannot.

The ODE is solved from ``tau = T - 1`` (the papers' x_T) to ``tau = 0``: its end point is the
level abar_0 = 1 - beta_0 of the papers' x_1, the last level the network was trained on, and
the data in the sense of DPM-Solver's ``t_0 = 1 / N`` and of Song et al.'s ``eps = 1e-5``. The
samplers' ``denoise_last=True`` adds one model call that takes the x_0 estimate there, as the
last DDIM/DDPM step does (abar = 1).

A *grid* is a function ``grid(schedule, num_steps) -> [num_steps + 1]`` of strictly
decreasing ``tau`` in [0, T - 1], the levels a fixed-step solver visits:
:func:`uniform_time_grid`, :func:`uniform_logsnr_grid`, :func:`quadratic_time_grid` and
:func:`karras_grid` run from
``T - 1`` to ``0``; any other such function works (e.g. DDIM's integer timesteps).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import _checks
from jaxdiff.diffusion import predict_eps_and_x0
from jaxdiff.schedules import Schedule

__all__ = [
    "Grid",
    "continuous_log_snr",
    "tau_from_log_snr",
    "model_time",
    "alpha_sigma",
    "model_eps_x0",
    "real_time_model",
    "call_real_time",
    "integer_time_grid",
    "is_integer_grid",
    "uniform_time_grid",
    "uniform_logsnr_grid",
    "quadratic_time_grid",
    "karras_grid",
]

Grid = Callable[[Schedule, int], jnp.ndarray]


def _index(schedule: Schedule) -> jnp.ndarray:
    return jnp.arange(schedule.num_timesteps, dtype=schedule.alphas_cumprod.dtype)


def continuous_log_snr(schedule: Schedule, tau) -> jnp.ndarray:
    """The log-SNR log(abar / (1 - abar)) at the real timestep ``tau``: the schedule's values,
    linear in between (Kingma et al. 2021, for the log-SNR; the interpolation of a discrete
    schedule as in Lu et al. 2022a, Sec. 3.4).

    Args:
      schedule: the discrete schedule (T >= 2).
      tau: array of real timesteps in [0, T - 1].

    Returns:
      The log-SNR, of ``tau``'s shape.
    """
    return jnp.interp(tau, _index(schedule), schedule.log_snr)


def tau_from_log_snr(schedule: Schedule, log_snr) -> jnp.ndarray:
    """The inverse of :func:`continuous_log_snr` (the log-SNR decreases strictly in tau)."""
    return jnp.interp(log_snr, schedule.log_snr[::-1], _index(schedule)[::-1])


def model_time(schedule: Schedule, tau) -> jnp.ndarray:
    """The network's time input at ``tau``: ``schedule.timesteps`` interpolated linearly (float)."""
    return jnp.interp(tau, _index(schedule), schedule.timesteps.astype(schedule.betas.dtype))


def alpha_sigma(log_snr):
    """alpha = sqrt(abar) and sigma = sqrt(1 - abar) from the log-SNR l = log(abar / (1 - abar)):
    abar = sigmoid(l), 1 - abar = sigmoid(-l) (Kingma et al. 2021), in log space."""
    return jnp.exp(0.5 * jax.nn.log_sigmoid(log_snr)), jnp.exp(0.5 * jax.nn.log_sigmoid(-log_snr))


def _at_levels(schedule: Schedule, log_snr) -> Schedule:
    """``schedule`` with its forward-process tables (abar, sqrt(abar), sqrt(1 - abar),
    log(1 - abar)) replaced by the continuous levels ``log_snr`` (a scalar or ``[B]``, indexed
    0, 1, ...), so that functions written for a schedule's tables, such as the conversions of
    :mod:`jaxdiff.diffusion` between eps, x_0 and v, apply unchanged at real timesteps. Only
    those tables are meaningful in the result."""
    log_snr = jnp.reshape(log_snr, (-1,))
    alpha, sigma = alpha_sigma(log_snr)
    return schedule.replace(
        alphas_cumprod=alpha**2,
        sqrt_alphas_cumprod=alpha,
        sqrt_one_minus_alphas_cumprod=sigma,
        log_one_minus_alphas_cumprod=jax.nn.log_sigmoid(-log_snr),
    )


def model_eps_x0(
    model_fn: Callable,
    schedule: Schedule,
    x: jnp.ndarray,
    tau,
    *,
    prediction: str = "eps",
    clip_denoised: bool = False,
    integer_time: bool = False,
):
    """Calls the network at the real timestep ``tau`` and reads its output as eps and x_0.

    Args:
      model_fn: ``model_fn(x, t)``; ``t`` is :func:`model_time` at ``tau``: a float ``[B]``, or
        with ``integer_time`` the int32 model timestep (``tau`` then lies on the integers).
      schedule: the schedule the model was trained with.
      x: ``[B, ...]`` the state at level ``tau``.
      tau: scalar real timestep in [0, T - 1].
      prediction: what the network predicts: ``eps``, ``x0`` or ``v``.
      clip_denoised: clip the x_0 estimate to [-1, 1] (and recompute eps from it).
      integer_time: call the network with int32 timesteps (a grid on the integers).

    Returns:
      ``(eps, x0)``, each ``[B, ...]``.

    Raises:
      TypeError: in one line naming :func:`real_time_model`, when ``model_fn`` cannot take a
        float t (e.g. it indexes a table by t).
    """
    t = jnp.full(x.shape[:1], model_time(schedule, tau), dtype=schedule.betas.dtype)
    if integer_time:
        out = model_fn(x, jnp.round(t).astype(jnp.int32))
    else:
        out = call_real_time(model_fn, x, t)
    _checks.same_shape("model output", out, "x", x)
    level = _at_levels(schedule, continuous_log_snr(schedule, tau))
    return predict_eps_and_x0(
        level,
        x,
        jnp.zeros(x.shape[:1], jnp.int32),
        out,
        prediction=prediction,
        clip_denoised=clip_denoised,
    )


def call_real_time(model_fn: Callable, x, t):
    """``model_fn(x, t)`` with a float ``t`` ``[B]``, for the continuous-time solvers; a model
    that cannot take one gets a single line that names the fix instead of JAX's deep error."""
    try:
        return model_fn(x, t)
    except (TypeError, ValueError) as err:
        if "integer" not in str(err):
            raise
        raise TypeError(
            "model_fn cannot take a real-valued t (it raised: "
            f"{str(err).splitlines()[0]}); the continuous-time solvers call it with a float t [B]: "
            "wrap a table-based model with jaxdiff.samplers.real_time_model, or sample on the "
            "integer timesteps (ddpm, ddim, pc, dpm_solver with its default grid)"
        ) from None


def real_time_model(make_model: Callable[[Schedule], Callable], schedule: Schedule) -> Callable:
    """A model defined through a schedule's forward-process tables, for integer t, made to take
    real timesteps: each call reads it at the continuous levels of its ``t``.

    For example ``real_time_model(lambda s: analytic.gaussian_eps_fn(s, mean, var), schedule)``
    is the optimal eps-predictor at every real t, the ground truth for the ODE solvers. At the
    integers it equals ``make_model(schedule)``.

    Args:
      make_model: ``make_model(schedule) -> model_fn(x, t)`` reading only ``alphas_cumprod``,
        ``sqrt_alphas_cumprod``, ``sqrt_one_minus_alphas_cumprod`` and
        ``log_one_minus_alphas_cumprod`` at the int ``t``.
      schedule: the schedule the model is defined on (not respaced).

    Returns:
      ``model_fn(x, t)`` with ``t`` a real ``[B]`` array in [0, T - 1].
    """

    def model_fn(x, t):
        levels = _at_levels(schedule, continuous_log_snr(schedule, t))
        return make_model(levels)(x, jnp.arange(x.shape[0]))

    return model_fn


def integer_time_grid(schedule: Schedule, num_steps: int) -> jnp.ndarray:
    """``num_steps`` near-equal steps on the integer timesteps from T - 1 to 0, so the network is
    called with int32 t (as diffusers' multistep DPM-Solver spaces its timesteps "linspace").

    Raises:
      ValueError: if ``num_steps`` > T - 1 (the integers cannot give more distinct levels).
    """
    last = schedule.num_timesteps - 1
    if num_steps > last:
        raise ValueError(
            f"num_steps must be at most T - 1 = {last} on the integer timesteps, got {num_steps}; "
            "pass grid=uniform_logsnr_grid for real-valued levels"
        )
    return jnp.round(jnp.linspace(last, 0.0, num_steps + 1, dtype=schedule.betas.dtype))


def is_integer_grid(taus) -> bool:
    """Whether concrete grid levels all lie on the integers (traced levels: False)."""
    if isinstance(taus, jax.core.Tracer):
        return False
    values = np.asarray(taus)
    return bool(np.all(values == np.round(values)))


def uniform_time_grid(schedule: Schedule, num_steps: int) -> jnp.ndarray:
    """``num_steps`` equal steps in tau from T - 1 to 0 (DPM-Solver's ``time_uniform``
    in Lu et al.'s code)."""
    return jnp.linspace(schedule.num_timesteps - 1, 0.0, num_steps + 1, dtype=schedule.betas.dtype)


def uniform_logsnr_grid(schedule: Schedule, num_steps: int) -> jnp.ndarray:
    """``num_steps`` equal steps in the log-SNR from tau = T - 1 to tau = 0 (DPM-Solver's
    ``logSNR`` spacing, Lu et al. 2022a, Sec. 3.3, recommended there for pixel-space models)."""
    log_snr = schedule.log_snr
    return tau_from_log_snr(schedule, jnp.linspace(log_snr[-1], log_snr[0], num_steps + 1))


def quadratic_time_grid(schedule: Schedule, num_steps: int) -> jnp.ndarray:
    """tau_i = (T - 1) (1 - i / N)^2: steps that shrink quadratically towards the data
    (DPM-Solver's ``time_quadratic`` in Lu et al.'s code; DDIM's quadratic selection,
    Song, Meng & Ermon 2021, App. D.2)."""
    u = jnp.linspace(1.0, 0.0, num_steps + 1, dtype=schedule.betas.dtype)
    return (schedule.num_timesteps - 1) * u**2


def karras_grid(schedule: Schedule, num_steps: int, *, rho: float = 7.0) -> jnp.ndarray:
    """Levels equally spaced in sigma~^(1 / rho), sigma~ = sigma / alpha, from tau = T - 1 to
    tau = 0 (Karras et al. 2022, eq. 5; rho = 7 there). Use ``functools.partial`` for another
    rho."""
    sigma_max, sigma_min = jnp.exp(-0.5 * schedule.log_snr[-1]), jnp.exp(-0.5 * schedule.log_snr[0])
    u = jnp.linspace(0.0, 1.0, num_steps + 1, dtype=schedule.betas.dtype)
    sigmas = (sigma_max ** (1 / rho) + u * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return tau_from_log_snr(schedule, -2.0 * jnp.log(sigmas))


def grid_times(schedule: Schedule, num_steps: int, grid: Grid) -> jnp.ndarray:
    """Evaluates and checks a grid: ``[num_steps + 1]`` decreasing taus in [0, T - 1].

    Raises:
      ValueError: for ``num_steps`` not in [1, T], a schedule with T < 2, or (when the schedule
        is concrete) a grid of the wrong shape, not strictly decreasing, or outside [0, T - 1].
      TypeError: if ``grid`` is not callable.
    """
    num = schedule.num_timesteps
    if num < 2:
        raise ValueError(f"the ODE samplers need a schedule with at least 2 steps, got {num}")
    _checks.positive_int("num_steps", num_steps, maximum=num)
    if not callable(grid):
        raise TypeError(
            "grid must be a function (schedule, num_steps) -> [num_steps + 1] decreasing "
            f"timesteps such as uniform_logsnr_grid, got {grid!r}"
        )
    taus = jnp.asarray(grid(schedule, num_steps))
    if taus.shape != (num_steps + 1,):
        raise ValueError(f"grid must return shape [{num_steps + 1}], got {taus.shape}")
    if not isinstance(taus, jax.core.Tracer):
        values = np.asarray(taus)
        if np.any(np.diff(values) >= 0) or values.min() < 0 or values.max() > num - 1:
            raise ValueError(
                f"grid must return strictly decreasing timesteps in [0, {num - 1}], got {values}"
            )
    return taus
