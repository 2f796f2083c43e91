"""Evaluation compiles once per architecture: two parameter sets of one network (even two
equal module objects) run the same cached program, counted by jax.monitoring's
backend-compile event. The values are checked against a plain closure over each set."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from compile_counter import count_compilations
from flax import nnx

from jaxdiff import elbo, evaluate, models, schedules
from jaxdiff._compile import as_pytree_fn
from jaxdiff.metrics import digits, fid

def TINY_UNET(seed=0):  # noqa: N802
    return models.UNet(1, image_size=8, ch=8, ch_mult=(1,), num_res_blocks=1,
                       attn_resolutions=(), num_groups=4, rngs=nnx.Rngs(seed))


def _perturbed(variables, seed):
    leaves, treedef = jax.tree.flatten(variables)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return treedef.unflatten([a + 0.1 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys)])


def test_counter_sees_a_compilation():
    x = jnp.arange(7.0)
    f = jax.jit(lambda x: x * 3.0 + 1.0)
    with count_compilations() as c:
        f(x)
    with count_compilations() as again:
        f(x)
    assert c.value == 1 and again.value == 0


def test_nll_per_example_compiles_once_for_two_parameter_sets():
    schedule = schedules.linear(8)
    x = jnp.zeros((1, 8, 8, 1))
    t = jnp.zeros((1,), jnp.int32)
    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1), dtype=np.uint8)
    rng = jax.random.key(3)
    results = []
    for seed in (1, 2, 3):
        model_fn = TINY_UNET()  # a new module each time, its weights perturbed
        nnx.update(model_fn, _perturbed(nnx.state(model_fn), seed))
        with count_compilations() as c:
            out = evaluate.nll_per_example(model_fn, schedule, images, rng, batch_size=4)
        results.append((c.value, out["total"], model_fn))
    assert results[0][0] >= 1
    assert results[1][0] == 0 and results[2][0] == 0
    assert not np.allclose(results[0][1], results[1][1])  # the parameters are not baked in
    # against the bound of the same batch with the parameters closed over
    model_fn = results[1][2]
    x0 = jnp.asarray(images, jnp.float32) / 127.5 - 1.0
    closed = jax.jit(lambda x0: elbo.nll_bpd(model_fn, schedule, x0, jax.random.fold_in(rng, 0)))(x0)
    np.testing.assert_allclose(results[1][1], closed["total"], rtol=1e-5)


def test_inception_features_compile_once_for_two_weight_sets():
    net = fid.InceptionV3()
    shapes = jax.eval_shape(net.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 75, 75, 3), jnp.float32))
    rng = np.random.default_rng(0)

    def weights():
        return jax.tree.map(lambda s: jnp.asarray(0.05 * rng.standard_normal(s.shape) + (s.ndim == 1), s.dtype), shapes)

    images = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    counts, feats = [], []
    for variables in (weights(), weights()):
        with count_compilations() as c:
            feats.append(fid.inception_features(variables, images, batch_size=2, size=75))
        counts.append(c.value)
    assert counts[0] >= 1 and counts[1] == 0
    direct = jax.jit(net.apply)(variables, fid.preprocess(images, size=75))
    np.testing.assert_allclose(feats[1], direct, rtol=1e-4, atol=1e-5)
    assert not np.allclose(feats[0], feats[1])


def test_digits_classifier_compiles_once_for_two_parameter_sets():
    images = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 1), dtype=np.uint8)
    counts, outs = [], []
    for seed in (0, 1):
        model = digits.DigitsClassifier(rngs=nnx.Rngs(seed))
        params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
        with count_compilations() as c:
            outs.append(digits.classify(params, images, batch_size=6))
        counts.append(c.value)
    assert counts[0] >= 1 and counts[1] == 0
    logits, _ = model(jnp.asarray(images, jnp.float32) / 127.5 - 1.0)
    np.testing.assert_allclose(outs[1]["probs"], jax.nn.softmax(logits), rtol=1e-5, atol=1e-7)


def test_as_pytree_fn_keeps_python_options_static():
    """Non-array arguments of a partial stay Python values inside jit (a bool option)."""

    def f(scale, x, *, negate):
        return -scale * x if negate else scale * x

    fn = as_pytree_fn(functools.partial(f, jnp.float32(2.0), negate=True))
    out = jax.jit(lambda fn, x: fn(x))(fn, jnp.ones(3))
    np.testing.assert_array_equal(out, -2.0 * np.ones(3))


def test_generate_compiles_once_per_sampler_for_two_parameter_sets():
    def sample_fn(variables, rng, n):
        return variables["w"] * jax.random.normal(rng, (n, 2))

    counts, outs = [], []
    for w in (1.0, 3.0):
        with count_compilations() as c:
            outs.append(evaluate.generate(sample_fn, {"w": jnp.float32(w)}, 4, jax.random.key(0)))
        counts.append(c.value)
    assert counts[0] >= 1 and counts[1] == 0
    np.testing.assert_allclose(outs[1], 3.0 * outs[0], rtol=1e-6)
