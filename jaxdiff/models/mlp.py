"""A small residual MLP denoiser for low-dimensional data (2-D toy distributions).

It has the U-Net's calling convention, ``model.apply(variables, x, t, train=...)``, so every
loss, bound, sampler and the training driver work with it unchanged::

    model = MLP(features=128, num_blocks=3)
    variables = model.init({"params": key}, jnp.zeros((1, 2)), jnp.zeros((1,), jnp.int32))
    eps = model.apply(variables, x_t, t)          # [B, 2]
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxdiff.models.unet import sinusoidal_embedding

__all__ = ["MLP"]


class MLP(nn.Module):
    """Residual MLP ``f(x_t, t)`` for data of shape ``[B, D]``.

    The timestep gets the sinusoidal embedding of Ho et al. (2020, App. B) followed by a
    two-layer MLP; each residual block adds it to its hidden layer:
    ``h <- h + W_2 dropout(silu(W_1 silu(LN(h)) + e(t)))``. The output layer starts at zero.

    Attributes:
      features: hidden width.
      num_blocks: number of residual blocks.
      out_features: output size; ``None`` for the input's D (``2 * D`` for a learned variance).
      dropout: dropout rate inside the blocks (active only with ``train=True``).
      dtype: computation dtype (parameters stay float32; the output is float32).
    """

    features: int = 128
    num_blocks: int = 3
    out_features: int | None = None
    dropout: float = 0.0
    dtype: Any = jnp.float32

    def __post_init__(self):
        if isinstance(self.features, bool) or not isinstance(self.features, int) or self.features < 4 or self.features % 2:
            raise ValueError(f"MLP: features must be an even integer >= 4, got {self.features!r}")
        if isinstance(self.num_blocks, bool) or not isinstance(self.num_blocks, int) or self.num_blocks < 0:
            raise ValueError(f"MLP: num_blocks must be an integer >= 0, got {self.num_blocks!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"MLP: dropout must be in [0, 1), got {self.dropout}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x, t, *, train: bool = False):
        """Args:
          x: ``[B, D]`` float inputs.
          t: ``[B]`` timesteps (int or float).
          train: apply dropout (needs ``rngs={"dropout": key}`` when ``dropout > 0``).

        Returns:
          float32 ``[B, out_features or D]``.
        """
        if x.ndim != 2:
            raise ValueError(f"MLP: x must have shape [B, D], got {x.shape}")
        if jnp.shape(t) != x.shape[:1]:
            raise ValueError(f"MLP: t must have shape [B] = {x.shape[:1]}, got {jnp.shape(t)}")
        dense = lambda n, **kw: nn.Dense(n, dtype=self.dtype, **kw)  # noqa: E731
        emb = sinusoidal_embedding(t, self.features).astype(self.dtype)
        emb = dense(self.features)(nn.silu(dense(self.features)(emb)))
        h = dense(self.features)(x.astype(self.dtype))
        for _ in range(self.num_blocks):
            z = dense(self.features)(nn.silu(nn.LayerNorm(dtype=self.dtype)(h))) + emb
            z = nn.Dropout(self.dropout, deterministic=not train)(nn.silu(z))
            h = h + dense(self.features)(z)
        out = dense(self.out_features or x.shape[-1], kernel_init=nn.initializers.zeros_init())
        return out(nn.silu(h)).astype(jnp.float32)
