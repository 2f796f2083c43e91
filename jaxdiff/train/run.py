"""A run: training from a config, and a trained run reopened from its workdir, for any family."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import ml_collections

from jaxdiff import engine, families
from jaxdiff.checkpoint import load_config

__all__ = ["Run", "load_run", "train"]


def train(config: ml_collections.ConfigDict, workdir, *, devices=None, log=print):
    """Trains (or resumes) the run ``config`` describes in ``workdir``: the config's family
    (:func:`jaxdiff.families.resolve`) on the engine's driver (:func:`jaxdiff.engine.train`,
    whose docstring lists what is written and raised)."""
    return engine.train(config, workdir, build_family=families.resolve, devices=devices, log=log)


@dataclasses.dataclass(frozen=True)
class Run:
    """A trained run reopened from its workdir.

    Attributes:
      config: the saved config.
      family: the run's :class:`~jaxdiff.engine.family.Family`, built from the config.
      state: the whole restored train state.
      step: the step of that checkpoint.
    """

    config: ml_collections.ConfigDict
    family: engine.Family
    state: Any
    step: int

    def sample(self, rng, num: int, **options):
        """``num`` samples of the family's sampler, ``[num, *data_shape]`` in the model range;
        ``options`` (None: the config's) as the family's ``sample`` takes them (a diffusion
        run: ``sampler``, ``num_steps``)."""
        sample = engine.bind_options(self.family.sample, "sampler", **options)
        return jax.jit(sample, static_argnums=2)(self.state, rng, num)

    @property
    def variables(self) -> dict:
        """``{"params": EMA parameters}`` (the generator's for a GAN)."""
        return {"params": self.state.ema_params}

    @property
    def experiment(self):
        """The family's resolved parts (a diffusion run's
        :class:`~jaxdiff.families.diffusion.Experiment`)."""
        return self.family.parts

    @property
    def model_fn(self) -> Callable:
        """``model_fn(x_t, t)`` of the EMA model (deterministic: no dropout), for a family whose
        parts have a ``model``."""
        return functools.partial(self.experiment.model.apply, self.variables)

    @property
    def schedule(self):
        """The noise process of a diffusion run (the schedule, or NCSN's noise levels)."""
        return self.experiment.process


def load_run(workdir, *, devices=None, checkpoint: str = "best") -> Run:
    """Loads a run's config, resolves its family and restores the state of one of its
    checkpoints, replicated on ``devices`` (all devices when None).

    ``checkpoint="best"`` loads the checkpoint of the best held-out bound when the run kept one
    (``WORKDIR/best/``, written by early stopping, ``config.training.validation``), and the
    latest readable checkpoint otherwise; ``"latest"`` always the latest.

    Raises:
      FileNotFoundError: the workdir holds no run or no readable checkpoint.
      ValueError: the saved config is not valid.
    """
    config = load_config(workdir)
    engine.check_config(config)
    family = families.resolve(config, engine.data_shape_of(workdir))
    step, state = engine.load_state(
        workdir, family.init_state, devices=devices, checkpoint=checkpoint
    )
    return Run(config, family, state, step)
