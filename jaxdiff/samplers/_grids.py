"""Time grids: the levels a fixed-step solver visits, from a process's ``t_noise`` to its
``t_data``.

A *grid* is a function ``grid(process, num_steps) -> [num_steps + 1]`` of strictly decreasing
times of the process: :func:`uniform_time_grid`, :func:`uniform_logsnr_grid`,
:func:`quadratic_time_grid` and :func:`karras_grid` on any process, :func:`integer_logsnr_grid`
on a discrete schedule's integer timesteps (where the network is called with int32 t); any other
such function works (e.g. DDIM's integer timesteps). On a discrete schedule real times tau in
[0, T - 1] lie between its steps, the log-SNR linear in between
(:meth:`~jaxdiff.schedules.Schedule.log_snr_at`), and the network is called with the schedule's
model timesteps interpolated (:meth:`~jaxdiff.schedules.Schedule.model_time`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import _checks
from jaxdiff.schedules import Schedule

__all__ = [
    "Grid",
    "integer_logsnr_grid",
    "default_grid",
    "is_integer_grid",
    "uniform_time_grid",
    "uniform_logsnr_grid",
    "quadratic_time_grid",
    "karras_grid",
]

Grid = Callable[..., jnp.ndarray]  # grid(process, num_steps) -> [num_steps + 1] times


def integer_logsnr_grid(schedule: Schedule, num_steps: int) -> jnp.ndarray:
    """``num_steps`` steps on a discrete schedule's integer timesteps from T - 1 to 0, near-equal
    in the log-SNR, so the network is called with int32 t: :func:`uniform_logsnr_grid` (Lu et
    al. 2022a, Sec. 3.3) rounded to the nearest integers, and made distinct where rounding
    merges levels near the data (each such level moves up to the next free integer).

    Equal steps in t instead (diffusers' "linspace" spacing) spend most steps where the
    log-SNR barely moves: with the exact model of Gaussian data DPM-Solver++(2) is then worse
    than DDIM at 10 and 20 steps, and on this grid it has several times less error.

    Raises:
      ValueError: if ``schedule`` is not a discrete :class:`Schedule`, or ``num_steps`` > T - 1
        (the integers cannot give more distinct levels).
    """
    if not isinstance(schedule, Schedule):
        raise ValueError(
            f"integer_logsnr_grid needs a discrete Schedule, got {type(schedule).__name__}; "
            "pass grid=uniform_logsnr_grid for a continuous process"
        )
    last = schedule.num_timesteps - 1
    if num_steps > last:
        raise ValueError(
            f"num_steps must be at most T - 1 = {last} on the integer timesteps, got {num_steps}; "
            "pass grid=uniform_logsnr_grid for real-valued levels"
        )
    taus = jnp.round(uniform_logsnr_grid(schedule, num_steps))
    # Distinct integers, decreasing: with v_i = tau_i - (N - i), tau_i >= tau_{i+1} + 1 means
    # v_i >= v_{i+1}, a running maximum from the data end; capping tau_i at T - 1 - i keeps
    # the levels inside [0, T - 1] and distinct.
    back = num_steps - jnp.arange(num_steps + 1)
    taus = jax.lax.cummax(taus - back, reverse=True) + back
    return jnp.minimum(taus, last - jnp.arange(num_steps + 1)).astype(schedule.betas.dtype)


def default_grid(process) -> Grid:
    """The levels a solver visits unless told otherwise: :func:`integer_logsnr_grid` on a
    discrete :class:`Schedule` (int32 t, as its network was trained), else
    :func:`uniform_logsnr_grid`."""
    return integer_logsnr_grid if isinstance(process, Schedule) else uniform_logsnr_grid


def is_integer_grid(process, taus) -> bool:
    """Whether concrete grid levels of a discrete :class:`Schedule` all lie on its integers, so
    the network is called with int32 t (traced levels, or a continuous process: False)."""
    if not isinstance(process, Schedule) or isinstance(taus, jax.core.Tracer):
        return False
    values = np.asarray(taus)
    return bool(np.all(values == np.round(values)))


def _ends(process):
    """(t_noise, t_data) of a process as float arrays (float64 under x64)."""
    dtype = jnp.result_type(float)
    return jnp.asarray(process.t_noise, dtype), jnp.asarray(process.t_data, dtype)


def uniform_time_grid(process, num_steps: int) -> jnp.ndarray:
    """``num_steps`` equal steps in time from ``t_noise`` to ``t_data`` (T - 1 to 0 for a
    schedule; DPM-Solver's ``time_uniform`` in Lu et al.'s code)."""
    start, end = _ends(process)
    return jnp.linspace(start, end, num_steps + 1)


def uniform_logsnr_grid(process, num_steps: int) -> jnp.ndarray:
    """``num_steps`` equal steps in the log-SNR from ``t_noise`` to ``t_data`` (DPM-Solver's
    ``logSNR`` spacing, Lu et al. 2022a, Sec. 3.3, recommended there for pixel-space models).
    The ends are kept exactly."""
    start, end = _ends(process)
    log_snrs = jnp.linspace(process.log_snr_at(start), process.log_snr_at(end), num_steps + 1)
    inner = process.time_at_log_snr(log_snrs[1:-1])
    return jnp.concatenate([start[None], inner, end[None]])


def quadratic_time_grid(process, num_steps: int) -> jnp.ndarray:
    """t_i = t_data + (t_noise - t_data) (1 - i / N)^2: steps that shrink quadratically towards
    the data (DPM-Solver's ``time_quadratic`` in Lu et al.'s code; DDIM's quadratic selection,
    Song, Meng & Ermon 2021, App. D.2)."""
    start, end = _ends(process)
    u = jnp.linspace(1.0, 0.0, num_steps + 1, dtype=start.dtype)
    return end + (start - end) * u**2


def karras_grid(process, num_steps: int, *, rho: float = 7.0) -> jnp.ndarray:
    """Levels equally spaced in sigma~^(1 / rho), sigma~ = sigma / alpha, from ``t_noise`` to
    ``t_data`` (Karras et al. 2022, eq. 5; rho = 7 there). Use ``functools.partial`` for
    another rho. The ends are kept exactly."""
    start, end = _ends(process)
    sigma_max = jnp.exp(-0.5 * process.log_snr_at(start))
    sigma_min = jnp.exp(-0.5 * process.log_snr_at(end))
    u = jnp.linspace(0.0, 1.0, num_steps + 1, dtype=start.dtype)
    sigmas = (sigma_max ** (1 / rho) + u * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    inner = process.time_at_log_snr(-2.0 * jnp.log(sigmas[1:-1]))
    return jnp.concatenate([start[None], inner, end[None]])


def grid_times(process, num_steps: int, grid: Grid) -> jnp.ndarray:
    """Evaluates and checks a grid: ``[num_steps + 1]`` times decreasing from ``t_noise`` to
    ``t_data`` of the process (for a schedule, taus in [0, T - 1]).

    Raises:
      ValueError: for ``num_steps`` < 1 (or > T for a schedule), a schedule with T < 2, or
        (when concrete) a grid of the wrong shape, not strictly decreasing, or outside the
        process's time interval.
      TypeError: if ``grid`` is not callable.
    """
    maximum = None
    if isinstance(process, Schedule):
        maximum = process.num_timesteps
        if maximum < 2:
            raise ValueError(f"the ODE samplers need a schedule with at least 2 steps, got {maximum}")
    _checks.positive_int("num_steps", num_steps, maximum=maximum)
    if not callable(grid):
        raise TypeError(
            "grid must be a function (process, num_steps) -> [num_steps + 1] decreasing "
            f"times such as uniform_logsnr_grid, got {grid!r}"
        )
    taus = jnp.asarray(grid(process, num_steps))
    if taus.shape != (num_steps + 1,):
        raise ValueError(f"grid must return shape [{num_steps + 1}], got {taus.shape}")
    if not isinstance(taus, jax.core.Tracer):
        values = np.asarray(taus)
        lo, hi = float(process.t_data), float(process.t_noise)
        slack = 1e-6 * max(1.0, abs(hi))
        if np.any(np.diff(values) >= 0) or values.min() < lo - slack or values.max() > hi + slack:
            raise ValueError(
                f"grid must return strictly decreasing times in [{lo:g}, {hi:g}], got {values}"
            )
    return taus
