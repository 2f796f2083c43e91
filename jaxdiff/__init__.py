"""jaxdiff: a functional JAX/Flax library for diffusion generative models.

Submodules are imported on first use, so ``import jaxdiff`` stays cheap and
``jaxdiff.samplers.ddim_sample`` works without an explicit submodule import.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
      "schedules",
      "diffusion",
      "elbo",
      "losses",
      "samplers",
      "models",
      "data",
      "engine",
      "families",
      "train",
      "evaluate",
      "metrics",
      "generative",
      "fewstep",
      "cli",
      "analytic",
      "checkpoint",
      "state_dict",
      "sharding",
      "distributed",
      "ema",
)

__all__ = list(_SUBMODULES) + ["__version__"]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"jaxdiff.{name}")
    raise AttributeError(f"module 'jaxdiff' has no attribute {name!r}")
