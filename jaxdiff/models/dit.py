"""The diffusion transformer DiT (Peebles & Xie 2023, "Scalable Diffusion Models with
Transformers"): the image cut into p x p patches, one token each, a stack of transformer
blocks conditioned by adaptive layer norm with zero-initialised gates (adaLN-Zero), and a
linear decoder back to patches.

The conditioning vector c is the embedding of the time input (sinusoidal features and an MLP)
plus, with ``num_classes``, the embedding of the class label, where the extra label
``num_classes`` stands for "no label" (classifier-free guidance, Ho & Salimans 2022). The time
input may be an int timestep, a float t in [0, 1] or EDM's c_noise; ``time_scale`` multiplies
it before the sinusoidal features (e.g. 1000 for t in [0, 1]), so the network serves every
process.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdiff.models.unet import sinusoidal_embedding

__all__ = [
    "patchify",
    "unpatchify",
    "sincos_pos_embed_2d",
    "modulate",
    "TimestepEmbedder",
    "DiTBlock",
    "FinalLayer",
    "DiT",
    "dit_digits",
    "dit_cifar10",
]

# Module-level initialisers: a module keeps them in its graph, so two modules of one graph
# must share them (and hit the same compiled programs).
_xavier = nnx.initializers.xavier_uniform()
_zeros = nnx.initializers.zeros_init()
_normal_002 = nnx.initializers.normal(0.02)


def patchify(x: jnp.ndarray, p: int) -> jnp.ndarray:
    """``[B, H, W, C]`` -> ``[B, (H / p)(W / p), p p C]``: the non-overlapping p x p patches in
    row-major order, each flattened as (row, column, channel) (Peebles & Xie 2023, Sec. 3.2)."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(tokens: jnp.ndarray, p: int, height: int, width: int) -> jnp.ndarray:
    """The inverse of :func:`patchify`: ``[B, N, p p C]`` -> ``[B, H, W, C]``."""
    b, _, d = tokens.shape
    c = d // (p * p)
    x = tokens.reshape(b, height // p, width // p, p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, height, width, c)


def _sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    omega = 1.0 / 10000.0 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    angles = positions.reshape(-1)[:, None] * omega
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_pos_embed_2d(dim: int, grid_h: int, grid_w: int) -> np.ndarray:
    """Fixed 2-D sine-cosine position embeddings of the patch grid (Vaswani et al. 2017, Sec.
    3.5, per axis; the frozen embeddings of DiT, Sec. 3.2, and of MAE, He et al. 2022): half the
    channels encode the row, half the column.

    Returns:
      ``[grid_h * grid_w, dim]`` float32, row-major like :func:`patchify`.
    """
    if dim % 4:
        raise ValueError(f"the position embedding needs a width divisible by 4, got {dim}")
    rows, cols = np.meshgrid(np.arange(grid_h, dtype=np.float64), np.arange(grid_w, dtype=np.float64), indexing="ij")
    return np.concatenate([_sincos_1d(dim // 2, rows), _sincos_1d(dim // 2, cols)], axis=1).astype(np.float32)


def modulate(x: jnp.ndarray, shift: jnp.ndarray, scale: jnp.ndarray) -> jnp.ndarray:
    """Adaptive layer norm's affine part (Peebles & Xie 2023, Sec. 3.2; Perez et al. 2018,
    FiLM): x (1 + scale) + shift, with ``shift``/``scale`` ``[B, D]`` applied to every token of
    ``x`` ``[B, N, D]``."""
    return x * (1.0 + scale[:, None, :]) + shift[:, None, :]


def _layer_norm(features, dtype, rngs):
    """LayerNorm without its own affine parameters (adaLN supplies them), eps = 1e-6 as DiT."""
    return nnx.LayerNorm(
        features, epsilon=1e-6, use_bias=False, use_scale=False, dtype=dtype, rngs=rngs
    )


class TimestepEmbedder(nnx.Module):
    """The time input's embedding: sinusoidal features of ``time_scale * t`` (cosines first,
    frequencies 10000^{-i / h}; DiT's ``TimestepEmbedder``) and an MLP Dense-SiLU-Dense."""

    def __init__(
        self,
        hidden_size: int,
        *,
        frequency_dim: int = 256,
        time_scale: float = 1.0,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.frequency_dim, self.time_scale = frequency_dim, time_scale
        dense = functools.partial(
            nnx.Linear, kernel_init=_normal_002, dtype=dtype,
            param_dtype=param_dtype, rngs=rngs,
        )
        self.mlp_0 = dense(frequency_dim, hidden_size)
        self.mlp_1 = dense(hidden_size, hidden_size)

    def __call__(self, t):
        t = self.time_scale * jnp.asarray(t, jnp.float32)
        emb = sinusoidal_embedding(t, self.frequency_dim, flip_sin_to_cos=True, freq_shift=0.0)
        return self.mlp_1(nnx.silu(self.mlp_0(emb)))


class DiTBlock(nnx.Module):
    """The adaLN-Zero transformer block (Peebles & Xie 2023, Sec. 3.2, Fig. 3):

    .. math:: (\\beta_1, \\gamma_1, \\alpha_1, \\beta_2, \\gamma_2, \\alpha_2)
            = W\\, \\mathrm{SiLU}(c) + b \\quad (W = 0, b = 0 \\text{ at init}),

        x \\leftarrow x + \\alpha_1 \\mathrm{Attn}\\big(\\mathrm{LN}(x)(1 + \\gamma_1) + \\beta_1\\big),
        \\quad
        x \\leftarrow x + \\alpha_2 \\mathrm{MLP}\\big(\\mathrm{LN}(x)(1 + \\gamma_2) + \\beta_2\\big),

    multi-head self-attention and a GELU (tanh) MLP of width ``mlp_ratio * D``. The gates
    alpha start at 0, so at initialisation the block is the identity.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        width = int(mlp_ratio * hidden_size)
        self.adaLN_modulation = nnx.Linear(hidden_size, 6 * hidden_size, kernel_init=_zeros, **kw)
        self.norm_1 = _layer_norm(hidden_size, dtype, rngs)
        self.attn = nnx.MultiHeadAttention(
            num_heads, hidden_size, kernel_init=_xavier, dropout_rate=dropout, decode=False,
            keep_rngs=False, **kw,
        )
        self.norm_2 = _layer_norm(hidden_size, dtype, rngs)
        self.mlp_0 = nnx.Linear(hidden_size, width, kernel_init=_xavier, **kw)
        self.dropout = nnx.Dropout(dropout)
        self.mlp_1 = nnx.Linear(width, hidden_size, kernel_init=_xavier, **kw)

    def __call__(self, x, c, *, train: bool = False, rngs: nnx.Rngs | None = None):
        mod = self.adaLN_modulation(nnx.silu(c))
        shift1, scale1, gate1, shift2, scale2, gate2 = jnp.split(mod, 6, axis=-1)
        h = modulate(self.norm_1(x), shift1, scale1)
        h = self.attn(h, deterministic=not train, rngs=rngs)
        x = x + gate1[:, None, :] * h
        h = modulate(self.norm_2(x), shift2, scale2)
        h = nnx.gelu(self.mlp_0(h), approximate=True)
        h = self.dropout(h, deterministic=not train, rngs=rngs)
        return x + gate2[:, None, :] * self.mlp_1(h)


class FinalLayer(nnx.Module):
    """adaLN (shift and scale from c, zero-initialised) and a zero-initialised linear map of
    every token to its p x p x C_out patch (Peebles & Xie 2023, Sec. 3.2)."""

    def __init__(
        self, hidden_size: int, patch_dim: int, *, dtype=jnp.float32, param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.adaLN_modulation = nnx.Linear(hidden_size, 2 * hidden_size, kernel_init=_zeros, **kw)
        self.norm = _layer_norm(hidden_size, dtype, rngs)
        self.linear = nnx.Linear(hidden_size, patch_dim, kernel_init=_zeros, **kw)

    def __call__(self, x, c):
        shift, scale = jnp.split(self.adaLN_modulation(nnx.silu(c)), 2, axis=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


def _check_options(hidden_size, num_heads, num_classes, class_dropout, dropout):
    if hidden_size % num_heads or hidden_size % 4:
        raise ValueError(
            f"DiT: hidden_size must be divisible by num_heads and by 4, got "
            f"hidden_size={hidden_size}, num_heads={num_heads}"
        )
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"DiT: num_classes must be a positive int or None, got {num_classes}")
    if not 0.0 <= class_dropout < 1.0 or not 0.0 <= dropout < 1.0:
        raise ValueError(
            f"DiT: class_dropout and dropout must lie in [0, 1), got {class_dropout}, {dropout}"
        )


class DiT(nnx.Module):
    """The diffusion transformer (Peebles & Xie 2023); see the module docstring.

    Args:
      in_channels: the images' channels C.
      patch_size: p; the image height and width must be multiples of it.
      hidden_size: the token width D.
      depth: the number of :class:`DiTBlock`.
      num_heads: attention heads (D must be divisible by it).
      mlp_ratio: the MLP's width over D.
      num_classes: if set, condition on a label ``y`` in [0, num_classes]; ``num_classes`` is
        the null label (also what ``y=None`` means).
      class_dropout: with ``train=True``, the probability of replacing a label by the null label
        (DiT's label dropout for classifier-free guidance; 0.1 there). Needs ``rngs``.
      dropout: attention and MLP dropout with ``train=True`` (0 in DiT).
      out_channels: output channels (``None``: C; ``2 C`` for a learned variance).
      time_scale: multiplies the time input before its sinusoidal features.
      dtype, param_dtype: computation and parameter dtypes.
      rngs: the initialisation keys.
    """

    def __init__(
        self,
        in_channels: int = 3,
        *,
        patch_size: int = 2,
        hidden_size: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        num_classes: int | None = None,
        class_dropout: float = 0.0,
        dropout: float = 0.0,
        out_channels: int | None = None,
        time_scale: float = 1.0,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        _check_options(hidden_size, num_heads, num_classes, class_dropout, dropout)
        self.in_channels, self.patch_size, self.hidden_size = in_channels, patch_size, hidden_size
        self.num_classes, self.class_dropout = num_classes, class_dropout
        out_channels = in_channels if out_channels is None else out_channels
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        p = patch_size
        self.patch_embed = nnx.Linear(p * p * in_channels, hidden_size, kernel_init=_xavier, **kw)
        self.t_embed = TimestepEmbedder(hidden_size, time_scale=time_scale, **kw)
        if num_classes is not None:
            self.y_embed = nnx.Embed(
                num_classes + 1, hidden_size, embedding_init=_normal_002, **kw
            )
        self.depth = depth
        for i in range(depth):  # named as the linen DiT's parameters were
            block = DiTBlock(hidden_size, num_heads, mlp_ratio=mlp_ratio, dropout=dropout, **kw)
            setattr(self, f"block_{i}", block)
        self.final = FinalLayer(hidden_size, p * p * out_channels, **kw)

    def _labels(self, y, batch: int, train: bool, rngs):
        null = jnp.full((batch,), self.num_classes, jnp.int32)
        if y is None:
            return null
        y = jnp.asarray(y, jnp.int32)
        if y.shape != (batch,):
            raise ValueError(f"DiT: y must be int labels of shape [{batch}], got {y.shape}")
        if train and self.class_dropout > 0:
            if rngs is None:
                raise ValueError("DiT: class_dropout with train=True needs rngs=nnx.Rngs(dropout=key)")
            drop = jax.random.bernoulli(rngs.dropout(), self.class_dropout, (batch,))
            y = jnp.where(drop, null, y)
        return y

    def __call__(self, x, t, *, y=None, train: bool = False, rngs: nnx.Rngs | None = None):
        """Predicts from a noisy batch.

        Args:
          x: ``[B, H, W, C]`` images.
          t: ``[B]`` time inputs (int timesteps or float times / noise features).
          y: ``[B]`` int labels in [0, num_classes], or ``None`` (the null label); only with
            ``num_classes``.
          train: apply the dropouts (needs ``rngs=nnx.Rngs(dropout=key)`` when they are > 0).
          rngs: the dropout keys, with ``train``.

        Returns:
          ``[B, H, W, out_channels]``.
        """
        b, h, w, c = x.shape
        p = self.patch_size
        if c != self.in_channels:
            raise ValueError(f"DiT: x must have {self.in_channels} channels, got shape {x.shape}")
        if h % p or w % p:
            raise ValueError(f"DiT: image size {h}x{w} is not a multiple of patch_size={p}")
        if np.shape(t) != (b,):
            raise ValueError(f"DiT: t must have shape [{b}] (one time per example), got {np.shape(t)}")
        if y is not None and self.num_classes is None:
            raise ValueError("DiT: got labels y but num_classes is None")
        tokens = self.patch_embed(patchify(x, p))
        tokens = tokens + sincos_pos_embed_2d(self.hidden_size, h // p, w // p)
        cond = self.t_embed(t)
        if self.num_classes is not None:
            cond = cond + self.y_embed(self._labels(y, b, train, rngs))
        for i in range(self.depth):
            tokens = getattr(self, f"block_{i}")(tokens, cond, train=train, rngs=rngs)
        out = self.final(tokens, cond)
        return unpatchify(out, p, h, w).astype(jnp.float32)


# A small DiT for scikit-learn's 8x8 digits (16 tokens of 2 x 2 patches) that trains on a CPU
# in minutes.
dit_digits = functools.partial(DiT, in_channels=1, patch_size=2, hidden_size=128, depth=4, num_heads=4)

# DiT-S/2 (Peebles & Xie 2023, Table 1: D = 384, 12 blocks, 6 heads) on 32 x 32 CIFAR-10
# images: 256 tokens.
dit_cifar10 = functools.partial(DiT, in_channels=3, patch_size=2, hidden_size=384, depth=12, num_heads=6)
