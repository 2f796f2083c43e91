"""DiT (Peebles & Xie 2023): one adaLN-Zero block against an independent numpy computation, the
identity at initialisation, patches, labels with the null label, and the time input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdiff import models
from jaxdiff.models import dit
from jaxdiff.models.network import NNXNetwork

D, HEADS, TOKENS = 32, 4, 6


def net(make, *args, **options):
    """An NNX module as an ``(init, apply)`` pair over its parameter dict."""
    return NNXNetwork(lambda rngs: make(*args, **options, rngs=rngs))


def randomised(variables, seed=0):
    """Every parameter replaced by N(0, 0.3^2) draws (so the zero-initialised gates are open)."""
    leaves, tree = jax.tree.flatten(variables)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(tree, [0.3 * jax.random.normal(k, a.shape) for k, a in zip(keys, leaves)])


def numpy_block(p, x, c):
    """The adaLN-Zero block of Peebles & Xie (2023), Fig. 3, written out in float64 numpy."""
    f64 = lambda a: np.asarray(a, np.float64)  # noqa: E731
    x, c = f64(x), f64(c)

    def dense(q, h):
        return h @ f64(q["kernel"]) + f64(q["bias"])

    def layer_norm(h):
        mu = h.mean(-1, keepdims=True)
        return (h - mu) / np.sqrt(((h - mu) ** 2).mean(-1, keepdims=True) + 1e-6)

    silu_c = c / (1 + np.exp(-c))
    shift1, scale1, gate1, shift2, scale2, gate2 = np.split(dense(p["adaLN_modulation"], silu_c), 6, -1)
    h = layer_norm(x) * (1 + scale1[:, None]) + shift1[:, None]
    a = p["attn"]
    q, k, v = (np.einsum("bnd,dhk->bnhk", h, f64(a[n]["kernel"])) + f64(a[n]["bias"])
               for n in ("query", "key", "value"))
    logits = np.einsum("bqhk,bshk->bhqs", q, k) / math.sqrt(q.shape[-1])
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    heads = np.einsum("bhqs,bshk->bqhk", weights, v)
    attn = np.einsum("bqhk,hkd->bqd", heads, f64(a["out"]["kernel"])) + f64(a["out"]["bias"])
    x = x + gate1[:, None] * attn
    h = layer_norm(x) * (1 + scale2[:, None]) + shift2[:, None]
    h = dense(p["mlp_0"], h)
    h = 0.5 * h * (1 + np.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))
    return x + gate2[:, None] * dense(p["mlp_1"], h)


def test_adaln_zero_block_matches_an_independent_computation():
    block = net(models.DiTBlock, D, HEADS)
    x = jax.random.normal(jax.random.key(1), (3, TOKENS, D))
    c = jax.random.normal(jax.random.key(2), (3, D))
    variables = randomised(block.init(jax.random.key(0), x, c))
    got = block.apply(variables, x, c)
    np.testing.assert_allclose(got, numpy_block(variables["params"], x, c), rtol=1e-4, atol=1e-4)


def test_zero_initialised_gates_make_the_block_the_identity_and_the_model_output_zero():
    block = net(models.DiTBlock, D, HEADS)
    x = jax.random.normal(jax.random.key(1), (3, TOKENS, D))
    c = jax.random.normal(jax.random.key(2), (3, D))
    np.testing.assert_array_equal(block.apply(block.init(jax.random.key(0), x, c), x, c), x)
    model = net(models.dit_digits, hidden_size=32, depth=2, num_classes=10)
    images = jax.random.normal(jax.random.key(3), (2, 8, 8, 1))
    out = model.apply(model.init(jax.random.key(0), images, jnp.zeros(2)), images, jnp.array([3.0, 700.0]))
    np.testing.assert_array_equal(out, np.zeros((2, 8, 8, 1)))


def test_patches_are_row_major_p_by_p_blocks():
    x = np.arange(2 * 4 * 6 * 3, dtype=np.float32).reshape(2, 4, 6, 3)
    tokens = np.asarray(dit.patchify(jnp.asarray(x), 2))
    assert tokens.shape == (2, 6, 12)
    for n in range(6):
        i, j = divmod(n, 3)
        np.testing.assert_array_equal(tokens[:, n], x[:, 2 * i:2 * i + 2, 2 * j:2 * j + 2].reshape(2, 12))
    np.testing.assert_array_equal(dit.unpatchify(jnp.asarray(tokens), 2, 4, 6), x)
    pos = dit.sincos_pos_embed_2d(8, 2, 3)  # half the channels encode the row, half the column
    np.testing.assert_allclose(pos[0], [0, 0, 1, 1, 0, 0, 1, 1], atol=1e-7)
    np.testing.assert_allclose(pos[4, :4], [np.sin(1), np.sin(1e-2), np.cos(1), np.cos(1e-2)], rtol=1e-6)
    np.testing.assert_allclose(pos[4, 4:], [np.sin(1), np.sin(1e-2), np.cos(1), np.cos(1e-2)], rtol=1e-6)


def _trained_looking(model, images, t):
    return randomised(model.init(jax.random.key(0), images, t), seed=4)


def test_labels_null_label_and_label_dropout():
    model = net(models.dit_digits, hidden_size=32, depth=1, num_classes=10, class_dropout=0.3)
    images = jax.random.normal(jax.random.key(3), (1000, 8, 8, 1))
    t = jnp.full(1000, 5.0)
    variables = _trained_looking(model, images, t)
    y = jnp.arange(1000) % 10
    cond = model.apply(variables, images, t, y=y)
    null = model.apply(variables, images, t)
    np.testing.assert_array_equal(null, model.apply(variables, images, t, y=jnp.full(1000, 10)))
    assert np.all(np.abs(np.asarray(cond - null)).max(axis=(1, 2, 3)) > 1e-3)
    dropped = model.apply(variables, images, t, y=y, train=True, rngs={"dropout": jax.random.key(5)})
    is_null = np.all(np.isclose(dropped, null, atol=1e-6), axis=(1, 2, 3))
    is_cond = np.all(np.isclose(dropped, cond, atol=1e-6), axis=(1, 2, 3))
    assert np.all(is_null ^ is_cond)
    assert abs(is_null.mean() - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 1000)
    with pytest.raises(ValueError, match="num_classes"):
        plain = net(models.dit_digits, hidden_size=32, depth=1)
        plain.apply(
            _trained_looking(plain, images[:2], t[:2]),
            images[:2], t[:2], y=y[:2])


def test_time_input_int_float_and_scale():
    images = jax.random.normal(jax.random.key(3), (4, 8, 8, 1))
    model = net(models.dit_digits, hidden_size=32, depth=1, out_channels=2)
    variables = _trained_looking(model, images, jnp.zeros(4))
    ints = model.apply(variables, images, jnp.array([0, 10, 500, 999]))
    assert ints.shape == (4, 8, 8, 2)
    np.testing.assert_allclose(model.apply(variables, images, jnp.array([0.0, 10.0, 500.0, 999.0])), ints)
    scaled = net(models.dit_digits, hidden_size=32, depth=1, out_channels=2, time_scale=1000.0)
    np.testing.assert_allclose(scaled.apply(variables, images, jnp.array([0.0, 0.01, 0.5, 0.999])), ints,
                               rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="patch_size"):
        model.apply(variables, jnp.zeros((1, 7, 8, 1)), jnp.zeros(1))
    with pytest.raises(ValueError, match="num_heads"):
        models.DiT(hidden_size=30, num_heads=4, rngs=nnx.Rngs(0))
