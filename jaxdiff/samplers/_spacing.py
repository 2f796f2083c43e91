"""Which of the T training timesteps a sampler visits when it takes fewer steps.

A spacing is a function ``spacing(num_timesteps, num_steps)`` that returns at most
``num_steps`` strictly increasing 0-based int timesteps. Samplers take it as ``spacing=`` and
restrict the schedule to it with :func:`jaxdiff.schedules.respace`, so the model is still
called with its original t.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from jaxdiff import _checks
from jaxdiff.schedules import Schedule, respace

__all__ = ["uniform_timesteps", "quadratic_timesteps", "linspace_timesteps", "respaced"]

Spacing = Callable[[int, int], np.ndarray]


def uniform_timesteps(num_timesteps: int, num_steps: int) -> np.ndarray:
    """The linear selection of DDIM (Song, Meng & Ermon 2021, App. D.2, as in their code):
    timesteps ``T // S`` apart, starting at 0 (50 of 1000: 0, 20, ..., 980).

    The DDIM code takes ``range(0, T, T // S)``, which has more than S entries when S does not
    divide T; the first S of them are kept here, so the sampler makes exactly S model calls.

    Returns:
      ``[num_steps]`` int timesteps, increasing.
    """
    _checks.positive_int("num_steps", num_steps, maximum=num_timesteps)
    return np.arange(num_steps) * (num_timesteps // num_steps)


def quadratic_timesteps(num_timesteps: int, num_steps: int) -> np.ndarray:
    """The quadratic selection of DDIM (Song, Meng & Ermon 2021, App. D.2; used for CIFAR10):
    ``floor(c i^2)``, with c chosen as in their code so that the last timestep is ``0.8 T``:
    the squares of ``linspace(0, sqrt(0.8 T), S)``, truncated to ints.

    For larger S the first few values repeat (50 of 1000 starts 0, 0, 1, 3, ...). The DDIM
    code visits a repeated timestep as a step that leaves x unchanged; here the repeats are
    dropped, which gives the same chain with fewer model evaluations.

    Returns:
      at most ``num_steps`` int timesteps, strictly increasing.
    """
    _checks.positive_int("num_steps", num_steps, maximum=num_timesteps)
    steps = np.linspace(0.0, np.sqrt(0.8 * num_timesteps), num_steps) ** 2
    return np.unique(steps.astype(np.int64))


def linspace_timesteps(num_timesteps: int, num_steps: int) -> np.ndarray:
    """The respacing of improved DDPM (Nichol & Dhariwal 2021, Sec. 4): S timesteps evenly
    spaced over [0, T - 1], rounded, so that both the first and the last step are kept.

    Returns:
      ``[num_steps]`` int timesteps, increasing.
    """
    _checks.positive_int("num_steps", num_steps, maximum=num_timesteps)
    return np.round(np.linspace(0, num_timesteps - 1, num_steps)).astype(np.int64)


def respaced(
    schedule: Schedule, num_steps: int, spacing: Spacing, *, prediction: str = "eps"
) -> Schedule:
    """``schedule`` restricted to the ``num_steps`` timesteps that ``spacing`` selects.

    Raises:
      ValueError: if ``num_steps`` is not an integer in [1, T].
      TypeError: if ``spacing`` is not callable.
    """
    if prediction == "mean" and num_steps != schedule.num_timesteps:
        raise ValueError(
            'prediction="mean" predicts the posterior mean of the training schedule\'s own step '
            f"t -> t-1, so it cannot be respaced to num_steps={num_steps}: sample on all "
            f"{schedule.num_timesteps} steps (num_steps=None for ddpm)"
        )
    if not callable(spacing):
        raise TypeError(
            f"spacing must be a function (num_timesteps, num_steps) -> timesteps such as "
            f"uniform_timesteps, got {spacing!r}"
        )
    _checks.positive_int("num_steps", num_steps, maximum=schedule.num_timesteps)
    return respace(schedule, spacing(schedule.num_timesteps, num_steps))
