"""Training and trained runs: a config's family (:mod:`jaxdiff.families`) on the engine
(:mod:`jaxdiff.engine`).

* :func:`train` ``(config, workdir)``: trains or resumes the run the config describes.
* :func:`load_run` reopens a workdir (config, family, state) for sampling and evaluation, on any
  number of devices; :class:`Run` is what it returns.

The pieces are importable from here too: the engine's (:class:`TrainState`,
:func:`train_step`, :func:`make_optimizer`, :class:`Family`, ...) and the diffusion family's
(:func:`build_experiment`, :func:`build_sampler`, :func:`initial_state`, ...).

Resuming is exact: batch ``s`` and the step's key are functions of ``(seed, s)`` alone, so a
run restored from its step-``k`` checkpoint computes bit-for-bit what the uninterrupted run
computes.
"""

from jaxdiff.engine import Estimate as Estimate
from jaxdiff.engine import Family as Family
from jaxdiff.engine import Interrupted as Interrupted
from jaxdiff.engine import TrainingError as TrainingError
from jaxdiff.engine import TrainState as TrainState
from jaxdiff.engine import compile_train_step as compile_train_step
from jaxdiff.engine import create_train_state as create_train_state
from jaxdiff.engine import ema_decay as ema_decay
from jaxdiff.engine import learning_rate_schedule as learning_rate_schedule
from jaxdiff.engine import make_optimizer as make_optimizer
from jaxdiff.engine import train_step as train_step
from jaxdiff.families import FAMILIES as FAMILIES
from jaxdiff.families import resolve as resolve
from jaxdiff.families.diffusion import SAMPLERS as SAMPLERS
from jaxdiff.families.diffusion import Experiment as Experiment
from jaxdiff.families.diffusion import build_experiment as build_experiment
from jaxdiff.families.diffusion import build_sampler as build_sampler
from jaxdiff.families.diffusion import initial_state as initial_state
from jaxdiff.families.diffusion import make_loss_fn as make_loss_fn
from jaxdiff.families.diffusion import make_train_step as make_train_step
from jaxdiff.engine import Run as Run
from jaxdiff.train.run import load_run as load_run
from jaxdiff.train.run import train as train

__all__ = ["train", "load_run", "Run", "resolve", "Family", "TrainingError", "Interrupted"]
