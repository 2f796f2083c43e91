"""Compile once per architecture: functions whose parameters are arguments, not constants.

A jitted function that closes over a model's parameters (an ``nnx.Module`` or
``functools.partial(model.apply, variables)`` as a static argument, or a fresh ``jax.jit`` per
call) compiles anew for every parameter set and bakes the arrays into the program. The helpers
here turn such callables into jit-friendly values:

* :func:`as_pytree_fn` makes ``model_fn`` a pytree: its arrays are leaves, passed to the
  compiled program as arguments; the rest is static and compared by value. An ``nnx.Module`` is
  split into its graph (static) and its state (the arguments), so two modules of one graph with
  other weights hit one cached program, as do two ``partial(model.apply, variables)`` of equal
  linen modules with same-shaped variables.
* :func:`compiled` is ``jax.jit`` for a function whose first argument is a model function,
  passed through :func:`as_pytree_fn`: the samplers and the bound use it.
* :func:`static_partial` is ``functools.partial`` compared and hashed by value, for the static
  function of a cached jit (``jax.jit`` caches on the function's hash and equality).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from flax import nnx

__all__ = ["PytreeFn", "as_pytree_fn", "compiled", "static_partial"]


@dataclasses.dataclass(frozen=True)
class _Method:
    """``getattr(obj, name)``, compared by the value of ``obj`` (a bound method compares its
    ``__self__`` by identity, so two equal flax modules' ``apply`` would differ)."""

    obj: Any
    name: str

    def __call__(self, *args, **kwargs):
        return getattr(self.obj, self.name)(*args, **kwargs)


def _by_value(fn: Callable) -> Callable:
    if inspect.ismethod(fn):
        try:
            hash(fn.__self__)
        except TypeError:
            return fn
        return _Method(fn.__self__, fn.__name__)
    return fn


def _is_array(x) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic)) or isinstance(x, jax.core.Tracer)


@dataclasses.dataclass(frozen=True)
class _Merged:
    """``nnx.merge(graphdef, state).method(*args, **kwargs)``: an ``nnx.Module`` (or one of its
    methods) called from its state, hashed and compared by its graph. ``method=`` in a call
    names another method, as in linen's ``apply``."""

    graphdef: Any
    method: str = "__call__"

    def __call__(self, state, *args, method: str | None = None, **kwargs):
        module = nnx.merge(self.graphdef, state)
        return getattr(module, method or self.method)(*args, **kwargs)


@jax.tree_util.register_pytree_node_class
class PytreeFn:
    """``func(*args, **kwargs, *more)`` as a pytree: the array leaves of ``(args, kwargs)`` are
    its children, ``func`` and every other leaf (Python numbers, strings, None) are static."""

    def __init__(self, func: Callable, args: tuple = (), kwargs: dict | None = None):
        self.func, self.args, self.kwargs = func, tuple(args), dict(kwargs or {})

    def __call__(self, *more, **more_kwargs):
        return self.func(*self.args, *more, **self.kwargs, **more_kwargs)

    def tree_flatten(self):
        leaves, treedef = jax.tree.flatten((self.args, self.kwargs))
        arrays = [x for x in leaves if _is_array(x)]
        static = tuple(None if _is_array(x) else x for x in leaves)
        mask = tuple(_is_array(x) for x in leaves)
        return arrays, (self.func, treedef, static, mask)

    @classmethod
    def tree_unflatten(cls, aux, arrays):
        func, treedef, static, mask = aux
        it = iter(arrays)
        leaves = [next(it) if is_array else s for s, is_array in zip(static, mask)]
        args, kwargs = jax.tree.unflatten(treedef, leaves)
        return cls(func, args, kwargs)


def as_pytree_fn(fn: Callable) -> PytreeFn:
    """``fn`` (an ``nnx.Module``, a ``functools.partial``, a ``jax.tree_util.Partial``, a bound
    method or any callable) as a :class:`PytreeFn` (a module or partial bound inside a partial
    too), whose arrays become arguments of a jitted function it is passed to."""
    if isinstance(fn, PytreeFn):
        return fn
    if isinstance(fn, nnx.Module):
        graphdef, state = nnx.split(fn)
        return PytreeFn(_Merged(graphdef), (state,))
    if inspect.ismethod(fn) and isinstance(fn.__self__, nnx.Module):
        graphdef, state = nnx.split(fn.__self__)
        return PytreeFn(_Merged(graphdef, fn.__name__), (state,))
    if isinstance(fn, (functools.partial, jax.tree_util.Partial)):
        inner = as_pytree_fn(fn.func)
        args = tuple(_nested(a) for a in fn.args)
        kwargs = {k: _nested(v) for k, v in fn.keywords.items()}
        return PytreeFn(inner.func, (*inner.args, *args), {**inner.kwargs, **kwargs})
    return PytreeFn(_by_value(fn))


def _nested(arg):
    """A module or partial bound inside a partial (a model inside a wrapper) becomes a pytree
    too."""
    nested = isinstance(arg, (nnx.Module, functools.partial, jax.tree_util.Partial))
    return as_pytree_fn(arg) if nested else arg


class static_partial(functools.partial):  # noqa: N801 - a functools.partial
    """``functools.partial`` hashed and compared by its function and arguments (which must be
    hashable), so that a jit keyed on it is shared by equal partials."""

    def _key(self):
        return (self.func, self.args, tuple(sorted(self.keywords.items())))

    def __hash__(self):
        return hash(self._key())

    def __eq__(self, other):
        return isinstance(other, static_partial) and self._key() == other._key()


def compiled(*, static_argnames: tuple = ()):
    """``jax.jit`` for a chain whose first argument is a model function: the function is passed
    as a :class:`PytreeFn`, so its parameters are arguments of the compiled program
    and a new ``nnx.Module`` of the same graph (or ``functools.partial(model.apply, variables)``
    of the same architecture and shapes) runs the cached program."""

    def decorate(chain):
        jitted = jax.jit(chain, static_argnames=static_argnames)

        @functools.wraps(chain)
        def call(model_fn, *args, **kwargs):
            return jitted(as_pytree_fn(model_fn), *args, **kwargs)

        return call

    return decorate
