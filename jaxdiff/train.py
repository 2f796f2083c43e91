"""Training: the pure train step, the experiment built from a config, and the driver loop.

The pieces, from the inside out:

* :func:`train_step` ``(state, batch, rng) -> (state, metrics)`` is pure: one optax update of
  the mean loss and one EMA update. It knows nothing about devices.
* :func:`build_experiment` resolves the names of a config (model preset, schedule, loss,
  sampler) into callables, once; nothing below it reads a name again.
* :func:`train` is the driver: a ``Mesh`` over all devices with a ``"data"`` axis (the batch
  is sharded along it, the state replicated, one ``jax.jit``), deterministic batches, orbax
  checkpoints (periodic, on SIGTERM/SIGINT, at the end), metrics as JSON lines and TensorBoard
  events, and PNG sample grids.
* :func:`load_run` reopens a workdir (config, model, EMA parameters) for sampling and
  evaluation.

Resuming is exact: batch ``s`` and the step's key are functions of ``(seed, s)`` alone, so a
run restored from its step-``k`` checkpoint computes bit-for-bit what the uninterrupted run
computes.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import math
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxdiff import data as data_lib
from jaxdiff import losses, samplers, schedules
from jaxdiff import sharding as sharding_lib
from jaxdiff.checkpoint import (
    Checkpointer,
    IncompatibleWorkdirError,
    check_compatible,
    load_config,
    save_config,
)
from jaxdiff.diffusion import split_learned_variance

__all__ = [
    "TrainState",
    "learning_rate_schedule",
    "make_optimizer",
    "ema_decay",
    "create_train_state",
    "initial_state",
    "train_step",
    "Experiment",
    "build_experiment",
    "build_sampler",
    "make_train_step",
    "SAMPLERS",
    "TrainingError",
    "Interrupted",
    "train",
    "Run",
    "load_run",
]


# --- the pure step -----------------------------------------------------------------------------


class TrainState(flax.struct.PyTreeNode):
    """Everything a run needs to continue: saved whole in every checkpoint.

    Attributes:
      step: int32 scalar, the number of updates done (and the index of the next batch).
      params: the model parameters.
      opt_state: the optax state.
      ema_params: the exponential moving average of ``params`` (used for sampling).
      rng: the run's base key; step ``s`` uses ``fold_in(rng, s)``.
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
    learning_rate: float,
    warmup_steps: int = 0,
    grad_clip: float | None = 1.0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
) -> optax.GradientTransformation:
    """Adam with a linear learning-rate warmup and global-norm gradient clipping, the optimizer
    of Ho et al. (2020), App. B (CIFAR-10: lr 2e-4, warmup 5000 steps, clip 1.0)."""
    adam = optax.adam(learning_rate_schedule(learning_rate, warmup_steps), b1=b1, b2=b2, eps=eps)
    if grad_clip is None:
        return adam
    return optax.chain(optax.clip_by_global_norm(grad_clip), adam)


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
) -> tuple[TrainState, dict]:
    """One optimizer update on the batch mean of ``loss_fn`` and one EMA update (pure).

    .. math:: \\bar\\theta \\leftarrow d\\,\\bar\\theta + (1 - d)\\,\\theta

    Args:
      state: the current state.
      batch: ``{"x": [B, ...], ...}`` as the data pipeline gives it.
      rng: the key of this step (noise, timesteps, dropout).
      loss_fn: ``loss_fn(params, batch, rng) -> [B]`` per-example losses.
      ema: the EMA decay d (see :func:`ema_decay` for ``ema_warmup``).

    Returns:
      ``(new_state, metrics)`` with scalar metrics ``loss`` and ``grad_norm``.
    """
    loss, grads = jax.value_and_grad(lambda p: jnp.mean(loss_fn(p, batch, rng)))(state.params)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    decay = ema_decay(state.step, decay=ema, warmup=ema_warmup)
    ema_params = optax.incremental_update(params, state.ema_params, 1.0 - decay)
    new_state = state.replace(
        step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema_params
    )
    return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}


# --- from a config to callables ----------------------------------------------------------------


class Experiment(NamedTuple):
    """A config resolved into callables.

    Attributes:
      model: the flax module; called as ``model.apply(variables, x, c, train=...)``.
      process: what the loss and the sampler take as their second argument: a
        :class:`~jaxdiff.schedules.Schedule` (``diffusion.kind = "ddpm"``) or the NCSN noise
        levels ``[L]`` (``"ncsn"``).
      objective: ``objective(model_fn, x0, rng) -> [B]`` per-example losses.
      prior: ``prior(rng, shape) -> x_T``, the sampler's starting point.
      data_shape: the shape of one example (e.g. ``(8, 8, 1)``).
      tx: the optax transformation.
    """

    model: Any
    process: Any
    objective: Callable
    prior: Callable
    data_shape: tuple[int, ...]
    tx: optax.GradientTransformation


def _resolve_model(cfg: ml_collections.ConfigDict, out_channels: int | None):
    """``config.model.preset`` names a constructor in :mod:`jaxdiff.models` (``"ddpm_digits"``,
    ``"UNet"``) or ``"module.Name"`` in a submodule (``"mlp.MLP"``); the other fields are its
    keyword arguments, ``dtype`` given by name (``"bfloat16"``)."""
    import jaxdiff.models

    kwargs = dict(cfg)
    preset = kwargs.pop("preset")
    if "." in preset:
        module_name, _, attr = preset.rpartition(".")
        module = importlib.import_module(f"jaxdiff.models.{module_name}")
    else:
        module, attr = jaxdiff.models, preset
    if not hasattr(module, attr):
        raise ValueError(f"config.model.preset: no model {preset!r} in jaxdiff.models")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    kwargs["dtype"] = jnp.dtype(kwargs.get("dtype", "float32"))
    if out_channels is not None:
        kwargs["out_channels"] = out_channels
    return getattr(module, attr)(**kwargs)


def _normal_prior(rng, shape):
    """x_T ~ N(0, I), where the reverse chain starts (Ho et al. 2020, Alg. 2)."""
    return jax.random.normal(rng, shape)


def _uniform_prior(rng, shape):
    """Uniform noise over the data range, where Song & Ermon (2019) start annealed Langevin."""
    return jax.random.uniform(rng, shape, minval=-1.0, maxval=1.0)


_DDPM_LOSSES = {"simple": losses.simple_loss, "vlb": losses.vlb_loss, "hybrid": losses.hybrid_loss}


def _ddpm_objective(cfg, schedule):
    """``config.loss``: ``name`` picks the loss; its other fields are the loss's keyword
    arguments (``vlb_weight``; ``weighting`` names a weight function of
    :mod:`jaxdiff.losses`, e.g. ``"min_snr"``, with ``gamma``)."""
    options = dict(cfg.loss)
    name = options.pop("name")
    if name not in _DDPM_LOSSES:
        raise ValueError(f"config.loss.name must be one of {sorted(_DDPM_LOSSES)}, got {name!r}")
    options["prediction"] = cfg.diffusion.prediction
    if name != "simple":
        options["variance"] = cfg.diffusion.variance
    if options.get("weighting"):
        weight = getattr(losses, f"{options['weighting']}_weight", None)
        if weight is None:
            raise ValueError(f"config.loss.weighting: no {options['weighting']}_weight in jaxdiff.losses")
        gamma = options.pop("gamma", None)
        options["weighting"] = weight if gamma is None else functools.partial(weight, gamma=gamma)
    loss = _DDPM_LOSSES[name]
    return lambda model_fn, x0, rng: loss(model_fn, schedule, x0, rng, **options)


def _ncsn_objective(cfg, sigmas):
    if cfg.loss.name != "dsm":
        raise ValueError(f"config.loss.name must be 'dsm' for ncsn, got {cfg.loss.name!r}")
    return lambda score_fn, x0, rng: losses.dsm_loss(score_fn, sigmas, x0, rng)


def _train_source(cfg):
    """The dataset the run trains on (``config.data``)."""
    return data_lib.load_source(
        cfg.data.dataset, split=cfg.data.split, data_dir=cfg.data.data_dir, download=cfg.data.download
    )


def build_experiment(config: ml_collections.ConfigDict, *, data_shape=None) -> Experiment:
    """Resolves a config into an :class:`Experiment` (the only place names are looked up).

    Args:
      config: the run's config.
      data_shape: the shape of one example; read from the dataset when None.

    Raises:
      ValueError: for an unknown name or a bad combination of options.
      jaxdiff.data.DataError: for an unknown or unavailable dataset.
    """
    if data_shape is None:
        data_shape = np.shape(_train_source(config)[0]["x"])
    diff = config.diffusion
    learned = diff.get("variance", "fixed_small") in ("learned", "learned_range")
    model = _resolve_model(config.model, 2 * data_shape[-1] if learned else None)
    if diff.kind == "ddpm":
        process = schedules.get(diff.schedule, diff.num_timesteps)
        objective, prior = _ddpm_objective(config, process), _normal_prior
    elif diff.kind == "ncsn":
        process = schedules.geometric_sigmas(diff.sigma_max, diff.sigma_min, diff.num_sigmas)
        objective, prior = _ncsn_objective(config, process), _uniform_prior
    else:
        raise ValueError(f"config.diffusion.kind must be 'ddpm' or 'ncsn', got {diff.kind!r}")
    opt = config.optim
    tx = make_optimizer(
        learning_rate=opt.learning_rate,
        warmup_steps=opt.warmup_steps,
        grad_clip=opt.grad_clip,
        b1=opt.b1,
        b2=opt.b2,
        eps=opt.eps,
    )
    return Experiment(model, process, objective, prior, tuple(data_shape), tx)


def _mean_part(model_fn, variance: str):
    """The model with a learned-variance output cut to its mean half, for the samplers that
    use no variance (DDIM, DPM-Solver, the probability-flow ODE)."""

    def mean_fn(x, t):
        return split_learned_variance(model_fn(x, t), x.shape[-1], variance)[0]

    return mean_fn


# Each entry: (config, process) -> sample(model_fn, x_T, rng) -> x_0. ``config`` is
# ``config.sampling`` merged with the diffusion options.
SAMPLERS: dict[str, Callable] = {
    "ddpm": lambda c, p: lambda f, x, rng: samplers.ddpm_sample(
        f, p, x, rng, variance=c.variance, prediction=c.prediction, clip_denoised=c.clip_denoised,
        num_steps=c.get("ddpm_num_steps"),
    ),
    "ddim": lambda c, p: lambda f, x, rng: samplers.ddim_sample(
        _mean_part(f, c.variance), p, x, rng, num_steps=c.num_steps, eta=c.eta,
        prediction=c.prediction, clip_denoised=c.clip_denoised,
    ),
    "dpm_solver": lambda c, p: lambda f, x, rng: samplers.dpm_solver_sample(
        _mean_part(f, c.variance), p, x, num_steps=c.num_steps, order=c.order,
        prediction=c.prediction,
    ),
    "ode": lambda c, p: lambda f, x, rng: samplers.ode_sample(
        _mean_part(f, c.variance), p, x, method=c.method, num_steps=c.num_steps
    ),
    "langevin": lambda c, p: lambda f, x, rng: samplers.annealed_langevin(
        f, p, x, rng, steps_per_sigma=c.steps_per_sigma, step_lr=c.step_lr
    ),
}


def build_sampler(config: ml_collections.ConfigDict, experiment: Experiment, **overrides):
    """Resolves ``config.sampling.sampler`` into ``sample(variables, rng, num) -> x_0``.

    Args:
      config: the run's config.
      experiment: from :func:`build_experiment`.
      **overrides: replace fields of ``config.sampling`` (``sampler="ddim"``, ``num_steps=50``).

    Returns:
      A function of the model variables, a key and the (static) number of samples, returning
      ``[num, *data_shape]`` float samples in the model range. Jit it as a whole.
    """
    merged = ml_collections.ConfigDict(dict(config.sampling))
    merged.update({k: v for k, v in overrides.items() if v is not None})
    merged.prediction = config.diffusion.get("prediction", "eps")
    merged.variance = config.diffusion.get("variance", "fixed_small")
    if merged.sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {merged.sampler!r}; expected one of {sorted(SAMPLERS)}")
    sample_chain = SAMPLERS[merged.sampler](merged, experiment.process)

    def sample(variables, rng, num: int):
        model_fn = functools.partial(experiment.model.apply, variables)
        prior_key, chain_key = jax.random.split(rng)
        x_t = experiment.prior(prior_key, (num, *experiment.data_shape))
        return sample_chain(model_fn, x_t, chain_key)

    return sample


def initial_state(experiment: Experiment, key, *, rng) -> TrainState:
    """A fresh :class:`TrainState` of an experiment: the model initialised from ``key`` on a
    dummy batch of one example, the run key ``rng``. Use with ``jax.eval_shape`` for the
    abstract state that a checkpoint is restored into."""
    x = jnp.zeros((1, *experiment.data_shape), jnp.float32)
    if isinstance(experiment.process, schedules.Schedule):
        c = jnp.zeros((1,), jnp.int32)  # a timestep
    else:
        c = jnp.ones((1,), jnp.float32)  # a noise level
    params = experiment.model.init({"params": key}, x, c)["params"]
    return create_train_state(params, experiment.tx, rng)


def _make_loss_fn(experiment: Experiment):
    """``loss_fn(params, batch, rng) -> [B]``: scales the batch to [-1, 1], binds the
    parameters and a dropout key into ``model_fn`` and calls the objective."""

    def loss_fn(params, batch, rng):
        dropout_key, loss_key = jax.random.split(rng)
        x0 = data_lib.to_model_range(batch["x"])

        def model_fn(x, c):
            return experiment.model.apply(
                {"params": params}, x, c, train=True, rngs={"dropout": dropout_key}
            )

        return experiment.objective(model_fn, x0, loss_key)

    return loss_fn


def make_train_step(
    experiment: Experiment, mesh: Mesh, *, ema: float, ema_warmup: bool, state_sharding=None
):
    """The compiled step of a run: ``step_fn(state, batch) -> (state, metrics)``.

    One ``jax.jit`` over the whole mesh: the batch is sharded along the mesh's ``"data"`` axis,
    the metrics are replicated, and the state is laid out by ``state_sharding`` (a pytree of
    shardings like the state, e.g. :func:`jaxdiff.sharding.state_shardings` for FSDP;
    replicated when None). XLA inserts the collectives (the gradient all-reduce; with FSDP the
    parameter all-gathers and gradient reduce-scatters). Step ``s`` uses the key
    ``fold_in(state.rng, s)``, so the result does not depend on the device count or the layout
    beyond float rounding.
    """
    replicated = sharding_lib.replicated(mesh)
    loss_fn = _make_loss_fn(experiment)

    def step_fn(state, batch):
        rng = jax.random.fold_in(state.rng, state.step)
        return train_step(state, batch, rng, loss_fn=loss_fn, ema=ema, ema_warmup=ema_warmup)

    state_sharding = replicated if state_sharding is None else state_sharding
    return jax.jit(
        step_fn,
        in_shardings=(state_sharding, sharding_lib.batch_sharding(mesh)),
        out_shardings=(state_sharding, replicated),
    )


# --- the driver ----------------------------------------------------------------------------------


_RUN_INFO = "run.json"  # what a run needs besides its config: the shape of one example


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss); the message says what is kept on disk."""


class Interrupted(Exception):
    """Training stopped on SIGTERM or SIGINT after saving a checkpoint; ``args[0]`` is the signal."""


class _StopSignals:
    """Turns SIGTERM and SIGINT into a flag the loop checks after every step (so it can save a
    checkpoint and exit cleanly); restores the previous handlers on exit."""

    def __init__(self):
        self.received: int | None = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class _Logger:
    """Metrics (means over each logging interval) as JSON lines (``metrics.jsonl``) and
    TensorBoard events (``tensorboard/``), written by process 0 only."""

    def __init__(self, workdir: Path, *, enabled: bool):
        self.enabled = enabled
        if enabled:
            from tensorboardX import SummaryWriter

            self._jsonl = open(workdir / "metrics.jsonl", "a")  # noqa: SIM115
            self._tb = SummaryWriter(str(workdir / "tensorboard"))

    def write(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        self._jsonl.write(json.dumps({"step": step, **metrics}) + "\n")
        self._jsonl.flush()
        for key, value in metrics.items():
            self._tb.add_scalar(f"train/{key}", value, step)

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            self._tb.close()


def _grid_path(workdir: Path, step: int) -> Path:
    return workdir / "samples" / f"step_{step:07d}.png"


def _initialize_distributed(config) -> None:
    """``jax.distributed.initialize`` for multi-host runs (cluster settings auto-detected on
    TPU pods, SLURM, ... or given in ``config.distributed``)."""
    dist = config.get("distributed")
    if dist is None or not dist.initialize:
        return
    kwargs = {k: dist[k] for k in ("coordinator_address", "num_processes", "process_id")}
    jax.distributed.initialize(**{k: v for k, v in kwargs.items() if v is not None})


class _Setup(NamedTuple):
    """Everything :func:`train` needs, built and checked before anything is written."""

    experiment: Experiment
    batches: data_lib.Batches
    mesh: Mesh
    abstract_state: Any  # ShapeDtypeStructs with shardings, for restoring
    init_fn: Callable  # () -> a fresh TrainState on the mesh
    step_fn: Callable  # (state, batch) -> (state, metrics), compiled
    grid_fn: Callable  # (ema_params) -> [num_samples, *data_shape], compiled


def _setup(config: ml_collections.ConfigDict, workdir: Path, devices) -> _Setup:
    tcfg = config.training
    if tcfg.batch_size % len(devices):
        raise ValueError(
            f"config.training.batch_size={tcfg.batch_size} is not divisible by the number of "
            f"devices ({len(devices)})"
        )
    check_compatible(config, workdir)
    source = _train_source(config)
    experiment = build_experiment(config, data_shape=np.shape(source[0]["x"]))
    batches = data_lib.Batches(
        source,
        batch_size=tcfg.batch_size,
        seed=config.seed,
        random_flip=config.data.random_flip,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    mesh = Mesh(np.asarray(devices), ("data",))
    replicated = NamedSharding(mesh, PartitionSpec())
    init_key, state_key, sample_key = jax.random.split(jax.random.PRNGKey(config.seed), 3)
    init = jax.jit(functools.partial(initial_state, experiment, rng=state_key), out_shardings=replicated)
    abstract = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated),
        jax.eval_shape(init, init_key),
    )
    step_fn = make_train_step(experiment, mesh, ema=tcfg.ema_decay, ema_warmup=tcfg.ema_warmup)
    sample_fn = build_sampler(config, experiment)
    grid_fn = jax.jit(
        lambda params: sample_fn({"params": params}, sample_key, config.sampling.num_samples),
        out_shardings=replicated,
    )
    # Trace (without compiling) the step and the sampler now, so that a bad combination of
    # model, data and sampler options fails here, before anything is written.
    batch = {k: jax.ShapeDtypeStruct((tcfg.batch_size, *np.shape(v)), np.asarray(v).dtype)
             for k, v in source[0].items()}
    jax.eval_shape(step_fn, abstract, batch)
    if config.sampling.num_samples:
        jax.eval_shape(grid_fn, abstract.ema_params)
    return _Setup(experiment, batches, mesh, abstract, lambda: init(init_key), step_fn, grid_fn)


def train(
    config: ml_collections.ConfigDict,
    workdir,
    *,
    devices=None,
    log: Callable[[str], None] = print,
) -> TrainState:
    """Trains (or resumes training) as ``config`` says and writes everything into ``workdir``.

    Args:
      config: the run's config (see ``configs/``).
      workdir: the run directory; an existing run there is resumed from its latest readable
        checkpoint.
      devices: the devices to train on (all devices when None).
      log: where progress lines go.

    Returns:
      The final train state (also saved as the last checkpoint).

    Raises:
      ValueError: a bad config (unknown names, a batch size not divisible by the number of
        devices), an unknown dataset, or a workdir holding an incompatible run. Raised before
        anything is written.
      TrainingError: the loss became NaN or Inf (nothing is saved after the last good
        checkpoint).
      Interrupted: SIGTERM or SIGINT arrived; a checkpoint of the current step was saved.
    """
    _initialize_distributed(config)
    workdir = Path(workdir)
    run = _setup(config, workdir, jax.devices() if devices is None else list(devices))
    tcfg = config.training
    is_main = jax.process_index() == 0
    workdir.mkdir(parents=True, exist_ok=True)
    checkpointer = Checkpointer(workdir / "checkpoints", max_to_keep=tcfg.keep_checkpoints)
    restored = checkpointer.restore_latest(run.abstract_state)
    if restored is None and checkpointer.steps():
        checkpointer.close()
        raise IncompatibleWorkdirError(
            f"none of the checkpoints in {checkpointer.directory} can be read; move them away "
            f"or use another --workdir (they are left untouched)"
        )
    if restored is None:
        state = run.init_fn()
    else:
        state = restored[1]
        log(f"resuming from {checkpointer.directory / str(restored[0])}")
    if is_main:
        save_config(config, workdir)
        info = {"data_shape": list(run.experiment.data_shape)}
        (workdir / _RUN_INFO).write_text(json.dumps(info) + "\n")
    lr_schedule = learning_rate_schedule(config.optim.learning_rate, config.optim.warmup_steps)
    logger = _Logger(workdir, enabled=is_main)
    batch_sharding = NamedSharding(run.mesh, PartitionSpec("data"))

    def device_batch(step: int):
        local = run.batches[step]
        return {
            k: jax.make_array_from_process_local_data(batch_sharding, v) for k, v in local.items()
        }

    def check_finite(step: int, loss: float) -> None:
        if not math.isfinite(loss):
            checkpointer.wait()
            kept = checkpointer.steps()
            where = f"step {kept[-1]} in {checkpointer.directory}" if kept else "none was saved"
            raise TrainingError(
                f"loss is {loss} at step {step}; training stopped. Last good checkpoint: {where} "
                f"(intact). Lower config.optim.learning_rate or check the data."
            )

    def grid(step: int, state) -> None:
        if not config.sampling.num_samples:
            return
        samples = jax.device_get(run.grid_fn(state.ema_params))
        if is_main:
            path = _grid_path(workdir, step)
            path.parent.mkdir(parents=True, exist_ok=True)
            data_lib.save_samples_png(samples, path)

    from tqdm import tqdm

    sums: dict[str, float] = {}  # metrics summed since the last log line

    def report(step: int, metrics, bar) -> None:
        """Checks the metrics of ``step`` (reading them waits for that step only); every
        ``log_every`` steps, logs their means since the last log line."""
        nonlocal tic, tic_step
        values = {k: float(v) for k, v in metrics.items()}
        check_finite(step, values["loss"])
        bar.set_postfix(loss=f"{values['loss']:.4f}", refresh=False)
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v
        if step % tcfg.log_every == 0:
            count = step + 1 - tic_step
            means = {k: v / count for k, v in sums.items()}
            rate = count / max(time.time() - tic, 1e-9)
            logger.write(step, {**means, "lr": float(lr_schedule(step)), "steps_per_sec": rate})
            bar.write(
                f"step {step}: loss {means['loss']:.4f}  grad_norm {means['grad_norm']:.3f}  "
                f"{rate:.1f} steps/s"
            )
            sums.clear()
            tic, tic_step = time.time(), step + 1

    start = int(state.step)
    num_steps = tcfg.num_steps
    tic, tic_step = time.time(), start
    try:
        with _StopSignals() as stop, tqdm(
            total=num_steps, initial=start, disable=None, dynamic_ncols=True, leave=False
        ) as bar:
            pending = None  # the previous step's metrics, read one step late (async dispatch)
            for step in range(start, num_steps):
                state, metrics = run.step_fn(state, device_batch(step))
                if pending is not None:
                    report(*pending, bar)
                pending = (step, metrics)
                bar.update(1)
                done = step + 1
                if stop.received is not None or (
                    done % tcfg.checkpoint_every == 0 and done < num_steps
                ):
                    report(*pending, bar)
                    pending = None
                    checkpointer.save(done, state)
                if stop.received is not None:
                    checkpointer.wait()
                    log(
                        f"received signal {stop.received}: saved checkpoint at step {done} in "
                        f"{checkpointer.directory}; rerun the same command to resume"
                    )
                    raise Interrupted(stop.received)
                if tcfg.sample_every and done % tcfg.sample_every == 0 and done < num_steps:
                    grid(done, state)
            if pending is not None:
                report(*pending, bar)
        final = int(state.step)
        if final not in checkpointer.steps():
            checkpointer.save(final, state)
        if not _grid_path(workdir, final).exists():
            grid(final, state)
        checkpointer.wait()
        grid_note = f"; samples in {_grid_path(workdir, final)}" if config.sampling.num_samples else ""
        log(f"done: step {final}; checkpoint in {checkpointer.directory / str(final)}{grid_note}")
        return state
    finally:
        checkpointer.wait()
        checkpointer.close()
        logger.close()


# --- reopening a run -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Run:
    """A trained run reopened from its workdir.

    Attributes:
      config: the saved config.
      experiment: the config resolved (model, process, objective, prior, ...).
      variables: ``{"params": EMA parameters}`` of the latest checkpoint, for ``model.apply``.
      step: the step of that checkpoint.
    """

    config: ml_collections.ConfigDict
    experiment: Experiment
    variables: dict
    step: int

    @property
    def model_fn(self) -> Callable:
        """``model_fn(x_t, t)`` of the EMA model (deterministic: no dropout)."""
        return functools.partial(self.experiment.model.apply, self.variables)

    @property
    def schedule(self):
        """The schedule (DDPM runs) or the noise levels (NCSN runs)."""
        return self.experiment.process


def load_run(workdir) -> Run:
    """Loads a run's config and the EMA parameters of its latest readable checkpoint.

    Raises:
      FileNotFoundError: the workdir holds no run or no readable checkpoint.
    """
    workdir = Path(workdir)
    config = load_config(workdir)
    info = json.loads((workdir / _RUN_INFO).read_text())
    experiment = build_experiment(config, data_shape=tuple(info["data_shape"]))

    key = jax.random.PRNGKey(0)
    abstract = jax.eval_shape(functools.partial(initial_state, experiment, rng=key), key)
    checkpointer = Checkpointer(workdir / "checkpoints", asynchronous=False)
    try:
        restored = checkpointer.restore_latest(abstract)
    finally:
        checkpointer.close()
    if restored is None:
        raise FileNotFoundError(f"no readable checkpoint in {workdir / 'checkpoints'}")
    step, state = restored
    return Run(config, experiment, {"params": state.ema_params}, step)
