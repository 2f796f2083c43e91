"""The probability-flow ODE, written once for every Gaussian process, its solvers (Euler, Heun,
diffrax's adaptive Runge-Kutta methods) and its likelihood.

For x_t = alpha(t) x_0 + sigma(t) eps the probability-flow ODE (Song et al. 2021, eq. 13, with
the score -eps / sigma) is

.. math:: \\frac{dx}{dt} = \\alpha'(t)\\, \\hat x_0(x, t) + \\sigma'(t)\\, \\hat\\epsilon(x, t),

the path's velocity at the denoiser's estimates (:func:`probability_flow`). On EDM's process
(alpha = 1, sigma = t) it is Karras et al.'s eq. 4, (x - D) / sigma; on the linear path it is the
flow-matching velocity. :func:`ode_sample` solves it in the scaled coordinates y = x / alpha,
sigma~ = sigma / alpha of any process (where every process has EDM's form, the exact Gaussian
flow is smooth, and an Euler step is a DDIM step); ``edm_sample`` and ``flow_sample`` solve it on
their own processes. :func:`change_of_variables` is the one likelihood.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import _checks
from jaxdiff.processes import EDM
from jaxdiff.samplers._common import compiled, drive, finish, run_chain, saved_steps, with_known
from jaxdiff.samplers._grids import Grid, grid_times, uniform_logsnr_grid
from jaxdiff.samplers._denoise import PREDICTIONS, coefficients, model_denoiser, scaled_denoiser
from jaxdiff.samplers._inpaint import fixed_step_inpaint

__all__ = [
    "ADAPTIVE_METHODS",
    "TRACE_ESTIMATORS",
    "euler_step",
    "heun_step",
    "probability_flow",
    "solve",
    "ode_sample",
    "uniform_dequantize",
    "bits_per_dim",
    "change_of_variables",
    "ode_likelihood",
]

# diffrax's explicit adaptive Runge-Kutta solvers by name.
ADAPTIVE_METHODS = {
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
    "bosh3": diffrax.Bosh3,
}
TRACE_ESTIMATORS = ("hutchinson", "rademacher", "gaussian", "exact")

# The scaled coordinates of every process: alpha = 1, sigma = t (only alpha_sigma is used).
SCALED = EDM()


# --- one-step methods ---------------------------------------------------------------------------


def euler_step(vector_field: Callable, y, t, t_next):
    """One step of Euler's method, y' = y + (t' - t) f(t, y), for any pytree ``y`` (the sampler
    of rectified flow, Liu et al. 2023, Sec. 2.1; DDIM in the scaled coordinates, Song, Meng &
    Ermon 2021, eq. 14; one evaluation of ``f``)."""
    d = vector_field(t, y)
    return jax.tree.map(lambda a, b: a + (t_next - t) * b, y, d)


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


FIXED_STEPS = {"euler": euler_step, "heun": heun_step}


def resolve_method(method, num_steps, rtol=1.0, atol=1.0):
    """``"euler"`` or ``"heun"`` for fixed steps (with ``num_steps``), else the diffrax solver:
    a name of :data:`ADAPTIVE_METHODS`, an explicit Runge-Kutta instance, or ``"heun"`` without
    ``num_steps`` (diffrax's Heun, whose embedded Euler step estimates the error).

    Raises:
      ValueError: for an unknown method, Euler without ``num_steps``, a bad ``num_steps`` or
        non-positive tolerances.
    """
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if not isinstance(tol, jax.core.Tracer) and not float(tol) > 0:
            raise ValueError(f"{name} must be positive, got {tol}")
    if num_steps is not None:
        _checks.positive_int("num_steps", num_steps)
    if isinstance(method, diffrax.AbstractERK):
        return method
    _checks.one_of("method", method, tuple(FIXED_STEPS) + tuple(ADAPTIVE_METHODS))
    if method in FIXED_STEPS:
        if num_steps is not None:
            return method
        if method == "euler":
            raise ValueError("method='euler' needs num_steps (it has no adaptive form here)")
        return diffrax.Heun()
    return ADAPTIVE_METHODS[method]()


# --- the ODE ------------------------------------------------------------------------------------


def probability_flow(denoise: Callable, process) -> Callable:
    """The probability-flow ODE of ``process`` (Song et al. 2021, eq. 13) in its own time:

    .. math:: \\frac{dx}{dt} = \\alpha'(t)\\, \\hat x_0 + \\sigma'(t)\\, \\hat\\epsilon
        = \\frac{\\alpha'}{\\alpha} x - \\Big(\\sigma \\sigma' - \\frac{\\alpha'}{\\alpha}
          \\sigma^2\\Big) \\nabla_x \\log p_t(x)

    with the score -eps / sigma, alpha' and sigma' by ``jax.jvp`` of ``alpha_sigma``.

    Args:
      denoise: ``denoise(x, t) -> (eps, x0)`` (see :func:`~jaxdiff.samplers._denoise.
        model_denoiser`).
      process: any Gaussian process.

    Returns:
      ``field(t, x) -> dx/dt``, t a scalar, x ``[B, ...]``.
    """

    def field(t, x):
        eps, x0 = denoise(x, t)
        _, _, dalpha, dsigma = coefficients(process, t, x)
        return (dalpha * x0 + dsigma * eps).astype(x.dtype)

    return field


def _in_log_time(field: Callable) -> Callable:
    """``field`` in the time s = log t: dy/ds = t f(t, y) (t > 0). The Gaussian flow bends on
    one scale there instead of over four decades of sigma~, and an adaptive solver takes about
    a third of the steps for the same error."""

    def log_field(s, y):
        t = jnp.exp(s)
        return jax.tree.map(lambda d: t * d, field(t, y))

    return log_field


def _worst_example_rms(tree) -> jnp.ndarray:
    """The step-size controller's error norm: the RMS over each example's entries (every leaf
    of ``tree`` is ``[B, ...]``) of the worst example, so that every example meets the
    tolerances."""
    leaves = jax.tree.leaves(tree)
    squares = sum(jnp.sum(jnp.reshape(a, (a.shape[0], -1)) ** 2, axis=1) for a in leaves)
    count = sum(math.prod(a.shape[1:]) for a in leaves)
    return jnp.sqrt(jnp.max(squares) / count)


def _diffrax_nfe(solver, stats) -> jnp.ndarray:
    """Vector-field evaluations of an explicit Runge-Kutta solve: every attempted step takes
    ``stages`` of them, one fewer for a first-same-as-last tableau, which evaluates once more
    at the start (diffrax's initial step size here costs none)."""
    stages = len(solver.tableau.c) + 1
    fsal = int(solver.tableau.fsal)
    return (stages - fsal) * stats["num_steps"] + fsal


def solve(field, y0, t0, t1, method, *, times=None, rtol=None, atol=None, max_steps=4096,
          save_ts=None, log_time=False):
    """dy/dt = field(t, y) from t0 to t1, the one solver of the samplers and the likelihood.

    A fixed method (``"euler"``, ``"heun"``) steps between ``times`` as one ``lax.scan``; a
    diffrax solver adapts its steps to ``rtol``/``atol`` with a PID controller on the worst
    example's RMS error (one ``diffeqsolve`` for the batch). With ``log_time`` (t > 0) both
    work in the time log t (:func:`_in_log_time`; fixed steps then lie at log ``times``).

    Returns:
      ``(y1, ys at save_ts or None, nfe)``.
    """
    if log_time:
        field, t0, t1 = _in_log_time(field), jnp.log(t0), jnp.log(t1)
        times = None if times is None else jnp.log(times)
        save_ts = None if save_ts is None else jnp.log(save_ts)
    if isinstance(method, str):
        step = FIXED_STEPS[method]
        y1, _ = run_chain(lambda y, pair: step(field, y, *pair), y0, (times[:-1], times[1:]),
                          state=lambda y: y)
        return y1, None, (times.shape[0] - 1) * (1 if method == "euler" else 2)
    saveat = diffrax.SaveAt(t1=True) if save_ts is None else diffrax.SaveAt(ts=save_ts)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, args: field(t, y)),
        method,
        t0=t0,
        t1=t1,
        dt0=None,
        y0=y0,
        saveat=saveat,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol, norm=_worst_example_rms),
        max_steps=max_steps,
    )
    last = jax.tree.map(lambda a: a[-1], sol.ys)
    return last, (None if save_ts is None else sol.ys), _diffrax_nfe(method, sol.stats)


@compiled(static_argnames=("method", "log_time", "max_steps", "trajectory_every"))
def flow_chain(denoise, process, x, rng, times, rtol, atol, inpaint, *, method, log_time,
               max_steps, trajectory_every):
    """Samples along :func:`probability_flow` of ``process`` from ``times[0]`` to ``times[-1]``:
    fixed steps on the driver (keys, inpainting at each step's level, trajectory), or an
    adaptive solve saving the trajectory at ``times``.

    Returns:
      ``(x, trajectory, nfe)``.
    """
    field = probability_flow(denoise, process)
    if isinstance(method, str):
        step = FIXED_STEPS[method]
        x, trajectory = drive(
            lambda x, pair, key: step(field, x, *pair), x, (times[:-1], times[1:]), rng=rng,
            inpaint=inpaint, arrives_at=lambda pair: process.alpha_sigma(pair[1]),
            trajectory_every=trajectory_every,
        )
        nfe = (times.shape[0] - 1) * (1 if method == "euler" else 2)
    else:
        saved = saved_steps(times.shape[0] - 1, trajectory_every)
        x, trajectory, nfe = solve(
            field, x, times[0], times[-1], method, rtol=rtol, atol=atol, max_steps=max_steps,
            save_ts=None if saved is None else times[saved], log_time=log_time,
        )
    x, trajectory = with_known(x, trajectory, inpaint)
    return x, trajectory, nfe


# --- sampling a model of any process ------------------------------------------------------------


def _ode_times(process, num_steps, grid, solver):
    """The levels: the grid's, or only the ends for an adaptive method without ``num_steps``."""
    if num_steps is None:
        return jnp.asarray([process.t_noise, process.t_data], dtype=jnp.result_type(float))
    return grid_times(process, num_steps, grid)


def ode_sample(
    model_fn: Callable,
    schedule,
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
    """Samples by solving the probability-flow ODE (Song et al. 2021, eq. 13) of ``schedule`` (any
    Gaussian process) from ``t_noise`` to ``t_data``, in the scaled coordinates y = x / alpha
    against sigma~ = sigma / alpha (see :func:`~jaxdiff.samplers._denoise.scaled_denoiser`),
    where :func:`probability_flow` is dy/dsigma~ = eps_hat.

    ``method="heun"`` (Karras et al. 2022, Alg. 1; 2 model calls per step) or ``"euler"`` (DDIM)
    take ``num_steps`` steps between the levels of ``grid`` as one ``lax.scan``; ``"heun"``
    without ``num_steps`` adapts its steps to ``rtol``/``atol``, as an adaptive method does
    (``"tsit5"``, Tsitouras 2011; ``"dopri5"``, Dormand & Prince 1980; ``"dopri8"``; ``"bosh3"``;
    or a ``diffrax.AbstractERK``), in the time log sigma~, with the error norm of the batch's
    worst example.

    Args:
      model_fn: ``model_fn(x_t, t) -> output``, called with ``t = process.model_time(tau)``,
        a float ``[B]``.
      schedule: the process the model was trained on (a discrete ``Schedule``, T >= 2, or any
        GaussianProcess).
      x_T: ``[B, ...]`` starting noise, x at ``t_noise``.
      rng: the key of inpainting's forward noise (the solvers themselves are deterministic).
      method: ``"heun"``, ``"euler"``, a name in :data:`ADAPTIVE_METHODS`, or a diffrax solver.
      num_steps: the number of fixed steps (None: adaptive Heun); for an adaptive method
        optional: the trajectory is then saved at that grid's levels.
      rtol, atol: the adaptive solver's tolerances (on y = x / alpha).
      prediction: eps | x0 | v | velocity | score.
      grid: the levels (see :func:`uniform_logsnr_grid`).
      clip_denoised: clip the x_0 estimate to [-1, 1] at every model call.
      denoise_last: one more model call that returns its x_0 estimate at the end.
      max_steps: the adaptive solver's step budget (it raises beyond it).
      mask, known: inpainting with fixed steps, as in :func:`~jaxdiff.samplers.ddpm_sample`.
      return_info: return a :class:`~jaxdiff.samplers.SamplerOutput`.
      trajectory_every: with ``return_info``, the state x after every k-th step or grid level.

    Returns:
      ``[B, ...]`` samples, or a :class:`SamplerOutput` whose ``nfe`` is ``2 num_steps`` for
      Heun and an int scalar array for an adaptive method (plus 1 with ``denoise_last``).

    Raises:
      ValueError: for an unknown method, a bad ``num_steps``, non-positive tolerances, an
        unknown prediction type or a bad grid.
    """
    _checks.batched("x_T", x_T)
    _checks.one_of("prediction", prediction, PREDICTIONS)
    solver = resolve_method(method, num_steps, rtol, atol)
    times = _ode_times(schedule, num_steps, grid, solver)
    denoise = model_denoiser(model_fn, schedule, prediction=prediction,
                             clip_denoised=clip_denoised)
    x, trajectory, nfe = _scaled_chain(
        denoise, schedule, x_T, rng, times, jnp.asarray(rtol, x_T.dtype),
        jnp.asarray(atol, x_T.dtype), fixed_step_inpaint(mask, known, x_T, solver),
        solver=solver, denoise_last=denoise_last, max_steps=max_steps,
        trajectory_every=trajectory_every if return_info and num_steps is not None else 0,
    )
    return finish(x, trajectory, nfe, return_info=return_info)


def _levels(process, times):
    """sigma~ = sigma / alpha = exp(-lambda / 2) at the process's times."""
    return jnp.exp(-0.5 * process.log_snr_at(times))


@compiled(static_argnames=("solver", "denoise_last", "max_steps", "trajectory_every"))
def _scaled_chain(denoise, process, x_T, rng, times, rtol, atol, inpaint, *, solver,
                  denoise_last, max_steps, trajectory_every):
    alphas = process.alpha_sigma(times)[0].astype(x_T.dtype)
    y, trajectory, nfe = flow_chain(
        scaled_denoiser(denoise, process), SCALED, x_T / alphas[0], rng,
        _levels(process, times).astype(x_T.dtype), rtol, atol, inpaint, method=solver,
        log_time=True, max_steps=max_steps, trajectory_every=trajectory_every,
    )
    x = alphas[-1] * y
    if trajectory is not None:  # y at the saved levels, back to x
        scale = alphas[saved_steps(times.shape[0] - 1, trajectory_every)]
        trajectory = trajectory * scale.reshape((-1,) + (1,) * x_T.ndim)
    if denoise_last:
        x = denoise(x, times[-1])[1]
        nfe = nfe + 1
    x, trajectory = with_known(x, trajectory, inpaint)  # known exactly in x, not y = x / alpha
    return x, trajectory, nfe


# --- the likelihood -----------------------------------------------------------------------------


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
    # "hutchinson": Hutchinson's own Rademacher probes (the variance-minimising choice).
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


def change_of_variables(
    denoise: Callable,
    process,
    x0: jnp.ndarray,
    rng,
    *,
    t_data,
    t_prior,
    prior_std=None,
    log_time: bool = False,
    num_probes: int = 1,
    dequantize: bool = True,
    trace: str = "hutchinson",
    method="tsit5",
    num_steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 4096,
) -> dict:
    """log p(x0) of the probability-flow ODE of ``process`` (:func:`probability_flow`) by the
    instantaneous change of variables (Chen et al. 2018, Thm. 1), solved from the data at
    ``t_data`` to the prior N(0, s^2 I) at ``t_prior``:

    .. math:: \\log p(x(t_{data})) = \\log \\mathcal N(x(t_{prior}); 0, s^2 I)
        + \\int_{t_{data}}^{t_{prior}} \\nabla_x \\cdot f(t, x(t))\\, dt

    with Hutchinson's divergence estimate E[v^T J v] (Rademacher or Gaussian probes, fixed
    along the solve; Hutchinson 1989; Grathwohl et al. 2019) or the exact trace (small D only).

    Args:
      denoise: ``denoise(x, t) -> (eps, x0)``.
      process: the process whose flow is solved.
      x0: ``[B, ...]`` data in [-1, 1]; with ``dequantize``, 8-bit values (2 k / 255 - 1).
      rng: key of the dequantisation noise and the probes.
      t_data, t_prior: the ends of the solve (t_prior > t_data > 0 with ``log_time``).
      prior_std: s (default ``process.prior_std``, sqrt(alpha^2 + sigma^2) at ``t_noise``).
      log_time: solve in log t.
      num_probes: probes per example (ignored by ``trace="exact"``).
      dequantize: evaluate the density at :func:`uniform_dequantize` (x0) instead of x0.
      trace: ``"hutchinson"`` (= ``"rademacher"``), ``"gaussian"`` or ``"exact"``.
      method: an adaptive method, or ``"euler"``/``"heun"`` with ``num_steps`` (equal steps
        in t, or in log t with ``log_time``).
      num_steps, rtol, atol, max_steps: as in :func:`ode_sample`.

    Returns:
      A dict of ``[B]`` arrays: ``logp`` (nats, the density of the [-1, 1] data at ``x``),
      ``bpd`` (:func:`bits_per_dim` of ``logp``), ``prior_logp``, ``delta_logp`` (logp -
      prior_logp); ``nfe``, a scalar: the augmented-field evaluations, each one model call and
      its linearisation; ``x`` ``[B, ...]``, the point evaluated, and ``z``, its latent.

    Raises:
      ValueError: for a bad trace estimator or method, ``num_probes`` < 1, or data to
        dequantize outside [-1, 1] (when concrete).
    """
    _checks.batched("x0", x0)
    _checks.one_of("trace", trace, TRACE_ESTIMATORS)
    _checks.positive_int("num_probes", num_probes)
    if dequantize and not isinstance(x0, jax.core.Tracer) and (np.min(x0) < -1 or np.max(x0) > 1):
        raise ValueError(
            f"x0 must be data in [-1, 1], got values in [{np.min(x0):.3g}, {np.max(x0):.3g}]"
        )
    solver = resolve_method(method, num_steps, rtol, atol)
    x0 = jnp.asarray(x0)
    prior_std = process.prior_std if prior_std is None else prior_std
    scalars = (t_data, t_prior, prior_std, rtol, atol)
    return _likelihood(
        denoise, process, x0, rng, *(jnp.asarray(v, x0.dtype) for v in scalars),
        log_time=log_time, num_probes=num_probes, dequantize=dequantize, trace=trace,
        num_steps=num_steps, solver=solver, max_steps=max_steps,
    )


@compiled(static_argnames=("log_time", "num_probes", "dequantize", "trace", "num_steps",
                           "solver", "max_steps"))
def _likelihood(denoise, process, x0, rng, t_data, t_prior, prior_std, rtol, atol, *, log_time,
                num_probes,
                dequantize, trace, num_steps, solver, max_steps):
    key_deq, key_probe = jax.random.split(rng)
    x = uniform_dequantize(x0, key_deq) if dequantize else x0
    probes, weight = _divergence_probes(key_probe, trace, num_probes, x.shape, x.dtype)
    field = _with_divergence(probability_flow(denoise, process), probes, weight)
    times = None
    if num_steps is not None:  # equal steps in t, or in log t with log_time
        ends = (jnp.log(t_data), jnp.log(t_prior)) if log_time else (t_data, t_prior)
        times = jnp.linspace(*ends, num_steps + 1)
        times = jnp.exp(times) if log_time else times
    state = (x, jnp.zeros(x.shape[:1], x.dtype))
    (z, divergence), _, nfe = solve(
        field, state, t_data, t_prior, solver, times=times, rtol=rtol, atol=atol,
        max_steps=max_steps, log_time=log_time,
    )
    return likelihood_result(x, z, prior_std**2, divergence, nfe)


def likelihood_result(x, z, prior_var, delta_logp, nfe) -> dict:
    """The change of variables' answer (Chen et al. 2018, Thm. 1): log p(x) = log N(z; 0,
    prior_var I) + delta_logp, with its parts, as :func:`change_of_variables` returns them."""
    dims = math.prod(x.shape[1:])
    sq = jnp.sum(z**2, axis=tuple(range(1, x.ndim)))
    prior_logp = -0.5 * sq / prior_var - 0.5 * dims * jnp.log(2.0 * math.pi * prior_var)
    logp = prior_logp + delta_logp
    return dict(
        logp=logp, bpd=bits_per_dim(logp, dims), prior_logp=prior_logp, delta_logp=delta_logp,
        nfe=nfe, x=x, z=z,
    )


def ode_likelihood(
    model_fn: Callable,
    schedule,
    x0: jnp.ndarray,
    rng,
    *,
    num_probes: int = 1,
    dequantize: bool = True,
    trace: str = "hutchinson",
    method="tsit5",
    num_steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    prediction: str = "eps",
    max_steps: int = 4096,
) -> dict:
    """The exact log-likelihood of the probability-flow ODE's model of any Gaussian process
    (Song et al. 2021, Sec. 4.3 and App. D.2): :func:`change_of_variables` in the scaled
    coordinates y = x / alpha, sigma~ = sigma / alpha (in the time log sigma~), from the data at
    ``t_data`` to ``t_noise``, where the prior is the process's N(0, prior_std^2 I) (N(0, I)
    for a variance-preserving process), and back to the density of x:

    .. math:: \\log p_x(x) = \\log p_y(x / \\alpha(t_{data})) - D \\log \\alpha(t_{data})

    Args:
      model_fn: ``model_fn(x_t, t) -> output``, called with the process's float model time.
      schedule: the process the model was trained on (a discrete ``Schedule`` or any
        GaussianProcess).
      x0: ``[B, ...]`` data in [-1, 1]; with ``dequantize``, 8-bit values (2 k / 255 - 1).
      rng: key of the dequantisation noise and the probes.
      num_probes: Hutchinson probes per example (ignored by ``trace="exact"``).
      dequantize: evaluate the density at :func:`uniform_dequantize` (x0) instead of x0.
      trace: ``"hutchinson"`` (Rademacher probes; also ``"rademacher"``), ``"gaussian"``
        probes, or ``"exact"`` (D Jacobian-vector products; small D only).
      method: an adaptive method (see :func:`ode_sample`), or ``"heun"``/``"euler"`` with
        ``num_steps`` (equal steps in log sigma~).
      num_steps, rtol, atol, max_steps: as in :func:`ode_sample`.
      prediction: eps | x0 | v | velocity | score.

    Returns:
      The dict of :func:`change_of_variables`: ``logp`` and ``bpd`` of x, ``prior_logp``,
      ``delta_logp``, ``nfe``, ``x`` (the point evaluated) and ``z`` (its latent x at
      ``t_noise``).
    """
    _checks.batched("x0", x0)
    _checks.one_of("prediction", prediction, PREDICTIONS)
    ends = jnp.asarray([schedule.t_data, schedule.t_noise], jnp.result_type(float))
    alphas = schedule.alpha_sigma(ends)[0]
    levels = _levels(schedule, ends)
    denoise = scaled_denoiser(model_denoiser(model_fn, schedule, prediction=prediction), schedule)
    x0 = jnp.asarray(x0)
    if dequantize:  # in x, before the scaling
        if not isinstance(x0, jax.core.Tracer) and (np.min(x0) < -1 or np.max(x0) > 1):
            raise ValueError(
                f"x0 must be data in [-1, 1], got values in [{np.min(x0):.3g}, {np.max(x0):.3g}]"
            )
        x0 = uniform_dequantize(x0, jax.random.split(rng)[0])  # the probes: split(rng)[1]
    out = change_of_variables(
        denoise, SCALED, x0 / alphas[0].astype(x0.dtype), rng, t_data=levels[0],
        t_prior=levels[1], prior_std=schedule.prior_std / alphas[1], log_time=True,
        num_probes=num_probes, dequantize=False, trace=trace, method=method,
        num_steps=num_steps, rtol=rtol, atol=atol, max_steps=max_steps,
    )
    # Back to x: p_x(x) = p_y(x / alpha_0) / alpha_0^D, and the prior of x_T = alpha_T y_T.
    log_alphas = math.prod(x0.shape[1:]) * jnp.log(alphas)
    prior_logp = out["prior_logp"] - log_alphas[1]
    delta_logp = out["delta_logp"] + log_alphas[1] - log_alphas[0]
    logp = prior_logp + delta_logp
    return dict(out, logp=logp, bpd=bits_per_dim(logp, math.prod(x0.shape[1:])),
                prior_logp=prior_logp, delta_logp=delta_logp, x=x0, z=alphas[1] * out["z"])
