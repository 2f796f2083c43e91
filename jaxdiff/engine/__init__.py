"""The engine: what trains, saves and reloads any model family, knowing none of them.

* :mod:`jaxdiff.engine.step`: the pure train step, :class:`TrainState`, the optimizer, the EMA.
* :mod:`jaxdiff.engine.family`: :class:`Family`, the interface a model family gives the engine
  (``init_state``, ``train_step``, ``sample``; optionally ``validate``, ``bound``,
  ``likelihood``), and :class:`Estimate`, a family's likelihood or bound.
* :mod:`jaxdiff.engine.loop`: :func:`train`, the driver (a mesh over all devices, deterministic
  batches, orbax checkpoints, metrics, sample grids, signals, early stopping, exact resumption),
  and :func:`load_state`, a run's state back from its workdir.
* :mod:`jaxdiff.engine.run`: :class:`Run` and :func:`load_run`, a trained run reopened with a
  family builder.
* :mod:`jaxdiff.engine.checks`: the driver's config fields checked before anything is written,
  and :class:`Checker`, with which a family checks its own.

The engine imports no family; :mod:`jaxdiff.families` builds them from a config, and
:mod:`jaxdiff.train` puts the two together.
"""

from jaxdiff.engine import checks, family, loop, run, step
from jaxdiff.engine.checks import Checker as Checker
from jaxdiff.engine.checks import check_config as check_config
from jaxdiff.engine.family import Estimate as Estimate
from jaxdiff.engine.family import Family as Family
from jaxdiff.engine.family import bind_options as bind_options
from jaxdiff.engine.family import run_keys as run_keys
from jaxdiff.engine.loop import Interrupted as Interrupted
from jaxdiff.engine.loop import TrainingError as TrainingError
from jaxdiff.engine.loop import compile_train_step as compile_train_step
from jaxdiff.engine.loop import data_shape_of as data_shape_of
from jaxdiff.engine.loop import load_state as load_state
from jaxdiff.engine.loop import train as train
from jaxdiff.engine.loop import train_source as train_source
from jaxdiff.engine.run import Run as Run
from jaxdiff.engine.run import load_run as load_run
from jaxdiff.engine.step import TrainState as TrainState
from jaxdiff.engine.step import create_train_state as create_train_state
from jaxdiff.engine.step import ema_decay as ema_decay
from jaxdiff.engine.step import learning_rate_schedule as learning_rate_schedule
from jaxdiff.engine.step import make_optimizer as make_optimizer
from jaxdiff.engine.step import train_step as train_step

__all__ = [
    *step.__all__,
    *family.__all__,
    "Checker",
    "check_config",
    "Interrupted",
    "TrainingError",
    "compile_train_step",
    "data_shape_of",
    "load_state",
    "Run",
    "load_run",
    "train",
    "train_source",
]
