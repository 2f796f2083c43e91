"""Flow matching / rectified flow on the linear path x_t = (1 - t) x_0 + t eps (Lipman et al.
2023; Liu et al. 2023): noise at t = 1, data at t = 0, and a learned velocity v(x, t) = dx/dt,
an estimate of E[eps - x_0 | x_t]. Sampling and the likelihood are those of every process
(:mod:`._ode`) in the process's own time, the model predicting the velocity: the linear path
from t = 1 by default, any other Gaussian path (e.g. the trigonometric one) with ``process=``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp

from jaxdiff import _checks
from jaxdiff.processes import LinearFlow
from jaxdiff.samplers._common import finish
from jaxdiff.samplers._denoise import model_denoiser
from jaxdiff.samplers._inpaint import fixed_step_inpaint
from jaxdiff.samplers._ode import change_of_variables, flow_chain, resolve_method

__all__ = ["flow_sample", "flow_likelihood"]

# The whole linear path, t in [0, 1] (its velocity is defined at alpha = 0).
PATH = LinearFlow(t_min=0.0, t_max=1.0)


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
    process=PATH,
    mask=None,
    known=None,
    return_info: bool = False,
    trajectory_every: int = 1,
):
    """Samples a flow-matching model by solving dx/dt = v(x, t) from t = 1 to t = 0 (Lipman
    et al. 2023, Sec. 4; Liu et al. 2023, Sec. 2.1): the probability flow of the linear path
    (:func:`~jaxdiff.samplers.probability_flow`) with the model as its velocity, one compiled
    program.

    ``method="euler"`` (1 model call per step) or ``"heun"`` (2 calls) take ``num_steps`` equal
    steps in t as one ``lax.scan``; ``"heun"`` without ``num_steps``, or an adaptive method
    (``"tsit5"``, ``"dopri5"``, ``"dopri8"``, ``"bosh3"`` or a ``diffrax.AbstractERK``), adapts
    its steps to ``rtol``/``atol`` (on the worst example of the batch), as
    :func:`~jaxdiff.samplers.ode_sample` does.

    Args:
      velocity_fn: ``velocity_fn(x, t) -> dx/dt``, t a float ``[B]`` in [0, 1].
      x_1: ``[B, ...]`` the noise at t = 1, N(0, I).
      rng: the key of inpainting's forward noise (the solvers themselves are deterministic).
      num_steps: the number of fixed steps (optional for adaptive methods: the trajectory is
        then saved on that grid).
      method: ``"euler"``, ``"heun"`` or an adaptive method.
      rtol, atol, max_steps: the adaptive solver's tolerances and step budget.
      process: the path (default the linear one on [0, 1]); any GaussianProcess, whose
        ``velocity_fn`` is then its dx/dt = alpha'(t) x_0 + sigma'(t) eps, solved from
        ``t_noise`` to ``t_data`` in equal steps of t.
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
    solver = resolve_method(method, num_steps, rtol, atol)
    steps = 1 if num_steps is None else num_steps
    times = jnp.linspace(process.t_noise, process.t_data, steps + 1, dtype=x_1.dtype)
    x, trajectory, nfe = flow_chain(
        model_denoiser(velocity_fn, process, prediction="velocity"), process, x_1, rng,
        times, jnp.asarray(rtol, x_1.dtype),
        jnp.asarray(atol, x_1.dtype), fixed_step_inpaint(mask, known, x_1, solver),
        method=solver, log_time=False, max_steps=max_steps,
        trajectory_every=trajectory_every if return_info and num_steps is not None else 0,
    )
    return finish(x, trajectory, nfe, return_info=return_info)


def flow_likelihood(velocity_fn: Callable, x0: jnp.ndarray, rng, *, process=PATH, **options) -> dict:
    """The exact log-likelihood of a flow-matching model by the instantaneous change of
    variables (Chen et al. 2018, Thm. 1; Lipman et al. 2023, Sec. 6), along dx/dt = v(x, t)
    from the data at t = 0 to the noise at t = 1, where p_1 = N(0, I):

    .. math:: \\log p_0(x_0) = \\log p_1(x_1) + \\int_0^1 \\nabla_x \\cdot v(x_t, t)\\, dt

    Args:
      velocity_fn: ``velocity_fn(x, t)``, t a float ``[B]``.
      process: the path (default the linear one; its prior N(0, prior_std^2 I) at ``t_noise``).
      x0, rng, **options: as in :func:`~jaxdiff.samplers.change_of_variables`.

    Returns:
      The dict of :func:`~jaxdiff.samplers.change_of_variables`.
    """
    denoise = model_denoiser(velocity_fn, process, prediction="velocity")
    return change_of_variables(denoise, process, x0, rng, t_data=process.t_data,
                               t_prior=process.t_noise, **options)
