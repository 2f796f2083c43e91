"""The U-Net of Ho et al. (2020), "Denoising Diffusion Probabilistic Models", in Flax.

A PixelCNN++-style U-Net (Salimans et al., 2017) as described in Ho et al. (2020), Sec. 4 and
Appendix B: a sinusoidal embedding of the timestep followed by a two-layer MLP; at every
resolution ``num_res_blocks`` wide residual blocks (GroupNorm, SiLU, dropout) that each add the
embedding, with single-head self-attention at the resolutions in ``attn_resolutions``; a middle
of residual block, attention, residual block; and an upsampling path that concatenates the
skip connections of the downsampling path.

Usage (NHWC images in [-1, 1], ``t`` int32 of shape [B], 0-based)::

    model = UNet(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), num_groups=8)
    variables = model.init({"params": key}, x, t)
    eps = model.apply(variables, x, t)                     # deterministic, train=False
    eps = model.apply(variables, x, t, train=True, rngs={"dropout": dropout_key})
    model_fn = functools.partial(model.apply, variables)    # model_fn(x_t, t), as jaxdiff expects

The presets in :mod:`jaxdiff.models.presets` (``ddpm_cifar10``, ``ddpm_digits``, ...) are
``functools.partial`` objects of :class:`UNet`: ``ddpm_cifar10()`` is the 35.7M-parameter
CIFAR-10 network of the paper.

Options:

* ``out_channels=2 * C`` doubles the output for a learned variance (Nichol & Dhariwal, 2021).
* ``num_classes=K`` adds a class embedding with ``K + 1`` rows; the last row, index ``K``, is the
  "null" label of classifier-free guidance (Ho & Salimans, 2022). Call with ``y`` int32 [B];
  ``y=None`` means the null label, so ``functools.partial(model.apply, variables)`` is the
  unconditional model.
* ``embedding=FourierEmbedding`` and ``divide_by_sigma=True`` make a noise-conditional score
  network (NCSN; Song & Ermon, 2019, 2020): the second argument is then the noise level sigma,
  float [B], instead of an integer timestep.
* ``dtype=jnp.bfloat16`` computes in bfloat16 while the parameters stay ``param_dtype``
  (float32); the output is float32 whatever ``dtype`` is.
* ``remat=True`` rematerialises every residual and attention block in the backward pass
  (``flax.linen.remat``), trading compute for activation memory. It does not change the
  parameters or the outputs.

The parameter tree names the layers after their place in the network: ``conv_in``,
``temb_dense_0``, ``temb_dense_1``, ``down_{level}_res_{i}``, ``down_{level}_attn_{i}``,
``down_{level}_downsample``, ``mid_res_0``, ``mid_attn``, ``mid_res_1``, ``up_{level}_res_{i}``,
``up_{level}_attn_{i}``, ``up_{level}_upsample``, ``norm_out``, ``conv_out`` (and ``time_proj``,
``class_embed`` when present); ``level`` 0 is the full resolution.
"""

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.models.conv import conv2d

__all__ = [
    "AttnBlock",
    "Downsample",
    "FourierEmbedding",
    "ResBlock",
    "SinusoidalEmbedding",
    "UNet",
    "Upsample",
    "fourier_embedding",
    "nearest_upsample_conv",
    "sinusoidal_embedding",
]

Dtype = Any
ModuleDef = Callable[..., nn.Module]

# Ho et al. (2020) initialise every layer with variance_scaling(1, "fan_avg", "uniform") and the
# layers that close a residual branch (and the output layer) with a scale of 1e-10, i.e. zero.
default_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")
zero_init = nn.initializers.zeros_init()


def _conv_fn(matmul_kernel_grad: bool) -> Callable:
    """``jax.lax.conv_general_dilated``, or :func:`~jaxdiff.models.conv.conv2d` (kernel gradient
    as matrix products, for CPUs) when ``matmul_kernel_grad`` is set."""
    return conv2d if matmul_kernel_grad else jax.lax.conv_general_dilated


def _conv_module(matmul_kernel_grad: bool) -> ModuleDef:
    """:class:`flax.linen.Conv` computed by :func:`_conv_fn`."""
    return functools.partial(nn.Conv, conv_general_dilated=_conv_fn(matmul_kernel_grad))


def _phase_taps(kernel, axis):
    """The 3 taps of ``kernel`` along ``axis`` folded into the 2 taps that an even and an odd
    output pixel of a 2x nearest-neighbour upsampling see: (w0, w1 + w2) and (w0 + w1, w2)."""
    w0, w1, w2 = (jax.lax.index_in_dim(kernel, i, axis, keepdims=False) for i in range(3))
    return jnp.stack([w0, w1 + w2], axis), jnp.stack([w0 + w1, w2], axis)


def nearest_upsample_conv(
    lhs, rhs, window_strides, padding, *, conv: Callable = jax.lax.conv_general_dilated, **options
):
    r"""A 3x3 convolution (stride 1, padding 1) of the input upsampled 2x by nearest-neighbour
    repetition, computed at the input's resolution as one 2x2 convolution per output phase.

    With :math:`(Ux)_{2i+a,\,2j+b} = x_{ij}` the repetition and :math:`W` the kernel, a kernel
    window over :math:`Ux` meets only 2x2 pixels of x, so the taps that meet one pixel add up:

    .. math::

        (W \star Ux)_{2i+a,\,2j+b} = \sum_{p,q \in \{0, 1\}}
            (R_a W R_b^\top)_{pq}\, x_{i+a+p-1,\,j+b+q-1},
        \quad R_0 = \begin{pmatrix} 1 & 0 & 0 \\ 0 & 1 & 1 \end{pmatrix},
        \ R_1 = \begin{pmatrix} 1 & 1 & 0 \\ 0 & 0 & 1 \end{pmatrix}

    (zero padding outside x). That is 16 instead of 36 multiply-adds per output pixel and
    channel pair, and the same values up to float rounding. The output is [B, 2H, 2W, C_out].

    A drop-in for ``jax.lax.conv_general_dilated`` applied to the *upsampled* input, for
    ``flax.linen.Conv(conv_general_dilated=...)``: NHWC images, an HWIO 3x3 kernel, stride 1,
    padding 1; ``options`` are that function's keywords (no dilation or feature groups;
    ``precision`` is passed on). ``conv`` computes the four small convolutions.
    """
    dn = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, options.get("dimension_numbers"))
    dilations = (*(options.get("lhs_dilation") or ()), *(options.get("rhs_dilation") or ()))
    supported = (
        dn == jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC"))
        and rhs.shape[:2] == (3, 3)
        and tuple(window_strides) == (1, 1)
        and [tuple(p) for p in padding] == [(1, 1), (1, 1)]
        and all(d == 1 for d in dilations)
        and options.get("feature_group_count", 1) == 1
    )
    if not supported:
        raise ValueError(
            "nearest_upsample_conv: needs NHWC images, an HWIO 3x3 kernel, stride 1, padding 1 "
            f"and no dilation or groups; got kernel {rhs.shape}, strides {window_strides}, "
            f"padding {padding}, {options}"
        )
    b, height, width, _ = lhs.shape
    padded = jnp.pad(lhs, ((0, 0), (1, 1), (1, 1), (0, 0)))
    phases = [
        jnp.stack(
            [
                conv(
                    padded[:, a : a + height + 1, c : c + width + 1],
                    taps,
                    (1, 1),
                    "VALID",
                    dimension_numbers=("NHWC", "HWIO", "NHWC"),
                    precision=options.get("precision"),
                )
                for c, taps in enumerate(_phase_taps(row_taps, 1))
            ],
            axis=3,
        )
        for a, row_taps in enumerate(_phase_taps(rhs, 0))
    ]  # per row phase a: [B, H, W, 2 (column phase), C_out]
    return jnp.stack(phases, axis=2).reshape(b, 2 * height, 2 * width, rhs.shape[-1])



def sinusoidal_embedding(t, dim, *, flip_sin_to_cos=False, freq_shift=1.0, max_period=10000.0):
    r"""Sinusoidal timestep embedding (Vaswani et al., 2017, Sec. 3.5; Ho et al., 2020, App. B).

    With :math:`h = d/2` frequencies :math:`\omega_i = P^{-i/(h - s)}`, :math:`i = 0, \dots, h-1`:

    .. math::

        e(t) = [\sin(t\,\omega_0), \dots, \sin(t\,\omega_{h-1}),
                \cos(t\,\omega_0), \dots, \cos(t\,\omega_{h-1})]

    Ho et al. use :math:`s = 1` and sines first; ``flip_sin_to_cos=True`` puts the cosines first
    and ``freq_shift=0`` gives Vaswani et al.'s frequencies (both are diffusers options).

    Args:
        t: timesteps (or any real positions), shape [B].
        dim: embedding size d, even.
        flip_sin_to_cos: cosines first.
        freq_shift: the shift s in the frequency exponent.
        max_period: the longest period P.

    Returns:
        float32 array of shape [B, dim].
    """
    if dim % 2 or dim < 4:
        raise ValueError(f"sinusoidal_embedding: dim must be even and >= 4, got {dim}")
    half = dim // 2
    # The frequencies are static: compute them once in float64, exactly rounded to float32.
    freqs = np.exp(-math.log(max_period) * np.arange(half) / (half - freq_shift)).astype(np.float32)
    args = jnp.asarray(t, jnp.float32)[:, None] * freqs  # [B, half]
    parts = [jnp.cos(args), jnp.sin(args)] if flip_sin_to_cos else [jnp.sin(args), jnp.cos(args)]
    return jnp.concatenate(parts, axis=-1)


def fourier_embedding(sigma, w):
    r"""Random Fourier features of log sigma (Tancik et al., 2020; Song et al., 2021, App. H).

    .. math::

        e(\sigma) = [\sin(2\pi\,w \log\sigma), \cos(2\pi\,w \log\sigma)],
        \qquad w_j \sim \mathcal N(0, s^2) \text{ fixed}

    Args:
        sigma: noise levels, positive, shape [B].
        w: frequencies, shape [F].

    Returns:
        float32 array of shape [B, 2F].
    """
    proj = 2.0 * jnp.pi * jnp.log(jnp.asarray(sigma, jnp.float32))[:, None] * w  # [B, F]
    return jnp.concatenate([jnp.sin(proj), jnp.cos(proj)], axis=-1)


class SinusoidalEmbedding(nn.Module):
    """:func:`sinusoidal_embedding` of integer timesteps as a module: [B] -> [B, features]."""

    features: int
    flip_sin_to_cos: bool = False
    freq_shift: float = 1.0

    def __call__(self, t):
        return sinusoidal_embedding(
            t, self.features, flip_sin_to_cos=self.flip_sin_to_cos, freq_shift=self.freq_shift
        )


class FourierEmbedding(nn.Module):
    """:func:`fourier_embedding` of noise levels sigma: [B] -> [B, 2 * features].

    The ``features`` frequencies are drawn at init from N(0, scale^2) and then held fixed: they
    live in ``params["time_proj"]["W"]`` (as in Song et al.'s NCSN++) but receive no gradient.
    Mask them out of weight decay if you use it.
    """

    features: int
    scale: float = 16.0
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, sigma):
        w = self.param(
            "W", nn.initializers.normal(stddev=self.scale), (self.features,), self.param_dtype
        )
        return fourier_embedding(sigma, jax.lax.stop_gradient(jnp.asarray(w, jnp.float32)))


class ResBlock(nn.Module):
    r"""Residual block of Ho et al. (2020), App. B (the Wide ResNet block of PixelCNN++).

    .. math::

        h = \mathrm{conv}(\mathrm{SiLU}(\mathrm{GN}(x))), \quad
        h = \mathrm{conv}(\mathrm{drop}(\mathrm{SiLU}(\mathrm{GN}(h + W e)))), \quad
        \mathrm{out} = \mathrm{skip}(x) + h

    with :math:`e` the embedding after a SiLU, and :math:`\mathrm{skip}` a 1x1 convolution when
    the channel count changes. With ``scale_shift_norm`` the embedding gives a scale and shift
    instead: :math:`\mathrm{GN}(h)(1 + a) + b` (Nichol & Dhariwal, 2021; Dhariwal & Nichol, 2021).

    Input x [B, H, W, C_in], emb [B, E]; output [B, H, W, features].
    """

    features: int
    num_groups: int = 32
    norm_eps: float = 1e-6
    dropout: float = 0.0
    scale_shift_norm: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    matmul_kernel_grad: bool = False

    @nn.compact
    def __call__(self, x, emb, train):
        Conv = _conv_module(self.matmul_kernel_grad)  # noqa: N806
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        norm = dict(num_groups=self.num_groups, epsilon=self.norm_eps, **kw)
        h = nn.silu(nn.GroupNorm(name="norm_1", **norm)(x))
        h = Conv(
            self.features, (3, 3), padding=1, kernel_init=default_init, name="conv_1", **kw
        )(h)
        num_emb = 2 * self.features if self.scale_shift_norm else self.features
        e = nn.Dense(num_emb, kernel_init=default_init, name="temb_proj", **kw)(nn.silu(emb))
        e = e[:, None, None, :]  # [B, 1, 1, num_emb]
        if self.scale_shift_norm:
            scale, shift = jnp.split(e, 2, axis=-1)
            h = nn.GroupNorm(name="norm_2", **norm)(h) * (1 + scale) + shift
        else:
            h = nn.GroupNorm(name="norm_2", **norm)(h + e)
        h = nn.Dropout(self.dropout, deterministic=not train)(nn.silu(h))
        h = Conv(self.features, (3, 3), padding=1, kernel_init=zero_init, name="conv_2", **kw)(h)
        if x.shape[-1] != self.features:
            x = Conv(self.features, (1, 1), kernel_init=default_init, name="shortcut", **kw)(x)
        return x + h


class AttnBlock(nn.Module):
    r"""Self-attention over the pixels with a residual connection (Ho et al., 2020, App. B).

    .. math::

        \mathrm{out} = x + W_o\,\mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{d}}\right) V,
        \quad Q, K, V = W_{q,k,v}\,\mathrm{GN}(x)

    per head, with head size ``d = head_dim`` (``None``: one head over all C channels, as in
    Ho et al.). Input and output [B, H, W, C].
    """

    head_dim: int | None = None
    num_groups: int = 32
    norm_eps: float = 1e-6
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        b, height, width, c = x.shape
        head_dim = self.head_dim or c
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h = nn.GroupNorm(num_groups=self.num_groups, epsilon=self.norm_eps, name="norm", **kw)(x)
        h = h.reshape(b, height * width, c)
        q, k, v = (
            nn.Dense(c, kernel_init=default_init, name=name, **kw)(h).reshape(
                b, height * width, c // head_dim, head_dim
            )
            for name in ("query", "key", "value")
        )
        a = jax.nn.dot_product_attention(q, k, v).reshape(b, height * width, c)
        out = nn.Dense(c, kernel_init=zero_init, name="proj_out", **kw)(a)
        return x + out.reshape(b, height, width, c)


class Downsample(nn.Module):
    """Halve H and W: a stride-2 3x3 convolution, or 2x2 average pooling without convolution.

    ``padding`` (before, after) pads each spatial axis for the convolution: (0, 1) is Ho et al.'s
    TensorFlow "SAME" padding (diffusers ``downsample_padding=0``), (1, 1) is diffusers' default.
    Input [B, H, W, C], output [B, H/2, W/2, C].
    """

    with_conv: bool = True
    padding: tuple[int, int] = (0, 1)
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    matmul_kernel_grad: bool = False

    @nn.compact
    def __call__(self, x):
        Conv = _conv_module(self.matmul_kernel_grad)  # noqa: N806
        if not self.with_conv:
            return nn.avg_pool(x, (2, 2), strides=(2, 2))
        return Conv(
            x.shape[-1],
            (3, 3),
            strides=(2, 2),
            padding=(self.padding, self.padding),
            kernel_init=default_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="conv",
        )(x)


class Upsample(nn.Module):
    """Double H and W by nearest-neighbour repetition, then (optionally) a 3x3 convolution.

    The convolution of the repeated image is computed at the input resolution
    (:func:`nearest_upsample_conv`, 2.25x fewer operations); its parameters are those of a
    :class:`flax.linen.Conv` named ``conv``. Input [B, H, W, C], output [B, 2H, 2W, C].
    """

    with_conv: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    matmul_kernel_grad: bool = False

    @nn.compact
    def __call__(self, x):
        b, height, width, c = x.shape
        if not self.with_conv:
            x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, height, 2, width, 2, c))
            return x.reshape(b, 2 * height, 2 * width, c)
        conv = functools.partial(nearest_upsample_conv, conv=_conv_fn(self.matmul_kernel_grad))
        return nn.Conv(
            c,
            (3, 3),
            padding=1,
            kernel_init=default_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="conv",
            conv_general_dilated=conv,
        )(x)


class UNet(nn.Module):
    """The DDPM U-Net (Ho et al., 2020, Sec. 4 and App. B); see the module docstring.

    Attributes:
        ch: base channel count (the first level's).
        ch_mult: channel multiplier of each level; ``len(ch_mult)`` levels, ``len - 1`` halvings.
        num_res_blocks: residual blocks per level on the way down (one more on the way up).
        attn_resolutions: the spatial heights at which self-attention follows each block.
        dropout: dropout rate inside the residual blocks (active only with ``train=True``).
        out_channels: output channels; ``None`` for the input's (``2 * C`` for learned variance).
        num_classes: if set, condition on a class label ``y`` in [0, num_classes], where
            ``num_classes`` is the null label (classifier-free guidance).
        num_groups: GroupNorm groups (32 in Ho et al.).
        norm_eps: GroupNorm epsilon.
        attn_head_dim: channels per attention head; ``None`` for a single head.
        mid_attention: attention between the two middle residual blocks.
        resample_with_conv: down/upsample with convolutions, else average pooling / repetition.
        downsample_padding: (before, after) spatial padding of the downsampling convolution.
        scale_shift_norm: condition the residual blocks by scale and shift of the GroupNorm.
        embedding: module class of the conditioning embedding, called as
            ``embedding(ch, name="time_proj")``: :class:`SinusoidalEmbedding` of integer timesteps
            (default) or :class:`FourierEmbedding` of noise levels (a ``functools.partial`` sets
            its options).
        divide_by_sigma: divide the output by the conditioning value sigma, so that the network
            output is a score ``f(x, sigma) / sigma`` (Song & Ermon, 2020, technique 3).
        remat: rematerialise each residual and attention block in the backward pass.
        matmul_kernel_grad: compute every convolution's kernel gradient as matrix products
            (:mod:`jaxdiff.models.conv`; faster on XLA:CPU, same values).
        dtype: computation dtype (e.g. ``jnp.bfloat16``).
        param_dtype: parameter dtype.
    """

    ch: int = 128
    ch_mult: Sequence[int] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: Sequence[int] = (16,)
    dropout: float = 0.1
    out_channels: int | None = None
    num_classes: int | None = None
    num_groups: int = 32
    norm_eps: float = 1e-6
    attn_head_dim: int | None = None
    mid_attention: bool = True
    resample_with_conv: bool = True
    downsample_padding: tuple[int, int] = (0, 1)
    scale_shift_norm: bool = False
    embedding: ModuleDef = SinusoidalEmbedding
    divide_by_sigma: bool = False
    remat: bool = False
    matmul_kernel_grad: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def __post_init__(self):
        self._check_config()
        super().__post_init__()

    def _check_config(self):
        if not self.ch_mult or any(int(m) != m or m < 1 for m in self.ch_mult):
            raise ValueError(
                f"UNet: ch_mult must be a non-empty sequence of positive ints, got {self.ch_mult}"
            )
        if self.num_res_blocks < 1:
            raise ValueError(f"UNet: num_res_blocks must be >= 1, got {self.num_res_blocks}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"UNet: dropout must be in [0, 1), got {self.dropout}")
        bad = sorted({self.ch * m for m in self.ch_mult if (self.ch * m) % self.num_groups})
        if self.ch < 1 or bad:
            raise ValueError(
                f"UNet: every level's channel count ch * ch_mult must be divisible by "
                f"num_groups={self.num_groups} (GroupNorm), but {bad} (ch={self.ch}, "
                f"ch_mult={self.ch_mult}) are not"
            )
        if self.out_channels is not None and self.out_channels < 1:
            raise ValueError(
                f"UNet: out_channels must be a positive int or None, got {self.out_channels}"
            )
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(
                f"UNet: num_classes must be a positive int or None, got {self.num_classes}"
            )
        if tuple(self.downsample_padding) not in ((0, 1), (1, 1)):
            raise ValueError(
                f"UNet: downsample_padding must be (0, 1) or (1, 1) so that a stride-2 3x3 "
                f"convolution halves the size, got {self.downsample_padding}"
            )

    def _check_inputs(self, x, t, y):
        """Static checks of the inputs, before tracing; returns the attention levels."""
        if x.ndim != 4:
            raise ValueError(f"UNet: x must be NHWC of shape [B, H, W, C], got shape {x.shape}")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"UNet: x must be a float array in [-1, 1], got dtype {x.dtype}")
        if jnp.shape(t) != x.shape[:1]:
            raise ValueError(f"UNet: t must have shape [B] = {x.shape[:1]}, got {jnp.shape(t)}")
        factor = 2 ** (len(self.ch_mult) - 1)
        if x.shape[1] % factor or x.shape[2] % factor:
            raise ValueError(
                f"UNet: image height and width must be divisible by 2^(levels-1) = {factor} for "
                f"{len(self.ch_mult)} levels, got x of shape {x.shape}"
            )
        heights = [x.shape[1] // 2**level for level in range(len(self.ch_mult))]
        never = sorted(set(self.attn_resolutions) - set(heights))
        if never:
            raise ValueError(
                f"UNet: attn_resolutions {never} never occur; for an input of height "
                f"{x.shape[1]} the "
                f"levels have heights {heights}"
            )
        attn_levels = [level for level, hgt in enumerate(heights) if hgt in self.attn_resolutions]
        if self.attn_head_dim is not None:
            channels = {self.ch * self.ch_mult[level] for level in attn_levels}
            if self.mid_attention:
                channels.add(self.ch * self.ch_mult[-1])
            bad = sorted(c for c in channels if c % self.attn_head_dim)
            if bad:
                raise ValueError(
                    f"UNet: attention channels {bad} are not divisible by "
                    f"attn_head_dim={self.attn_head_dim}"
                )
        if self.num_classes is None and y is not None:
            raise ValueError("UNet: got a class label y but num_classes is None")
        if y is not None and jnp.shape(y) != x.shape[:1]:
            raise ValueError(f"UNet: y must have shape [B] = {x.shape[:1]}, got {jnp.shape(y)}")
        return attn_levels

    @nn.compact
    def __call__(self, x, t, *, y=None, train=False):
        """Predict from a noisy batch.

        Args:
            x: images, float [B, H, W, C] in [-1, 1].
            t: int32 timesteps [B], 0-based; or float noise levels sigma [B] with
                :class:`FourierEmbedding`.
            y: int32 class labels [B] in [0, num_classes] (``num_classes`` = null label), or
                ``None`` (the null label); only with ``num_classes``.
            train: apply dropout (needs ``rngs={"dropout": key}`` when ``dropout > 0``).

        Returns:
            float32 array [B, H, W, out_channels].
        """
        attn_levels = self._check_inputs(x, t, y)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        conv_kw = dict(matmul_kernel_grad=self.matmul_kernel_grad, **kw)
        Conv = _conv_module(self.matmul_kernel_grad)  # noqa: N806
        norm = dict(num_groups=self.num_groups, norm_eps=self.norm_eps)

        emb_dim = 4 * self.ch
        emb = self.embedding(self.ch, name="time_proj")(t)
        emb = nn.Dense(emb_dim, kernel_init=default_init, name="temb_dense_0", **kw)(emb)
        emb = nn.Dense(emb_dim, kernel_init=default_init, name="temb_dense_1", **kw)(nn.silu(emb))
        if self.num_classes is not None:
            labels = jnp.full(x.shape[:1], self.num_classes, jnp.int32) if y is None else y
            emb = emb + nn.Embed(self.num_classes + 1, emb_dim, name="class_embed", **kw)(labels)

        res_block = nn.remat(ResBlock, static_argnums=(3,)) if self.remat else ResBlock
        attn_block = nn.remat(AttnBlock) if self.remat else AttnBlock

        def res(features, name, h):
            block = res_block(
                features,
                dropout=self.dropout,
                scale_shift_norm=self.scale_shift_norm,
                name=name,
                **norm,
                **conv_kw,
            )
            return block(h, emb, train)

        def attn(name, h):
            return attn_block(head_dim=self.attn_head_dim, name=name, **norm, **kw)(h)

        levels = len(self.ch_mult)
        h = Conv(self.ch, (3, 3), padding=1, kernel_init=default_init, name="conv_in", **kw)(
            x.astype(self.dtype)
        )
        skips = [h]
        for level, mult in enumerate(self.ch_mult):
            for i in range(self.num_res_blocks):
                h = res(self.ch * mult, f"down_{level}_res_{i}", h)
                if level in attn_levels:
                    h = attn(f"down_{level}_attn_{i}", h)
                skips.append(h)
            if level != levels - 1:
                h = Downsample(
                    self.resample_with_conv,
                    tuple(self.downsample_padding),
                    name=f"down_{level}_downsample",
                    **conv_kw,
                )(h)
                skips.append(h)

        h = res(h.shape[-1], "mid_res_0", h)
        if self.mid_attention:
            h = attn("mid_attn", h)
        h = res(h.shape[-1], "mid_res_1", h)

        for level in reversed(range(levels)):
            for i in range(self.num_res_blocks + 1):
                h = res(
                    self.ch * self.ch_mult[level],
                    f"up_{level}_res_{i}",
                    jnp.concatenate([h, skips.pop()], -1),
                )
                if level in attn_levels:
                    h = attn(f"up_{level}_attn_{i}", h)
            if level != 0:
                h = Upsample(self.resample_with_conv, name=f"up_{level}_upsample", **conv_kw)(h)

        h = nn.silu(
            nn.GroupNorm(num_groups=self.num_groups, epsilon=self.norm_eps, name="norm_out", **kw)(
                h
            )
        )
        out_channels = self.out_channels or x.shape[-1]
        h = Conv(out_channels, (3, 3), padding=1, kernel_init=zero_init, name="conv_out", **kw)(
            h
        )
        out = h.astype(jnp.float32)
        if self.divide_by_sigma:
            out = out / jnp.asarray(t, jnp.float32)[:, None, None, None]
        return out
