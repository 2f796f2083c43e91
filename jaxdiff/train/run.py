"""Reopening a trained run from its workdir, for sampling and evaluation."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import ml_collections

from jaxdiff import sharding
from jaxdiff._io import read_json_object
from jaxdiff.checkpoint import Checkpointer, load_config
from jaxdiff.train.checks import check_config
from jaxdiff.train.experiment import Experiment, build_experiment
from jaxdiff.train.family import Family, build_family
from jaxdiff.train.loop import BEST_DIR, RUN_INFO

__all__ = ["Run", "load_run"]


@dataclasses.dataclass(frozen=True)
class Run:
    """A trained run reopened from its workdir.

    Attributes:
      config: the saved config.
      experiment: the config resolved (model, process, objective, prior, ...); None for a
        family other than diffusion (``config.family``: a VAE, a GAN).
      variables: ``{"params": EMA parameters}`` of the loaded checkpoint (the best held-out
        one of a run trained with early stopping, else the latest), for ``model.apply`` (the
        generator's for a GAN).
      step: the step of that checkpoint.
      family: the run's :class:`~jaxdiff.train.family.Family` (set by :func:`load_run`).
      state: the whole restored train state (set by :func:`load_run`).
    """

    config: ml_collections.ConfigDict
    experiment: Experiment | None
    variables: dict
    step: int
    family: Family | None = None
    state: Any = None

    def sample(self, rng, num: int, *, num_steps: int | None = None):
        """``num`` samples of the family's own sampler (the config's; with ``num_steps``
        network evaluations for a family with :attr:`~jaxdiff.train.Family.sample_steps`),
        ``[num, *data_shape]`` in the model range."""
        if num_steps is None:
            return jax.jit(lambda state, key: self.family.sample(state, key, num))(self.state, rng)
        sample = self.family.sample_steps
        return jax.jit(lambda state, key: sample(state, key, num, num_steps))(self.state, rng)

    @property
    def model_fn(self) -> Callable:
        """``model_fn(x_t, t)`` of the EMA model (deterministic: no dropout)."""
        return functools.partial(self.experiment.model.apply, self.variables)

    @property
    def schedule(self):
        """The schedule (DDPM runs) or the noise levels (NCSN runs)."""
        return self.experiment.process


def load_run(workdir, *, devices=None, checkpoint: str = "best") -> Run:
    """Loads a run's config and the EMA parameters of one of its checkpoints.

    ``checkpoint="best"`` loads the checkpoint of the best held-out bound when the run kept one
    (``WORKDIR/best/``, written by early stopping, ``config.training.validation``), and the
    latest readable checkpoint otherwise; ``"latest"`` always the latest.

    The state is restored replicated on ``devices`` (all devices when None), whatever the
    number of devices and the layout (replicated or FSDP) it was trained with.

    Raises:
      FileNotFoundError: the workdir holds no run or no readable checkpoint.
    """
    workdir = Path(workdir)
    config = load_config(workdir)
    check_config(config)
    info = read_json_object(workdir / RUN_INFO, what="the run's shapes")
    data_shape = tuple(info["data_shape"])
    family = build_family(config, data_shape)
    diffusion = config.get("family", "diffusion") == "diffusion"
    experiment = build_experiment(config, data_shape=data_shape) if diffusion else None

    shapes = jax.eval_shape(family.init_state, jax.random.PRNGKey(0))
    replicated = sharding.replicated(sharding.make_mesh(devices))
    abstract = sharding.abstract(shapes, jax.tree.map(lambda _: replicated, shapes))
    if checkpoint not in ("best", "latest"):
        raise ValueError(f"checkpoint must be 'best' or 'latest', got {checkpoint!r}")
    directories = [workdir / "checkpoints"]
    if checkpoint == "best" and (workdir / BEST_DIR).is_dir():
        directories.insert(0, workdir / BEST_DIR)
    restored = None
    for directory in directories:
        checkpointer = Checkpointer(directory, asynchronous=False)
        try:
            restored = checkpointer.restore_latest(abstract)
        finally:
            checkpointer.close()
        if restored is not None:
            break
    if restored is None:
        raise FileNotFoundError(f"no readable checkpoint in {workdir / 'checkpoints'}")
    step, state = restored
    return Run(config, experiment, {"params": state.ema_params}, step, family, state)
