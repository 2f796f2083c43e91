"""Training: the pure train step, the experiment built from a config, and the driver loop.

The modules, from the inside out (every public name is importable from ``jaxdiff.train``):

* :mod:`jaxdiff.train.step`: :func:`train_step` ``(state, batch, rng) -> (state, metrics)``
  is pure: one optax update of the mean loss and one EMA update. It knows nothing about
  devices. :class:`TrainState`, :func:`make_optimizer`, :func:`ema_decay`.
* :mod:`jaxdiff.train.family`: the interface between the driver and a model family,
  :class:`Family` ``(init_state, train_step, sample, data_shape)``, and :data:`FAMILIES`,
  where a new family (a VAE, a GAN) registers its builder. Read its docstring to add one.
* :mod:`jaxdiff.train.experiment`: the diffusion family. :func:`build_experiment` resolves the
  names of a config (model preset, noise process, objective, sampler) into callables, once;
  new objectives join :data:`OBJECTIVES`, new processes :data:`PROCESSES`.
* :mod:`jaxdiff.train.loop`: :func:`train`, the driver: a mesh over all devices of all
  processes (:mod:`jaxdiff.sharding`; the batch is split along its ``"data"`` axis, the state
  replicated or, with ``config.sharding.fsdp``, sharded; one ``jax.jit``), deterministic
  batches (each process loads its part), orbax checkpoints written by all processes together
  (periodic, on SIGTERM/SIGINT at a step all processes agree on, at the end), metrics as JSON
  lines and TensorBoard events (the learning rate is the optimizer's own schedule at each
  step), PNG sample grids, and a stop without saving on NaN/Inf. Several processes:
  :mod:`jaxdiff.distributed`.
* :mod:`jaxdiff.train.run`: :func:`load_run` reopens a workdir (config, model, EMA
  parameters) for sampling and evaluation, on any number of devices.

Resuming is exact: batch ``s`` and the step's key are functions of ``(seed, s)`` alone, so a
run restored from its step-``k`` checkpoint computes bit-for-bit what the uninterrupted run
computes.
"""

from jaxdiff.train import experiment, family, loop, run, step
from jaxdiff.train.experiment import OBJECTIVES as OBJECTIVES
from jaxdiff.train.experiment import PROCESSES as PROCESSES
from jaxdiff.train.experiment import SAMPLERS as SAMPLERS
from jaxdiff.train.experiment import Experiment as Experiment
from jaxdiff.train.experiment import Process as Process
from jaxdiff.train.experiment import build_experiment as build_experiment
from jaxdiff.train.experiment import build_sampler as build_sampler
from jaxdiff.train.experiment import compile_train_step as compile_train_step
from jaxdiff.train.experiment import diffusion_family as diffusion_family
from jaxdiff.train.experiment import initial_state as initial_state
from jaxdiff.train.experiment import make_loss_fn as make_loss_fn
from jaxdiff.train.experiment import make_train_step as make_train_step
from jaxdiff.train.family import FAMILIES as FAMILIES
from jaxdiff.train.family import Family as Family
from jaxdiff.train.family import build_family as build_family
from jaxdiff.train.loop import Interrupted as Interrupted
from jaxdiff.train.loop import TrainingError as TrainingError
from jaxdiff.train.loop import train as train
from jaxdiff.train.run import Run as Run
from jaxdiff.train.run import load_run as load_run
from jaxdiff.train.step import TrainState as TrainState
from jaxdiff.train.step import create_train_state as create_train_state
from jaxdiff.train.step import ema_decay as ema_decay
from jaxdiff.train.step import learning_rate_schedule as learning_rate_schedule
from jaxdiff.train.step import make_optimizer as make_optimizer
from jaxdiff.train.step import train_step as train_step

__all__ = [
    *step.__all__,
    *(name for name in family.__all__ if name != "run_keys"),
    *(name for name in experiment.__all__ if name != "train_source"),
    *(name for name in loop.__all__ if name != "RUN_INFO"),
    *run.__all__,
]
