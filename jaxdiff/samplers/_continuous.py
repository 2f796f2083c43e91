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
from jaxdiff.diffusion import eps_x0_from_output, x0_from_posterior_mean
from jaxdiff.processes import vp_alpha_sigma
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
    "vp_scale",
    "integer_logsnr_grid",
    "default_grid",
    "is_integer_grid",
    "uniform_time_grid",
    "uniform_logsnr_grid",
    "quadratic_time_grid",
    "karras_grid",
]

Grid = Callable[..., jnp.ndarray]  # grid(process, num_steps) -> [num_steps + 1] times


def continuous_log_snr(process, tau) -> jnp.ndarray:
    """The log-SNR of ``process`` at real times ``tau`` (a discrete schedule's values, linear in
    between: :meth:`~jaxdiff.schedules.Schedule.log_snr_at`)."""
    return process.log_snr_at(tau)


def tau_from_log_snr(process, log_snr) -> jnp.ndarray:
    """The inverse of :func:`continuous_log_snr`."""
    return process.time_at_log_snr(log_snr)


def model_time(process, tau) -> jnp.ndarray:
    """The network's time input at ``tau`` (a schedule's model timesteps interpolated, float)."""
    return process.model_time(tau)


alpha_sigma = vp_alpha_sigma


def vp_scale(process, tau) -> jnp.ndarray:
    """alpha_vp / alpha at ``tau``: the factor from the process's x to the variance-preserving
    x of the same log-SNR, in which the solvers step (1 for a VP process). Both share x_0 and
    eps, so the model is called on the process's own x."""
    return vp_alpha_sigma(process.log_snr_at(tau))[0] / process.alpha_sigma(tau)[0]


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
    process,
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
      process: the process the model was trained on (a :class:`Schedule` or one of
        :mod:`jaxdiff.processes`).
      x: ``[B, ...]`` the state at level ``tau`` in the variance-preserving scaling of the
        solvers (x of the process times alpha_vp / alpha: unchanged for a schedule).
      tau: scalar time (for a schedule a real timestep in [0, T - 1]).
      prediction: what the network predicts: ``eps``, ``x0``, ``v``, or ``mean`` (on a
        schedule's integer steps: the step index is ``tau``, the respaced schedule's own).
      clip_denoised: clip the x_0 estimate to [-1, 1] (and recompute eps from it).
      integer_time: call the network with int32 timesteps (a grid on the integers).

    Returns:
      ``(eps, x0)``, each ``[B, ...]``.

    Raises:
      TypeError: in one line naming :func:`real_time_model`, when ``model_fn`` cannot take a
        float t (e.g. it indexes a table by t).
    """
    if prediction == "mean" and not (integer_time and isinstance(process, Schedule)):
        raise ValueError(
            'prediction="mean" needs a discrete Schedule and a grid on its integer timesteps'
        )
    alpha, sigma = process.alpha_sigma(tau)
    x = x * (alpha / vp_alpha_sigma(process.log_snr_at(tau))[0])  # the process's x (see vp_scale)
    t = jnp.full(x.shape[:1], process.model_time(tau), dtype=x.dtype)
    if integer_time:
        out = model_fn(x, jnp.round(t).astype(jnp.int32))
    else:
        out = call_real_time(model_fn, x, t)
    _checks.same_shape("model output", out, "x", x)
    if prediction == "mean":  # a posterior mean is defined on a schedule's own steps only
        step = jnp.round(jnp.full(x.shape[:1], tau)).astype(jnp.int32)
        out, prediction = x0_from_posterior_mean(process, x, step, out), "x0"
    return eps_x0_from_output(out, x, alpha, sigma, prediction=prediction, clip_denoised=clip_denoised)


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


def is_integer_grid(taus) -> bool:
    """Whether concrete grid levels all lie on the integers (traced levels: False)."""
    if isinstance(taus, jax.core.Tracer):
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
