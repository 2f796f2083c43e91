"""The interface between the engine (the training driver, the run loader, evaluation) and a model
family.

A family (diffusion, a VAE, a GAN, ...) gives the engine what it needs, bundled in a
:class:`Family`, the way optax bundles ``init`` and ``update``:

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
``sample(state, rng, num, **options) -> [num, *data_shape]``
    Samples in the model range ([-1, 1] for images), ``num`` static; the driver jits it for
    the sample grids, ``jaxdiff sample`` writes them as uint8. ``options`` are what the command
    line may change (a diffusion family takes ``sampler`` and ``num_steps``); a family raises
    ``ValueError`` for an option it does not take.
``data_shape``
    The shape of one example.
``validate(state, batch, rng) -> [B]`` (optional)
    A held-out bound in bits/dim of the EMA model on ``batch`` (lower is better), for early
    stopping (``config.training.validation``).
``bound(**options) -> Estimate`` (optional)
    The family's bound on the negative log-likelihood (``jaxdiff eval``), e.g. the diffusion
    ELBO or a VAE's -ELBO; ``options`` are those the command line may set (``variance``,
    ``iwae_samples``).
``likelihood(**options) -> Estimate`` (optional)
    An exact likelihood (the probability-flow ODE's): ``jaxdiff eval``'s result for a family
    without a bound, its ``--ode`` column for one with both.
``parts``
    The family's resolved pieces for research code (the diffusion family's
    :class:`~jaxdiff.families.diffusion.Experiment`); None when it has none to show.

Families are built from a run's config by :func:`jaxdiff.families.resolve`; that is where the
config's names become typed objects, once.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax

__all__ = ["Family", "Estimate", "run_keys", "bind_options"]


class Estimate(NamedTuple):
    """A per-example likelihood or bound of a family, in bits/dim.

    Attributes:
      fn: ``fn(state, x0, rng) -> dict`` of ``[B]`` arrays (``x0`` in the model range):
        ``total``, and its parts ``prior``, ``diffusion``, ``decoder``; any other ``[B]`` entry
        is reported beside them (a VAE's ``iwae``), a ``[B, T]`` entry as its per-term means.
        Hashable: it keys the compiled program.
      label: the row's name in ``jaxdiff eval``'s table.
      info: JSON-ready facts of the estimate (``{"variance": "fixed_small"}``).
      draws: independent estimates averaged per example (a Monte Carlo bound's).
    """

    fn: Callable[[Any, jax.Array, jax.Array], dict]
    label: str
    info: dict = {}
    draws: int = 1


class Family(NamedTuple):
    """A model family as the engine sees it; see the module docstring for each field."""

    init_state: Callable[[jax.Array], Any]
    train_step: Callable[[Any, dict, jax.Array], tuple[Any, dict]]
    sample: Callable[..., jax.Array]
    data_shape: tuple[int, ...]
    validate: Callable[[Any, dict, jax.Array], jax.Array] | None = None
    bound: Callable[..., Estimate] | None = None
    likelihood: Callable[..., Estimate] | None = None
    parts: Any = None


def run_keys(seed: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The run's keys from its seed: ``(init_key, run_key, sample_key)``. Step ``s`` uses
    ``fold_in(run_key, s)``, the grids ``sample_key``; so a resumed run draws what an
    uninterrupted one draws."""
    init_key, run_key, sample_key = jax.random.split(jax.random.PRNGKey(seed), 3)
    return init_key, run_key, sample_key


def bind_options(fn: Callable, what: str, **options) -> Callable:
    """``fn`` with the options that are not None bound as keywords, checked against its
    signature first.

    Raises:
      ValueError: ``fn`` takes no such option (``what`` names ``fn`` in the message).
    """
    options = {k: v for k, v in options.items() if v is not None}
    accepted = inspect.signature(fn).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    for name in options:
        if not takes_any and name not in accepted:
            raise ValueError(f"{name} does not apply to this run (its family's {what} has no such option)")
    return functools.partial(fn, **options)
