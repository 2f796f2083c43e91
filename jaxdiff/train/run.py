"""A run of any family: trained from its config, or reopened from its workdir."""

from __future__ import annotations

import ml_collections

from jaxdiff import engine, families
from jaxdiff.engine.run import Run

__all__ = ["Run", "load_run", "train"]


def train(config: ml_collections.ConfigDict, workdir, *, devices=None, log=print):
    """Trains (or resumes) the run ``config`` describes in ``workdir``: the config's family
    (:func:`jaxdiff.families.resolve`) on the engine's driver (:func:`jaxdiff.engine.train`,
    whose docstring lists what is written and raised)."""
    return engine.train(config, workdir, build_family=families.resolve, devices=devices, log=log)


def load_run(workdir, *, devices=None, checkpoint: str = "best") -> Run:
    """:func:`jaxdiff.engine.load_run` with the run's family resolved from its config
    (:func:`jaxdiff.families.resolve`): the config, the family and the state of one of the
    checkpoints (``"best"``: the best held-out one when early stopping kept one, else the
    latest; ``"latest"``), replicated on ``devices`` (all when None).

    Raises:
      FileNotFoundError: the workdir holds no run or no readable checkpoint.
      ValueError: the saved config is not valid.
    """
    return engine.load_run(
        workdir, build_family=families.resolve, devices=devices, checkpoint=checkpoint
    )
