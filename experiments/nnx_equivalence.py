"""The NNX U-Net against its linen predecessor: the same weights, the same outputs.

Loads the linen U-Net of jaxdiff 0.2 (commit 142c234) from a source folder, initialises it, perturbs
every weight (so that the zero-initialised layers count), loads the weights into the NNX
:class:`~jaxdiff.models.UNet` (its state has linen's parameter names) and compares parameter
counts and outputs. Writes ``experiments/figures/nnx_equivalence.json``.

    git archive 142c234 jaxdiff | tar -x -C /tmp/linen
    PYTHONPATH=. python experiments/nnx_equivalence.py /tmp/linen/jaxdiff [--big]

``--big`` adds the 35.7M-parameter CIFAR-10 network (minutes on a CPU).
"""

import functools
import importlib.util
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdiff.models import presets
from jaxdiff.models import unet as nnx_unet

OUT = pathlib.Path(__file__).parent / "figures" / "nnx_equivalence.json"


def _linen_unet(src):
    spec = importlib.util.spec_from_file_location("linen_unet", f"{src}/models/unet.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["linen_unet"] = module
    spec.loader.exec_module(module)
    return module


def _count(tree):
    return int(sum(np.size(x) for x in jax.tree.leaves(tree)))


def compare(name, linen_module, make_nnx, shape, t, **call):
    x = jax.random.normal(jax.random.key(1), shape)
    params = linen_module.init({"params": jax.random.key(0)}, x, t, **call)["params"]
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(5), len(leaves))
    params = jax.tree.unflatten(
        treedef, [p + 0.1 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)]
    )
    ref = linen_module.apply({"params": params}, x, t, **call)
    model = make_nnx(rngs=nnx.Rngs(0))
    state = nnx.state(model, nnx.Param)
    nnx.replace_by_pure_dict(state, params)
    nnx.update(model, state)
    err = float(jnp.linalg.norm(model(x, t, **call) - ref) / jnp.linalg.norm(ref))
    row = dict(name=name, params_linen=_count(params), params_nnx=_count(state), rel_err=err)
    print(row, flush=True)
    return row


def main(src, big):
    linen = _linen_unet(src)
    tiny = dict(ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), num_groups=4)
    t2 = jnp.array([3, 700])
    sigmas = jnp.array([0.5, 3.0])

    def both(options, channels, nnx_embedding=None, linen_embedding=None):
        nnx_options = dict(options, **({"embedding": nnx_embedding} if nnx_embedding else {}))
        linen_options = dict(options, **({"embedding": linen_embedding} if linen_embedding else {}))
        make = functools.partial(nnx_unet.UNet, channels, image_size=8, **nnx_options)
        return linen.UNet(**linen_options), make

    options = dict(tiny, scale_shift_norm=True, num_classes=5, attn_head_dim=4, out_channels=6,
                   downsample_padding=(1, 1))
    plain = dict(tiny, resample_with_conv=False, mid_attention=False)
    fourier = dict(tiny, divide_by_sigma=True)
    nnx_fourier = functools.partial(nnx_unet.FourierEmbedding, scale=16.0)
    linen_fourier = functools.partial(linen.FourierEmbedding, scale=16.0)
    digits = dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), dropout=0.1,
                  num_groups=8)
    rows = [
        compare("tiny", *both(tiny, 3), (2, 8, 8, 3), t2),
        compare("tiny_options", *both(options, 3), (2, 8, 8, 3), t2, y=jnp.array([1, 5])),
        compare("tiny_plain", *both(plain, 3), (2, 8, 8, 3), t2),
        compare("tiny_fourier", *both(fourier, 1, nnx_fourier, linen_fourier), (2, 8, 8, 1), sigmas),
        compare("ddpm_digits", linen.UNet(**digits), presets.ddpm_digits, (2, 8, 8, 1), t2),
        compare("ncsn_digits", linen.UNet(**digits, embedding=linen_fourier, divide_by_sigma=True),
                presets.ncsn_digits, (2, 8, 8, 1), sigmas),
    ]
    if big:
        cifar = dict(ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,),
                     dropout=0.1)
        rows.append(compare("ddpm_cifar10", linen.UNet(**cifar), presets.ddpm_cifar10,
                            (1, 32, 32, 3), jnp.array([500])))
    OUT.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], "--big" in sys.argv)
