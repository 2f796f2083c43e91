"""The NNX networks (U-Net, MLP, DiT, the VAE, the GAN's four networks, the digits classifier)
equal their linen predecessors (jaxdiff 0.2) for the same weights.

The reference outputs were computed by the linen modules and saved in tests/fixtures/linen_*.npz
by tests/fixtures/make_linen_fixtures.py; the linen weights are loaded into the NNX modules'
state (the U-Net's and DiT's states have linen's parameter names; the convolutional generative
networks' and the classifier's are lower-cased; the MLPs' are renamed). The generative fixtures
also hold linen's parameter count at the default options and the spread of its initial weights.
"""

import functools
import json
import math
import pathlib

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdiff import models
from jaxdiff.generative import gan, vae
from jaxdiff.metrics import digits

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def _nested(arrays, prefix):
    """The entries ``prefix<a>/<b>/...`` of ``arrays``, removed from it, as a nested dict."""
    tree = {}
    for key in [k for k in arrays if k.startswith(prefix)]:
        *path, leaf = key.removeprefix(prefix).split("/")
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = arrays.pop(key)
    return tree


def _fixture(name):
    with np.load(FIXTURES / f"linen_{name}.npz") as f:
        arrays = {k: f[k] for k in f.files}
    params = _nested(arrays, "param/")
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


# --- the generative networks and the digits classifier -------------------------------------------


def _lower(tree):
    return {k.lower(): _lower(v) if isinstance(v, dict) else v for k, v in tree.items()}


def _mlp_names(params):
    """linen's ``Dense_0..Dense_n`` of an MLP generator/discriminator as ``hidden/i`` and ``out``."""
    last = len(params) - 1
    return dict(hidden={i: params[f"Dense_{i}"] for i in range(last)}, out=params[f"Dense_{last}"])


def _is_array(x) -> bool:
    return isinstance(x, np.ndarray)


def _count(module) -> int:
    return sum(p.size for p in jax.tree.leaves(nnx.state(module, nnx.Param)))


# name: (NNX constructor of the fixture's options, linen names -> NNX names, outputs)
GENERATIVE = {
    "vae": (vae.VAE, _lower, lambda m, a: dict(zip(
        ("mean", "logvar", "dec_mean", "log_scale"), (*m.encode(a["x"]), *m.decode(a["z"]))))),
    "generator": (gan.Generator, _lower, lambda m, a: dict(x=m(a["z"]))),
    "discriminator": (functools.partial(gan.Discriminator, image_shape=(8, 8, 1)), _lower,
                      lambda m, a: dict(logits=m(a["x"]))),
    "mlp_generator": (gan.MLPGenerator, _mlp_names, lambda m, a: dict(x=m(a["z"]))),
    "mlp_discriminator": (gan.MLPDiscriminator, _mlp_names, lambda m, a: dict(logits=m(a["x"]))),
    "digits_classifier": (digits.DigitsClassifier, digits.from_linen,
                          lambda m, a: dict(zip(("logits", "features"), m(a["x"])))),
}


@pytest.mark.parametrize("name", sorted(GENERATIVE))
def test_generative_network_equals_linen(name):
    """Same outputs for linen's weights (relative error <= 1e-6), same parameter count at the
    default options, and the same initialisation: zeros and ones where linen has them, and
    LeCun-normal kernels, std 1 / sqrt(fan_in) (the closed form linen's weights follow too)."""
    make, rename, outputs = GENERATIVE[name]
    config, params, arrays = _fixture(name)
    num_params = config.pop("num_params")
    linen_init = _nested(arrays, "init/")
    inputs = {k: jnp.asarray(v) for k, v in arrays.items() if not k.startswith(("out/", "recipe_init/"))}
    model = _load(make(**config, rngs=nnx.Rngs(0)), rename(params))
    for key, out in outputs(model, inputs).items():
        assert _rel_err(out, arrays[f"out/{key}"]) <= 1e-6, key
    assert _count(nnx.eval_shape(lambda: make(rngs=nnx.Rngs(0)))) == num_params
    fresh = nnx.to_pure_dict(nnx.state(make(**config, rngs=nnx.Rngs(1)), nnx.Param))
    for (path, (mean, std)), leaf in zip(
        jax.tree_util.tree_flatten_with_path(rename(linen_init), is_leaf=_is_array)[0],
        jax.tree.leaves(fresh),
    ):
        leaf = np.asarray(leaf)
        if std == 0:  # a bias (zeros) or a layer norm's scale (ones)
            np.testing.assert_array_equal(leaf, mean, err_msg=str(path))
        else:
            closed_form = 1 / math.sqrt(math.prod(leaf.shape[:-1]))
            tolerance = 4 / math.sqrt(2 * leaf.size)  # 4 standard errors of a std estimate
            assert abs(leaf.std() / closed_form - 1) < tolerance, path
            assert abs(std / closed_form - 1) < tolerance, path


def test_digits_classifier_recipe_starts_from_linen_weights():
    """train_classifier's initial weights are those linen drew for the same key, so a retrained
    classifier equals one cached by jaxdiff 0.2 (checked against the fixture's sums)."""
    *_, arrays = _fixture("digits_classifier")
    expected = digits.from_linen(_nested(arrays, "recipe_init/"))
    key = jax.random.split(jax.random.PRNGKey(digits._RECIPE["seed"]))[0]
    got = digits._initial_params(key)
    for (path, e), p in zip(jax.tree_util.tree_flatten_with_path(expected)[0], jax.tree.leaves(got)):
        p = np.asarray(p, np.float64)
        np.testing.assert_allclose([p.sum(), np.square(p).sum(), p.ravel()[0]], e, rtol=1e-6,
                                   atol=1e-6, err_msg=str(path))


def test_digits_classifier_cache_of_linen_is_read(tmp_path, monkeypatch):
    """A cache file with linen's layer names (jaxdiff 0.2's) is read, not retrained."""
    template = nnx.to_pure_dict(nnx.state(nnx.eval_shape(lambda: digits.DigitsClassifier(rngs=nnx.Rngs(0)))))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32), template)
    linen = {k.replace("conv", "Conv").replace("dense", "Dense"): v for k, v in params.items()}
    digits._cache_file(tmp_path).write_bytes(flax.serialization.to_bytes(linen))
    monkeypatch.setattr(digits, "train_classifier", None)  # a retrain would fail
    loaded = digits.load_classifier(tmp_path)
    jax.tree.map(np.testing.assert_array_equal, loaded, params)
