"""The U-Net of Ho et al. (2020), "Denoising Diffusion Probabilistic Models", in Flax.

A PixelCNN++-style U-Net (Salimans et al., 2017) as described in Ho et al. (2020), Sec. 4 and
Appendix B: a sinusoidal embedding of the timestep followed by a two-layer MLP; at every
resolution ``num_res_blocks`` wide residual blocks (GroupNorm, SiLU, dropout) that each add the
embedding, with single-head self-attention at the resolutions in ``attn_resolutions``; a middle
of residual block, attention, residual block; and an upsampling path that concatenates the
skip connections of the downsampling path.

Usage (NHWC images in [-1, 1], ``t`` int32 of shape [B], 0-based)::

    model = UNet(1, image_size=8, ch=32, ch_mult=(1, 2), num_res_blocks=1,
                 attn_resolutions=(4,), num_groups=8, rngs=nnx.Rngs(0))
    eps = model(x, t)                                      # deterministic, train=False
    eps = model(x, t, train=True, rngs=nnx.Rngs(dropout=key))

The module is the model function ``model_fn(x_t, t)`` that every loss, bound and sampler of
jaxdiff takes; they compile once per architecture, with ``nnx.state(model)`` an argument.

The presets in :mod:`jaxdiff.models.presets` (``ddpm_cifar10``, ``ddpm_digits``, ...) are
``functools.partial`` objects of :class:`UNet`: ``ddpm_cifar10(rngs=nnx.Rngs(0))`` is the
35.7M-parameter CIFAR-10 network of the paper.

Options:

* ``out_channels=2 * C`` doubles the output for a learned variance (Nichol & Dhariwal, 2021).
* ``num_classes=K`` adds a class embedding with ``K + 1`` rows; the last row, index ``K``, is the
  "null" label of classifier-free guidance (Ho & Salimans, 2022). Call with ``y`` int32 [B];
  ``y=None`` means the null label, so ``model(x, t)`` is the unconditional model.
* ``embedding=FourierEmbedding`` and ``divide_by_sigma=True`` make a noise-conditional score
  network (NCSN; Song & Ermon, 2019, 2020): the second argument is then the noise level sigma,
  float [B], instead of an integer timestep.
* ``dtype=jnp.bfloat16`` computes in bfloat16 while the parameters stay ``param_dtype``
  (float32); the output is float32 whatever ``dtype`` is.
* ``remat=True`` rematerialises every residual and attention block in the backward pass
  (``flax.nnx.remat``), trading compute for activation memory. It does not change the
  parameters or the outputs.

The state names the layers after their place in the network: ``conv_in``,
``temb_dense_0``, ``temb_dense_1``, ``down_{level}_res_{i}``, ``down_{level}_attn_{i}``,
``down_{level}_downsample``, ``mid_res_0``, ``mid_attn``, ``mid_res_1``, ``up_{level}_res_{i}``,
``up_{level}_attn_{i}``, ``up_{level}_upsample``, ``norm_out``, ``conv_out`` (and ``time_proj``,
``class_embed`` when present); ``level`` 0 is the full resolution. These are the names of the
linen parameter tree of jaxdiff 0.2, so ``nnx.replace_by_pure_dict(nnx.state(model, nnx.Param),
params)`` loads such parameters.
"""

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._compile import static_partial
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

# Ho et al. (2020) initialise every layer with variance_scaling(1, "fan_avg", "uniform") and the
# layers that close a residual branch (and the output layer) with a scale of 1e-10, i.e. zero.
default_init = nnx.initializers.variance_scaling(1.0, "fan_avg", "uniform")
zero_init = nnx.initializers.zeros_init()


def _conv_fn(matmul_kernel_grad: bool) -> Callable:
    """``jax.lax.conv_general_dilated``, or :func:`~jaxdiff.models.conv.conv2d` (kernel gradient
    as matrix products, for CPUs) when ``matmul_kernel_grad`` is set."""
    return conv2d if matmul_kernel_grad else jax.lax.conv_general_dilated


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
    ``flax.nnx.Conv(conv_general_dilated=...)``: NHWC images, an HWIO 3x3 kernel, stride 1,
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


class SinusoidalEmbedding(nnx.Module):
    """:func:`sinusoidal_embedding` of integer timesteps as a module: [B] -> [B, features]."""

    def __init__(self, features: int, *, flip_sin_to_cos=False, freq_shift=1.0, rngs=None):
        self.features, self.flip_sin_to_cos, self.freq_shift = features, flip_sin_to_cos, freq_shift

    def __call__(self, t):
        return sinusoidal_embedding(
            t, self.features, flip_sin_to_cos=self.flip_sin_to_cos, freq_shift=self.freq_shift
        )


class FourierEmbedding(nnx.Module):
    """:func:`fourier_embedding` of noise levels sigma: [B] -> [B, 2 * features].

    The ``features`` frequencies are drawn at construction from N(0, scale^2) and then held
    fixed: they are the parameter ``W`` (as in Song et al.'s NCSN++) but receive no gradient.
    Mask them out of weight decay if you use it.
    """

    def __init__(self, features: int, *, scale=16.0, param_dtype: Dtype = jnp.float32, rngs):
        init = nnx.initializers.normal(stddev=scale)
        self.W = nnx.Param(init(rngs.params(), (features,), param_dtype))

    def __call__(self, sigma):
        w = jax.lax.stop_gradient(jnp.asarray(self.W[...], jnp.float32))
        return fourier_embedding(sigma, w)


class ResBlock(nnx.Module):
    r"""Residual block of Ho et al. (2020), App. B (the Wide ResNet block of PixelCNN++).

    .. math::

        h = \mathrm{conv}(\mathrm{SiLU}(\mathrm{GN}(x))), \quad
        h = \mathrm{conv}(\mathrm{drop}(\mathrm{SiLU}(\mathrm{GN}(h + W e)))), \quad
        \mathrm{out} = \mathrm{skip}(x) + h

    with :math:`e` the embedding after a SiLU, and :math:`\mathrm{skip}` a 1x1 convolution when
    the channel count changes. With ``scale_shift_norm`` the embedding gives a scale and shift
    instead: :math:`\mathrm{GN}(h)(1 + a) + b` (Nichol & Dhariwal, 2021; Dhariwal & Nichol, 2021).

    Input x [B, H, W, in_features], emb [B, emb_features]; output [B, H, W, features].
    """

    def __init__(
        self,
        in_features: int,
        features: int,
        emb_features: int,
        *,
        num_groups: int = 32,
        norm_eps: float = 1e-6,
        dropout: float = 0.0,
        scale_shift_norm: bool = False,
        dtype: Dtype = jnp.float32,
        param_dtype: Dtype = jnp.float32,
        matmul_kernel_grad: bool = False,
        rngs: nnx.Rngs,
    ):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        conv = dict(conv_general_dilated=_conv_fn(matmul_kernel_grad), **kw)
        norm = dict(num_groups=num_groups, epsilon=norm_eps, **kw)
        self.scale_shift_norm = scale_shift_norm
        self.norm_1 = nnx.GroupNorm(in_features, **norm)
        self.conv_1 = nnx.Conv(in_features, features, (3, 3), padding=1, kernel_init=default_init, **conv)
        num_emb = 2 * features if scale_shift_norm else features
        self.temb_proj = nnx.Linear(emb_features, num_emb, kernel_init=default_init, **kw)
        self.norm_2 = nnx.GroupNorm(features, **norm)
        self.dropout = nnx.Dropout(dropout)
        self.conv_2 = nnx.Conv(features, features, (3, 3), padding=1, kernel_init=zero_init, **conv)
        self.shortcut = nnx.data(None)
        if in_features != features:
            self.shortcut = nnx.Conv(
                in_features, features, (1, 1), kernel_init=default_init, **conv
            )

    def __call__(self, x, emb, *, train: bool = False, rngs: nnx.Rngs | None = None):
        h = self.conv_1(nnx.silu(self.norm_1(x)))
        e = self.temb_proj(nnx.silu(emb))[:, None, None, :]  # [B, 1, 1, num_emb]
        if self.scale_shift_norm:
            scale, shift = jnp.split(e, 2, axis=-1)
            h = self.norm_2(h) * (1 + scale) + shift
        else:
            h = self.norm_2(h + e)
        h = self.dropout(nnx.silu(h), deterministic=not train, rngs=rngs)
        h = self.conv_2(h)
        if self.shortcut is not None:
            x = self.shortcut(x)
        return x + h


class AttnBlock(nnx.Module):
    r"""Self-attention over the pixels with a residual connection (Ho et al., 2020, App. B).

    .. math::

        \mathrm{out} = x + W_o\,\mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{d}}\right) V,
        \quad Q, K, V = W_{q,k,v}\,\mathrm{GN}(x)

    per head, with head size ``d = head_dim`` (``None``: one head over all C channels, as in
    Ho et al.). Input and output [B, H, W, features].
    """

    def __init__(
        self,
        features: int,
        *,
        head_dim: int | None = None,
        num_groups: int = 32,
        norm_eps: float = 1e-6,
        dtype: Dtype = jnp.float32,
        param_dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.head_dim = head_dim or features
        self.norm = nnx.GroupNorm(features, num_groups=num_groups, epsilon=norm_eps, **kw)
        self.query, self.key, self.value = (
            nnx.Linear(features, features, kernel_init=default_init, **kw) for _ in range(3)
        )
        self.proj_out = nnx.Linear(features, features, kernel_init=zero_init, **kw)

    def __call__(self, x):
        b, height, width, c = x.shape
        h = self.norm(x).reshape(b, height * width, c)
        q, k, v = (
            dense(h).reshape(b, height * width, c // self.head_dim, self.head_dim)
            for dense in (self.query, self.key, self.value)
        )
        a = jax.nn.dot_product_attention(q, k, v).reshape(b, height * width, c)
        return x + self.proj_out(a).reshape(b, height, width, c)


class Downsample(nnx.Module):
    """Halve H and W: a stride-2 3x3 convolution, or 2x2 average pooling without convolution.

    ``padding`` (before, after) pads each spatial axis for the convolution: (0, 1) is Ho et al.'s
    TensorFlow "SAME" padding (diffusers ``downsample_padding=0``), (1, 1) is diffusers' default.
    Input [B, H, W, features], output [B, H/2, W/2, features].
    """

    def __init__(
        self,
        features: int,
        *,
        with_conv: bool = True,
        padding: tuple[int, int] = (0, 1),
        dtype: Dtype = jnp.float32,
        param_dtype: Dtype = jnp.float32,
        matmul_kernel_grad: bool = False,
        rngs: nnx.Rngs,
    ):
        self.conv = nnx.data(None)
        if with_conv:
            self.conv = nnx.Conv(
                features,
                features,
                (3, 3),
                strides=(2, 2),
                padding=(tuple(padding), tuple(padding)),
                kernel_init=default_init,
                dtype=dtype,
                param_dtype=param_dtype,
                conv_general_dilated=_conv_fn(matmul_kernel_grad),
                rngs=rngs,
            )

    def __call__(self, x):
        if self.conv is None:
            return nnx.avg_pool(x, (2, 2), strides=(2, 2))
        return self.conv(x)


class Upsample(nnx.Module):
    """Double H and W by nearest-neighbour repetition, then (optionally) a 3x3 convolution.

    The convolution of the repeated image is computed at the input resolution
    (:func:`nearest_upsample_conv`, 2.25x fewer operations); its parameters are those of a
    :class:`flax.nnx.Conv` named ``conv``. Input [B, H, W, C], output [B, 2H, 2W, C].
    """

    def __init__(
        self,
        features: int,
        *,
        with_conv: bool = True,
        dtype: Dtype = jnp.float32,
        param_dtype: Dtype = jnp.float32,
        matmul_kernel_grad: bool = False,
        rngs: nnx.Rngs,
    ):
        self.conv = nnx.data(None)
        if with_conv:
            conv = static_partial(nearest_upsample_conv, conv=_conv_fn(matmul_kernel_grad))
            self.conv = nnx.Conv(
                features,
                features,
                (3, 3),
                padding=1,
                kernel_init=default_init,
                dtype=dtype,
                param_dtype=param_dtype,
                conv_general_dilated=conv,
                rngs=rngs,
            )

    def __call__(self, x):
        if self.conv is not None:
            return self.conv(x)
        b, height, width, c = x.shape
        x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, height, 2, width, 2, c))
        return x.reshape(b, 2 * height, 2 * width, c)


def _check_config(ch, ch_mult, num_res_blocks, dropout, num_groups, out_channels, num_classes,
                  downsample_padding, image_size, attn_resolutions, attn_head_dim, mid_attention):
    """The U-Net's options, checked at construction; returns the levels with attention."""
    if not ch_mult or any(int(m) != m or m < 1 for m in ch_mult):
        raise ValueError(f"UNet: ch_mult must be a non-empty sequence of positive ints, got {ch_mult}")
    if num_res_blocks < 1:
        raise ValueError(f"UNet: num_res_blocks must be >= 1, got {num_res_blocks}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"UNet: dropout must be in [0, 1), got {dropout}")
    bad = sorted({ch * m for m in ch_mult if (ch * m) % num_groups})
    if ch < 1 or bad:
        raise ValueError(
            f"UNet: every level's channel count ch * ch_mult must be divisible by "
            f"num_groups={num_groups} (GroupNorm), but {bad} (ch={ch}, ch_mult={ch_mult}) are not"
        )
    if out_channels is not None and out_channels < 1:
        raise ValueError(f"UNet: out_channels must be a positive int or None, got {out_channels}")
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"UNet: num_classes must be a positive int or None, got {num_classes}")
    if tuple(downsample_padding) not in ((0, 1), (1, 1)):
        raise ValueError(
            f"UNet: downsample_padding must be (0, 1) or (1, 1) so that a stride-2 3x3 "
            f"convolution halves the size, got {downsample_padding}"
        )
    factor = 2 ** (len(ch_mult) - 1)
    if image_size % factor:
        raise ValueError(
            f"UNet: image_size must be divisible by 2^(levels-1) = {factor} for {len(ch_mult)} "
            f"levels, got {image_size}"
        )
    heights = [image_size // 2**level for level in range(len(ch_mult))]
    never = sorted(set(attn_resolutions) - set(heights))
    if never:
        raise ValueError(
            f"UNet: attn_resolutions {never} never occur; for image_size={image_size} the "
            f"levels have heights {heights}"
        )
    attn_levels = tuple(level for level, hgt in enumerate(heights) if hgt in attn_resolutions)
    if attn_head_dim is not None:
        channels = {ch * ch_mult[level] for level in attn_levels}
        if mid_attention:
            channels.add(ch * ch_mult[-1])
        bad = sorted(c for c in channels if c % attn_head_dim)
        if bad:
            raise ValueError(
                f"UNet: attention channels {bad} are not divisible by attn_head_dim={attn_head_dim}"
            )
    return attn_levels


def _call_block(block, h, emb, rngs, train):
    return block(h, emb, train=train, rngs=rngs)


def _call_attn(block, h):
    return block(h)


class UNet(nnx.Module):
    """The DDPM U-Net (Ho et al., 2020, Sec. 4 and App. B); see the module docstring.

    Args:
        in_channels: channels of the input images.
        image_size: the height of the images; places attention (``attn_resolutions``).
        ch: base channel count (the first level's).
        ch_mult: channel multiplier of each level; ``len(ch_mult)`` levels, ``len - 1`` halvings.
        num_res_blocks: residual blocks per level on the way down (one more on the way up).
        attn_resolutions: the spatial heights at which self-attention follows each block.
        dropout: dropout rate inside the residual blocks (active only with ``train=True``).
        out_channels: output channels; ``None`` for ``in_channels`` (``2 * C`` for learned
            variance).
        num_classes: if set, condition on a class label ``y`` in [0, num_classes], where
            ``num_classes`` is the null label (classifier-free guidance).
        num_groups: GroupNorm groups (32 in Ho et al.).
        norm_eps: GroupNorm epsilon.
        attn_head_dim: channels per attention head; ``None`` for a single head.
        mid_attention: attention between the two middle residual blocks.
        resample_with_conv: down/upsample with convolutions, else average pooling / repetition.
        downsample_padding: (before, after) spatial padding of the downsampling convolution.
        scale_shift_norm: condition the residual blocks by scale and shift of the GroupNorm.
        embedding: the conditioning embedding, called as ``embedding(ch, rngs=rngs)``:
            :class:`SinusoidalEmbedding` of integer timesteps (default) or
            :class:`FourierEmbedding` of noise levels (a ``functools.partial`` sets its options).
        divide_by_sigma: divide the output by the conditioning value sigma, so that the network
            output is a score ``f(x, sigma) / sigma`` (Song & Ermon, 2020, technique 3).
        remat: rematerialise each residual and attention block in the backward pass.
        matmul_kernel_grad: compute every convolution's kernel gradient as matrix products
            (:mod:`jaxdiff.models.conv`; faster on XLA:CPU, same values).
        dtype: computation dtype (e.g. ``jnp.bfloat16``).
        param_dtype: parameter dtype.
        rngs: the keys of the initialisation (``rngs.params()``).
    """

    def __init__(
        self,
        in_channels: int = 3,
        *,
        image_size: int = 32,
        ch: int = 128,
        ch_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.1,
        out_channels: int | None = None,
        num_classes: int | None = None,
        num_groups: int = 32,
        norm_eps: float = 1e-6,
        attn_head_dim: int | None = None,
        mid_attention: bool = True,
        resample_with_conv: bool = True,
        downsample_padding: tuple[int, int] = (0, 1),
        scale_shift_norm: bool = False,
        embedding: Callable[..., nnx.Module] = SinusoidalEmbedding,
        divide_by_sigma: bool = False,
        remat: bool = False,
        matmul_kernel_grad: bool = False,
        dtype: Dtype = jnp.float32,
        param_dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        ch_mult = tuple(ch_mult)
        self.attn_levels = _check_config(
            ch, ch_mult, num_res_blocks, dropout, num_groups, out_channels, num_classes,
            downsample_padding, image_size, tuple(attn_resolutions), attn_head_dim, mid_attention,
        )
        self.in_channels, self.ch_mult, self.num_res_blocks = in_channels, ch_mult, num_res_blocks
        self.num_classes, self.divide_by_sigma, self.remat = num_classes, divide_by_sigma, remat
        self.mid_attention, self.dtype = mid_attention, dtype
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        conv_kw = dict(matmul_kernel_grad=matmul_kernel_grad, **kw)
        norm = dict(num_groups=num_groups, norm_eps=norm_eps)
        emb_dim = 4 * ch
        conv = functools.partial(nnx.Conv, conv_general_dilated=_conv_fn(matmul_kernel_grad), **kw)

        self.time_proj = embedding(ch, rngs=rngs)
        emb_in = 2 * self.time_proj.W.shape[0] if isinstance(self.time_proj, FourierEmbedding) else ch
        self.temb_dense_0 = nnx.Linear(emb_in, emb_dim, kernel_init=default_init, **kw)
        self.temb_dense_1 = nnx.Linear(emb_dim, emb_dim, kernel_init=default_init, **kw)
        if num_classes is not None:
            self.class_embed = nnx.Embed(num_classes + 1, emb_dim, **kw)

        def res(name, c_in, c_out):
            block = ResBlock(
                c_in, c_out, emb_dim, dropout=dropout, scale_shift_norm=scale_shift_norm,
                **norm, **conv_kw,
            )
            setattr(self, name, block)

        def attn(name, c):
            setattr(self, name, AttnBlock(c, head_dim=attn_head_dim, **norm, **kw))

        levels = len(ch_mult)
        self.conv_in = conv(in_channels, ch, (3, 3), padding=1, kernel_init=default_init)
        skips, c = [ch], ch
        for level, mult in enumerate(ch_mult):
            for i in range(num_res_blocks):
                res(f"down_{level}_res_{i}", c, ch * mult)
                c = ch * mult
                if level in self.attn_levels:
                    attn(f"down_{level}_attn_{i}", c)
                skips.append(c)
            if level != levels - 1:
                setattr(self, f"down_{level}_downsample", Downsample(
                    c, with_conv=resample_with_conv, padding=tuple(downsample_padding), **conv_kw
                ))
                skips.append(c)
        res("mid_res_0", c, c)
        if mid_attention:
            attn("mid_attn", c)
        res("mid_res_1", c, c)
        for level in reversed(range(levels)):
            for i in range(num_res_blocks + 1):
                res(f"up_{level}_res_{i}", c + skips.pop(), ch * ch_mult[level])
                c = ch * ch_mult[level]
                if level in self.attn_levels:
                    attn(f"up_{level}_attn_{i}", c)
            if level != 0:
                setattr(self, f"up_{level}_upsample", Upsample(
                    c, with_conv=resample_with_conv, **conv_kw
                ))
        self.norm_out = nnx.GroupNorm(c, num_groups=num_groups, epsilon=norm_eps, **kw)
        self.conv_out = conv(c, out_channels or in_channels, (3, 3), padding=1, kernel_init=zero_init)

    def _check_inputs(self, x, t, y):
        """Static checks of the inputs, before tracing."""
        if x.ndim != 4 or x.shape[-1] != self.in_channels:
            raise ValueError(
                f"UNet: x must be NHWC of shape [B, H, W, {self.in_channels}], got shape {x.shape}"
            )
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
        if self.num_classes is None and y is not None:
            raise ValueError("UNet: got a class label y but num_classes is None")
        if y is not None and jnp.shape(y) != x.shape[:1]:
            raise ValueError(f"UNet: y must have shape [B] = {x.shape[:1]}, got {jnp.shape(y)}")

    def __call__(self, x, t, *, y=None, train: bool = False, rngs: nnx.Rngs | None = None):
        """Predict from a noisy batch.

        Args:
            x: images, float [B, H, W, in_channels] in [-1, 1].
            t: int32 timesteps [B], 0-based; or float noise levels sigma [B] with
                :class:`FourierEmbedding`.
            y: int32 class labels [B] in [0, num_classes] (``num_classes`` = null label), or
                ``None`` (the null label); only with ``num_classes``.
            train: apply dropout (needs ``rngs=nnx.Rngs(dropout=key)`` when ``dropout > 0``).
            rngs: the dropout keys, with ``train``.

        Returns:
            float32 array [B, H, W, out_channels].
        """
        self._check_inputs(x, t, y)
        emb = self.temb_dense_0(self.time_proj(t))
        emb = self.temb_dense_1(nnx.silu(emb))
        if self.num_classes is not None:
            labels = jnp.full(x.shape[:1], self.num_classes, jnp.int32) if y is None else y
            emb = emb + self.class_embed(labels)

        call_res, call_attn = _call_block, _call_attn
        if self.remat:
            call_res, call_attn = nnx.remat(call_res, static_argnums=(4,)), nnx.remat(call_attn)

        def res(name, h):
            return call_res(getattr(self, name), h, emb, rngs, train)

        def attn(name, h):
            return call_attn(getattr(self, name), h)

        levels = len(self.ch_mult)
        h = self.conv_in(x.astype(self.dtype))
        skips = [h]
        for level in range(levels):
            for i in range(self.num_res_blocks):
                h = res(f"down_{level}_res_{i}", h)
                if level in self.attn_levels:
                    h = attn(f"down_{level}_attn_{i}", h)
                skips.append(h)
            if level != levels - 1:
                h = getattr(self, f"down_{level}_downsample")(h)
                skips.append(h)
        h = res("mid_res_0", h)
        if self.mid_attention:
            h = attn("mid_attn", h)
        h = res("mid_res_1", h)
        for level in reversed(range(levels)):
            for i in range(self.num_res_blocks + 1):
                h = res(f"up_{level}_res_{i}", jnp.concatenate([h, skips.pop()], -1))
                if level in self.attn_levels:
                    h = attn(f"up_{level}_attn_{i}", h)
            if level != 0:
                h = getattr(self, f"up_{level}_upsample")(h)
        out = self.conv_out(nnx.silu(self.norm_out(h))).astype(jnp.float32)
        if self.divide_by_sigma:
            out = out / jnp.asarray(t, jnp.float32)[:, None, None, None]
        return out
