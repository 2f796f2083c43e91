"""What every sampler shares: the driver that runs a chain of steps as one scan (keys,
trajectory, inpainting), and the output bundle returned when a caller asks for more than x_0.

A sampler is its step function and its levels: :func:`drive` owns the rest, and
:func:`sample` is the whole sampler for a step over (denoise, process, x, t, t_next, key)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import _checks
from jaxdiff._compile import compiled as compiled
from jaxdiff.samplers._denoise import model_denoiser
from jaxdiff.samplers._grids import Grid, default_grid, grid_times, is_integer_grid
from jaxdiff.samplers._inpaint import impute, inpaint_spec


class SamplerOutput(NamedTuple):
    """What a sampler returns with ``return_info=True``.

    Attributes:
      samples: ``[B, ...]`` the final state (x_0).
      trajectory: ``[N, B, ...]`` the state after every ``trajectory_every``-th step (the last
        entry is the final state), or ``None`` when ``trajectory_every=0``.
      nfe: number of model evaluations per example, an int32 scalar array for every sampler
        (an adaptive solver's count is only known on the device).
    """

    samples: jnp.ndarray
    trajectory: jnp.ndarray | None
    nfe: Any


def run_chain(
    step: Callable[[Any, Any], Any],
    carry: Any,
    xs: Any,
    *,
    state: Callable[[Any], jnp.ndarray],
    trajectory_every: int = 0,
):
    """Runs ``carry = step(carry, x)`` over the leading axis of ``xs`` as one ``lax.scan``.

    With ``trajectory_every = k > 0`` the states after steps k, 2k, ... (and after the last
    step) are collected without storing the others: an outer scan over chunks of k steps
    records one state per chunk.

    Args:
      step: ``step(carry, x) -> carry``, one update of the chain.
      carry: the initial carry.
      xs: pytree with a leading axis of length N (the per-step inputs).
      state: picks the sample out of a carry.
      trajectory_every: 0 for no trajectory, else k.

    Returns:
      ``(final_carry, trajectory)`` with trajectory ``[ceil(N / k), B, ...]`` or ``None``.
    """
    if trajectory_every == 0:
        carry, _ = jax.lax.scan(lambda c, x: (step(c, x), None), carry, xs)
        return carry, None
    _checks.positive_int("trajectory_every", trajectory_every)
    num = jax.tree.leaves(xs)[0].shape[0]
    k = min(trajectory_every, num)
    full, rest = divmod(num, k)

    def chunk(c, x_chunk):
        c, _ = jax.lax.scan(lambda c_, x: (step(c_, x), None), c, x_chunk)
        return c, state(c)

    head = jax.tree.map(lambda a: a[: full * k].reshape((full, k) + a.shape[1:]), xs)
    carry, traj = jax.lax.scan(chunk, carry, head)
    if rest:
        tail = jax.tree.map(lambda a: a[full * k :][None], xs)
        carry, last = jax.lax.scan(chunk, carry, tail)
        traj = jnp.concatenate([traj, last], axis=0)
    return carry, traj


def _identity(x):
    return x


def drive(
    step: Callable[[Any, Any, Any], Any],
    carry: Any,
    inputs: Any,
    *,
    rng=None,
    key_ids=None,
    inpaint=None,
    arrives_at: Callable[[Any], tuple] | None = None,
    known_ids=None,
    get_x: Callable[[Any], jnp.ndarray] = _identity,
    set_x: Callable[[Any, jnp.ndarray], Any] | None = None,
    trajectory_every: int = 0,
):
    """The one driver of every fixed-step sampler: ``carry = step(carry, inputs[i], key_i)``
    for i = 0, ..., N - 1 as one ``lax.scan`` (:func:`run_chain`), with the step keys, the
    trajectory and inpainting done here, so a new sampler is its step and its levels.

    Inpainting re-imposes the known pixels after every step: they are replaced by a sample of
    the forward process at the level the step arrived at, alpha known + sigma z (Song & Ermon
    2019, Alg. 2; Song et al. 2021, App. I.2). ``alpha = 1, sigma = 0`` (the data) puts the
    known values themselves.

    Args:
      step: ``step(carry, inputs_i, key) -> carry``; ``key`` is None without an rng.
      carry: the initial carry.
      inputs: pytree with a leading axis of length N, the per-step inputs.
      rng: the chain's key; step i gets ``fold_in(rng, key_ids[i])``. With inpainting the key
        is split first, ``rng, rng_known = split(rng)``.
      key_ids: ``[N]`` ints (default ``arange(N)``).
      inpaint: the known pixels (:class:`~jaxdiff.samplers._inpaint.Inpaint`) or None.
      arrives_at: ``arrives_at(inputs_i) -> (alpha, sigma)``, the forward process's scale and
        noise at the level after step i, in the chain's scaling of x (needed with ``inpaint``).
      known_ids: ``[N]`` ints; the known pixels' noise after step i is drawn from
        ``fold_in(rng_known, known_ids[i])`` (default ``key_ids``): equal ids share one draw.
      get_x, set_x: read and replace the sample in a carry (default: the carry is x).
      trajectory_every: as in :func:`run_chain`.

    Returns:
      ``(final_carry, trajectory)`` as :func:`run_chain`.
    """
    num = jax.tree.leaves(inputs)[0].shape[0]
    key_ids = jnp.arange(num) if key_ids is None else jnp.asarray(key_ids)
    known_ids = key_ids if known_ids is None else jnp.asarray(known_ids)
    if inpaint is not None:
        if rng is None:
            raise ValueError("inpainting draws forward noise: pass an rng key")
        rng, rng_known = jax.random.split(rng)
    set_x = set_x or (lambda c, x: x)

    def body(c, xs):
        key_id, known_id, inputs_i = xs
        c = step(c, inputs_i, None if rng is None else jax.random.fold_in(rng, key_id))
        if inpaint is None:
            return c
        x = get_x(c)
        alpha, sigma = arrives_at(inputs_i)
        noise = jax.random.normal(jax.random.fold_in(rng_known, known_id), x.shape, x.dtype)
        return set_x(c, impute(x, inpaint.mask, alpha * inpaint.known + sigma * noise))

    return run_chain(
        body, carry, (key_ids, known_ids, inputs), state=get_x, trajectory_every=trajectory_every
    )


def reverse_chain(update, schedule, x_T, rng, inpaint, *, trajectory_every):
    """:func:`drive` over a discrete schedule's steps t = T-1, ..., 0 (DDPM, DDIM, PC):
    ``x = update(x, t, key)`` with t an int32 ``[B]`` and the key ``fold_in(rng, t)``. The step
    from t arrives at abar_{t-1} (``alphas_cumprod_prev``, 1 after t = 0), where inpainting
    puts q(x_{t-1} | x_0 = known) (Ho et al. 2020, eq. 4)."""
    steps = jnp.arange(schedule.num_timesteps - 1, -1, -1)

    def step(x, i, key):
        return update(x, jnp.full(x.shape[:1], i, dtype=jnp.int32), key)

    def arrives_at(i):
        abar = schedule.alphas_cumprod_prev[i]
        return jnp.sqrt(abar), jnp.sqrt(1.0 - abar)

    x, trajectory = drive(
        step, x_T, steps, rng=rng, key_ids=steps, inpaint=inpaint, arrives_at=arrives_at,
        trajectory_every=trajectory_every,
    )
    return with_known(x, trajectory, inpaint)


def with_known(x, trajectory, inpaint):
    """The final sample (and the trajectory's last entry) with the known pixels exact."""
    if inpaint is None:
        return x, trajectory
    x = impute(x, inpaint.mask, inpaint.known)
    return x, None if trajectory is None else trajectory.at[-1].set(x)


def saved_steps(num_steps: int, every: int):
    """The steps after which :func:`run_chain` records the state: k, 2k, ... and the last
    (None when ``every`` is 0)."""
    if every == 0:
        return None
    idx = list(range(every, num_steps + 1, every))
    if not idx or idx[-1] != num_steps:
        idx.append(num_steps)
    return np.asarray(idx)


def finish(samples, trajectory, nfe, *, return_info: bool):
    """The sampler's return value: x_0 alone, or a :class:`SamplerOutput`."""
    if return_info:
        return SamplerOutput(samples, trajectory, jnp.asarray(nfe, jnp.int32))
    return samples



def sample(
    step: Callable,
    model_fn: Callable,
    process,
    x_T: jnp.ndarray,
    rng=None,
    *,
    num_steps: int,
    grid: Grid | None = None,
    prediction: str = "eps",
    clip_denoised: bool = False,
    denoise_last: bool = False,
    calls_per_step: int = 1,
    mask=None,
    known=None,
    return_info: bool = False,
    trajectory_every: int = 1,
):
    """A sampler from its step: ``x = step(denoise, process, x, t, t_next, key)`` over the
    ``num_steps`` levels of ``grid`` from ``t_noise`` to ``t_data``, one compiled ``lax.scan``
    (:func:`drive`), with every shared option done here.

    Args:
      step: ``step(denoise, process, x, t, t_next, key) -> x`` with ``denoise(x, t) -> (eps,
        x0)``, t and t_next scalars, key None without ``rng`` (a module-level function or a
        ``functools.partial`` of one: it is a static argument of the compiled chain), e.g.
        :func:`~jaxdiff.samplers.ancestral_step`.
      model_fn: ``model_fn(x_t, t) -> output``, called with ``process.model_time(t)``: int32 on
        a grid of a discrete schedule's integers (the default there), else float ``[B]``.
      process: the process the model was trained on (any GaussianProcess).
      x_T: ``[B, ...]`` the start at ``t_noise``.
      rng: the chain's key; step i (counting down from N to 1) uses ``fold_in(rng, i)``.
      num_steps: N.
      grid: the levels (default: near-equal log-SNR steps, on the integers for a schedule).
      prediction: eps | x0 | v | velocity | score.
      clip_denoised: clip x0 to [-1, 1] at every model call.
      denoise_last: end with the model's x_0 estimate at the last level (one more call).
      calls_per_step: the model calls of one step (for ``nfe``).
      mask, known: inpainting: after every step the known pixels are a draw of the process at
        the step's level, and ``known`` at the end (needs rng).
      return_info: return a :class:`SamplerOutput`.
      trajectory_every: with ``return_info``, the state after every k-th step.

    Returns:
      ``[B, ...]`` samples, or a :class:`SamplerOutput` with ``nfe = N calls_per_step +
      denoise_last``.
    """
    _checks.batched("x_T", x_T)
    grid = default_grid(process) if grid is None else grid
    times = grid_times(process, num_steps, grid)
    denoise = model_denoiser(model_fn, process, prediction=prediction, clip_denoised=clip_denoised,
                             integer_time=is_integer_grid(process, times))
    x, trajectory = _sample_chain(
        denoise, process, x_T, rng, times, inpaint_spec(mask, known, x_T), step=step,
        denoise_last=denoise_last, trajectory_every=trajectory_every if return_info else 0,
    )
    return finish(x, trajectory, num_steps * calls_per_step + int(denoise_last),
                  return_info=return_info)


@compiled(static_argnames=("step", "denoise_last", "trajectory_every"))
def _sample_chain(denoise, process, x_T, rng, times, inpaint, *, step, denoise_last,
                  trajectory_every):
    key_ids = jnp.arange(times.shape[0] - 1, 0, -1)
    x, trajectory = drive(
        lambda x, pair, key: step(denoise, process, x, *pair, key), x_T,
        (times[:-1], times[1:]), rng=rng, key_ids=key_ids, inpaint=inpaint,
        arrives_at=lambda pair: process.alpha_sigma(pair[1]), trajectory_every=trajectory_every,
    )
    if denoise_last:
        x = denoise(x, times[-1])[1]
        trajectory = None if trajectory is None else trajectory.at[-1].set(x)
    return with_known(x, trajectory, inpaint)
