"""Few-step generation as a model family (:class:`jaxdiff.engine.Family`):
``config.family = "fewstep"`` (``configs/digits_consistency.py``, ``digits_meanflow.py``,
``digits_reflow.py``).

``config.fewstep.method`` picks what is trained; ``config.distillation.teacher`` (a workdir of a
trained ``ddpm``, ``edm`` or ``flow`` run) gives a teacher:

* ``"consistency"``: consistency training from scratch (Song & Dhariwal 2024) without a teacher,
  consistency distillation (Song et al. 2023) through one ``distillation.solver`` step of the
  teacher's probability-flow ODE on a Karras grid of ``distillation.num_levels`` levels with
  one. The network is the raw F of :func:`~jaxdiff.fewstep.consistency_precondition`, called
  with ``consistency.time_scale`` c_noise. Samples: :func:`~jaxdiff.fewstep.
  multistep_consistency_sample` on the first N of N + 1 Karras levels.
* ``"meanflow"``: MeanFlow from scratch (Geng et al. 2025); the network sees the gap t - r as one
  more input channel and ``meanflow.time_scale`` t as its time. Samples: N equal steps.
* ``"reflow"``: needs a teacher. ``distillation.num_pairs`` (noise, sample) pairs from the
  teacher's ODE (deterministic Heun, ``distillation.teacher_steps`` steps on the Karras grid),
  made once at initialisation and kept in the state; the 2-rectified flow trains on them. From
  step ``reflow.distill_from`` on only t = 1 is trained (the one-step distillation, Liu et al.
  2023, Sec. 2.3) on the 2-rectified flow's own pairs: at that step the pairs' data ends are
  redrawn from the same noise by ``reflow.pair_steps`` Heun steps of its EMA network
  (``distill_from = 0`` distils the teacher's pairs directly). Samples: N Euler steps.

The teacher's EMA parameters and the pairs live in the train state (a resumed run uses the
very pairs it started with); the teacher's workdir is read when the family is built.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections

from jaxdiff import data as data_lib
from jaxdiff import losses, processes, samplers, schedules
from jaxdiff.fewstep import consistency, meanflow, reflow
from jaxdiff.engine.checks import Checker
from jaxdiff.engine.family import Family, run_keys
from jaxdiff.engine.run import Run, load_run
from jaxdiff.engine.step import TrainState, learning_rate_schedule, make_optimizer, train_step
from jaxdiff.families import diffusion
from jaxdiff.families.diffusion import _edm_denoiser, _flow_velocity, _mean_part, _resolve_model

__all__ = ["METHODS", "FewStepState", "teacher_denoiser", "fewstep_family"]

METHODS = ("consistency", "meanflow", "reflow")
TEACHER_KINDS = ("ddpm", "edm", "flow")


class FewStepState(TrainState):
    """A :class:`~jaxdiff.engine.TrainState` with the teacher's EMA parameters (distillation)
    and the reflow pairs ``(x0, x1)``; both None when unused."""

    teacher: Any = None
    pairs: Any = None


def _check(config, data_shape) -> None:
    """The family's own fields (the driver checks the shared ones)."""
    c = Checker(config)
    c.one_of("fewstep.method", METHODS)
    method = config.fewstep.method
    teacher = config.get("distillation", {}).get("teacher")
    if method == "meanflow" and teacher is not None:
        raise ValueError("config.distillation.teacher applies to consistency and reflow, not meanflow")
    if method == "reflow" and not teacher:
        raise ValueError("config.fewstep.method='reflow' needs config.distillation.teacher=WORKDIR")
    if method == "consistency":
        for name in ("sigma_min", "sigma_max", "rho", "sigma_data", "p_std", "time_scale"):
            c.real(f"consistency.{name}", low=0.0, low_open=True)
        c.int("consistency.s0", minimum=1)
        c.int("consistency.s1", minimum=config.consistency.s0)
        c.one_of("consistency.distance", sorted(consistency.DISTANCES))
    if method == "meanflow":
        c.real("meanflow.ratio", low=0.0, high=1.0)
        c.real("meanflow.power", low=0.0)
        c.real("meanflow.time_std", low=0.0, low_open=True)
    if method == "consistency" and teacher is not None:
        c.int("distillation.num_levels", minimum=2)
        c.one_of("distillation.solver", ("euler", "heun"))
    if method == "reflow":
        c.int("distillation.teacher_steps", minimum=1)
        c.int("distillation.num_pairs", minimum=1)
        c.int("reflow.distill_from", minimum=0)
        c.int("reflow.pair_steps", minimum=1)
        c.real("reflow.time_scale", low=0.0, low_open=True)


def teacher_denoiser(run: Run) -> tuple[Callable, tuple[float, float]]:
    """A trained ``ddpm``, ``edm`` or ``flow`` run as EDM's denoiser ``D(x, sigma, variables)``
    (Karras et al. 2022, Table 1; the state x / alpha at the level sigma / alpha) and its
    ``(sigma_min, sigma_max)``.

    Raises:
      ValueError: a run of another family or process.
    """
    cfg = run.config
    _check_teacher(cfg)
    model, process, settings = run.experiment.model, run.experiment.process, run.experiment.settings

    if isinstance(process, processes.EDM):
        def denoise(x, sigma, variables):
            return _edm_denoiser(settings.sigma_data, functools.partial(model.apply, variables))(x, sigma)

        return denoise, (process.sigma_min, process.sigma_max)
    if isinstance(process, processes.LinearFlow):
        # x_t = (1 - t) x_0 + t eps: t = sigma / (1 + sigma), x = y / (1 + sigma), x_0 = x - t v
        def denoise(x, sigma, variables):
            t = sigma / (1.0 + sigma)
            t_b = t.reshape((-1,) + (1,) * (x.ndim - 1))
            state = (1.0 - t_b) * x
            velocity = _flow_velocity(process, functools.partial(model.apply, variables))(state, t)
            return state - t_b * velocity

        return denoise, (0.002, 80.0)

    def denoise(x, sigma, variables):
        model_fn = _mean_part(functools.partial(model.apply, variables), settings.variance)
        return samplers.process_denoiser(model_fn, process, prediction=settings.prediction)(x, sigma)

    return denoise, samplers.sigma_range(process)


def _check_teacher(cfg) -> None:
    """Raises ``ValueError`` unless ``cfg`` is the config of a ``ddpm``, ``edm`` or ``flow`` run."""
    family = cfg.get("family", "diffusion")
    kind = cfg.diffusion.kind if family == "diffusion" else None
    if kind not in TEACHER_KINDS:
        what = f"a {family} run" if kind is None else f"a diffusion.kind={kind!r} run"
        raise ValueError(
            f"config.distillation.teacher: {what} cannot teach; use a {', '.join(TEACHER_KINDS)} run"
        )


def _teacher_family(config, data_shape) -> Family:
    _check_teacher(config)
    return diffusion.family(config, data_shape)


def _load_teacher(config) -> Run | None:
    teacher = config.get("distillation", {}).get("teacher")
    if not teacher:
        return None
    try:
        return load_run(teacher, build_family=_teacher_family)
    except FileNotFoundError as e:
        raise ValueError(f"config.distillation.teacher={teacher!r}: {e}") from e


def _network(config, data_shape, *, extra_input: bool):
    """The network of ``config.model``, its output of the data's shape (its input has one more
    channel for MeanFlow's gap t - r)."""
    if not extra_input:
        return _resolve_model(config.model, data_shape, None)
    wider = (*data_shape[:-1], data_shape[-1] + 1)
    return _resolve_model(config.model, wider, data_shape[-1])


def _with_gap(z, gap):
    """MeanFlow's input: z with t - r as one more channel (the last axis)."""
    channel = jnp.broadcast_to(gap.reshape((-1,) + (1,) * (z.ndim - 1)), z.shape[:-1] + (1,))
    return jnp.concatenate([z, channel], axis=-1)


def _optimizer(config):
    ocfg = config.optim
    schedule = learning_rate_schedule(ocfg.learning_rate, ocfg.warmup_steps)
    tx = make_optimizer(
        learning_rate=schedule, grad_clip=ocfg.grad_clip, b1=ocfg.b1, b2=ocfg.b2, eps=ocfg.eps
    )
    return tx, schedule


def fewstep_family(config: ml_collections.ConfigDict, data_shape) -> Family:
    """The few-step model of ``config`` as a :class:`~jaxdiff.engine.family.Family`; its
    ``sample`` takes ``num_steps`` (``jaxdiff sample --steps N``).

    Raises:
      ValueError: for a bad field, or a teacher workdir that is missing or not a ``ddpm``,
        ``edm`` or ``flow`` run.
    """
    data_shape = tuple(data_shape)
    _check(config, data_shape)
    method = config.fewstep.method
    teacher_run = _load_teacher(config)
    teacher = None if teacher_run is None else teacher_denoiser(teacher_run)
    network = _network(config, data_shape, extra_input=method == "meanflow")
    tx, lr_schedule = _optimizer(config)
    _, run_key, _ = run_keys(config.seed)
    build = {"consistency": _consistency, "meanflow": _meanflow, "reflow": _reflow}[method]
    loss_of, sample_steps, teacher_state, prepare = build(config, network, data_shape, teacher)
    in_channels = data_shape[-1] + (method == "meanflow")

    def init_state(key):
        x = jnp.zeros((1, *data_shape[:-1], in_channels), jnp.float32)
        params = network.init({"params": key}, x, jnp.ones((1,), jnp.float32))["params"]
        extra = teacher_state(teacher_run, key) if teacher_run is not None else {}
        return FewStepState(
            step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
            ema_params=params, rng=run_key, tx=tx, **extra,
        )

    def step(state, batch, rng):
        state = prepare(state)
        return train_step(
            state, batch, rng, loss_fn=loss_of(state), ema=config.training.ema_decay,
            ema_warmup=config.training.ema_warmup, lr_schedule=lr_schedule,
        )

    def sample(state, rng, num, *, num_steps=None):
        """``num`` samples from ``num_steps`` network evaluations (``config.sampling.num_steps``
        when None; ``jaxdiff sample --steps N``)."""
        return sample_steps(state.ema_params, rng, num, num_steps or config.sampling.num_steps)

    return Family(init_state=init_state, train_step=step, sample=sample, data_shape=data_shape)


def _apply(network, params, rng=None):
    """``network(x, t)`` with ``params``; in training (``rng`` given) with dropout."""
    if rng is None:
        return functools.partial(network.apply, {"params": params})
    return functools.partial(network.apply, {"params": params}, train=True, rngs={"dropout": rng})


# --- consistency training and distillation -------------------------------------------------------


def _consistency(config, network, data_shape, teacher):
    cc = config.consistency
    options = dict(sigma_min=cc.sigma_min, sigma_data=cc.sigma_data)

    def consistency_fn(params, rng=None):
        raw = _apply(network, params, rng)
        return consistency.consistency_precondition(
            lambda x, c: raw(x, cc.time_scale * c), **options
        )

    if teacher is None:
        grids = consistency.curriculum_sigmas(
            sigma_min=cc.sigma_min, sigma_max=cc.sigma_max, rho=cc.rho, s0=cc.s0, s1=cc.s1
        )

        def loss_of(state):
            num = consistency.discretization_steps(
                state.step, total_steps=config.training.num_steps, s0=cc.s0, s1=cc.s1
            )
            stage = jnp.round(jnp.log2((num - 1) / cc.s0)).astype(jnp.int32)

            def loss_fn(params, batch, rng):
                dropout_key, loss_key = jax.random.split(rng)
                return consistency.consistency_training_loss(
                    consistency_fn(params, dropout_key), data_lib.to_model_range(batch["x"]),
                    loss_key, sigmas=grids[stage], num_levels=num, p_mean=cc.p_mean,
                    p_std=cc.p_std, distance=cc.distance,
                )

            return loss_fn

        teacher_state = None
    else:
        denoise, (t_min, t_max) = teacher
        dc = config.distillation
        low, high = max(cc.sigma_min, t_min), min(cc.sigma_max, t_max)
        grid = schedules.karras_sigmas(dc.num_levels - 1, low, high, cc.rho)[:-1][::-1]

        def loss_of(state):
            def loss_fn(params, batch, rng):
                dropout_key, loss_key = jax.random.split(rng)
                return consistency.consistency_distillation_loss(
                    consistency_fn(params, dropout_key),
                    lambda x, s: denoise(x, s, {"params": state.teacher}),
                    data_lib.to_model_range(batch["x"]), loss_key, sigmas=grid,
                    method=dc.solver, distance=cc.distance,
                )

            return loss_fn

        def teacher_state(run, key):
            return {"teacher": run.state.ema_params}

    def sample_steps(params, rng, num, num_steps):
        levels = schedules.karras_sigmas(num_steps + 1, cc.sigma_min, cc.sigma_max, cc.rho)[:num_steps]
        prior_key, chain_key = jax.random.split(rng)
        x_T = cc.sigma_max * jax.random.normal(prior_key, (num, *data_shape))
        return consistency.multistep_consistency_sample(
            consistency_fn(params), x_T, chain_key, sigmas=levels, sigma_min=cc.sigma_min
        )

    return loss_of, sample_steps, teacher_state, _unchanged


def _unchanged(state):
    return state


# --- MeanFlow --------------------------------------------------------------------------------------


def _meanflow(config, network, data_shape, teacher):
    mc = config.meanflow

    def u_fn(params, rng=None):
        net = _apply(network, params, rng)
        return lambda z, r, t: net(_with_gap(z, t - r), mc.time_scale * t)

    def loss_of(state):
        def loss_fn(params, batch, rng):
            dropout_key, loss_key = jax.random.split(rng)
            return meanflow.meanflow_loss(
                u_fn(params, dropout_key), data_lib.to_model_range(batch["x"]), loss_key,
                time_mean=mc.time_mean, time_std=mc.time_std, ratio=mc.ratio, power=mc.power,
                c=mc.c,
            )

        return loss_fn

    def sample_steps(params, rng, num, num_steps):
        noise = jax.random.normal(rng, (num, *data_shape))
        return meanflow.meanflow_sample(u_fn(params), noise, num_steps=num_steps)

    return loss_of, sample_steps, None, _unchanged


# --- reflow ----------------------------------------------------------------------------------------


def _reflow(config, network, data_shape, teacher):
    rc, dc = config.reflow, config.distillation
    time_scale = rc.time_scale
    pair_steps = rc.get("pair_steps", 8)  # runs made before the field existed
    denoise, (t_min, t_max) = teacher

    def velocity_fn(params, rng=None):
        net = _apply(network, params, rng)
        return lambda x, t: net(x, time_scale * t)

    def pairs_of(solve, noise):
        """``(clip(solve(x1)), x1)`` over the noise, in chunks of 256 when its size is a
        multiple of it (``solve``: noise -> data end)."""
        chunk = 256 if noise.shape[0] % 256 == 0 else noise.shape[0]
        x0 = jax.lax.map(solve, noise.reshape(-1, chunk, *data_shape)).reshape(noise.shape)
        return jnp.clip(x0, -1.0, 1.0), noise

    def teacher_state(run, key):
        """The teacher's pairs: x1 ~ N(0, I), x0 its teacher ODE sample."""
        sigmas = schedules.karras_sigmas(dc.teacher_steps, t_min, min(t_max, 80.0))
        variables = {"params": run.state.ema_params}
        noise = jax.random.normal(jax.random.fold_in(key, 1), (dc.num_pairs, *data_shape))

        def solve(x1):
            denoiser = lambda x, s: denoise(x, s, variables)  # noqa: E731
            return samplers.edm_sample(denoiser, sigmas, sigmas[0] * x1)

        return {"pairs": pairs_of(solve, noise)}

    def prepare(state):
        """At step ``distill_from`` (> 0): the pairs of the 2-rectified flow itself, from
        the same noise, for its distillation."""

        def redraw(state):
            velocity = velocity_fn(state.ema_params)
            solve = lambda x1: reflow.reflow_pairs(velocity, x1, num_steps=pair_steps)[0]  # noqa: E731
            return state.replace(pairs=pairs_of(solve, state.pairs[1]))

        if rc.distill_from == 0:
            return state
        return jax.lax.cond(state.step == rc.distill_from, redraw, _unchanged, state)

    def loss_of(state):
        distil = state.step >= rc.distill_from

        def time_sampling(rng, batch, dtype):
            return jnp.where(distil, 1.0, losses.uniform_time(rng, batch, dtype))

        def loss_fn(params, batch, rng):
            dropout_key, pick_key, loss_key = jax.random.split(rng, 3)
            x0, x1 = state.pairs
            index = jax.random.randint(pick_key, batch["x"].shape[:1], 0, x0.shape[0])
            return reflow.reflow_loss(
                velocity_fn(params, dropout_key), x0[index], x1[index], loss_key,
                time_sampling=time_sampling,
            )

        return loss_fn

    def sample_steps(params, rng, num, num_steps):
        noise = jax.random.normal(rng, (num, *data_shape))
        return samplers.flow_sample(velocity_fn(params), noise, num_steps=num_steps)

    return loss_of, sample_steps, teacher_state, prepare
