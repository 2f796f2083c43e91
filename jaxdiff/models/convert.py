"""Load the weights of a diffusers ``UNet2DModel`` into a :class:`~jaxdiff.models.UNet`.

The DDPM checkpoints of Ho et al. (2020) for CIFAR-10, CelebA-HQ and LSUN are published in this
format (``google/ddpm-cifar10-32``, ``google/ddpm-celebahq-256``, ...). With the files of such a
checkpoint at hand::

    import json
    import safetensors.numpy

    state_dict = safetensors.numpy.load_file("unet/diffusion_pytorch_model.safetensors")
    with open("unet/config.json") as f:
        config = json.load(f)
    model = jaxdiff.models.from_diffusers(state_dict, config)   # an nnx.Module
    eps = model(x_t, t)                         # x_t NHWC in [-1, 1], t int32 [B]

or, from the ``unet/`` folder of such a checkpoint (safetensors or a PyTorch ``.bin``, read by
:mod:`jaxdiff.state_dict` without PyTorch and without running code from the file)::

    model = jaxdiff.models.convert.load_diffusers("unet/")

Nothing here imports torch or diffusers.
"""

import functools
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdiff.models.unet import FourierEmbedding, SinusoidalEmbedding, UNet
from jaxdiff._io import read_json_object
from jaxdiff.state_dict import load_state_dict

__all__ = ["DDPM_CIFAR10_CONFIG", "from_diffusers", "load_diffusers"]

# The config.json of google/ddpm-cifar10-32, the published DDPM CIFAR-10 checkpoint (Ho et al.
# 2020) in diffusers' UNet2DModel format; ``from_diffusers`` builds ``ddpm_cifar10`` from it.
DDPM_CIFAR10_CONFIG = dict(
    sample_size=32,
    in_channels=3,
    out_channels=3,
    block_out_channels=(128, 256, 256, 256),
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    layers_per_block=2,
    attention_head_dim=None,
    downsample_padding=0,
    flip_sin_to_cos=False,
    freq_shift=1,
    norm_eps=1e-6,
    norm_num_groups=32,
    dropout=0.1,
)

# The defaults of UNet2DModel.__init__, for the options an (older) config.json leaves out.
_DIFFUSERS_DEFAULTS = {
    "sample_size": None,
    "in_channels": 3,
    "out_channels": 3,
    "center_input_sample": False,
    "time_embedding_type": "positional",
    "time_embedding_dim": None,
    "freq_shift": 0,
    "flip_sin_to_cos": True,
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    "mid_block_type": "UNetMidBlock2D",
    "up_block_types": ("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (224, 448, 672, 896),
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "downsample_padding": 1,
    "downsample_type": "conv",
    "upsample_type": "conv",
    "dropout": 0.0,
    "act_fn": "silu",
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "attn_norm_num_groups": None,
    "norm_eps": 1e-5,
    "resnet_time_scale_shift": "default",
    "add_attention": True,
    "class_embed_type": None,
    "num_class_embeds": None,
    "num_train_timesteps": None,
}

# Names of the diffusers layers inside a jaxdiff block, and of the parameters inside a layer.
_TOP_LEVEL = {
    "conv_in": "conv_in",
    "time_proj": "time_proj",
    "temb_dense_0": "time_embedding.linear_1",
    "temb_dense_1": "time_embedding.linear_2",
    "class_embed": "class_embedding",
    "mid_res_0": "mid_block.resnets.0",
    "mid_attn": "mid_block.attentions.0",
    "mid_res_1": "mid_block.resnets.1",
    "norm_out": "conv_norm_out",
    "conv_out": "conv_out",
}
_BLOCK = re.compile(r"(down|up)_(\d+)_(res|attn|downsample|upsample)(?:_(\d+))?")
_LAYERS = {
    "norm_1": "norm1",
    "conv_1": "conv1",
    "temb_proj": "time_emb_proj",
    "norm_2": "norm2",
    "conv_2": "conv2",
    "shortcut": "conv_shortcut",
    "norm": "group_norm",
    "query": "to_q",
    "key": "to_k",
    "value": "to_v",
    "proj_out": "to_out.0",
    "conv": "conv",
}
_LEAVES = {
    "kernel": "weight",
    "scale": "weight",
    "bias": "bias",
    "embedding": "weight",
    "W": "weight",
}
# Parameter names of older diffusers checkpoints (before the attention processors).
_LEGACY = [
    (re.compile(r"(\.attentions\.\d+)\.query\."), r"\1.to_q."),
    (re.compile(r"(\.attentions\.\d+)\.key\."), r"\1.to_k."),
    (re.compile(r"(\.attentions\.\d+)\.value\."), r"\1.to_v."),
    (re.compile(r"(\.attentions\.\d+)\.proj_attn\."), r"\1.to_out.0."),
    (re.compile(r"^time_proj\.W$"), "time_proj.weight"),
]


def _require(cfg, key, allowed):
    if cfg[key] not in allowed:
        raise ValueError(
            f"from_diffusers: config[{key!r}] = {cfg[key]!r} is not supported; "
            f"jaxdiff's UNet supports {list(allowed)}"
        )


def _unet_from_config(config):
    """``make(rngs) -> UNet`` of a UNet2DModel config."""
    cfg = dict(_DIFFUSERS_DEFAULTS)
    cfg.update({k: v for k, v in config.items() if not k.startswith("_")})
    unknown = sorted(set(cfg) - set(_DIFFUSERS_DEFAULTS))
    if unknown:
        raise ValueError(
            f"from_diffusers: config keys {unknown} are not UNet2DModel options jaxdiff knows"
        )
    channels = [int(c) for c in cfg["block_out_channels"]]
    down, up = list(cfg["down_block_types"]), list(cfg["up_block_types"])
    if not len(down) == len(up) == len(channels) >= 1:
        raise ValueError(
            f"from_diffusers: block_out_channels, down_block_types and up_block_types must "
            f"have the same length, got {len(channels)}, {len(down)} and {len(up)}"
        )
    ch = channels[0]
    _require(cfg, "time_embedding_type", ("positional", "fourier"))
    _require(cfg, "time_embedding_dim", (None, 4 * ch))
    _require(cfg, "mid_block_type", ("UNetMidBlock2D",))
    _require(cfg, "downsample_type", ("conv",))
    _require(cfg, "upsample_type", ("conv",))
    _require(cfg, "act_fn", ("silu", "swish"))
    _require(cfg, "mid_block_scale_factor", (1,))
    _require(cfg, "center_input_sample", (False,))
    _require(cfg, "class_embed_type", (None,))
    _require(cfg, "resnet_time_scale_shift", ("default", "scale_shift"))
    _require(cfg, "downsample_padding", (0, 1))
    bad = [b for b in down if b not in ("DownBlock2D", "AttnDownBlock2D")]
    bad += [b for b in up if b not in ("UpBlock2D", "AttnUpBlock2D")]
    if bad:
        raise ValueError(
            f"from_diffusers: block types {bad} are not supported; jaxdiff's UNet supports "
            f"DownBlock2D, AttnDownBlock2D, UpBlock2D and AttnUpBlock2D"
        )
    attn_levels = [level for level, b in enumerate(down) if b == "AttnDownBlock2D"]
    if attn_levels != [
        len(up) - 1 - i for i, b in reversed(list(enumerate(up))) if b == "AttnUpBlock2D"
    ]:
        raise ValueError(
            f"from_diffusers: jaxdiff's UNet has attention at the same resolutions on the way "
            f"down and up, "
            f"but down_block_types={down} and up_block_types={up} differ"
        )
    if any(c % ch for c in channels):
        raise ValueError(
            f"from_diffusers: block_out_channels {channels} must be multiples of the first"
        )
    groups = cfg["norm_num_groups"]
    if (
        cfg["add_attention"]
        and cfg["attn_norm_num_groups"] != groups
        and not (
            cfg["attn_norm_num_groups"] is None and cfg["resnet_time_scale_shift"] == "default"
        )
    ):
        raise ValueError(
            f"from_diffusers: the middle attention must have a GroupNorm of "
            f"norm_num_groups={groups} groups, "
            f"got attn_norm_num_groups={cfg['attn_norm_num_groups']} with "
            f"resnet_time_scale_shift={cfg['resnet_time_scale_shift']!r}"
        )
    size = cfg["sample_size"]
    if size is None:
        if attn_levels:
            raise ValueError(
                "from_diffusers: config['sample_size'] is needed to place the attention blocks"
            )
        size = 2 ** (len(channels) - 1)
    height = size if isinstance(size, int) else size[0]
    if cfg["time_embedding_type"] == "fourier":
        embedding = functools.partial(FourierEmbedding, scale=16.0)
    else:
        embedding = functools.partial(
            SinusoidalEmbedding,
            flip_sin_to_cos=bool(cfg["flip_sin_to_cos"]),
            freq_shift=float(cfg["freq_shift"]),
        )
    return functools.partial(
        UNet,
        int(cfg["in_channels"]),
        image_size=height,
        ch=ch,
        ch_mult=tuple(c // ch for c in channels),
        num_res_blocks=int(cfg["layers_per_block"]),
        attn_resolutions=tuple(height // 2**level for level in attn_levels),
        dropout=float(cfg["dropout"]),
        out_channels=int(cfg["out_channels"]),
        num_classes=cfg["num_class_embeds"],
        num_groups=int(groups),
        norm_eps=float(cfg["norm_eps"]),
        attn_head_dim=cfg["attention_head_dim"],
        mid_attention=bool(cfg["add_attention"]),
        downsample_padding=(0, 1) if cfg["downsample_padding"] == 0 else (1, 1),
        scale_shift_norm=cfg["resnet_time_scale_shift"] == "scale_shift",
        embedding=embedding,
        divide_by_sigma=cfg["time_embedding_type"] == "fourier",
    )


def _diffusers_name(path, num_levels):
    """The diffusers name of a jaxdiff parameter path, e.g. ('down_1_res_0', 'conv_1', 'kernel')."""
    top, *layers, leaf = path
    if top in _TOP_LEVEL:
        prefix = _TOP_LEVEL[top]
    else:
        side, level, kind, index = _BLOCK.fullmatch(top).groups()
        block = (
            f"down_blocks.{level}" if side == "down" else f"up_blocks.{num_levels - 1 - int(level)}"
        )
        part = {
            "res": f"resnets.{index}",
            "attn": f"attentions.{index}",
            "downsample": "downsamplers.0",
            "upsample": "upsamplers.0",
        }[kind]
        prefix = f"{block}.{part}"
    return ".".join([prefix, *(_LAYERS[name] for name in layers), _LEAVES[leaf]])


def _to_jax_layout(leaf, array):
    """A diffusers (PyTorch) parameter in jaxdiff's layout: OIHW -> HWIO, [out, in] -> [in, out],
    and a class-embedding table gains the zero "null label" row."""
    if leaf == "kernel":
        return array.transpose(2, 3, 1, 0) if array.ndim == 4 else array.T
    if leaf == "embedding":
        return np.concatenate([array, np.zeros_like(array[:1])])
    return array


def from_diffusers(state_dict, config):
    """Build the jaxdiff UNet of a diffusers ``UNet2DModel`` and convert its weights.

    Supports the options of the published DDPM checkpoints and a little more: positional
    (``flip_sin_to_cos``, ``freq_shift``) or Fourier time embeddings, ``DownBlock2D``,
    ``AttnDownBlock2D``, ``UpBlock2D`` and ``AttnUpBlock2D`` blocks with convolutional resampling
    (``downsample_padding`` 0 or 1), ``norm_num_groups``, ``norm_eps``, ``attention_head_dim``,
    ``add_attention``, ``resnet_time_scale_shift`` and ``num_class_embeds`` (the class table gains
    a zero row for jaxdiff's null label). Other options raise a ``ValueError`` naming them.
    Attention is placed by resolution, so the model expects inputs of ``config["sample_size"]``.

    Args:
        state_dict: diffusers parameter name -> numpy array (NCHW / [out, in] PyTorch layout).
            Older names of the attention parameters (``query``, ``key``, ``value``,
            ``proj_attn``) are accepted.
        config: the model's ``config.json`` as a dict.

    Returns:
        a :class:`~jaxdiff.models.UNet` (an ``nnx.Module``) holding the weights (float32), such
        that ``model(x, t)`` on NHWC ``x`` equals the diffusers output on NCHW ``x``.

    Raises:
        ValueError: an unsupported config, unknown or missing parameter names (listed), or a
            parameter of the wrong shape.
    """
    make = _unet_from_config(config)
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: make(rngs=nnx.Rngs(0))))
    num_levels = len(make.keywords["ch_mult"])
    targets = {
        _diffusers_name(tuple(k.key for k in path), num_levels): (tuple(k.key for k in path), leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(abstract))[0]
    }
    renamed = {}
    for name, array in state_dict.items():
        for pattern, replacement in _LEGACY:
            name = pattern.sub(replacement, name)
        renamed[name] = array
    unknown = sorted(set(renamed) - set(targets))
    missing = sorted(set(targets) - set(renamed))
    if unknown or missing:
        raise ValueError(
            f"from_diffusers: state_dict does not match the config: unknown keys {unknown}, "
            f"missing keys {missing}"
        )
    params, wrong = {}, []
    for name, (path, target) in targets.items():
        value = _to_jax_layout(path[-1], np.asarray(renamed[name], np.float32))
        if value.shape != target.shape:
            wrong.append(
                f"{name}: got {np.shape(renamed[name])}, expected {target.shape} after conversion"
            )
            continue
        node = params
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = jnp.asarray(value, target.dtype)
    if wrong:
        raise ValueError(f"from_diffusers: parameters of the wrong shape for the config: {wrong}")
    nnx.replace_by_pure_dict(abstract, params)
    return nnx.merge(graphdef, abstract)


_DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def load_diffusers(directory):
    """:func:`from_diffusers` of a diffusers ``UNet2DModel`` folder: its ``config.json`` and
    ``diffusion_pytorch_model.safetensors`` (or ``.bin``).

    Raises:
      FileNotFoundError: the folder lacks the config or the weights.
      ValueError: a malformed weights file (:class:`jaxdiff.state_dict.UnsafeFileError`) or
        weights that do not fit the config.
    """
    directory = Path(directory)
    config_path = directory / "config.json"
    weights = [directory / name for name in _DIFFUSERS_WEIGHTS if (directory / name).is_file()]
    if not config_path.is_file() or not weights:
        raise FileNotFoundError(
            f"{directory} is not a diffusers UNet2DModel folder (needs config.json and one of "
            f"{', '.join(_DIFFUSERS_WEIGHTS)})"
        )
    config = read_json_object(config_path, what="the diffusers config")
    return from_diffusers(load_state_dict(weights[0]), config)
