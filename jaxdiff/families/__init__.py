"""Model families: a config becomes a :class:`~jaxdiff.engine.family.Family` here, once.

* :mod:`jaxdiff.families.diffusion`: every diffusion model (DDPM, NCSN, EDM, flow matching,
  VDM); the config's model, process, objective and sampler resolved into callables.
* :mod:`jaxdiff.families.generative`: the VAE and the GAN.
* :mod:`jaxdiff.families.fewstep`: consistency models, MeanFlow and reflow (few-step sampling).

:func:`resolve` is the one place ``config.family`` is read. A new family is a builder
``(config, data_shape) -> Family`` and one entry of :data:`FAMILIES`; the engine's driver,
checkpoints, signals, resumption, ``jaxdiff sample`` and ``jaxdiff eval`` come with it.
"""

from __future__ import annotations

from collections.abc import Callable

import ml_collections

from jaxdiff.engine.family import Family
from jaxdiff.families import diffusion, fewstep, generative

__all__ = ["FAMILIES", "resolve"]

# config.family -> builder(config, data_shape) -> Family
FAMILIES: dict[str, Callable[[ml_collections.ConfigDict, tuple[int, ...]], Family]] = {
    "diffusion": diffusion.family,
    "vae": generative.vae_family,
    "gan": generative.gan_family,
    "fewstep": fewstep.fewstep_family,
}


def resolve(config: ml_collections.ConfigDict, data_shape) -> Family:
    """The :class:`~jaxdiff.engine.family.Family` that ``config.family`` names (default
    ``"diffusion"``), built for examples of ``data_shape``.

    Raises:
      ValueError: an unknown family, or a field of the family's sections out of range (named
        by its dotted path).
    """
    name = config.get("family", "diffusion")
    if name not in FAMILIES:
        raise ValueError(f"config.family must be one of {', '.join(sorted(FAMILIES))}, got {name!r}")
    return FAMILIES[name](config, tuple(data_shape))
