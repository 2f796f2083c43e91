"""A trained run reopened from its workdir: its config, its family and its state."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import ml_collections

from jaxdiff.checkpoint import load_config
from jaxdiff.engine.checks import check_config
from jaxdiff.engine.family import Family, bind_options
from jaxdiff.engine.loop import data_shape_of, load_state

__all__ = ["Run", "load_run"]


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
    family: Family
    state: Any
    step: int

    def sample(self, rng, num: int, **options):
        """``num`` samples of the family's sampler, ``[num, *data_shape]`` in the model range;
        ``options`` (None: the config's) as the family's ``sample`` takes them (a diffusion
        run: ``sampler``, ``num_steps``)."""
        sample = bind_options(self.family.sample, "sampler", **options)
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
        """The noise process of a diffusion run (a GaussianProcess: the schedule, NCSN's
        levels, EDM's, the flow's, a VDM's learned schedule at these parameters)."""
        return self.experiment.process_of(self.model_fn)


def load_run(workdir, *, build_family, devices=None, checkpoint: str = "best") -> Run:
    """Loads a run's config, builds its family with ``build_family(config, data_shape)`` and
    restores the state of one of its checkpoints, replicated on ``devices`` (all devices when
    None).

    ``checkpoint="best"`` loads the checkpoint of the best held-out bound when the run kept one
    (``WORKDIR/best/``, written by early stopping, ``config.training.validation``), and the
    latest readable checkpoint otherwise; ``"latest"`` always the latest.

    Raises:
      FileNotFoundError: the workdir holds no run or no readable checkpoint.
      ValueError: the saved config is not valid.
    """
    config = load_config(workdir)
    check_config(config)
    family = build_family(config, data_shape_of(workdir))
    step, state = load_state(workdir, family.init_state, devices=devices, checkpoint=checkpoint)
    return Run(config, family, state, step)
