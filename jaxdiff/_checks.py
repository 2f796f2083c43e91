"""Argument checks shared by the public functions: they run in Python, before tracing, on
static shapes (and on values only when those are concrete), so a bad call fails with a message
that names the argument instead of a traceback from inside XLA."""

from __future__ import annotations

from collections.abc import Iterable

import jax
import numpy as np


def one_of(name: str, value, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def timesteps(t, *, batch: int, num_timesteps: int, name: str = "t") -> None:
    """``t`` must be an integer array of shape [batch] with values in [0, num_timesteps)."""
    shape = np.shape(t)
    if shape != (batch,):
        raise ValueError(f"{name} must have shape [{batch}] (one timestep per example), got {shape}")
    dtype = t.dtype if hasattr(t, "dtype") else np.asarray(t).dtype
    if not np.issubdtype(dtype, np.integer):
        raise TypeError(f"{name} must be an integer array of 0-based timesteps, got dtype {dtype}")
    if not isinstance(t, jax.core.Tracer):
        values = np.asarray(t)
        if values.size and (values.min() < 0 or values.max() >= num_timesteps):
            raise ValueError(
                f"{name} must lie in [0, {num_timesteps - 1}] (0-based), got values in "
                f"[{values.min()}, {values.max()}]"
            )


def batched(name: str, x, *, min_ndim: int = 2) -> None:
    ndim = np.ndim(x)
    if ndim < min_ndim:
        raise ValueError(
            f"{name} must be a batch of shape [B, ...] with at least {min_ndim} dimensions, "
            f"got shape {np.shape(x)}"
        )


def same_shape(name_a: str, a, name_b: str, b) -> None:
    if np.shape(a) != np.shape(b):
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {np.shape(a)} and {np.shape(b)}"
        )


def positive_int(name: str, value, *, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value}")
