"""A small residual MLP denoiser for low-dimensional data (2-D toy distributions).

It has the U-Net's calling convention, ``model(x, t, train=..., rngs=...)``, so every loss,
bound, sampler and the training driver work with it unchanged::

    model = MLP(2, features=128, num_blocks=3, rngs=nnx.Rngs(0))
    eps = model(x_t, t)          # [B, 2]
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import nnx

from jaxdiff.models.unet import sinusoidal_embedding

__all__ = ["MLP"]


def _check(features, num_blocks, dropout):
    if isinstance(features, bool) or not isinstance(features, int) or features < 4 or features % 2:
        raise ValueError(f"MLP: features must be an even integer >= 4, got {features!r}")
    if isinstance(num_blocks, bool) or not isinstance(num_blocks, int) or num_blocks < 0:
        raise ValueError(f"MLP: num_blocks must be an integer >= 0, got {num_blocks!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"MLP: dropout must be in [0, 1), got {dropout}")


class _Block(nnx.Module):
    """``h + W_2 dropout(silu(W_1 silu(LN(h)) + e))``."""

    def __init__(self, features: int, *, dropout: float, dtype: Any, rngs: nnx.Rngs):
        self.norm = nnx.LayerNorm(features, dtype=dtype, rngs=rngs)
        self.dense_0 = nnx.Linear(features, features, dtype=dtype, rngs=rngs)
        self.dropout = nnx.Dropout(dropout)
        self.dense_1 = nnx.Linear(features, features, dtype=dtype, rngs=rngs)

    def __call__(self, h, emb, *, train: bool, rngs: nnx.Rngs | None):
        z = self.dense_0(nnx.silu(self.norm(h))) + emb
        z = self.dropout(nnx.silu(z), deterministic=not train, rngs=rngs)
        return h + self.dense_1(z)


class MLP(nnx.Module):
    """Residual MLP ``f(x_t, t)`` for data of shape ``[B, D]``.

    The timestep gets the sinusoidal embedding of Ho et al. (2020, App. B) followed by a
    two-layer MLP; each residual block adds it to its hidden layer:
    ``h <- h + W_2 dropout(silu(W_1 silu(LN(h)) + e(t)))``. The output layer starts at zero.

    Args:
      in_features: the data's dimension D.
      features: hidden width.
      num_blocks: number of residual blocks.
      out_features: output size; ``None`` for D (``2 * D`` for a learned variance).
      dropout: dropout rate inside the blocks (active only with ``train=True``).
      dtype: computation dtype (parameters stay float32; the output is float32).
      rngs: the initialisation keys.
    """

    def __init__(
        self,
        in_features: int = 2,
        *,
        features: int = 128,
        num_blocks: int = 3,
        out_features: int | None = None,
        dropout: float = 0.0,
        dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        _check(features, num_blocks, dropout)
        self.in_features, self.features, self.dtype = in_features, features, dtype
        kw = dict(dtype=dtype, rngs=rngs)
        self.time_0 = nnx.Linear(features, features, **kw)
        self.time_1 = nnx.Linear(features, features, **kw)
        self.dense_in = nnx.Linear(in_features, features, **kw)
        self.blocks = nnx.List(
            [_Block(features, dropout=dropout, **kw) for _ in range(num_blocks)]
        )
        self.dense_out = nnx.Linear(
            features, out_features or in_features, kernel_init=nnx.initializers.zeros_init(), **kw
        )

    def __call__(self, x, t, *, train: bool = False, rngs: nnx.Rngs | None = None):
        """Args:
          x: ``[B, D]`` float inputs.
          t: ``[B]`` timesteps (int or float).
          train: apply dropout (needs ``rngs=nnx.Rngs(dropout=key)`` when ``dropout > 0``).
          rngs: the dropout keys, with ``train``.

        Returns:
          float32 ``[B, out_features or D]``.
        """
        if x.ndim != 2 or x.shape[-1] != self.in_features:
            raise ValueError(f"MLP: x must have shape [B, {self.in_features}], got {x.shape}")
        if jnp.shape(t) != x.shape[:1]:
            raise ValueError(f"MLP: t must have shape [B] = {x.shape[:1]}, got {jnp.shape(t)}")
        emb = sinusoidal_embedding(t, self.features).astype(self.dtype)
        emb = self.time_1(nnx.silu(self.time_0(emb)))
        h = self.dense_in(x.astype(self.dtype))
        for block in self.blocks:
            h = block(h, emb, train=train, rngs=rngs)
        return self.dense_out(nnx.silu(h)).astype(jnp.float32)
