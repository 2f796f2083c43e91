"""The interface between the training driver and a model family.

The driver (:func:`jaxdiff.train.train`) trains any model family that gives it four things,
bundled in a :class:`Family`, the way optax bundles ``init`` and ``update``:

``init_state(key) -> state``
    A fresh train state. ``state`` is any pytree with an int32 scalar field ``step`` (the
    number of updates done); it is saved whole in every checkpoint and is all a run needs to
    continue. Static parts (an optax transformation) go in ``flax.struct.field(pytree_node=
    False)``.
``train_step(state, batch, rng) -> (state, metrics)``
    One update, pure. ``batch`` is ``{"x": uint8 [B, H, W, C] images or float32 [B, D]
    points, "label": int32 [B]}`` as the data pipeline gives it (scale with
    :func:`jaxdiff.data.to_model_range`); ``rng`` is this step's key, ``fold_in(run_key,
    step)``; ``metrics`` are float32 scalars and must include ``"loss"`` (``"lr"``, if
    present, is logged as the learning rate). The driver jits it over a mesh (batch sharded
    along ``"data"``, state replicated) and stops, saving nothing, when the loss, any metric or
    any float leaf of the new state is NaN or Inf.
``sample(state, rng, num) -> [num, *data_shape]``
    Samples in the model range ([-1, 1] for images), ``num`` static; the driver jits it for
    the sample grids, ``jaxdiff sample`` writes them as uint8.
``data_shape``
    The shape of one example.
``sample_steps(state, rng, num, num_steps) -> [num, *data_shape]`` (optional)
    Samples with a given number of network evaluations (``jaxdiff sample --steps N``), for a
    family whose sampler has steps (the few-step family); None otherwise.
``validate(state, batch, rng) -> [B]`` (optional)
    A held-out bound in bits/dim of the EMA model on ``batch`` (lower is better), for early
    stopping (``config.training.validation``); None when the family has none.

A family is built from the run's config by a builder ``(config, data_shape) -> Family``,
registered in :data:`FAMILIES` under the name ``config.family`` selects (``"diffusion"`` when
the config has no ``family`` field). Adding a VAE or a GAN is one builder and one line there;
the driver, checkpoints, logging, signals and resumption come with it. Within the diffusion
family, a new objective or noise process is one entry of
:data:`jaxdiff.train.experiment.OBJECTIVES` / :data:`~jaxdiff.train.experiment.PROCESSES`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

__all__ = ["Family", "FAMILIES", "build_family", "run_keys"]


class Family(NamedTuple):
    """A model family as the driver sees it; see the module docstring for each field."""

    init_state: Callable[[jax.Array], Any]
    train_step: Callable[[Any, dict, jax.Array], tuple[Any, dict]]
    sample: Callable[[Any, jax.Array, int], jax.Array]
    data_shape: tuple[int, ...]
    validate: Callable[[Any, dict, jax.Array], jax.Array] | None = None
    sample_steps: Callable[[Any, jax.Array, int, int], jax.Array] | None = None


def run_keys(seed: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The run's keys from its seed: ``(init_key, run_key, sample_key)``. Step ``s`` uses
    ``fold_in(run_key, s)``, the grids ``sample_key``; so a resumed run draws what an
    uninterrupted one draws."""
    init_key, run_key, sample_key = jax.random.split(jax.random.PRNGKey(seed), 3)
    return init_key, run_key, sample_key


def _diffusion(config, data_shape) -> Family:
    from jaxdiff.train.experiment import diffusion_family

    return diffusion_family(config, data_shape)


def _vae(config, data_shape) -> Family:
    from jaxdiff.generative.families import vae_family

    return vae_family(config, data_shape)


def _gan(config, data_shape) -> Family:
    from jaxdiff.generative.families import gan_family

    return gan_family(config, data_shape)


def _fewstep(config, data_shape) -> Family:
    from jaxdiff.fewstep.family import fewstep_family

    return fewstep_family(config, data_shape)


# config.family -> builder(config, data_shape) -> Family
FAMILIES: dict[str, Callable[[Any, tuple[int, ...]], Family]] = {
    "diffusion": _diffusion,
    "vae": _vae,
    "gan": _gan,
    "fewstep": _fewstep,
}


def build_family(config, data_shape) -> Family:
    """The :class:`Family` that ``config.family`` names (default ``"diffusion"``).

    Raises:
      ValueError: for an unknown family name (naming ``config.family``).
    """
    name = config.get("family", "diffusion")
    if name not in FAMILIES:
        raise ValueError(f"config.family must be one of {sorted(FAMILIES)}, got {name!r}")
    return FAMILIES[name](config, tuple(data_shape))
