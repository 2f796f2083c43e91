"""The NNX networks (U-Net, MLP, DiT) equal their linen predecessors (jaxdiff 0.2) for the same weights.

The reference outputs were computed by the linen modules and saved in tests/fixtures/linen_*.npz
by tests/fixtures/make_linen_fixtures.py; the linen weights are loaded into the NNX modules'
state (the U-Net's and DiT's states have linen's parameter names; the MLP's are renamed).
"""

import functools
import json
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdiff import models

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def _fixture(name):
    with np.load(FIXTURES / f"linen_{name}.npz") as f:
        arrays = {k: f[k] for k in f.files}
    params = {}
    for key in [k for k in arrays if k.startswith("param/")]:
        *path, leaf = key.removeprefix("param/").split("/")
        node = params
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = arrays.pop(key)
    return json.loads(str(arrays.pop("config"))), params, arrays


def _load(model, params):
    state = nnx.state(model, nnx.Param)
    nnx.replace_by_pure_dict(state, params)  # raises unless every name and shape matches
    nnx.update(model, state)
    return model


def _rel_err(a, b):
    return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))


@pytest.mark.parametrize("name", ["tiny", "options", "plain", "fourier"])
def test_unet_equals_linen_unet(name):
    config, params, arrays = _fixture(f"unet_{name}")
    scale = config.pop("fourier_scale", None)
    if scale is not None:
        config["embedding"] = functools.partial(models.FourierEmbedding, scale=scale)
    x = arrays["x"]
    model = models.UNet(x.shape[-1], image_size=x.shape[1], **config, rngs=nnx.Rngs(0))
    _load(model, params)
    y = {"y": jnp.asarray(arrays["y"])} if "y" in arrays else {}
    out = model(jnp.asarray(x), jnp.asarray(arrays["t"]), **y)
    assert _rel_err(out, arrays["out"]) <= 1e-6


def test_mlp_equals_linen_mlp():
    config, p, arrays = _fixture("mlp")
    model = models.MLP(arrays["x"].shape[-1], **config, rngs=nnx.Rngs(0))
    blocks = config["num_blocks"]
    # linen's compact names, in order of creation (the outer Dense of a nested call first)
    _load(model, dict(
        time_1=p["Dense_0"], time_0=p["Dense_1"], dense_in=p["Dense_2"],
        blocks={i: dict(norm=p[f"LayerNorm_{i}"], dense_0=p[f"Dense_{3 + 2 * i}"],
                        dense_1=p[f"Dense_{4 + 2 * i}"]) for i in range(blocks)},
        dense_out=p[f"Dense_{3 + 2 * blocks}"],
    ))
    out = model(jnp.asarray(arrays["x"]), jnp.asarray(arrays["t"]))
    assert _rel_err(out, arrays["out"]) <= 1e-6


def test_dit_equals_linen_dit():
    config, params, arrays = _fixture("dit")
    x = arrays["x"]
    model = _load(models.DiT(x.shape[-1], **config, rngs=nnx.Rngs(0)), params)
    out = model(jnp.asarray(x), jnp.asarray(arrays["t"]), y=jnp.asarray(arrays["y"]))
    assert _rel_err(out, arrays["out"]) <= 1e-6
