"""Sampling and likelihoods of flow matching / rectified flow on the linear path
x_t = (1 - t) x_0 + t eps (Lipman et al. 2023; Liu et al. 2023): noise at t = 1, data at
t = 0, and a learned velocity v(x, t) = dx/dt, an estimate of E[eps - x_0 | x_t].

Samples solve dx/dt = v(x, t) from t = 1 to t = 0 with Euler's method (rectified flow's
sampler), Heun's, or an adaptive Runge-Kutta method (diffrax); the log-likelihood follows by
the instantaneous change of variables along the same ODE, solved from the data to the noise.
"""

from __future__ import annotations

from collections.abc import Callable

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import _checks
from jaxdiff.samplers._common import compiled, drive, finish, run_chain, saved_steps, with_known
from jaxdiff.samplers._inpaint import fixed_step_inpaint
from jaxdiff.samplers._ode import (
    TRACE_ESTIMATORS,
    _diffrax_nfe,
    _divergence_probes,
    _resolve_method,
    _with_divergence,
    _worst_example_rms,
    heun_step,
    likelihood_result,
    uniform_dequantize,
)

__all__ = [
    "flow_field",
    "euler_step",
    "flow_time_grid",
    "flow_sample",
    "flow_likelihood",
    "change_of_variables",
]


def flow_field(velocity_fn: Callable) -> Callable:
    """The flow ODE dx/dt = v(x, t) as ``field(t, x)``: t a scalar, x ``[B, ...]``; the model
    is called with t as a float ``[B]``."""

    def field(t, x):
        return velocity_fn(x, jnp.full(x.shape[:1], t, x.dtype))

    return field


def euler_step(vector_field: Callable, y, t, t_next):
    """One step of Euler's method, y' = y + (t' - t) f(t, y), for any pytree ``y`` (the
    sampler of rectified flow, Liu et al. 2023, Sec. 2.1; one evaluation of ``f``)."""
    d = vector_field(t, y)
    return jax.tree.map(lambda a, b: a + (t_next - t) * b, y, d)


def flow_time_grid(num_steps: int, dtype=jnp.float32) -> jnp.ndarray:
    """``num_steps`` equal steps from t = 1 (noise) to t = 0 (data): ``[num_steps + 1]``."""
    return jnp.linspace(1.0, 0.0, num_steps + 1, dtype=dtype)


def _solve(field, y0, t0, t1, solver, rtol, atol, max_steps, save_ts=None):
    """dy/dt = field(t, y) from t0 to t1 with an adaptive Runge-Kutta ``solver`` and a PID
    controller on the worst example's RMS error. Returns ``(y1, ys at save_ts or None, nfe)``."""
    saveat = diffrax.SaveAt(t1=True) if save_ts is None else diffrax.SaveAt(ts=save_ts)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, args: field(t, y)),
        solver,
        t0=t0,
        t1=t1,
        dt0=None,
        y0=y0,
        saveat=saveat,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol, norm=_worst_example_rms),
        max_steps=max_steps,
    )
    last = jax.tree.map(lambda a: a[-1], sol.ys)
    return last, (None if save_ts is None else sol.ys), _diffrax_nfe(solver, sol.stats)


def _check_solver(method, num_steps, rtol, atol):
    """``None`` for fixed-step Euler or Heun, else the adaptive diffrax solver."""
    if method == "euler":
        if num_steps is None:
            raise ValueError("method='euler' needs num_steps (it has no adaptive form here)")
        solver = None
    else:
        solver = _resolve_method(method, num_steps)
    if num_steps is not None:
        _checks.positive_int("num_steps", num_steps)
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if not isinstance(tol, jax.core.Tracer) and not float(tol) > 0:
            raise ValueError(f"{name} must be positive, got {tol}")
    return solver


def flow_sample(
    velocity_fn: Callable,
    x_1: jnp.ndarray,
    rng=None,
    *,
    num_steps: int | None = None,
    method="euler",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 4096,
    mask=None,
    known=None,
    return_info: bool = False,
    trajectory_every: int = 1,
):
    """Samples a flow-matching model by solving dx/dt = v(x, t) from t = 1 to t = 0 (Lipman
    et al. 2023, Sec. 4; Liu et al. 2023, Sec. 2.1), one compiled program.

    ``method="euler"`` (1 model call per step) or ``"heun"`` (:func:`~jaxdiff.samplers.
    heun_step`, 2 calls) take ``num_steps`` equal steps (:func:`flow_time_grid`) as one
    ``lax.scan``; ``"heun"`` without ``num_steps``, or an adaptive method (``"tsit5"``,
    ``"dopri5"``, ``"dopri8"``, ``"bosh3"`` or a ``diffrax.AbstractERK``), adapts its steps to
    ``rtol``/``atol`` (on the worst example of the batch), as :func:`~jaxdiff.samplers.
    ode_sample` does.

    Args:
      velocity_fn: ``velocity_fn(x, t) -> dx/dt``, t a float ``[B]`` in [0, 1].
      x_1: ``[B, ...]`` the noise at t = 1, N(0, I).
      rng: the key of inpainting's forward noise (the solvers themselves are deterministic).
      num_steps: the number of fixed steps (optional for adaptive methods: the trajectory is
        then saved on that grid).
      method: ``"euler"``, ``"heun"`` or an adaptive method.
      rtol, atol, max_steps: the adaptive solver's tolerances and step budget.
      mask, known: inpainting with a fixed-step method, as in
        :func:`~jaxdiff.samplers.ddpm_sample`: after every step the known pixels are the path's
        (1 - t) known + t z at the step's end time t, and ``known`` at t = 0 (needs rng).
      return_info: return a :class:`~jaxdiff.samplers.SamplerOutput`.
      trajectory_every: with ``return_info``, the state after every k-th step (grid time).

    Returns:
      ``[B, ...]`` x_0, or a :class:`SamplerOutput` with ``nfe`` = ``num_steps`` (Euler),
      ``2 num_steps`` (Heun) or an int array (adaptive).

    Raises:
      ValueError: for an unknown method, Euler without ``num_steps``, or bad tolerances.
    """
    _checks.batched("x_1", x_1)
    solver = _check_solver(method, num_steps, rtol, atol)
    keep = trajectory_every if return_info and num_steps is not None else 0
    inpaint = fixed_step_inpaint(mask, known, x_1, solver)
    x, trajectory, nfe = _flow_chain(
        velocity_fn,
        x_1,
        rng,
        jnp.asarray(rtol, x_1.dtype),
        jnp.asarray(atol, x_1.dtype),
        inpaint,
        num_steps=num_steps,
        euler=method == "euler",
        solver=solver,
        max_steps=max_steps,
        trajectory_every=keep,
    )
    return finish(x, trajectory, nfe, return_info=return_info)


@compiled(static_argnames=("num_steps", "euler", "solver", "max_steps", "trajectory_every"))
def _flow_chain(
    velocity_fn, x_1, rng, rtol, atol, inpaint, *, num_steps, euler, solver, max_steps,
    trajectory_every,
):
    field = flow_field(velocity_fn)
    times = None if num_steps is None else flow_time_grid(num_steps, x_1.dtype)
    if solver is None:
        method = euler_step if euler else heun_step
        x, trajectory = drive(
            lambda x, pair, key: method(field, x, *pair), x_1, (times[:-1], times[1:]),
            rng=rng, inpaint=inpaint, arrives_at=lambda pair: (1.0 - pair[1], pair[1]),
            trajectory_every=trajectory_every,
        )
        x, trajectory = with_known(x, trajectory, inpaint)
        return x, trajectory, num_steps * (1 if euler else 2)
    saved = saved_steps(num_steps, trajectory_every) if times is not None else None
    save_ts = None if saved is None else times[saved]
    one, zero = jnp.ones((), x_1.dtype), jnp.zeros((), x_1.dtype)
    return _solve(field, x_1, one, zero, solver, rtol, atol, max_steps, save_ts)


def flow_likelihood(velocity_fn: Callable, x0: jnp.ndarray, rng, **options) -> dict:
    """The exact log-likelihood of a flow-matching model by the instantaneous change of
    variables (Chen et al. 2018, Thm. 1; Lipman et al. 2023, Sec. 6), along dx/dt = v(x, t)
    from the data at t = 0 to the noise at t = 1, where p_1 = N(0, I):

    .. math:: \\log p_0(x_0) = \\log p_1(x_1) + \\int_0^1 \\nabla_x \\cdot v(x_t, t)\\, dt

    Args:
      velocity_fn: ``velocity_fn(x, t)``, t a float ``[B]``.
      x0, rng, **options: as in :func:`change_of_variables`.

    Returns:
      The dict of :func:`change_of_variables`.
    """
    return change_of_variables(flow_field, velocity_fn, x0, rng, t_data=0.0, t_prior=1.0, **options)


def change_of_variables(
    make_field: Callable,
    model_fn: Callable,
    x0: jnp.ndarray,
    rng,
    *,
    t_data: float,
    t_prior: float,
    prior_std: float = 1.0,
    num_probes: int = 1,
    dequantize: bool = True,
    trace: str = "rademacher",
    method="tsit5",
    num_steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 4096,
) -> dict:
    """log p(x0) of a continuous normalising flow dx/dt = f(t, x) by the instantaneous change
    of variables (Chen et al. 2018, Thm. 1), solved from the data at ``t_data`` to the prior
    N(0, prior_std^2 I) at ``t_prior``:

    .. math:: \\log p(x(t_{data})) = \\log \\mathcal N(x(t_{prior}); 0, s^2 I)
        + \\int_{t_{data}}^{t_{prior}} \\nabla_x \\cdot f(t, x(t))\\, dt

    with Hutchinson's divergence estimate E[v^T J v] (Rademacher or Gaussian probes, fixed
    along the solve; Grathwohl et al. 2019) or the exact trace (small D only), as
    :func:`~jaxdiff.samplers.ode_likelihood` does for the VP probability flow.

    Args:
      make_field: ``make_field(model_fn) -> f(t, x)``, a module-level function (it is a static
        argument of the compiled program), e.g. :func:`flow_field`.
      model_fn: the model, passed as a pytree (its bound arrays are traced arguments).
      x0: ``[B, ...]`` data in [-1, 1]; with ``dequantize``, 8-bit values (2 k / 255 - 1).
      rng: key of the dequantisation noise and the probes.
      t_data, t_prior: the ends of the solve.
      prior_std: the prior's standard deviation s.
      num_probes: probes per example (ignored by ``trace="exact"``).
      dequantize: evaluate the density at :func:`~jaxdiff.samplers.uniform_dequantize` (x0).
      trace: ``"rademacher"``, ``"gaussian"`` or ``"exact"``.
      method: an adaptive method, or ``"euler"``/``"heun"`` with ``num_steps``.
      num_steps, rtol, atol, max_steps: as in :func:`flow_sample`.

    Returns:
      A dict as :func:`~jaxdiff.samplers.ode_likelihood`'s: ``logp`` (nats), ``bpd``
      (:func:`~jaxdiff.samplers.bits_per_dim`), ``prior_logp``, ``delta_logp`` (``[B]``),
      ``nfe``, ``x`` (the point evaluated) and ``z`` (its latent at ``t_prior``).

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
    solver = _check_solver(method, num_steps, rtol, atol)
    x0 = jnp.asarray(x0)
    scalars = (t_data, t_prior, prior_std, rtol, atol)
    return _likelihood(
        model_fn,
        x0,
        rng,
        *(jnp.asarray(v, x0.dtype) for v in scalars),
        make_field=make_field,
        num_probes=num_probes,
        dequantize=dequantize,
        trace=trace,
        num_steps=num_steps,
        euler=method == "euler",
        solver=solver,
        max_steps=max_steps,
    )


@compiled(
    static_argnames=(
        "make_field",
        "num_probes",
        "dequantize",
        "trace",
        "num_steps",
        "euler",
        "solver",
        "max_steps",
    ),
)
def _likelihood(
    model_fn, x0, rng, t_data, t_prior, prior_std, rtol, atol, *, make_field, num_probes,
    dequantize, trace, num_steps, euler, solver, max_steps,
):
    key_deq, key_probe = jax.random.split(rng)
    x = uniform_dequantize(x0, key_deq) if dequantize else x0
    probes, weight = _divergence_probes(key_probe, trace, num_probes, x.shape, x.dtype)
    augmented = _with_divergence(make_field(model_fn), probes, weight)
    state = (x, jnp.zeros(x.shape[:1], x.dtype))
    if solver is None:
        times = jnp.linspace(t_data, t_prior, num_steps + 1)
        method = euler_step if euler else heun_step
        (z, divergence), _ = run_chain(
            lambda c, pair: method(augmented, c, *pair),
            state,
            (times[:-1], times[1:]),
            state=lambda c: c[0],
        )
        nfe = num_steps * (1 if euler else 2)
    else:
        (z, divergence), _, nfe = _solve(
            augmented, state, t_data, t_prior, solver, rtol, atol, max_steps
        )
    return likelihood_result(x, z, prior_std**2, divergence, nfe)
