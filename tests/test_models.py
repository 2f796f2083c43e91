"""Tests of jaxdiff.models: the DDPM U-Net and the diffusers weight loader.

The reference outputs come from diffusers' UNet2DModel (PyTorch), saved once in tests/fixtures/
by tests/fixtures/make_diffusers_fixtures.py; this file needs neither torch nor diffusers.
"""

import functools
import json
import math
import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdiff import models
from jaxdiff.models import FourierEmbedding, UNet, from_diffusers

FIXTURES = pathlib.Path(__file__).parent / "fixtures"

# Parameter counts of diffusers' UNet2DModel with the configs of google/ddpm-cifar10-32 and
# google/ddpm-celebahq-256 (counted with diffusers 0.42.1; Ho et al. report 35.7M and 114M).
DDPM_CIFAR10_PARAMS = 35_746_307
DDPM_256_PARAMS = 113_673_219

def TINY(in_channels=3, **options):  # noqa: N802 - a preset-like constructor
    return UNet(in_channels, **{**dict(
        image_size=8, ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), num_groups=4,
    ), **options}, rngs=nnx.Rngs(0))


def MINI(in_channels=3, **options):  # noqa: N802
    """One level (no resampling), for the tests that differentiate: they compile fastest."""
    return TINY(in_channels, **{**dict(ch_mult=(1,), attn_resolutions=(8,)), **options})


DN = ("NHWC", "HWIO", "NHWC")


def rel_err(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


@functools.cache
def load_fixture(name):
    """(config, state_dict, x NCHW, t, y or None, out NCHW) of a saved diffusers run."""
    with np.load(FIXTURES / f"diffusers_unet_{name}.npz") as f:
        arrays = {k: f[k] for k in f.files}
    config = json.loads(str(arrays.pop("config")))
    state_dict = {k.removeprefix("param/"): v for k, v in arrays.items() if k.startswith("param/")}
    return config, state_dict, arrays["x"], arrays["t"], arrays.get("y"), arrays["out"]


@functools.cache
def converted(name):
    """(model, x NHWC, t, extra call kwargs, reference out NHWC) of a fixture."""
    config, state_dict, x, t, y, out = load_fixture(name)
    model = from_diffusers(state_dict, config)
    kwargs = {} if y is None else {"y": jnp.asarray(y)}
    return (
        model,
        jnp.asarray(x.transpose(0, 2, 3, 1)),
        jnp.asarray(t),
        kwargs,
        out.transpose(0, 2, 3, 1),
    )


def randomize(model, seed):
    """``model`` with random weights drawn with numpy (in place), no layer zero: GroupNorm
    scales 1 + 0.2 N(0, 1), kernels N(0, 1 / fan_in), everything else 0.2 N(0, 1)."""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        noise = rng.standard_normal(leaf.shape).astype(np.float32)
        name = path[-1].key
        if name == "scale":
            return jnp.asarray(1.0 + 0.2 * noise, leaf.dtype)
        if name == "kernel":
            return jnp.asarray(noise / math.sqrt(math.prod(leaf.shape[:-1])), leaf.dtype)
        return jnp.asarray(0.2 * noise, leaf.dtype)

    state = nnx.state(model, nnx.Param)
    nnx.replace_by_pure_dict(
        state, jax.tree_util.tree_map_with_path(draw, nnx.to_pure_dict(state))
    )
    nnx.update(model, state)
    return model


def call(model, *args, **kwargs):
    """``model(*args, **kwargs)`` compiled, with the state an argument."""
    graphdef, state = nnx.split(model)
    return jax.jit(lambda s, *a: nnx.merge(graphdef, s)(*a, **kwargs))(state, *args)


# ---------------------------------------------------------------- agreement with diffusers


@pytest.mark.parametrize("name", ["ddpm", "options", "fourier"])
def test_from_diffusers_matches_diffusers_output(name):
    model, x, t, kwargs, ref = converted(name)
    assert isinstance(model, nnx.Module)
    out = call(model, x, t, **kwargs)
    chex.assert_shape(out, ref.shape)
    assert rel_err(out, ref) < 1e-4


def test_from_diffusers_config_options():
    model = converted("ddpm")[0]
    assert (model.ch_mult, model.num_res_blocks, model.attn_levels) == ((1, 2, 2, 2), 2, (1,))
    assert model.conv_in.kernel.shape == (3, 3, 3, 4)
    assert model.down_0_downsample.conv.padding == ((0, 1), (0, 1))
    assert model.mid_attn.head_dim == 8 and model.norm_out.epsilon == 1e-6
    options = converted("options")[0]
    assert options.down_0_res_0.scale_shift_norm and options.num_classes == 10
    assert options.conv_out.kernel.shape[-1] == 2 and options.attn_levels == (0,)
    assert options.down_0_downsample.conv.padding == ((1, 1), (1, 1))
    fourier = converted("fourier")[0]
    assert fourier.divide_by_sigma and not fourier.mid_attention


def test_from_diffusers_accepts_legacy_attention_names():
    config, state_dict, *_ = load_fixture("ddpm")
    legacy_names = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    legacy = {}
    for name, value in state_dict.items():
        for new, old in legacy_names.items():
            name = name.replace(f".{new}.", f".{old}.")
        legacy[name] = value
    assert set(legacy) != set(state_dict)
    state = nnx.to_pure_dict(nnx.state(from_diffusers(legacy, config)))
    chex.assert_trees_all_equal(state, nnx.to_pure_dict(nnx.state(converted("ddpm")[0])))


def test_from_diffusers_lists_unknown_and_missing_keys():
    config, state_dict, *_ = load_fixture("ddpm")
    broken = dict(state_dict)
    del broken["mid_block.attentions.0.to_k.bias"]
    broken["mid_block.attentions.0.extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(
        ValueError, match=r"unknown keys \['mid_block.attentions.0.extra.weight'\]"
    ) as info:
        from_diffusers(broken, config)
    assert "missing keys ['mid_block.attentions.0.to_k.bias']" in str(info.value)


def test_from_diffusers_rejects_wrong_shapes():
    config, state_dict, *_ = load_fixture("ddpm")
    broken = dict(state_dict, **{"conv_in.weight": np.zeros((4, 3, 5, 5), np.float32)})
    with pytest.raises(ValueError, match="conv_in.weight: got"):
        from_diffusers(broken, config)


@pytest.mark.parametrize(
    "change, match",
    [
        (
            {
                "down_block_types": [
                    "CrossAttnDownBlock2D",
                    "AttnDownBlock2D",
                    "DownBlock2D",
                    "DownBlock2D",
                ]
            },
            "CrossAttnDownBlock2D",
        ),
        ({"mid_block_scale_factor": 1.414}, "mid_block_scale_factor"),
        ({"center_input_sample": True}, "center_input_sample"),
        (
            {"up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"]},
            "same resolutions",
        ),
        ({"block_out_channels": [4, 6, 8, 8]}, "multiples"),
        ({"some_new_option": 1}, "some_new_option"),
        ({"sample_size": None}, "sample_size"),
    ],
)
def test_from_diffusers_rejects_unsupported_configs(change, match):
    config, state_dict, *_ = load_fixture("ddpm")
    with pytest.raises(ValueError, match=match):
        from_diffusers(state_dict, {**config, **change})


# ---------------------------------------------------------------- architecture size


def count_params(make):
    shapes = nnx.state(nnx.eval_shape(lambda: make(rngs=nnx.Rngs(0))), nnx.Param)
    return sum(math.prod(p.shape) for p in jax.tree.leaves(shapes))


def test_ddpm_cifar10_has_the_papers_parameter_count():
    assert count_params(models.ddpm_cifar10) == DDPM_CIFAR10_PARAMS


def test_ddpm_256_has_the_papers_parameter_count():
    assert count_params(models.ddpm_256) == DDPM_256_PARAMS


# ---------------------------------------------------------------- options: shapes and dtypes


SIGMA = jnp.array([0.01, 1.0, 30.0])


@pytest.mark.parametrize(
    "kwargs, channels, cond, call_kwargs, out_channels",
    [
        ({}, 3, "t", {}, 3),
        (
            {"out_channels": 6, "attn_head_dim": 4, "scale_shift_norm": True, "remat": True},
            3,
            "t",
            {},
            6,
        ),
        ({"num_classes": 5, "downsample_padding": (1, 1)}, 1, "t", {"y": jnp.array([0, 4, 5])}, 1),
        ({"embedding": FourierEmbedding, "divide_by_sigma": True}, 1, "sigma", {}, 1),
        (
            {"dtype": jnp.bfloat16, "resample_with_conv": False, "mid_attention": False},
            3,
            "t",
            {},
            3,
        ),
    ],
)
def test_unet_options_shapes_and_dtypes(kwargs, channels, cond, call_kwargs, out_channels):
    model = randomize(TINY(channels, **kwargs), 0)
    x = jax.random.uniform(jax.random.key(0), (3, 8, 8, channels), minval=-1.0, maxval=1.0)
    t = SIGMA if cond == "sigma" else jnp.array([0, 500, 999], jnp.int32)
    graphdef, state = nnx.split(model)
    assert {p.dtype for p in jax.tree.leaves(state)} == {jnp.dtype(jnp.float32)}
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def apply(state, x, t):
        rngs = nnx.Rngs(dropout=jax.random.key(3))
        return nnx.merge(graphdef, state)(x, t, train=True, rngs=rngs, **call_kwargs)

    out = apply(state, x, t)
    apply(state, -x, t)  # a second call with new values does not retrace
    chex.assert_shape(out, (3, 8, 8, out_channels))
    chex.assert_type(out, jnp.float32)
    chex.assert_tree_all_finite(out)


def test_init_gives_float32_parameters_and_a_zero_output():
    """Ho et al. initialise the output convolution to zero: a fresh network predicts 0."""
    model = MINI(attn_resolutions=(), mid_attention=False, dtype=jnp.bfloat16)
    x = jax.random.uniform(jax.random.key(0), (2, 8, 8, 3), minval=-1.0, maxval=1.0)
    t = jnp.array([5, 900])
    assert {p.dtype for p in jax.tree.leaves(nnx.state(model))} == {jnp.dtype(jnp.float32)}
    np.testing.assert_array_equal(call(model, x, t), np.zeros(x.shape, np.float32))


def test_bfloat16_computation_stays_close_to_float32():
    model, x, t, kwargs, ref = converted("options")
    config, *_ = load_fixture("options")
    from jaxdiff.models.convert import _unet_from_config

    bf16 = _unet_from_config(config)(dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    nnx.update(bf16, nnx.state(model))
    out = call(bf16, x, t, **kwargs)
    chex.assert_type(out, jnp.float32)
    assert rel_err(out, ref) < 5e-2


def test_remat_changes_neither_parameters_nor_values_nor_gradients():
    x = jax.random.uniform(jax.random.key(0), (2, 8, 8, 3), minval=-1.0, maxval=1.0)
    t = jnp.array([3, 700])
    plain, remat = randomize(MINI(dropout=0.1), 0), MINI(dropout=0.1, remat=True)
    state = nnx.state(plain)
    nnx.update(remat, state)  # the same state fits both

    def loss(model, state):
        rngs = nnx.Rngs(dropout=jax.random.key(7))
        out = nnx.merge(nnx.graphdef(model), state)(x, t, train=True, rngs=rngs)
        return jnp.mean(out**2)

    value, grads = jax.jit(jax.value_and_grad(functools.partial(loss, plain)))(state)
    value_remat, grads_remat = jax.jit(jax.value_and_grad(functools.partial(loss, remat)))(
        state
    )
    np.testing.assert_allclose(value_remat, value, rtol=1e-5)
    chex.assert_trees_all_close(grads_remat, grads, rtol=1e-4, atol=1e-6)


def test_fourier_frequencies_get_no_gradient():
    model = randomize(MINI(1, embedding=FourierEmbedding, divide_by_sigma=True), 0)
    x = jnp.full((3, 8, 8, 1), 0.3)
    grads = jax.jit(nnx.grad(lambda m: jnp.sum(m(x, SIGMA) ** 2)))(model)
    assert float(jnp.abs(grads["time_proj"]["W"][...]).max()) == 0.0
    assert float(jnp.abs(grads["temb_dense_0"]["kernel"][...]).max()) > 0.0


# ---------------------------------------------------------------- train / eval behaviour


def test_eval_is_deterministic_and_dropout_needs_train_and_rng():
    model = randomize(TINY(dropout=0.1), 0)
    x = jax.random.uniform(jax.random.key(0), (2, 8, 8, 3), minval=-1.0, maxval=1.0)
    t = jnp.array([3, 700])
    graphdef, state = nnx.split(model)
    evaluate = jax.jit(lambda s, x, t: nnx.merge(graphdef, s)(x, t))
    train = jax.jit(lambda s, x, t, key: nnx.merge(graphdef, s)(
        x, t, train=True, rngs=nnx.Rngs(dropout=key)))
    eval_out = evaluate(state, x, t)
    np.testing.assert_array_equal(evaluate(state, x, t), eval_out)
    train_a = train(state, x, t, jax.random.key(0))
    np.testing.assert_array_equal(train(state, x, t, jax.random.key(0)), train_a)
    assert rel_err(train_a, eval_out) > 1e-3
    assert rel_err(train(state, x, t, jax.random.key(1)), train_a) > 1e-3
    with pytest.raises(ValueError, match="rngs"):
        nnx.eval_shape(lambda m: m(x, t, train=True), model)


def test_class_labels_condition_and_none_is_the_null_label():
    model, x, t, kwargs, _ = converted("options")
    null = jnp.full(x.shape[:1], model.num_classes)
    unconditional = call(model, x, t)
    np.testing.assert_array_equal(call(model, x, t, y=null), unconditional)
    assert rel_err(call(model, x, t, **kwargs), unconditional) > 1e-3


# ---------------------------------------------------------------- embeddings: closed forms


def test_sinusoidal_embedding_is_the_transformer_encoding():
    t = np.array([0, 1, 17, 999])
    d = 16
    e = np.asarray(models.sinusoidal_embedding(jnp.asarray(t), d, freq_shift=0.0))
    i = np.arange(d // 2)
    angles = t[:, None] / 10000.0 ** (2 * i / d)  # Vaswani et al. (2017), Sec. 3.5
    np.testing.assert_allclose(e[:, : d // 2], np.sin(angles), atol=2e-4)
    np.testing.assert_allclose(e[:, d // 2 :], np.cos(angles), atol=2e-4)
    flipped = np.asarray(
        models.sinusoidal_embedding(jnp.asarray(t), d, flip_sin_to_cos=True, freq_shift=0.0)
    )
    np.testing.assert_array_equal(flipped, np.concatenate([e[:, d // 2 :], e[:, : d // 2]], axis=1))
    # Ho et al.'s shift of 1: the lowest frequency is exactly 1 / max_period.
    ddpm = np.asarray(models.sinusoidal_embedding(jnp.asarray([1000.0]), d))
    np.testing.assert_allclose(ddpm[0, d // 2 - 1], np.sin(1000.0 / 10000.0), rtol=1e-6)


def test_fourier_embedding_closed_form():
    sigma = np.array([0.5, 2.0])
    w = np.array([0.3, -1.2, 4.0])
    e = np.asarray(models.fourier_embedding(jnp.asarray(sigma), jnp.asarray(w)))
    angles = 2 * np.pi * np.log(sigma)[:, None] * w
    np.testing.assert_allclose(
        e, np.concatenate([np.sin(angles), np.cos(angles)], axis=1), atol=1e-5
    )


# ---------------------------------------------------------------- clear errors


def test_channels_not_divisible_by_groups_fail_at_construction():
    with pytest.raises(ValueError, match="num_groups=32"):
        UNet(ch=48, ch_mult=(1, 2), rngs=nnx.Rngs(0))


@pytest.mark.parametrize(
    "options, match",
    [
        ({"ch_mult": (1, 2, 2), "image_size": 6}, "divisible by 2"),
        ({"attn_resolutions": (16,)}, r"attn_resolutions \[16\] never occur"),
        ({"attn_head_dim": 3}, "attn_head_dim=3"),
    ],
)
def test_impossible_options_raise_at_construction(options, match):
    with pytest.raises(ValueError, match=match):
        nnx.eval_shape(lambda: TINY(**options))


@pytest.mark.parametrize(
    "x_shape, t_shape, match",
    [
        ((8, 8, 3), (1,), "NHWC"),
        ((1, 8, 8, 1), (1,), "NHWC"),
        ((1, 7, 8, 3), (1,), "divisible by 2"),
        ((2, 8, 8, 3), (3,), "t must have shape"),
    ],
)
def test_impossible_inputs_raise_before_tracing(x_shape, t_shape, match):
    with pytest.raises(ValueError, match=match):
        TINY()(jnp.zeros(x_shape), jnp.zeros(t_shape, jnp.int32))


def test_label_without_num_classes_raises():
    with pytest.raises(ValueError, match="num_classes is None"):
        TINY()(jnp.zeros((1, 8, 8, 3)), jnp.zeros((1,), jnp.int32), y=jnp.zeros(1))


@pytest.mark.parametrize("padding", [((1, 1), (1, 1)), ((0, 2), (2, 0))])
def test_conv2d_gradients_equal_xla_convolution_gradients(padding):
    """The matrix-product kernel gradient of ``conv2d``, forced (``min_pixels=0``) whatever the
    backend, against ``jax.grad`` of XLA's own convolution, in float64."""
    from jaxdiff.models import conv

    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(0), (2, 6, 7, 3), jnp.float64)
        k = jax.random.normal(jax.random.key(1), (3, 3, 3, 4), jnp.float64)
        out = jax.eval_shape(
            lambda: jax.lax.conv_general_dilated(x, k, (1, 1), padding, dimension_numbers=DN)
        )
        w = jax.random.normal(jax.random.key(2), out.shape, jnp.float64)

        def loss(fn):
            return lambda x, k: jnp.sum(w * fn(x, k, (1, 1), padding, dimension_numbers=DN))

        forced = functools.partial(conv.conv2d, min_pixels=0)
        ours = jax.grad(loss(forced), argnums=(0, 1))(x, k)
        xla = jax.grad(loss(jax.lax.conv_general_dilated), argnums=(0, 1))(x, k)
        np.testing.assert_allclose(ours[0], xla[0], rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(ours[1], xla[1], rtol=1e-10, atol=1e-10)
        # the matrix products themselves, not XLA's fallback, produced the kernel gradient
        g = jax.grad(lambda y: jnp.sum(w * y))(jnp.zeros(out.shape, jnp.float64))
        np.testing.assert_allclose(
            conv.kernel_grad_by_rows(x, g, k.shape, padding), xla[1], rtol=1e-10, atol=1e-10
        )


@pytest.mark.parametrize("matmul_kernel_grad", [False, True])
def test_nearest_upsample_conv_equals_convolution_of_the_repeated_image(matmul_kernel_grad):
    """The four 2x2 phase convolutions at the input resolution against XLA's 3x3 convolution
    of the image repeated 2x (``jnp.repeat``), values and both gradients, in float64."""
    from jaxdiff.models import conv
    from jaxdiff.models.unet import nearest_upsample_conv

    base = functools.partial(conv.conv2d, min_pixels=0) if matmul_kernel_grad else None
    ours = functools.partial(nearest_upsample_conv, conv=base or jax.lax.conv_general_dilated)
    pads = ((1, 1), (1, 1))

    def direct(x, k, strides, padding, dimension_numbers):
        up = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        return jax.lax.conv_general_dilated(up, k, strides, padding, dimension_numbers=DN)

    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(0), (2, 5, 3, 4), jnp.float64)  # odd, not square
        k = jax.random.normal(jax.random.key(1), (3, 3, 4, 6), jnp.float64)
        w = jax.random.normal(jax.random.key(2), (2, 10, 6, 6), jnp.float64)

        def loss(fn):
            return lambda x, k: jnp.sum(w * fn(x, k, (1, 1), pads, dimension_numbers=DN))

        np.testing.assert_allclose(
            ours(x, k, (1, 1), pads, dimension_numbers=DN),
            direct(x, k, (1, 1), pads, DN),
            rtol=1e-12,
            atol=1e-12,
        )
        got = jax.grad(loss(ours), argnums=(0, 1))(x, k)
        want = jax.grad(loss(direct), argnums=(0, 1))(x, k)
        for g, r in zip(got, want):
            np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="stride 1, padding 1"):
        ours(x, k, (2, 2), pads, dimension_numbers=DN)


def test_upsample_keeps_the_parameters_of_a_conv():
    """``Upsample``'s parameters are an ``nnx.Conv`` named ``conv`` (checkpoints and
    ``from_diffusers`` rely on the names), and its output is that Conv applied to the
    repeated image."""
    x = jax.random.normal(jax.random.key(0), (2, 4, 4, 8))
    upsample = randomize(models.Upsample(8, rngs=nnx.Rngs(1)), 0)
    state = nnx.to_pure_dict(nnx.state(upsample))
    assert jax.tree.map(jnp.shape, state) == {"conv": {"kernel": (3, 3, 8, 8), "bias": (8,)}}
    up = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    conv = nnx.Conv(8, 8, (3, 3), padding=1, rngs=nnx.Rngs(2))
    nnx.update(conv, nnx.state(upsample.conv))
    np.testing.assert_allclose(upsample(x), conv(up), rtol=1e-5, atol=1e-5)


def test_unet_matmul_kernel_grad_is_an_explicit_option():
    """``UNet(matmul_kernel_grad=True)`` routes every convolution through ``conv2d``'s custom
    gradient, the default through XLA's, on any backend; the parameters are the same."""
    x = jnp.zeros((1, 8, 8, 1))
    t = jnp.zeros((1,), jnp.int32)
    plain, fast = MINI(1), MINI(1, matmul_kernel_grad=True)
    chex.assert_trees_all_equal(nnx.state(plain), nnx.state(fast))

    def count(model, primitive):
        graphdef, state = nnx.split(model)
        jaxpr = jax.make_jaxpr(lambda s: nnx.merge(graphdef, s)(x, t))(state)
        return str(jaxpr).count(primitive)

    num_convs = count(plain, "conv_general_dilated")
    assert num_convs == 14 and count(plain, "custom_vjp_call") == 0
    assert count(fast, "custom_vjp_call") == num_convs


def _write_safetensors(path, arrays):
    """A safetensors file written by hand from its published layout (8-byte header length,
    JSON header, little-endian bytes)."""
    names = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64", np.dtype(np.int64): "I64"}
    header, blobs, offset = {}, [], 0
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        blob = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": names[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + b"".join(blobs))


def test_load_diffusers_folder_matches_diffusers_output(tmp_path):
    """A diffusers folder (config.json + safetensors) loads to the network whose output is
    diffusers' own (the saved fixture)."""
    from jaxdiff.models.convert import load_diffusers

    config, state_dict, x, t, _, out = load_fixture("ddpm")
    (tmp_path / "config.json").write_text(json.dumps(config))
    _write_safetensors(tmp_path / "diffusion_pytorch_model.safetensors", state_dict)
    model = load_diffusers(tmp_path)
    got = call(model, jnp.asarray(x.transpose(0, 2, 3, 1)), jnp.asarray(t))
    assert rel_err(got, out.transpose(0, 2, 3, 1)) < 1e-4
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_diffusers(tmp_path / "nothing")
