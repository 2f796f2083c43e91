"""Reopening a trained run from its workdir, for sampling and evaluation."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from pathlib import Path

import jax
import ml_collections

from jaxdiff import sharding
from jaxdiff.checkpoint import Checkpointer, load_config
from jaxdiff.train.checks import check_config
from jaxdiff.train.experiment import Experiment, build_experiment, initial_state
from jaxdiff.train.loop import RUN_INFO

__all__ = ["Run", "load_run"]


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


def load_run(workdir, *, devices=None) -> Run:
    """Loads a run's config and the EMA parameters of its latest readable checkpoint.

    The state is restored replicated on ``devices`` (all devices when None), whatever the
    number of devices and the layout (replicated or FSDP) it was trained with.

    Raises:
      FileNotFoundError: the workdir holds no run or no readable checkpoint.
    """
    workdir = Path(workdir)
    config = load_config(workdir)
    check_config(config)
    info = json.loads((workdir / RUN_INFO).read_text())
    experiment = build_experiment(config, data_shape=tuple(info["data_shape"]))

    key = jax.random.PRNGKey(0)
    shapes = jax.eval_shape(functools.partial(initial_state, experiment, rng=key), key)
    replicated = sharding.replicated(sharding.make_mesh(devices))
    abstract = sharding.abstract(shapes, jax.tree.map(lambda _: replicated, shapes))
    checkpointer = Checkpointer(workdir / "checkpoints", asynchronous=False)
    try:
        restored = checkpointer.restore_latest(abstract)
    finally:
        checkpointer.close()
    if restored is None:
        raise FileNotFoundError(f"no readable checkpoint in {workdir / 'checkpoints'}")
    step, state = restored
    return Run(config, experiment, {"params": state.ema_params}, step)
