"""A network for the training driver, NNX or linen: made from a name, held as a plain pytree.

The driver keeps a model's parameters in its train state as a plain nested dict of arrays (so
that optax, the EMA, orbax checkpoints and the FSDP rules see an ordinary pytree) and calls the
network as ``model.apply({"params": params}, x, t, train=..., rngs={"dropout": key})``.
A ``flax.linen`` module has that shape already; :class:`NNXNetwork` gives it to an
``nnx.Module``: it is the module split once into its graph (static, compared by value) and its
state (the dict), and merged again inside each compiled call, so a program compiles once per
graph and the state is always an argument.

:func:`make_network` builds the network a config names: a shipped constructor of
:mod:`jaxdiff.models` (``"ddpm_digits"``, ``"mlp.MLP"``) or a user's
``"package.module:factory"``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
from flax import nnx

__all__ = ["NNXNetwork", "import_factory", "keywords", "make_network", "other_variables"]


def other_variables(module: nnx.Module) -> list[str]:
    """The kinds of ``module``'s variables other than ``nnx.Param`` (``"nnx.BatchStat"``,
    ``"nnx.RngKey"``, ...), sorted; empty for a module of parameters only."""
    rest = nnx.state(module, nnx.Not(nnx.Param))
    leaves = jax.tree.leaves(rest, is_leaf=lambda x: isinstance(x, nnx.Variable))
    return sorted({f"nnx.{type(v).__name__}" for v in leaves})


@dataclasses.dataclass(frozen=True)
class NNXNetwork:
    """An ``nnx.Module`` as an ``(init, apply)`` pair over a plain dict of its parameters.

    The parameters (``nnx.Param``) are the module's whole state: a module holding other
    variables (the batch statistics of ``nnx.BatchNorm``, an ``nnx.Rngs`` kept by a layer) is
    rejected, because the driver trains and checkpoints the parameters only and the updates of
    such variables would be lost without a word. Dropout keys come with each call
    (``rngs=`` of ``__call__``), as in the shipped networks.

    Attributes:
      make: ``make(rngs) -> nnx.Module``, the constructor (called by :meth:`init`).
      graphdef: the module's graph; two networks of one graph are equal (and hash alike), so
        ``functools.partial(network.apply, variables)`` of either runs one compiled program.

    Raises:
      ValueError: the module holds variables other than ``nnx.Param``.
    """

    make: Callable = dataclasses.field(compare=False)
    graphdef: Any = dataclasses.field(init=False)
    abstract: Any = dataclasses.field(init=False, compare=False, repr=False)

    def __post_init__(self):
        made = nnx.eval_shape(lambda: self.make(nnx.Rngs(0)))
        others = other_variables(made)
        if others:
            raise ValueError(
                f"the network holds variables other than nnx.Param ({', '.join(others)}); the "
                f"driver trains and carries only the parameters: use a normalisation without "
                f"batch statistics "
                f"(GroupNorm, LayerNorm) and take dropout keys at the call (rngs=) instead of "
                f"keeping an nnx.Rngs in the module"
            )
        graphdef, abstract = nnx.split(made)
        object.__setattr__(self, "graphdef", graphdef)
        object.__setattr__(self, "abstract", abstract)

    def init(self, rngs, *args, **kwargs) -> dict:
        """``{"params": parameters}``, the module made with the key ``rngs["params"]``
        (``args`` are the dummy inputs of linen's ``init``: an NNX module knows its shapes)."""
        del args, kwargs
        key = rngs["params"] if isinstance(rngs, dict) else rngs
        module = self.make(nnx.Rngs(params=key))
        return {"params": nnx.to_pure_dict(nnx.state(module, nnx.Param))}

    def module(self, params) -> nnx.Module:
        """The module holding ``params`` (a dict as :meth:`init` gives: the state's leaves in
        the same order)."""
        if jax.tree.structure(params) != jax.tree.structure(nnx.to_pure_dict(self.abstract)):
            raise ValueError(
                f"NNXNetwork: the parameters do not fit the module's graph: got "
                f"{jax.tree.structure(params)}"
            )
        state = jax.tree.unflatten(jax.tree.structure(self.abstract), jax.tree.leaves(params))
        return nnx.merge(self.graphdef, state)

    def apply(self, variables, *args, train=False, rngs=None, method=None, **kwargs):
        """``module(*args, train=train, rngs=nnx.Rngs(**rngs), **kwargs)`` (or its ``method``)
        of the module holding ``variables["params"]``; ``train`` and ``rngs`` only when the
        method names them."""
        module = self.module(variables["params"])
        fn = module if method is None else getattr(module, method)
        named = inspect.signature(fn).parameters
        if "train" in named:
            kwargs["train"] = train
        if "rngs" in named:
            kwargs["rngs"] = None if rngs is None else nnx.Rngs(**rngs)
        return fn(*args, **kwargs)


def import_factory(name: str, *, field: str = "config.model.name") -> Callable:
    """``"package.module:factory"`` imported; a ValueError naming ``field`` and what is
    missing."""
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"{field}: cannot import {module_name!r} ({e})") from e
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"{field}: {module_name!r} has no callable {attr!r}")
    return factory


def keywords(factory: Callable) -> set[str]:
    """The keyword names ``factory`` accepts: its own, a class's ``__init__``'s, a partial's
    function's (an NNX module class's own signature hides them behind its metaclass)."""
    while isinstance(factory, functools.partial):
        factory = factory.func
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return set()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in parameters if p.kind in kinds}


def _shape_arguments(factory: Callable, data_shape, out_channels, key) -> dict:
    """The keywords of the data's shapes (and the init keys) that ``factory`` accepts:
    ``in_channels`` / ``in_features`` (the last axis), ``image_size`` (the height),
    ``data_shape``, ``out_channels`` (when the process needs other than the input's) and
    ``rngs``."""
    offered = dict(
        in_channels=data_shape[-1],
        in_features=data_shape[-1],
        data_shape=tuple(data_shape),
        rngs=nnx.Rngs(params=key),
    )
    if len(data_shape) >= 3:
        offered["image_size"] = data_shape[0]
    if out_channels is not None:
        offered["out_channels"] = out_channels
        offered["out_features"] = out_channels
    accepted = keywords(factory)
    return {k: v for k, v in offered.items() if k in accepted}


def make_network(
    factory: Callable, options: dict, data_shape, *, out_channels: int | None = None,
    name: str = "model",
):
    """The network ``factory(**options, **shapes)`` as the driver holds it: an
    :class:`NNXNetwork` for an ``nnx.Module``, a ``flax.linen.Module`` as it is.

    ``shapes`` are those of :func:`_shape_arguments` that the factory's signature names and
    ``options`` does not set.

    Raises:
      ValueError: the factory rejects the options, or returns neither kind of module.
    """

    def make(rngs):
        extra = _shape_arguments(factory, data_shape, out_channels, rngs.params())
        extra = {k: v for k, v in extra.items() if k not in options}
        return factory(**options, **extra)

    kinds = []

    def probe():  # shapes only: no weights are drawn
        made = make(nnx.Rngs(0))
        kinds.append(type(made))
        return made if isinstance(made, nnx.Module) else None

    try:
        nnx.eval_shape(probe)
    except TypeError as e:  # an unknown option
        raise ValueError(f"config.model: {name} does not take these options ({e})") from e
    except ValueError as e:  # the module's own check of its options
        raise ValueError(f"config.model: {e}") from e
    if issubclass(kinds[0], nnx.Module):
        try:
            return NNXNetwork(make)
        except ValueError as e:
            raise ValueError(f"config.model: {name}: {e}") from e
    if issubclass(kinds[0], nn.Module):
        return make(nnx.Rngs(0))
    raise ValueError(
        f"config.model: {name} returned a {kinds[0].__name__}, not an nnx.Module or a "
        f"flax.linen.Module"
    )
