"""A trained run reopened from its workdir: its config, its family and its state."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import ml_collections

from jaxdiff import ema as ema_lib

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
        """The noise process of a diffusion run (the schedule, or NCSN's noise levels)."""
        return self.experiment.process


def load_run(
    workdir, *, build_family, devices=None, checkpoint: str = "best", ema_std: float | None = None
) -> Run:
    """Loads a run's config, builds its family with ``build_family(config, data_shape)`` and
    restores the state of one of its checkpoints, replicated on ``devices`` (all devices when
    None).

    ``checkpoint="best"`` loads the checkpoint of the best held-out bound when the run kept one
    (``WORKDIR/best/``, written by early stopping, ``config.training.validation``), and the
    latest readable checkpoint otherwise; ``"latest"`` always the latest.

    ``ema_std`` (a run that kept post-hoc EMA snapshots, ``config.training.ema``) replaces the
    EMA parameters by the power-function EMA of that length (EDM2's sigma_rel) at the last
    snapshot, reconstructed by :func:`jaxdiff.ema.posthoc_ema`.

    Raises:
      FileNotFoundError: the workdir holds no run or no readable checkpoint.
      ValueError: the saved config is not valid; ``ema_std`` for a run without snapshots, or
        out of range.
    """
    config = load_config(workdir)
    check_config(config)
    family = build_family(config, data_shape_of(workdir))
    step, state = load_state(workdir, family.init_state, devices=devices, checkpoint=checkpoint)
    if ema_std is not None:
        state = state.replace(ema_params=_posthoc_params(Path(workdir), state.ema_params, ema_std))
    return Run(config, family, state, step)


def _posthoc_params(workdir: Path, like, sigma_rel: float):
    """The post-hoc EMA of length ``sigma_rel`` from the run's snapshots."""
    directory = workdir / ema_lib.SNAPSHOT_DIR
    if not directory.is_dir():
        raise ValueError(
            f"--ema_std needs the post-hoc EMA snapshots of a run trained with "
            f"config.training.ema.sigma_rels; {directory} does not exist"
        )
    ema_lib.sigma_rel_to_gamma(sigma_rel)  # range check before reading anything
    snapshots = ema_lib.load_snapshots(directory, like)
    return ema_lib.posthoc_ema(snapshots, sigma_rel=sigma_rel)
