"""The probability-flow ODE of the variance-preserving process (Song et al. 2021, "Score-based
generative modeling through stochastic differential equations", eq. 13), for a model trained
on a discrete schedule: sampling with Heun's method or an adaptive Runge-Kutta method (diffrax),
and exact log-likelihoods by the instantaneous change of variables.

The ODE is written for the scaled state y = x / alpha against the noise level
sigma~ = sigma / alpha = exp(-log-SNR / 2) (Song, Meng & Ermon 2021, eq. 14; Karras et al.
2022, eq. 4 with s = alpha):

.. math:: \\frac{dy}{d\\tilde\\sigma} = \\hat\\epsilon(\\alpha y, \\tau(\\tilde\\sigma)),

where eps_hat is the model's noise prediction at the real timestep tau of that level (see
:mod:`._continuous`). In this form an Euler step is a DDIM step, and the exact Gaussian flow is
smooth. It runs between tau = T - 1 and tau = 0 (abar_0 = 1 - beta_0).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import _checks
from jaxdiff.diffusion import PATH_PREDICTIONS
from jaxdiff.samplers._common import compiled, drive, finish, run_chain, saved_steps, with_known
from jaxdiff.samplers._inpaint import fixed_step_inpaint
from jaxdiff.samplers._continuous import (
    Grid,
    alpha_sigma,
    continuous_log_snr,
    grid_times,
    model_eps_x0,
    tau_from_log_snr,
    uniform_logsnr_grid,
)
from jaxdiff.schedules import Schedule

__all__ = [
    "ADAPTIVE_METHODS",
    "TRACE_ESTIMATORS",
    "probability_flow",
    "heun_step",
    "ode_sample",
    "uniform_dequantize",
    "bits_per_dim",
    "ode_likelihood",
]

# diffrax's explicit adaptive Runge-Kutta solvers by name.
ADAPTIVE_METHODS = {
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
    "bosh3": diffrax.Bosh3,
}
TRACE_ESTIMATORS = ("rademacher", "gaussian", "exact")


def _sigma_tilde(schedule: Schedule, tau) -> jnp.ndarray:
    """sigma / alpha = exp(-log-SNR / 2) at the real timestep tau."""
    return jnp.exp(-0.5 * continuous_log_snr(schedule, tau))


def _alpha_at_level(process, sigma_tilde) -> jnp.ndarray:
    """The process's alpha at the level sigma~ = sigma / alpha."""
    return process.alpha_sigma(tau_from_log_snr(process, -2.0 * jnp.log(sigma_tilde)))[0]


def probability_flow(
    model_fn: Callable, schedule: Schedule, *, prediction: str = "eps", clip_denoised: bool = False
) -> Callable:
    """The velocity of the probability-flow ODE in the scaled variables (Song, Meng & Ermon
    2021, eq. 14; Song et al. 2021, eq. 13 with the score -eps / sigma):

    .. math:: \\frac{dy}{d\\tilde\\sigma} = \\hat\\epsilon(\\alpha y, \\tau),
        \\quad y = x / \\alpha,\\ \\tilde\\sigma = \\sigma / \\alpha

    Args:
      model_fn: ``model_fn(x, t)`` (``t`` a float ``[B]``, see :func:`model_time`).
      schedule: the schedule the model was trained with.
      prediction: ``eps``, ``x0`` or ``v``.
      clip_denoised: clip the model's x_0 estimate to [-1, 1] (and recompute eps from it).

    Returns:
      ``vector_field(sigma_tilde, y) -> dy/dsigma_tilde``: ``sigma_tilde`` a scalar, ``y``
      ``[B, ...]``.
    """

    def vector_field(sigma_tilde, y):
        log_snr = -2.0 * jnp.log(sigma_tilde)
        alpha, _ = alpha_sigma(log_snr)
        eps, _ = model_eps_x0(
            model_fn,
            schedule,
            alpha * y,
            tau_from_log_snr(schedule, log_snr),
            prediction=prediction,
            clip_denoised=clip_denoised,
        )
        return eps

    return vector_field


def heun_step(vector_field: Callable, y, t, t_next):
    """One step of Heun's method, the explicit trapezoidal rule (Hairer, Nørsett & Wanner 1993,
    Sec. II.1; the deterministic sampler of Karras et al. 2022, Alg. 1, lines 4-8):

    .. math:: d = f(t, y),\\ \\tilde y = y + (t' - t) d,\\
        y' = y + \\frac{t' - t}{2} \\big(d + f(t', \\tilde y)\\big)

    Args:
      vector_field: ``f(t, y) -> dy/dt``, for any pytree ``y``.
      y: the state at ``t``.
      t, t_next: scalar times.

    Returns:
      The state at ``t_next`` (two evaluations of ``f``).
    """
    dt = t_next - t
    d = vector_field(t, y)
    y_euler = jax.tree.map(lambda a, b: a + dt * b, y, d)
    d_next = vector_field(t_next, y_euler)
    return jax.tree.map(lambda a, b, c: a + 0.5 * dt * (b + c), y, d, d_next)


def _resolve_method(method, num_steps):
    """``None`` for fixed-step Heun, else the diffrax solver (a name or an explicit Runge-Kutta
    solver). Heun without ``num_steps`` is adaptive: diffrax's Heun, whose embedded Euler step
    estimates the error for the step-size controller."""
    if isinstance(method, diffrax.AbstractERK):
        return method
    _checks.one_of("method", method, ("heun",) + tuple(ADAPTIVE_METHODS))
    if method == "heun":
        return None if num_steps is not None else diffrax.Heun()
    return ADAPTIVE_METHODS[method]()


def _diffrax_nfe(solver, stats) -> jnp.ndarray:
    """Vector-field evaluations of an explicit Runge-Kutta solve: every attempted step takes
    ``stages`` of them, one fewer for a first-same-as-last tableau, which evaluates once more
    at the start (diffrax's initial step size here costs none)."""
    stages = len(solver.tableau.c) + 1
    fsal = int(solver.tableau.fsal)
    return (stages - fsal) * stats["num_steps"] + fsal


def _adaptive_solve(vector_field, y0, t0, t1, solver, rtol, atol, max_steps, save_ts=None):
    """Solves dy/dt = f(t, y) from t0 to t1 (noise levels sigma~ > 0) with ``solver`` and a PID
    step-size controller, in the time log(sigma~): dy/dlog(t) = t f(t, y). There the Gaussian
    flow bends on one scale instead of over four decades of sigma~, and the solver takes about
    a third of the steps for the same error.

    Returns:
      ``(y1, ys at save_ts or None, nfe)``.
    """

    def log_time_field(log_t, y, args):
        t = jnp.exp(log_t)
        return jax.tree.map(lambda d: t * d, vector_field(t, y))

    saveat = diffrax.SaveAt(t1=True) if save_ts is None else diffrax.SaveAt(ts=jnp.log(save_ts))
    controller = diffrax.PIDController(rtol=rtol, atol=atol, norm=_worst_example_rms)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(log_time_field),
        solver,
        t0=jnp.log(t0),
        t1=jnp.log(t1),
        dt0=None,
        y0=y0,
        saveat=saveat,
        stepsize_controller=controller,
        max_steps=max_steps,
    )
    ys = jax.tree.map(lambda a: a[-1], sol.ys)
    return ys, (None if save_ts is None else sol.ys), _diffrax_nfe(solver, sol.stats)


def _worst_example_rms(tree) -> jnp.ndarray:
    """The step-size controller's error norm: the RMS over each example's entries (every leaf
    of ``tree`` is ``[B, ...]``) of the worst example, so that every example meets the
    tolerances."""
    leaves = jax.tree.leaves(tree)
    squares = sum(jnp.sum(jnp.reshape(a, (a.shape[0], -1)) ** 2, axis=1) for a in leaves)
    count = sum(math.prod(a.shape[1:]) for a in leaves)
    return jnp.sqrt(jnp.max(squares) / count)


def _ode_levels(num_steps, process, grid, solver, rtol, atol) -> jnp.ndarray:
    """Checks the solver options and returns the taus of the levels: the grid's, or only the
    end points T - 1 and 0 for an adaptive method without ``num_steps``."""
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if not isinstance(tol, jax.core.Tracer) and not float(tol) > 0:
            raise ValueError(f"{name} must be positive, got {tol}")
    if num_steps is None:
        return jnp.asarray([process.t_noise, process.t_data], dtype=jnp.result_type(float))
    return grid_times(process, num_steps, grid)


def ode_sample(
    model_fn: Callable,
    schedule: Schedule,
    x_T: jnp.ndarray,
    rng=None,
    *,
    method="heun",
    num_steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    prediction: str = "eps",
    grid: Grid = uniform_logsnr_grid,
    clip_denoised: bool = False,
    denoise_last: bool = False,
    max_steps: int = 4096,
    mask=None,
    known=None,
    return_info: bool = False,
    trajectory_every: int = 1,
):
    """Samples by solving the probability-flow ODE (Song et al. 2021, eq. 13) from tau = T - 1
    to tau = 0 (abar_0 = 1 - beta_0), in the form of :func:`probability_flow`.

    ``method="heun"`` takes ``num_steps`` steps of :func:`heun_step` between the levels of
    ``grid`` (Karras et al. 2022, Alg. 1; 2 model calls per step), one ``lax.scan``; without
    ``num_steps`` it adapts its steps to ``rtol``/``atol`` like the other methods. An adaptive
    method (``"tsit5"``, Tsitouras 2011; ``"dopri5"``, Dormand & Prince 1980; ``"dopri8"``;
    ``"bosh3"``; or a ``diffrax.AbstractERK`` instance) solves each example to the tolerances
    ``rtol``/``atol`` with a PID step-size controller, one ``diffeqsolve`` for the batch (the
    model sees the whole batch at every call; the error norm is that of the worst example).

    Args:
      model_fn: ``model_fn(x_t, t) -> output`` with ``t`` a float ``[B]`` (see
        :func:`model_time`).
      schedule: the training schedule (T >= 2 steps).
      x_T: ``[B, ...]`` starting noise, x at tau = T - 1.
      rng: the key of inpainting's forward noise (the solvers themselves are deterministic).
      method: ``"heun"``, a name in :data:`ADAPTIVE_METHODS`, or a diffrax explicit RK solver.
      num_steps: Heun's number of fixed steps, in [1, T] (None: adaptive Heun); for an
        adaptive method optional: the trajectory is then saved at that grid's levels.
      rtol, atol: the adaptive solver's relative and absolute tolerances (on y = x / alpha).
      prediction: ``eps``, ``x0`` or ``v``.
      grid: the levels (see :func:`uniform_logsnr_grid`).
      clip_denoised: clip the x_0 estimate to [-1, 1] at every model call.
      denoise_last: one more model call that returns its x_0 estimate at the end (abar = 1).
      max_steps: the adaptive solver's step budget (it raises beyond it).
      mask, known: inpainting with fixed Heun steps, as in :func:`~jaxdiff.samplers.ddpm_sample`:
        after every step the known pixels are a sample of the process at the step's level,
        and ``known`` at the end (needs rng).
      return_info: return a :class:`SamplerOutput` (samples, trajectory, nfe).
      trajectory_every: with ``return_info``, the state after every k-th step or grid level.

    Returns:
      ``[B, ...]`` samples, or a :class:`SamplerOutput` whose ``nfe`` is ``2 num_steps`` for
      Heun and an int scalar array for an adaptive method (plus 1 with ``denoise_last``).

    Raises:
      ValueError: for an unknown method, ``num_steps`` outside
        [1, T], non-positive tolerances, an unknown prediction type or a bad grid.
    """
    _checks.batched("x_T", x_T)
    _checks.one_of("prediction", prediction, PATH_PREDICTIONS)
    solver = _resolve_method(method, num_steps)
    taus = _ode_levels(num_steps, schedule, grid, solver, rtol, atol)
    keep = trajectory_every if return_info and num_steps is not None else 0
    x, trajectory, nfe = _ode_chain(
        model_fn,
        schedule,
        x_T,
        rng,
        taus,
        jnp.asarray(rtol, x_T.dtype),
        jnp.asarray(atol, x_T.dtype),
        fixed_step_inpaint(mask, known, x_T, solver),
        solver=solver,
        prediction=prediction,
        clip_denoised=clip_denoised,
        denoise_last=denoise_last,
        max_steps=max_steps,
        trajectory_every=keep,
    )
    return finish(x, trajectory, nfe, return_info=return_info)


@compiled(static_argnames=("solver",
        "prediction",
        "clip_denoised",
        "denoise_last",
        "max_steps",
        "trajectory_every"))
def _ode_chain(
    model_fn,
    schedule,
    x_T,
    rng,
    taus,
    rtol,
    atol,
    inpaint,
    *,
    solver,
    prediction,
    clip_denoised,
    denoise_last,
    max_steps,
    trajectory_every,
):
    field = probability_flow(model_fn, schedule, prediction=prediction, clip_denoised=clip_denoised)
    levels = _sigma_tilde(schedule, taus)
    alphas, _ = schedule.alpha_sigma(taus)
    y_T = x_T / alphas[0]
    if solver is None:

        def step(carry, sigma_next, key):
            y, sigma = carry
            return heun_step(field, y, sigma, sigma_next), sigma_next

        def arrives_at(level):  # alpha and sigma of the process at sigma / alpha = level
            alpha = _alpha_at_level(schedule, level)
            return alpha, alpha * level

        (y, _), trajectory = drive(
            step,
            (y_T, levels[0]),
            levels[1:],
            rng=rng,
            inpaint=inpaint,
            arrives_at=arrives_at,
            get_x=lambda c: c[0] * _alpha_at_level(schedule, c[1]),
            set_x=lambda c, x: (x / _alpha_at_level(schedule, c[1]), c[1]),
            trajectory_every=trajectory_every,
        )
        nfe = 2 * (taus.shape[0] - 1)
    else:
        saved = saved_steps(taus.shape[0] - 1, trajectory_every)
        save_ts = None if saved is None else levels[saved]

        y, ys, nfe = _adaptive_solve(
            field, y_T, levels[0], levels[-1], solver, rtol, atol, max_steps, save_ts
        )
        trajectory = None
        if ys is not None:  # [N, B, ...], scaled back to x
            trajectory = ys * alphas[saved].reshape((-1,) + (1,) * (ys.ndim - 1))
    x = alphas[-1] * y
    if denoise_last:
        _, x = model_eps_x0(
            model_fn, schedule, x, taus[-1], prediction=prediction, clip_denoised=clip_denoised
        )
        nfe = nfe + 1
    x, trajectory = with_known(x, trajectory, inpaint)
    return x, trajectory, nfe


def uniform_dequantize(x0: jnp.ndarray, rng) -> jnp.ndarray:
    """Uniform dequantisation of 8-bit data in [-1, 1] (Theis, van den Oord & Bethge 2016;
    Song et al. 2021, App. D.2): each value v_k = 2 k / 255 - 1 becomes v_k + (u - 1/2) 2 / 256,
    u ~ U[0, 1), a point of the bin of width 2 / 256 centred on it.

    The bins are disjoint (their centres are 2 / 255 apart), so E_u[-log p(x)] - log(2 / 256)
    per dimension bounds -log P(k) from above (Jensen). Centring them on the values matters
    for a density that has learned the 8-bit grid: the left-aligned bins of Song et al.,
    (k + u) 2 / 256 - 1, put v_0 = -1 at the edge of its bin, so a density peaked at the
    values (as VDM's is at gamma_0 = -13.3) is charged for the empty half of it.

    Args:
      x0: ``[B, ...]`` 8-bit data mapped to [-1, 1] (x0 = 2 k / 255 - 1).
      rng: key of the uniform noise.

    Returns:
      ``[B, ...]`` continuous points within 1 / 256 of x0's values.
    """
    values = jnp.round((x0 + 1.0) * 127.5) / 127.5 - 1.0
    u = jax.random.uniform(rng, x0.shape, x0.dtype)
    return values + (u - 0.5) * (2.0 / 256.0)


def bits_per_dim(logp: jnp.ndarray, num_dims: int) -> jnp.ndarray:
    """Bits per dimension of 8-bit data from the log density of its [-1, 1] image (Song et al.
    2021, App. D.2, their offset of 7 bits for centred data; as Ho et al. 2020 report NLLs):

    .. math:: \\mathrm{bpd} = -\\frac{\\log p(x) + D \\log(2 / 256)}{D \\log 2}
        = -\\frac{\\log p(x)}{D \\log 2} + 7,

    since the map from [0, 256) to [-1, 1) scales every dimension by 2 / 256. Evaluated at
    dequantised points, its expectation bounds the discrete data's bits/dim from above.

    Args:
      logp: ``[B]`` log densities in nats.
      num_dims: D, the dimensions per example.

    Returns:
      ``[B]`` bits/dim.
    """
    return -(logp + num_dims * math.log(2.0 / 256.0)) / (num_dims * math.log(2.0))


def _divergence_probes(rng, trace: str, num_probes: int, shape, dtype) -> tuple:
    """Probe vectors v with E[v v^T] = I (Hutchinson 1989; Rademacher or Gaussian entries) and
    their weights, or the basis vectors with weight 1 for the exact trace.

    Returns:
      ``(probes [K, B, ...], weight)`` with ``tr J ~= weight * sum_k v_k^T J v_k``.
    """
    event = shape[1:]
    if trace == "exact":
        dims = math.prod(event)
        basis = jnp.eye(dims, dtype=dtype).reshape((dims, 1) + event)
        return jnp.broadcast_to(basis, (dims,) + shape), 1.0
    probe_shape = (num_probes,) + shape
    if trace == "gaussian":
        return jax.random.normal(rng, probe_shape, dtype), 1.0 / num_probes
    return jax.random.rademacher(rng, probe_shape, dtype), 1.0 / num_probes


def _with_divergence(vector_field, probes, weight):
    """The field augmented with the estimated divergence of ``vector_field`` per example:
    ``(t, (y, delta)) -> (f(t, y), weight * sum_k v_k^T (df/dy) v_k)`` (Chen et al. 2018,
    Thm. 1; Grathwohl et al. 2019, FFJORD: the probes stay fixed along the solve). The
    model treats the examples independently, so one Jacobian-vector product of the batch gives
    every example's v^T J v."""

    def augmented(t, state):
        y, _ = state
        f_y, jvp = jax.linearize(lambda z: vector_field(t, z), y)
        axes = tuple(range(1, y.ndim))
        quad = jax.vmap(lambda v: jnp.sum(v * jvp(v), axis=axes))(probes)  # [K, B]
        return f_y, weight * jnp.sum(quad, axis=0)

    return augmented


def ode_likelihood(
    model_fn: Callable,
    schedule: Schedule,
    x0: jnp.ndarray,
    rng,
    *,
    num_probes: int = 1,
    dequantize: bool = True,
    trace: str = "rademacher",
    method="tsit5",
    num_steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    prediction: str = "eps",
    grid: Grid = uniform_logsnr_grid,
    max_steps: int = 4096,
) -> dict:
    """The exact log-likelihood of the probability-flow ODE's model (Song et al. 2021,
    Sec. 4.3 and App. D.2), by the instantaneous change of variables (Chen et al. 2018, Thm. 1):

    .. math:: \\log p_0(x_0) = \\log p_T(x_T)
        + \\int_{\\tilde\\sigma_0}^{\\tilde\\sigma_T} \\nabla_y \\cdot \\hat\\epsilon(\\alpha y,
          \\tau)\\, d\\tilde\\sigma + D \\log\\frac{\\alpha_T}{\\alpha_0}

    for the ODE of :func:`probability_flow` solved from the data at tau = 0 (abar_0 =
    1 - beta_0) to tau = T - 1, where the prior p_T = N(0, I) is assumed; the last term converts
    densities of y = x / alpha back to x. The divergence is Hutchinson's estimate
    E[v^T J v] (Hutchinson 1989; Grathwohl et al. 2019) with ``num_probes`` probes per example,
    fixed along the solve, or the exact trace from D Jacobian-vector products (small D only).

    Args:
      model_fn: ``model_fn(x_t, t) -> output`` with ``t`` a float ``[B]``.
      schedule: the training schedule (T >= 2).
      x0: ``[B, ...]`` data in [-1, 1]; with ``dequantize``, 8-bit values (2 k / 255 - 1).
      rng: key of the dequantisation noise and the probes.
      num_probes: probes per example (ignored by ``trace="exact"``).
      dequantize: evaluate the density at :func:`uniform_dequantize` (x0) instead of x0.
      trace: ``"rademacher"``, ``"gaussian"`` (Hutchinson probes) or ``"exact"``.
      method: an adaptive method (see :func:`ode_sample`) or ``"heun"`` with ``num_steps``.
      num_steps, rtol, atol, prediction, grid, max_steps: as in :func:`ode_sample`.

    Returns:
      A dict of ``[B]`` arrays: ``logp`` (nats, the density of the [-1, 1] data at ``x``),
      ``bpd`` (:func:`bits_per_dim` of ``logp``: bits/dim of 8-bit data), ``prior_logp``
      (log N(x_T; 0, I)), ``delta_logp`` (logp - prior_logp); ``nfe``, a scalar: the
      augmented-field evaluations, each one model call and its linearisation; and ``x``
      ``[B, ...]``, the point evaluated (dequantised x0), and ``z`` ``[B, ...]``, its latent.

    Raises:
      ValueError: for a bad trace estimator, ``num_probes`` < 1, data to dequantise outside
        [-1, 1] (when concrete) and the errors of :func:`ode_sample`.
    """
    _checks.batched("x0", x0)
    _checks.one_of("prediction", prediction, PATH_PREDICTIONS)
    _checks.one_of("trace", trace, TRACE_ESTIMATORS)
    _checks.positive_int("num_probes", num_probes)
    if dequantize and not isinstance(x0, jax.core.Tracer) and (np.min(x0) < -1 or np.max(x0) > 1):
        raise ValueError(
            f"x0 must be data in [-1, 1], got values in [{np.min(x0):.3g}, {np.max(x0):.3g}]"
        )
    solver = _resolve_method(method, num_steps)
    taus = _ode_levels(num_steps, schedule, grid, solver, rtol, atol)
    x0 = jnp.asarray(x0)
    return _likelihood(
        model_fn,
        schedule,
        x0,
        rng,
        taus[::-1],
        jnp.asarray(rtol, x0.dtype),
        jnp.asarray(atol, x0.dtype),
        num_probes=num_probes,
        dequantize=dequantize,
        trace=trace,
        solver=solver,
        prediction=prediction,
        max_steps=max_steps,
    )


@compiled(static_argnames=("num_probes",
        "dequantize",
        "trace",
        "solver",
        "prediction",
        "max_steps"))
def _likelihood(
    model_fn,
    schedule,
    x0,
    rng,
    taus,
    rtol,
    atol,
    *,
    num_probes,
    dequantize,
    trace,
    solver,
    prediction,
    max_steps,
):
    key_deq, key_probe = jax.random.split(rng)
    x = uniform_dequantize(x0, key_deq) if dequantize else x0
    probes, weight = _divergence_probes(key_probe, trace, num_probes, x.shape, x.dtype)
    field = probability_flow(model_fn, schedule, prediction=prediction)
    augmented = _with_divergence(field, probes, weight)
    levels = _sigma_tilde(schedule, taus)  # increasing: data -> noise
    alphas, sigmas = schedule.alpha_sigma(taus)
    state = (x / alphas[0], jnp.zeros(x.shape[:1], x.dtype))
    if solver is None:
        step = lambda carry, pair: heun_step(augmented, carry, pair[0], pair[1])  # noqa: E731
        (y_T, divergence), _ = run_chain(
            step, state, (levels[:-1], levels[1:]), state=lambda c: c[0]
        )
        nfe = 2 * (taus.shape[0] - 1)
    else:
        (y_T, divergence), _, nfe = _adaptive_solve(
            augmented, state, levels[0], levels[-1], solver, rtol, atol, max_steps
        )
    z = alphas[-1] * y_T
    dims = math.prod(x.shape[1:])
    delta_logp = divergence + dims * (jnp.log(alphas[-1]) - jnp.log(alphas[0]))
    # p_T = N(0, (alpha_T^2 + sigma_T^2) I): N(0, I) for a variance-preserving process.
    return likelihood_result(x, z, alphas[-1] ** 2 + sigmas[-1] ** 2, delta_logp, nfe)


def likelihood_result(x, z, prior_var, delta_logp, nfe) -> dict:
    """The change of variables' answer (Chen et al. 2018, Thm. 1): log p(x) = log N(z; 0,
    prior_var I) + delta_logp, with its parts, as :func:`ode_likelihood` returns them.

    Args:
      x: ``[B, ...]`` the point evaluated; z: ``[B, ...]`` its latent.
      prior_var: scalar variance of the Gaussian prior.
      delta_logp: ``[B]`` log p(x) - log p(z) along the flow.
      nfe: the number of field evaluations.
    """
    dims = math.prod(x.shape[1:])
    sq = jnp.sum(z**2, axis=tuple(range(1, x.ndim)))
    prior_logp = -0.5 * sq / prior_var - 0.5 * dims * jnp.log(2.0 * math.pi * prior_var)
    logp = prior_logp + delta_logp
    return dict(
        logp=logp,
        bpd=bits_per_dim(logp, dims),
        prior_logp=prior_logp,
        delta_logp=delta_logp,
        nfe=nfe,
        x=x,
        z=z,
    )
