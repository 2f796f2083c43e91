"""The training driver: any :class:`~jaxdiff.engine.family.Family` on a device mesh, with
deterministic batches, orbax checkpoints, metrics, sample grids, signals and exact resumption.

The mesh spans every device of every process (:mod:`jaxdiff.sharding`): the batch is split
along its ``"data"`` axis, each process loading only its part; the state is replicated or,
with ``config.sharding.fsdp``, sharded. Checkpoints are written and restored by all processes
together; a stop on SIGTERM/SIGINT happens at one step agreed by all of them
(:mod:`jaxdiff.distributed`); the primary process alone writes logs, metrics, the config and
sample grids.

Resuming is exact: batch ``s`` and the step's key are functions of ``(seed, s)`` alone, so a
run restored from its step-``k`` checkpoint computes bit-for-bit what the uninterrupted run
computes.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh
from tqdm import tqdm

from jaxdiff import data as data_lib
from jaxdiff import distributed
from jaxdiff import sharding as sharding_lib
from jaxdiff._io import OutputWriteError, read_json_object, write_text
from jaxdiff.checkpoint import Checkpointer, IncompatibleWorkdirError, check_compatible, save_config
from jaxdiff.metrics.batching import as_array, map_batches
from jaxdiff.engine.checks import check_config
from jaxdiff.engine.family import Family, run_keys
from jaxdiff.workdir import WorkdirLock, check_contained, open_append

__all__ = [
    "RUN_INFO",
    "BEST_DIR",
    "BEST_INFO",
    "TrainingError",
    "Interrupted",
    "train",
    "train_source",
    "compile_train_step",
    "load_state",
    "data_shape_of",
]

RUN_INFO = "run.json"  # what a run needs besides its config: the shape of one example
BEST_DIR = "best"  # the checkpoint of the best held-out bound (early stopping)
BEST_INFO = "best.json"  # its step and bound: {"step": ..., "valid_bpd": ...}


def train_source(cfg):
    """The dataset the run trains on (``config.data``)."""
    return data_lib.config_source(cfg.data)


def _all_finite(tree) -> jax.Array:
    """True when every float leaf of ``tree`` is free of NaN and Inf."""
    leaves = [leaf for leaf in jax.tree.leaves(tree) if jnp.issubdtype(leaf.dtype, jnp.inexact)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


def compile_train_step(
    pure_step: Callable, mesh: Mesh, *, run_key=None, state_sharding=None, check_finite=True
) -> Callable:
    """A family's pure ``train_step(state, batch, rng)`` as the compiled step of a run:
    ``step_fn(state, batch) -> (state, metrics, finite)`` (without ``finite`` when
    ``check_finite`` is False).

    One ``jax.jit`` over the whole mesh: the batch is sharded along the mesh's ``"data"`` axis,
    the metrics are replicated, and the state is laid out by ``state_sharding`` (a pytree of
    shardings like the state, e.g. :func:`jaxdiff.sharding.state_shardings` for FSDP;
    replicated when None). XLA inserts the collectives (the gradient all-reduce; with FSDP the
    parameter all-gathers and gradient reduce-scatters). Step ``s`` uses the key
    ``fold_in(run_key, s)`` (``run_key`` None: ``state.rng``), so the result does not depend on
    the device count or the layout beyond float rounding. ``finite`` is False when any metric
    or any float leaf of the new state is NaN or Inf.
    """
    replicated = sharding_lib.replicated(mesh)
    state_sharding = replicated if state_sharding is None else state_sharding

    def step_fn(state, batch):
        key = state.rng if run_key is None else run_key
        new_state, metrics = pure_step(state, batch, jax.random.fold_in(key, state.step))
        if not check_finite:
            return new_state, metrics
        return new_state, metrics, _all_finite((new_state, metrics))

    outputs = (state_sharding, replicated, replicated)
    return jax.jit(
        step_fn,
        in_shardings=(state_sharding, sharding_lib.batch_sharding(mesh)),
        out_shardings=outputs if check_finite else outputs[:2],
    )


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, gradient or state); the message says which
    step was the last finite one and what is kept on disk."""


class Interrupted(Exception):
    """Training stopped on SIGTERM or SIGINT after saving a checkpoint; ``args[0]`` is the signal."""


class _Logger:
    """Metrics (means over each logging interval) as JSON lines (``metrics.jsonl``) and
    TensorBoard events (``tensorboard/``), written by process 0 only.

    Each line is one ``write`` of a whole line; a partial last line (a crash or a full disk
    mid-write) is cut off when the file is reopened. A failed write is an
    :class:`~jaxdiff._io.OutputWriteError`.
    """

    def __init__(self, workdir: Path, *, enabled: bool):
        self.enabled = enabled
        if not enabled:
            return
        from tensorboardX import SummaryWriter

        self.path = workdir / "metrics.jsonl"
        try:
            _drop_partial_line(self.path)
            self._jsonl = open_append(self.path)
            self._tb = SummaryWriter(str(workdir / "tensorboard"))
        except OSError as e:
            raise OutputWriteError(f"could not open {self.path}: {e.strerror or e}") from e

    def write(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        try:
            self._jsonl.write(json.dumps({"step": step, **metrics}) + "\n")
            self._jsonl.flush()
            for key, value in metrics.items():
                self._tb.add_scalar(f"train/{key}", value, step)
        except OSError as e:
            raise OutputWriteError(f"could not write {self.path}: {e.strerror or e}") from e

    def close(self, *, quiet: bool = False) -> None:
        """Flushes and closes; with ``quiet`` (another error is being raised) a failure to
        flush is dropped, and TensorBoard's writer is told it is closed so that it does not
        retry at exit."""
        if not self.enabled:
            return
        self.enabled = False
        try:
            self._jsonl.close()
            self._tb.close()
        except OSError as e:
            _abandon(self._tb)
            if not quiet:
                raise OutputWriteError(f"could not write {self.path}: {e.strerror or e}") from e


def _drop_partial_line(path: Path) -> None:
    with open_append(path) as f:  # never through a link
        fd = f.fileno()
        data = os.pread(fd, os.fstat(fd).st_size, 0)
        if data and not data.endswith(b"\n"):
            os.ftruncate(fd, data.rfind(b"\n") + 1)


def _abandon(tb) -> None:
    """Stops tensorboardX's writer after a failed flush (it would retry, and print a traceback,
    at exit). tensorboardX has no public call for this; it marks its event writers closed."""
    for writer in getattr(tb, "all_writers", {}).values():
        event_writer = getattr(writer, "event_writer", None)
        worker = getattr(event_writer, "_worker", None)
        if worker is not None:
            try:
                worker.stop()
            except Exception:  # noqa: BLE001, S110 - best effort, the error is reported
                pass
        if event_writer is not None:
            event_writer._closed = True


def grid_path(workdir: Path, step: int) -> Path:
    return workdir / "samples" / f"step_{step:07d}.png"


class _Setup(NamedTuple):
    """Everything :func:`train` needs, built and checked before anything is written."""

    family: Family
    batches: data_lib.Batches
    mesh: Mesh
    abstract_state: Any  # ShapeDtypeStructs with shardings, for restoring
    init_fn: Callable  # () -> a fresh state on the mesh
    step_fn: Callable  # (state, batch) -> (state, metrics, finite), compiled
    grid_fn: Callable  # (state) -> [num_samples, *data_shape], compiled
    valid_fn: Callable | None  # (state) -> the mean held-out bound; None: no early stopping


def _mesh_and_layout(config: ml_collections.ConfigDict, devices=None) -> tuple[Mesh, Callable]:
    """The run's mesh over ``devices`` (all devices when None), and ``abstract_state ->
    shardings`` as ``config.sharding`` says (FSDP or replicated; a ``"model"`` axis of
    ``model_parallel`` devices). Runs saved before ``config.sharding`` existed are replicated."""
    scfg = config.get("sharding") or ml_collections.ConfigDict()
    mesh = sharding_lib.make_mesh(devices, model_parallel=scfg.get("model_parallel", 1))
    return mesh, functools.partial(
        sharding_lib.state_shardings,
        mesh=mesh,
        fsdp=scfg.get("fsdp", False),
        min_size=scfg.get("min_size", 1024),
    )


def _setup(config: ml_collections.ConfigDict, workdir: Path, devices, build_family) -> _Setup:
    tcfg = config.training
    mesh, state_layout = _mesh_and_layout(config, devices)
    data_parallel = dict(mesh.shape)[sharding_lib.DATA]
    if tcfg.batch_size % data_parallel:
        raise ValueError(
            f"config.training.batch_size={tcfg.batch_size} is not divisible by the number of "
            f"devices ({len(devices)}) over config.sharding.model_parallel ({data_parallel} "
            f"batch parts)"
        )
    check_compatible(config, workdir)
    source = train_source(config)
    family = build_family(config, np.shape(source[0]["x"]))
    batches = data_lib.Batches(
        source,
        batch_size=tcfg.batch_size,
        seed=config.seed,
        random_flip=config.data.random_flip,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    replicated = sharding_lib.replicated(mesh)
    init_key, run_key, sample_key = run_keys(config.seed)
    shardings = state_layout(jax.eval_shape(family.init_state, init_key))
    init = jax.jit(family.init_state, out_shardings=shardings)
    abstract = sharding_lib.abstract(jax.eval_shape(init, init_key), shardings)
    step_fn = compile_train_step(family.train_step, mesh, run_key=run_key, state_sharding=shardings)
    num = config.sampling.num_samples
    grid_fn = jax.jit(lambda state: family.sample(state, sample_key, num), out_shardings=replicated)
    # Trace (without compiling) the step and the sampler now, so that a bad combination of
    # model, data and sampler options fails here, before anything is written.
    batch = {k: jax.ShapeDtypeStruct((tcfg.batch_size, *np.shape(v)), np.asarray(v).dtype)
             for k, v in source[0].items()}
    jax.eval_shape(step_fn, abstract, batch)
    if num:
        jax.eval_shape(grid_fn, abstract)
    valid_fn = _validation_fn(config, family, mesh)
    return _Setup(
        family, batches, mesh, abstract, lambda: init(init_key), step_fn, grid_fn, valid_fn
    )


def _validation_fn(config: ml_collections.ConfigDict, family: Family, mesh: Mesh):
    """``valid(state) -> float``, the family's held-out bound (bits/dim) averaged over
    ``config.training.validation.split``, always with the same key (every evaluation sees the
    same timesteps and noise, so that two states are compared on equal terms); None when
    ``validation.every`` is 0."""
    vcfg = config.training.get("validation")
    if not vcfg or not vcfg.every:
        return None
    if family.validate is None:
        raise ValueError(
            "config.training.validation.every must be 0 for this run: its family or process "
            "has no held-out bound to stop on"
        )
    images = as_array(
        data_lib.config_source(config.data, split=vcfg.split)
    )
    shards = dict(mesh.shape)[sharding_lib.DATA]
    batch_size = -(-min(vcfg.batch_size, images.shape[0]) // shards) * shards
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1)

    def bound(key, state, batch, index):
        return family.validate(state, {"x": batch}, jax.random.fold_in(key, index))

    def valid(state) -> float:
        values = map_batches(bound, images, batch_size=batch_size, mesh=mesh, args=(key, state))
        return float(np.mean(values, dtype=np.float64))

    return valid


class _EarlyStopping:
    """Keeps the state of the best held-out bound in ``WORKDIR/best/`` (one orbax checkpoint;
    its step and bound in ``best.json``) and counts the evaluations since; a resumed run picks
    both up from the files.

    Args:
      workdir: the run directory.
      every, patience: ``config.training.validation``'s fields.
      start: the step training starts (or resumes) from.
      is_main: whether this process writes ``best.json``.
    """

    def __init__(self, workdir: Path, *, every: int, patience: int, start: int, is_main: bool):
        self.info_path = workdir / BEST_INFO
        self.checkpointer = Checkpointer(workdir / BEST_DIR, max_to_keep=1, asynchronous=False)
        info = json.loads(self.info_path.read_text()) if self.info_path.is_file() else None
        self.best = info["valid_bpd"] if info else float("inf")
        self.best_step = info["step"] if info else None
        self.stale = start // every - self.best_step // every if info else 0
        self.patience, self.is_main = patience, is_main

    def update(self, step: int, value: float, state) -> bool:
        """Records the bound of ``state`` at ``step``; True when training should stop."""
        if value < self.best:
            self.checkpointer.save(step, state)
            self.best, self.best_step, self.stale = value, step, 0
            if self.is_main:
                info = json.dumps({"step": step, "valid_bpd": value}) + "\n"
                write_text(self.info_path, info, overwrite=True)
        else:
            self.stale += 1
        return bool(self.patience) and self.stale >= self.patience

    def close(self) -> None:
        self.checkpointer.close()


def _non_finite(values: dict[str, float], state_finite: bool) -> str | None:
    """What went non-finite in a step, or None."""
    bad = [f"{k} is {v}" for k, v in values.items() if not np.isfinite(v)]
    if not state_finite:
        bad.append("the updated state holds NaN or Inf")
    return ", ".join(bad) or None


def train(
    config: ml_collections.ConfigDict,
    workdir,
    *,
    build_family: Callable[[ml_collections.ConfigDict, tuple[int, ...]], Family],
    devices=None,
    log: Callable[[str], None] = print,
):
    """Trains (or resumes training) as ``config`` says and writes everything into ``workdir``.

    Args:
      config: the run's config (see ``configs/``).
      build_family: ``(config, data_shape) -> Family``, the model family trained
        (:func:`jaxdiff.families.resolve` for the shipped ones).
      workdir: the run directory; an existing run there is resumed from its latest readable
        checkpoint.
      devices: the devices to train on (all devices when None).
      log: where progress lines go.

    Returns:
      The final train state (also saved as the last checkpoint).

    Raises:
      ValueError: a bad config (unknown names, a batch size not divisible by the number of
        devices), an unknown dataset, a workdir holding an incompatible run, a workdir that
        another training is writing (:class:`~jaxdiff.workdir.WorkdirBusyError`), or one
        with a symbolic link out of it (:class:`~jaxdiff.workdir.UnsafeWorkdirError`).
        Raised before anything is written.
      TrainingError: the loss, a metric or the updated state became NaN or Inf; that state is
        not saved, and the message names the last finite step.
      Interrupted: SIGTERM or SIGINT arrived; a checkpoint of the current step was saved.
    """
    check_config(config)
    distributed.initialize(config.get("distributed"))
    distributed.check_backend()
    workdir = Path(workdir)
    check_contained(workdir)
    devices = jax.devices() if devices is None else list(devices)
    run = _setup(config, workdir, devices, build_family)
    is_main = distributed.is_primary()
    workdir.mkdir(parents=True, exist_ok=True)
    with WorkdirLock(workdir) if is_main else contextlib.nullcontext():  # one writer
        return _train(config, workdir, run, is_main=is_main, log=log)


def _train(config, workdir: Path, run: _Setup, *, is_main: bool, log: Callable[[str], None]):
    """:func:`train` once the run is set up, checked and its workdir locked."""
    if not is_main:
        log = lambda _: None  # noqa: E731 - one voice: the primary's
    checkpointer, state = _open_run(config, workdir, run, is_main=is_main, log=log)
    try:
        logger = _Logger(workdir, enabled=is_main)
    except OutputWriteError:
        checkpointer.close()
        raise
    stopper = None
    if run.valid_fn is not None:
        vcfg = config.training.validation
        stopper = _EarlyStopping(
            workdir, every=vcfg.every, patience=vcfg.patience, start=int(state.step),
            is_main=is_main,
        )
    progress = _Progress(config, workdir, run, checkpointer, logger, stopper, is_main=is_main)
    try:
        state = _steps(config, run, state, checkpointer, progress, log)
        final = int(state.step)
        if final not in checkpointer.steps():
            checkpointer.save(final, state)
        if not grid_path(workdir, final).exists():
            progress.grid(final, state)
        checkpointer.wait()
    except BaseException:
        checkpointer.close()  # waits for a save still in flight; its failure was raised above
        logger.close(quiet=True)
        if stopper is not None:
            stopper.close()
        raise
    checkpointer.close()
    if stopper is not None:
        stopper.close()
        log(f"best held-out bound {stopper.best:.4f} bits/dim at step {stopper.best_step}, "
            f"in {stopper.checkpointer.directory}")
    logger.close()
    grid_note = f"; samples in {grid_path(workdir, final)}" if config.sampling.num_samples else ""
    log(f"done: step {final}; checkpoint in {checkpointer.directory / str(final)}{grid_note}")
    return state


def _open_run(config, workdir: Path, run: _Setup, *, is_main: bool, log):
    """The run's checkpointer and the state to start from: the latest readable checkpoint of
    ``workdir``, else a fresh state; the config and ``run.json`` written (by the primary).

    Raises:
      IncompatibleWorkdirError: checkpoints are there but none can be read (they are left).
    """
    checkpointer = Checkpointer(workdir / "checkpoints", max_to_keep=config.training.keep_checkpoints)
    try:
        restored = checkpointer.restore_latest(run.abstract_state, move_aside=is_main)
    except IncompatibleWorkdirError:
        checkpointer.close()
        raise
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
        info = {"data_shape": list(run.family.data_shape)}
        write_text(workdir / RUN_INFO, json.dumps(info) + "\n", overwrite=True)
    return checkpointer, state


class _Progress:
    """What happens between steps: each step's metrics checked for NaN/Inf and summed, their
    means logged every ``log_every`` steps, the sample grids and the held-out bound."""

    def __init__(self, config, workdir: Path, run: _Setup, checkpointer, logger, stopper, *,
                 is_main: bool):
        self.config, self.workdir, self.run = config, workdir, run
        self.checkpointer, self.logger, self.stopper = checkpointer, logger, stopper
        self.is_main = is_main
        self.sums: dict[str, float] = {}  # metrics summed since the last log line
        self.tic, self.tic_step = time.time(), None

    def check_finite(self, step: int, values: dict, state_finite: bool) -> None:
        problem = _non_finite(values, state_finite)
        if problem is None:
            return
        self.checkpointer.wait()
        kept = self.checkpointer.steps()
        where = f"step {kept[-1]} in {self.checkpointer.directory}" if kept else "none was saved"
        raise TrainingError(
            f"non-finite values in the update of step {step} ({problem}); training stopped "
            f"without saving that state. The last finite state was step {step}; last "
            f"checkpoint: {where} (intact). Lower config.optim.learning_rate or check the data."
        )

    def grid(self, step: int, state) -> None:
        if not self.config.sampling.num_samples:
            return
        samples = jax.device_get(self.run.grid_fn(state))
        if self.is_main:
            path = grid_path(self.workdir, step)
            path.parent.mkdir(parents=True, exist_ok=True)
            data_lib.save_samples_png(samples, path)

    def report(self, step: int, metrics, finite, bar) -> None:
        """Checks the metrics of ``step`` (reading them waits for that step only); every
        ``log_every`` steps, logs their means since the last log line."""
        values = {k: float(v) for k, v in metrics.items()}
        self.check_finite(step, values, bool(finite))
        bar.set_postfix(loss=f"{values['loss']:.4f}", refresh=False)
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        if step % self.config.training.log_every:
            return
        count = step + 1 - self.tic_step
        means = {k: v / count for k, v in self.sums.items()}
        if "lr" in values:  # the optimizer's own rate at this step, not a mean
            means["lr"] = values["lr"]
        rate = count / max(time.time() - self.tic, 1e-9)
        self.logger.write(step, {**means, "steps_per_sec": rate})
        extra = "".join(f"  {k} {means[k]:.3f}" for k in means if k not in ("loss", "lr"))
        if self.is_main:
            bar.write(f"step {step}: loss {means['loss']:.4f}{extra}  {rate:.1f} steps/s")
        self.sums.clear()
        self.tic, self.tic_step = time.time(), step + 1

    def flush(self, pending, bar) -> None:
        """Reports the metrics still pending, if any; returns None, the new pending."""
        if pending is not None:
            self.report(*pending, bar)

    def validate(self, step: int, state, bar) -> bool:
        """The held-out bound of ``state``, logged; True when training should stop early."""
        value = self.run.valid_fn(state)
        self.logger.write(step, {"valid_bpd": value})
        stop = self.stopper.update(step, value, state)
        if self.is_main:
            best = self.stopper
            bar.write(
                f"step {step}: held-out bound {value:.4f} bits/dim (best {best.best:.4f} "
                f"at step {best.best_step})" + ("; stopping early" if stop else "")
            )
        return stop


def _steps(config, run: _Setup, state, checkpointer, progress: _Progress, log):
    """The steps from ``state.step`` to ``config.training.num_steps``, with periodic
    checkpoints, grids and held-out bounds; stops early, or on SIGTERM/SIGINT (saving the
    step all processes agree on, then raising :class:`Interrupted`). Returns the last state."""
    tcfg = config.training
    vcfg = tcfg.get("validation")
    sharding = sharding_lib.batch_sharding(run.mesh)
    start, num_steps = int(state.step), tcfg.num_steps
    progress.tic, progress.tic_step = time.time(), start
    with distributed.StopSignals() as stop, tqdm(
        total=num_steps, initial=start, disable=None if progress.is_main else True,
        dynamic_ncols=True, leave=False,
    ) as bar:
        pending = None  # the previous step's metrics, read one step late (async dispatch)
        for step in range(start, num_steps):
            batch = {k: jax.make_array_from_process_local_data(sharding, v)
                     for k, v in run.batches[step].items()}  # this process's part of batch step
            state, metrics, finite = run.step_fn(state, batch)
            progress.flush(pending, bar)
            pending = (step, metrics, finite)
            bar.update(1)
            done = step + 1
            stopping = stop.should_stop(done)  # the same in every process
            if stopping or (done % tcfg.checkpoint_every == 0 and done < num_steps):
                pending = progress.flush(pending, bar)
                checkpointer.save(done, state)
            if stopping:
                checkpointer.wait()
                log(
                    f"received signal {stop.received}: saved checkpoint at step {done} in "
                    f"{checkpointer.directory}; rerun the same command to resume"
                )
                raise Interrupted(stop.received)
            if tcfg.sample_every and done % tcfg.sample_every == 0 and done < num_steps:
                pending = progress.flush(pending, bar)
                progress.grid(done, state)
            if progress.stopper is not None and (done % vcfg.every == 0 or done == num_steps):
                pending = progress.flush(pending, bar)
                if progress.validate(done, state, bar):
                    break
        progress.flush(pending, bar)
    return state


def load_state(workdir, init_state: Callable, *, devices=None, checkpoint: str = "best"):
    """The train state of a run's checkpoint, restored replicated on ``devices`` (all devices
    when None), whatever the number of devices and the layout (replicated or FSDP) it was
    trained with.

    Args:
      workdir: the run directory.
      init_state: the family's ``init_state``, for the state's structure (never run).
      checkpoint: ``"best"``, the checkpoint of the best held-out bound when the run kept one
        (``WORKDIR/best/``, written by early stopping), else the latest readable one;
        ``"latest"``, always the latest.

    Returns:
      ``(step, state)``.

    Raises:
      ValueError: ``checkpoint`` is neither name.
      FileNotFoundError: the workdir holds no readable checkpoint.
    """
    if checkpoint not in ("best", "latest"):
        raise ValueError(f"checkpoint must be 'best' or 'latest', got {checkpoint!r}")
    workdir = Path(workdir)
    shapes = jax.eval_shape(init_state, jax.random.PRNGKey(0))
    replicated = sharding_lib.replicated(sharding_lib.make_mesh(devices))
    abstract = sharding_lib.abstract(shapes, jax.tree.map(lambda _: replicated, shapes))
    directories = [workdir / "checkpoints"]
    if checkpoint == "best" and (workdir / BEST_DIR).is_dir():
        directories.insert(0, workdir / BEST_DIR)
    for directory in directories:
        checkpointer = Checkpointer(directory, asynchronous=False)
        try:
            restored = checkpointer.restore_latest(abstract)
        finally:
            checkpointer.close()
        if restored is not None:
            return restored
    raise FileNotFoundError(f"no readable checkpoint in {workdir / 'checkpoints'}")


def data_shape_of(workdir) -> tuple[int, ...]:
    """The shape of one example of the run in ``workdir`` (its ``run.json``)."""
    info = read_json_object(Path(workdir) / RUN_INFO, what="the run's shapes")
    return tuple(info["data_shape"])
