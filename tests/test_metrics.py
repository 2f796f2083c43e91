"""Metrics against independent truths: scipy's sqrtm and closed forms for the Fréchet distance,
pytorch-fid's FID Inception (random weights, saved output) for the Flax network, torch.save's
files for the weight reader, entropies for the independent-pixel model."""

import json
import math
import pathlib
import zlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.stats

from jaxdiff.metrics import batching, digits, fid, pixel_baseline

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


# --- Fréchet distance --------------------------------------------------------------------------


def _scipy_frechet(mu1, s1, mu2, s2):
    """The textbook formula with scipy's (non-symmetric) matrix square root of the product."""
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 16)) @ rng.standard_normal((16, 16))
    b = 0.7 * rng.standard_normal((400, 16)) @ rng.standard_normal((16, 16)) + 0.3
    s1, s2 = fid.feature_statistics(a), fid.feature_statistics(b)
    chex.assert_trees_all_close(s1.sigma, np.cov(a, rowvar=False))
    got = fid.frechet_distance(s1.mu, s1.sigma, s2.mu, s2.sigma)
    want = _scipy_frechet(s1.mu, s1.sigma, s2.mu, s2.sigma)
    print(f"Fréchet distance {got:.10f}, scipy.linalg.sqrtm {want:.10f}")
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(1)
    d1, d2 = rng.uniform(0.1, 3.0, 8), rng.uniform(0.1, 3.0, 8)
    mu1, mu2 = rng.standard_normal(8), rng.standard_normal(8)
    # Diagonal covariances: independent 1-D Gaussians, W2^2 = sum (m1 - m2)^2 + (s1 - s2)^2.
    want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(d1) - np.sqrt(d2)) ** 2)
    np.testing.assert_allclose(
        fid.frechet_distance(mu1, np.diag(d1), mu2, np.diag(d2)), want, rtol=1e-10
    )
    # Commuting covariances (shared eigenvectors): the same formula in the rotated basis.
    q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    got = fid.frechet_distance(mu1, q @ np.diag(d1) @ q.T, mu2, q @ np.diag(d2) @ q.T)
    np.testing.assert_allclose(got, want, rtol=1e-9)
    # Identical distributions, and a rank-deficient covariance (fewer samples than dimensions).
    x = rng.standard_normal((5, 8))
    s = fid.feature_statistics(x)
    # Zero eigenvalues are only known to ~1e-16 relative, so their square roots to ~1e-8.
    assert abs(fid.frechet_distance(s.mu, s.sigma, s.mu, s.sigma)) < 1e-6 * np.trace(s.sigma)
    shifted = fid.frechet_distance(s.mu, s.sigma, s.mu + 1.0, s.sigma)
    np.testing.assert_allclose(shifted, 8.0, atol=1e-6 * np.trace(s.sigma))


def test_frechet_distance_bad_shapes():
    with pytest.raises(ValueError, match="sigma2 must have shape"):
        fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(4))


def test_statistics_round_trip(tmp_path):
    stats = fid.feature_statistics(np.random.default_rng(2).standard_normal((10, 3)))
    fid.save_statistics(tmp_path / "s.npz", stats)
    back = fid.load_statistics(tmp_path / "s.npz")
    chex.assert_trees_all_close(tuple(back), tuple(stats))


# --- Inception ---------------------------------------------------------------------------------


def test_inception_shapes_without_weights():
    net = fid.InceptionV3()
    x = jax.ShapeDtypeStruct((2, 299, 299, 3), jnp.float32)
    variables = jax.eval_shape(net.init, jax.random.PRNGKey(0), x)
    assert jax.eval_shape(net.apply, variables, x).shape == (2, 2048)
    # 21,785,568 parameters: pytorch-fid's fid_inception_v3() without its fc layer.
    assert sum(p.size for p in jax.tree.leaves(variables["params"])) == 21_785_568


def _random_state_dict(names_shapes):
    """The random weights of tests/fixtures/make_fid_fixtures.py, regenerated from the names."""
    out = {}
    for name, shape in names_shapes:
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        if name.endswith("conv.weight"):
            value = rng.standard_normal(shape) * np.sqrt(2.0 / int(np.prod(shape[1:])))
        elif name.endswith(("bn.weight", "bn.running_var")):
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = 0.1 * rng.standard_normal(shape)
        out[name] = value.astype(np.float32)
    return out


def test_inception_matches_pytorch_fid(tmp_path):
    ref = np.load(FIXTURES / "fid_inception_reference.npz")
    state_dict = _random_state_dict(json.loads(str(ref["names"])))
    np.savez(tmp_path / "weights.npz", **state_dict)
    variables = fid.load_inception(tmp_path / "weights.npz")
    # The network on the 75x75 inputs as they are (inception_features would first resize them
    # to 299); the resize is checked on its own against F.interpolate.
    features = jax.jit(fid.InceptionV3().apply)(variables, ref["x"])
    np.testing.assert_allclose(features, ref["features"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        fid.preprocess(ref["resize_in"], size=20), ref["resize_out"], atol=1e-6
    )


def test_missing_weights_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m jaxdiff.metrics.fid download"):
        fid.load_inception(tmp_path / "nowhere.pth")


def test_checksum_mismatch(tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, x=np.zeros(1))
    with pytest.raises(ValueError, match="sha256"):
        fid.load_inception(path, sha256="deadbeef")


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_read_torch_state_dict(fmt):
    sd = fid.read_torch_state_dict(FIXTURES / f"torch_state_dict_{fmt}.pt")
    np.testing.assert_array_equal(sd["a.weight"], np.arange(6, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(sd["a.t"], np.arange(6, dtype=np.float32).reshape(3, 2).T)
    np.testing.assert_allclose(sd["h"], [0.0, 1 / 3, 2 / 3, 1.0], rtol=1e-15)
    assert sd["h"].dtype == np.float64 and sd["bn.num_batches_tracked"] == 7


# --- batching ----------------------------------------------------------------------------------


def test_map_batches_pads_and_checks():
    x = np.arange(10, dtype=np.float32)[:, None]
    out = batching.map_batches(
        lambda b, i: {"y": 2 * b[:, 0], "i": jnp.full(b.shape[0], i)}, x, batch_size=4
    )
    np.testing.assert_array_equal(out["y"], 2 * np.arange(10))
    np.testing.assert_array_equal(out["i"], [0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    with pytest.raises(ValueError, match="batch_size"):
        batching.map_batches(lambda b, i: b, x, batch_size=0)
    with pytest.raises(TypeError, match="data must be an array"):
        batching.as_array(3.0)


# --- digits ------------------------------------------------------------------------------------


def test_digits_split():
    train, test = digits.split_indices("train"), digits.split_indices("test")
    assert len(train) == 1438 and len(test) == 359
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(1797))
    _, labels = digits.digits_split("test")
    assert np.bincount(labels, minlength=10).min() >= 20  # every class is in the test split
    with pytest.raises(ValueError, match="split"):
        digits.split_indices("validation")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return cache, digits.load_classifier(cache)


def test_digits_classifier_accuracy_and_cache(classifier):
    cache, params = classifier
    acc = digits.accuracy(params, "test")
    print(f"digits classifier test accuracy: {acc:.4f}")
    assert acc > 0.95
    assert len(list(cache.iterdir())) == 1
    chex.assert_trees_all_equal(digits.load_classifier(cache), params)  # read back, not retrained


def test_digits_sample_quality(classifier):
    _, params = classifier
    test_images, _ = digits.digits_split("test")
    train_images, _ = digits.digits_split("train")
    reference = digits.reference_statistics(params)
    same = digits.sample_quality(test_images, params=params, reference=reference)
    other = digits.sample_quality(train_images, params=params, reference=reference)
    noise = digits.sample_quality(
        np.random.default_rng(0).integers(0, 256, (360, 8, 8, 1), dtype=np.uint8),
        params=params,
        reference=reference,
    )
    print(
        f"digits FD: test vs test {same['fd']:.3g}, train vs test {other['fd']:.3f}, "
        f"noise {noise['fd']:.1f}"
    )
    assert abs(same["fd"]) < 1e-6 * np.trace(reference.sigma)
    assert other["fd"] < 0.1 * noise["fd"]
    assert same["score"] > 8.0 and noise["score"] < same["score"]
    np.testing.assert_allclose(sum(same["histogram"]), 1.0)


def test_classifier_score_closed_form():
    one_hot = np.eye(10)[np.arange(100) % 10]
    np.testing.assert_allclose(digits.classifier_score(one_hot), 10.0, rtol=1e-9)
    np.testing.assert_allclose(digits.classifier_score(np.full((7, 10), 0.1)), 1.0, rtol=1e-9)
    np.testing.assert_array_equal(digits.class_histogram(one_hot[:20]), np.full(10, 0.1))


# --- independent pixels ------------------------------------------------------------------------


def test_pixel_baseline_is_entropy_of_fitted_categoricals():
    rng = np.random.default_rng(0)
    images = rng.choice(
        np.array([0, 16, 128, 255], np.uint8), size=(200, 3, 2, 1), p=[0.5, 0.3, 0.15, 0.05]
    )
    log_probs = pixel_baseline.fit_pixel_categoricals(images, alpha=0.0)
    got = float(np.mean(pixel_baseline.pixel_nll_bpd(log_probs, images)))
    entropies = [
        scipy.stats.entropy(np.unique(images[:, i, j, 0], return_counts=True)[1], base=2)
        for i in range(3)
        for j in range(2)
    ]
    np.testing.assert_allclose(got, np.mean(entropies), rtol=1e-5)


def test_pixel_baseline_smoothing_by_hand():
    images = np.array([0, 0, 0, 255], np.uint8).reshape(4, 1, 1, 1)
    full = pixel_baseline.fit_pixel_categoricals(images)  # add-one over 256 values
    np.testing.assert_allclose(np.exp(full[0, 0, 0, [0, 255, 7]]), [4 / 260, 2 / 260, 1 / 260])
    levels = pixel_baseline.fit_pixel_categoricals(images, levels=[0, 128, 255])
    np.testing.assert_allclose(np.exp(levels[0, 0, 0, [0, 128, 255]]), [4 / 7, 1 / 7, 2 / 7])
    assert np.exp(levels[0, 0, 0, 7]) == 0.0
    bpd = pixel_baseline.pixel_nll_bpd(levels, np.array([[[[128]]]], np.uint8))
    np.testing.assert_allclose(bpd, [math.log2(7)], rtol=1e-6)
    with pytest.raises(ValueError, match="outside levels"):
        pixel_baseline.fit_pixel_categoricals(images, levels=[0, 1])


def test_independent_pixel_posterior_gives_the_likelihood_through_i_mmse():
    """The continuous-time diffusion bound of a denoiser that is exact for a distribution q is
    -log q(x) (I-MMSE, Guo, Shamai & Verdu 2005; Kingma et al. 2021, eq. 17): for each x,
    KL(q(z_min | x) || N(0, 1)) + int 0.5 e^lambda E_eps (x - E[x | z])^2 dlambda
    - E log p(x | z_max) = -log q(x), here with q a categorical on three of the 256 values."""
    images = np.repeat(np.array([0, 128, 255], np.uint8), [5, 3, 2])[:, None]
    log_probs = pixel_baseline.fit_pixel_categoricals(images, alpha=0.0)  # q = (.5, .3, .2)
    lambdas = np.linspace(-12.0, 14.0, 521)
    eps = np.random.default_rng(0).normal(size=(8000, 1))
    for value, q in ((0, 0.5), (128, 0.3), (255, 0.2)):
        x = value / 127.5 - 1.0
        alpha2 = 1.0 / (1.0 + np.exp(-lambdas))  # sigmoid(lambda): alpha^2, SNR = e^lambda
        mse = []
        for a2 in alpha2:
            a, s = np.sqrt(a2), np.sqrt(1.0 - a2)
            mean = pixel_baseline.posterior_mean(log_probs, a * x + s * eps, a, s)
            mse.append(np.mean((np.asarray(mean) - x) ** 2))
        diffusion = np.trapezoid(0.5 * np.exp(lambdas) * np.array(mse), lambdas)
        a2 = alpha2[0]
        prior = 0.5 * (1.0 - a2 + a2 * x**2 - 1.0 - np.log(1.0 - a2))
        a, s = np.sqrt(alpha2[-1]), np.sqrt(1.0 - alpha2[-1])
        post = pixel_baseline.posterior_log_probs(log_probs, a * x + s * eps, a, s)
        decoder = -float(np.mean(np.asarray(post)[..., value]))
        np.testing.assert_allclose(prior + diffusion + decoder, -np.log(q), atol=0.04)
