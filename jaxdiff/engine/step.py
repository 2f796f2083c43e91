"""The pure train step: the state, the optimizer, the EMA and one update. Knows nothing about
devices, configs or files."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

__all__ = [
    "TrainState",
    "learning_rate_schedule",
    "make_optimizer",
    "ema_decay",
    "create_train_state",
    "train_step",
]


class TrainState(flax.struct.PyTreeNode):
    """Everything a run needs to continue: saved whole in every checkpoint.

    Attributes:
      step: int32 scalar, the number of updates done (and the index of the next batch).
      params: the model parameters.
      opt_state: the optax state.
      ema_params: the exponential moving average of ``params`` (used for sampling).
      rng: the run's base key (the driver's step keys are ``fold_in(rng, step)``).
      tx: the optax transformation (static: not saved, rebuilt from the config).
    """

    step: jnp.ndarray
    params: Any
    opt_state: Any
    ema_params: Any
    rng: jnp.ndarray
    tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)


def learning_rate_schedule(learning_rate: float, warmup_steps: int = 0) -> optax.Schedule:
    """lr * min(step / warmup_steps, 1): the linear warmup of Ho et al. (2020), App. B (their
    code's ``lr * min(global_step / warmup, 1)``); constant when ``warmup_steps`` is 0."""
    if warmup_steps <= 0:
        return optax.constant_schedule(learning_rate)
    return optax.warmup_constant_schedule(0.0, learning_rate, warmup_steps)


def make_optimizer(
    *,
    learning_rate: float | optax.Schedule,
    warmup_steps: int = 0,
    grad_clip: float | None = 1.0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
) -> optax.GradientTransformation:
    """Adam with a linear learning-rate warmup and global-norm gradient clipping, the optimizer
    of Ho et al. (2020), App. B (CIFAR-10: lr 2e-4, warmup 5000 steps, clip 1.0).

    ``learning_rate`` is a number (warmed up over ``warmup_steps``) or an optax schedule, used
    as it is (``warmup_steps`` ignored): pass the schedule you log, so the logged rate is the
    optimizer's own.
    """
    if not callable(learning_rate):
        learning_rate = learning_rate_schedule(learning_rate, warmup_steps)
    adam = optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)
    # One state structure with or without clipping, so that changing optim.grad_clip (which a
    # resumed run may do) leaves the checkpoints readable.
    clip = optax.identity() if grad_clip is None else optax.clip_by_global_norm(grad_clip)
    return optax.chain(clip, adam)


def ema_decay(step, *, decay: float, warmup: bool) -> jnp.ndarray:
    """The EMA decay used at update ``step`` (0-based).

    With ``warmup`` the decay is ``min(decay, (1 + n) / (10 + n))`` (the ``num_updates`` rule of
    TensorFlow's ExponentialMovingAverage), so that a short run's average is not dominated by
    the initial parameters; otherwise it is ``decay`` (0.9999 in Ho et al. 2020, App. B).
    """
    if not warmup:
        return jnp.asarray(decay, jnp.float32)
    n = jnp.asarray(step, jnp.float32)
    return jnp.minimum(decay, (1.0 + n) / (10.0 + n))


def create_train_state(params, tx: optax.GradientTransformation, rng) -> TrainState:
    """A fresh state at step 0: the EMA starts at the initial parameters."""
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        ema_params=params,
        rng=rng,
        tx=tx,
    )


def train_step(
    state: TrainState,
    batch: dict,
    rng: jax.Array,
    *,
    loss_fn: Callable[[Any, dict, jax.Array], jnp.ndarray],
    ema: float,
    ema_warmup: bool = True,
    lr_schedule: optax.Schedule | None = None,
) -> tuple[TrainState, dict]:
    """One optimizer update on the batch mean of ``loss_fn`` and one EMA update (pure).

    .. math:: \\bar\\theta \\leftarrow d\\,\\bar\\theta + (1 - d)\\,\\theta

    Args:
      state: the current state.
      batch: ``{"x": [B, ...], ...}`` as the data pipeline gives it.
      rng: the key of this step (noise, timesteps, dropout).
      loss_fn: ``loss_fn(params, batch, rng) -> [B]`` per-example losses.
      ema: the EMA decay d (see :func:`ema_decay` for ``ema_warmup``).
      lr_schedule: the schedule object the optimizer was built with; its value at this update
        is reported as ``lr``.

    Returns:
      ``(new_state, metrics)`` with scalar metrics ``loss`` and ``grad_norm`` (and ``lr``).
    """
    loss, grads = jax.value_and_grad(lambda p: jnp.mean(loss_fn(p, batch, rng)))(state.params)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    decay = ema_decay(state.step, decay=ema, warmup=ema_warmup)
    ema_params = optax.incremental_update(params, state.ema_params, 1.0 - decay)
    new_state = state.replace(
        step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema_params
    )
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads)}
    if lr_schedule is not None:
        metrics["lr"] = jnp.asarray(lr_schedule(state.step), jnp.float32)
    return new_state, metrics
