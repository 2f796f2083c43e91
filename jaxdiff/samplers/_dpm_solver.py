"""DPM-Solver++ (Lu et al. 2022b, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
Probabilistic Models"): multistep exponential integrators of the probability-flow ODE in the
data-prediction form, orders 1 to 3, for a model trained on a discrete schedule.

In the half log-SNR lambda = log(alpha / sigma) the probability-flow ODE has the exact solution
(Lu et al. 2022b, Sec. 4; alpha = sqrt(abar), sigma = sqrt(1 - abar))

.. math:: x_t = \\frac{\\sigma_t}{\\sigma_s} x_s + \\sigma_t \\int_{\\lambda_s}^{\\lambda_t}
    e^{\\lambda} \\hat x_0(x_\\lambda, \\lambda)\\, d\\lambda,

whose linear part is integrated exactly; a k-th order multistep method replaces the data
prediction x0_hat by the polynomial through its last k values. Order 1 is DDIM (Song, Meng &
Ermon 2021, eq. 12 with sigma_t = 0). It runs on any Gaussian process from ``t_noise`` to ``t_data`` over the levels of a ``grid`` (see
:mod:`._grids`), in the variance-preserving scaling of x (x alpha_vp / alpha, alpha_vp^2 =
sigmoid(lambda); the identity for a variance-preserving process), where both share eps and x_0.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import _checks
from jaxdiff.processes import vp_alpha_sigma
from jaxdiff.samplers._common import compiled, drive, finish, saved_steps, with_known
from jaxdiff.samplers._denoise import model_denoiser
from jaxdiff.samplers._grids import (
    Grid,
    default_grid,
    grid_times,
    integer_logsnr_grid,
    is_integer_grid,
)
from jaxdiff.samplers._inpaint import inpaint_spec

__all__ = [
    "MAX_ORDER",
    "DPMSolverState",
    "dpm_solver_pp_update",
    "dpm_solver_pp_step",
    "dpm_solver_orders",
    "dpm_solver_sample",
]

MAX_ORDER = 3


class DPMSolverState(NamedTuple):
    """The carry of the multistep solver.

    Attributes:
      x: ``[B, ...]`` the current state.
      x0_preds: ``[MAX_ORDER, B, ...]`` the last data predictions, newest first.
      log_snrs: ``[MAX_ORDER]`` the log-SNRs at which they were made, newest first.
    """

    x: jnp.ndarray
    x0_preds: jnp.ndarray
    log_snrs: jnp.ndarray

    @classmethod
    def initial(cls, x_T: jnp.ndarray) -> "DPMSolverState":
        """The state at the start of a chain: no predictions yet (the first step is order 1)."""
        return cls(
            x_T,
            jnp.zeros((MAX_ORDER,) + x_T.shape, x_T.dtype),
            jnp.zeros((MAX_ORDER,), x_T.dtype),
        )


def dpm_solver_pp_update(x, x0_preds, log_snrs, log_snr_next, *, order: int) -> jnp.ndarray:
    """One multistep DPM-Solver++ update from the level ``log_snrs[0]`` to ``log_snr_next``.

    With lambda = log-SNR / 2, h = lambda_next - lambda_0 and the data predictions m_0, m_1,
    m_2 made at lambda_0 > lambda_1 > lambda_2 (newest first):

    .. math::
        x' = \\frac{\\sigma'}{\\sigma_0} x + \\alpha' \\Big[(1 - e^{-h})\\, m_0
             + \\text{(order 2)}\\ \\frac{1 - e^{-h}}{2 r_0} (m_0 - m_1)
             + \\text{(order 3)}\\ c_1 b_1 + c_2 b_2 \\Big]

    - order 1 is DPM-Solver++(1), the DDIM step (Lu et al. 2022b, Sec. 4; Song, Meng &
      Ermon 2021, eq. 12 with sigma_t = 0);
    - order 2 is DPM-Solver++(2M) (Lu et al. 2022b, Alg. 2), r_0 = (lambda_0 - lambda_1) / h;
    - order 3 integrates the quadratic through the three predictions exactly: in Newton form
      m_0 + b_1 u + b_2 u^2 (u = lambda - lambda_0) with the divided differences
      b_2 = m[0, 1, 2], b_1 = m[0, 1] + (lambda_0 - lambda_1) b_2, and the weights
      c_k = int_0^h e^{u - h} u^k du: c_1 = h - 1 + e^{-h}, c_2 = h^2 - 2 c_1 (an exact
      exponential multistep method in the sense of Hochbruck & Ostermann 2010; the
      third-order multistep of Lu et al.'s code weights the u^2 term by c_2 / 2).

    Args:
      x: ``[B, ...]`` the state at ``log_snrs[0]``.
      x0_preds: ``[K, B, ...]`` data predictions, newest first, K >= order.
      log_snrs: ``[K]`` their log-SNRs.
      log_snr_next: scalar log-SNR of the level to step to.
      order: 1, 2 or 3 (static).

    Returns:
      ``[B, ...]`` the state at ``log_snr_next``.
    """
    _check_order(order)
    lam = 0.5 * log_snrs
    h = 0.5 * log_snr_next - lam[0]
    alpha_next, sigma_next = vp_alpha_sigma(log_snr_next)
    _, sigma_now = vp_alpha_sigma(log_snrs[0])
    c0 = -jnp.expm1(-h)  # int_0^h e^{u - h} du
    m = x0_preds
    if order == 1:
        drift = c0 * m[0]
    elif order == 2:
        r0 = (lam[0] - lam[1]) / h
        drift = c0 * (m[0] + (m[0] - m[1]) / (2.0 * r0))
    else:
        d01 = (m[0] - m[1]) / (lam[0] - lam[1])
        d12 = (m[1] - m[2]) / (lam[1] - lam[2])
        b2 = (d01 - d12) / (lam[0] - lam[2])
        b1 = d01 + (lam[0] - lam[1]) * b2
        c1 = h - c0
        c2 = h**2 - 2.0 * c1
        drift = c0 * m[0] + c1 * b1 + c2 * b2
    return sigma_next / sigma_now * x + alpha_next * drift


def vp_scale(process, t) -> jnp.ndarray:
    """alpha_vp / alpha at t: the factor from the process's x to the variance-preserving x of
    the same log-SNR, in which the solver steps (1 for a variance-preserving process)."""
    return vp_alpha_sigma(process.log_snr_at(t))[0] / process.alpha_sigma(t)[0]


def dpm_solver_pp_step(denoise: Callable, process, state: DPMSolverState, t, t_next, *, order):
    """One step of multistep DPM-Solver++: a denoiser call at (``state.x``, ``t``) and the
    :func:`dpm_solver_pp_update` of ``order`` from ``t`` to ``t_next``.

    Args:
      denoise: ``denoise(x, t) -> (eps, x0)`` of the process's x (see
        :func:`~jaxdiff.samplers._denoise.model_denoiser`).
      process: the process the model was trained on.
      state: the carry; its x (variance-preserving scaling) is at time ``t``.
      t, t_next: scalar times, ``t > t_next``.
      order: 1, 2 or 3; a Python int or a traced int32 scalar (it may not exceed the number of
        predictions made so far plus one).

    Returns:
      The state at ``t_next``.
    """
    if isinstance(order, int):
        _check_order(order)
    _, x0 = denoise(state.x / vp_scale(process, t).astype(state.x.dtype), t)
    x0_preds = jnp.concatenate([x0[None], state.x0_preds[:-1]])
    log_snrs = jnp.concatenate([process.log_snr_at(t)[None], state.log_snrs[:-1]])
    branches = [
        functools.partial(dpm_solver_pp_update, order=k) for k in range(1, MAX_ORDER + 1)
    ]
    x = jax.lax.switch(
        jnp.asarray(order, jnp.int32) - 1, branches, state.x, x0_preds,
        log_snrs.astype(state.x.dtype), process.log_snr_at(t_next).astype(state.x.dtype),
    )
    return DPMSolverState(x, x0_preds, log_snrs.astype(state.log_snrs.dtype))


def dpm_solver_orders(num_steps: int, order: int, *, lower_order_final: bool = True) -> np.ndarray:
    """The order of each step of a multistep chain: it warms up (step i uses at most i + 1
    predictions) and, with ``lower_order_final`` and fewer than 10 steps, decreases over the
    last steps (step i at most num_steps - i), which steadies very short chains (as in Lu et
    al.'s code for DPM-Solver++).

    Returns:
      ``[num_steps]`` int32 orders.
    """
    i = np.arange(num_steps)
    orders = np.minimum(order, i + 1)
    if lower_order_final and num_steps < 10:
        orders = np.minimum(orders, num_steps - i)
    return orders.astype(np.int32)


def dpm_solver_sample(
    model_fn: Callable,
    schedule: Schedule,
    x_T: jnp.ndarray,
    rng=None,
    *,
    num_steps: int,
    order: int = 2,
    prediction: str = "eps",
    grid: Grid | None = None,
    lower_order_final: bool = True,
    clip_denoised: bool = False,
    denoise_last: bool = False,
    mask=None,
    known=None,
    return_info: bool = False,
    trajectory_every: int = 1,
):
    """Samples with multistep DPM-Solver++ (Lu et al. 2022b, Alg. 2 and its order-3 analogue),
    one ``lax.scan`` over the steps.

    The chain visits the levels ``grid(schedule, num_steps)`` (by default near-equal steps in
    log-SNR, on the integer timesteps from T - 1 to 0 for a discrete schedule) with one model call per step, and returns the state
    at the last level, abar_0 = 1 - beta_0 for the built-in grids.

    Args:
      model_fn: ``model_fn(x_t, t) -> output`` of the model trained on ``schedule``; ``t`` is
        int32 ``[B]`` when the grid lies on the integers (the default), else a float ``[B]``
        (fractional between the training timesteps, see :func:`model_time`).
      schedule: the training schedule (T >= 2 steps).
      x_T: ``[B, ...]`` starting noise, x at tau = T - 1.
      rng: the key of inpainting's forward noise (the solver itself is deterministic).
      num_steps: number of steps (= model calls), in [1, T].
      order: 1 (DDIM), 2 (DPM-Solver++(2M)) or 3.
      prediction: what the network predicts: eps | x0 | v | velocity | score (or ``mean``,
        on a schedule's integer grid).
      grid: the levels, ``grid(schedule, num_steps) -> [num_steps + 1]`` decreasing times.
        By default :func:`integer_logsnr_grid` on a discrete schedule (int32 t, near-equal
        steps in log-SNR) and :func:`uniform_logsnr_grid` on a continuous process (equal
        steps in log-SNR, as Lu et al. 2022a recommend); also :func:`uniform_time_grid`,
        :func:`quadratic_time_grid` or any such function.
      lower_order_final: lower the order over the last steps of chains shorter than 10 steps.
      clip_denoised: clip every data prediction to [-1, 1].
      denoise_last: one more model call at the end that returns its x_0 estimate (abar = 1).
      mask, known: inpainting, as in :func:`~jaxdiff.samplers.ddpm_sample`: after every step
        the known pixels are a sample of the process at the step's level, and ``known`` at the
        end (needs rng). The multistep history keeps the predictions made before.
      return_info: return a :class:`SamplerOutput` (samples, trajectory, nfe).
      trajectory_every: with ``return_info``, keep the state after every k-th step (0: none).

    Returns:
      ``[B, ...]`` the samples, or a :class:`SamplerOutput` with
      ``nfe = num_steps + denoise_last``.

    Raises:
      ValueError: for an order other than 1, 2 or 3, ``num_steps`` outside [1, T], an unknown
        prediction type or a bad grid.
    """
    _checks.batched("x_T", x_T)
    _check_order(order)
    grid = default_grid(schedule) if grid is None else grid
    taus = grid_times(schedule, num_steps, grid)
    integer_time = is_integer_grid(schedule, taus) or (
        isinstance(taus, jax.core.Tracer) and grid is integer_logsnr_grid
    )
    denoise = model_denoiser(model_fn, schedule, prediction=prediction,
                             clip_denoised=clip_denoised, integer_time=integer_time)
    orders = dpm_solver_orders(num_steps, order, lower_order_final=lower_order_final)
    x, trajectory = _dpm_solver_chain(
        denoise,
        schedule,
        x_T,
        rng,
        taus,
        jnp.asarray(orders),
        inpaint_spec(mask, known, x_T),
        denoise_last=denoise_last,
        trajectory_every=trajectory_every if return_info else 0,
    )
    return finish(x, trajectory, num_steps + int(denoise_last), return_info=return_info)


@compiled(static_argnames=("denoise_last", "trajectory_every"))
def _dpm_solver_chain(denoise, process, x_T, rng, taus, orders, inpaint, *, denoise_last,
                      trajectory_every):
    def step(state, inputs, key):
        t, t_next, order = inputs
        return dpm_solver_pp_step(denoise, process, state, t, t_next, order=order)

    state, trajectory = drive(
        step,
        DPMSolverState.initial(x_T * vp_scale(process, taus[0]).astype(x_T.dtype)),
        (taus[:-1], taus[1:], orders),
        rng=rng,
        inpaint=inpaint,
        arrives_at=lambda inputs: vp_alpha_sigma(process.log_snr_at(inputs[1])),
        get_x=lambda s: s.x,
        set_x=lambda s, x: s._replace(x=x),
        trajectory_every=trajectory_every,
    )
    if trajectory is not None:  # the solver's variance-preserving x, back to the process's
        scale = vp_scale(process, taus[saved_steps(taus.shape[0] - 1, trajectory_every)])
        trajectory = trajectory / scale.reshape((-1,) + (1,) * x_T.ndim).astype(x_T.dtype)
    x = state.x / vp_scale(process, taus[-1]).astype(x_T.dtype)
    if denoise_last:
        x = denoise(x, taus[-1])[1]
    return with_known(x, trajectory, inpaint)


def _check_order(order) -> None:
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not (
        1 <= order <= MAX_ORDER
    ):
        raise ValueError(
            f"order must be 1, 2 or 3 (DPM-Solver++ supports orders 1-3), got {order!r}"
        )
