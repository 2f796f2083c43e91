"""Sample quality on scikit-learn's 8x8 digits without any download: a small classifier,
trained here on the digits train split, stands in for Inception.

* its penultimate features give a *digits Fréchet distance* (FID's formula on these
  features, against the test split's features);
* its class probabilities give the Inception Score's formula (Salimans et al. 2016), the
  mean confidence and the class histogram -- whether samples are recognisable digits and
  cover all ten classes.

The train/test split of the digits is defined once, in :mod:`jaxdiff.data`
(:func:`split_indices` here is :func:`jaxdiff.data.digits_split_indices`): a fixed permutation
of the 1,797 images, 359 (20 %) for test and 1,438 for training.

The classifier trains in seconds on a CPU and is cached (``~/.cache/jaxdiff``, or
``$JAXDIFF_CACHE``, or ``cache_dir=``); the cache name carries the training recipe, so a change
of recipe retrains.

Example::

    params = load_classifier()
    quality = sample_quality(samples_uint8, params=params)   # fd, score, confidence, histogram
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxdiff import data
from jaxdiff.metrics.batching import as_array, map_batches
from jaxdiff.metrics.frechet import Statistics, feature_statistics, frechet_distance

__all__ = [
    "NUM_DIGITS",
    "TEST_FRACTION",
    "SPLIT_SEED",
    "split_indices",
    "digits_split",
    "DigitsClassifier",
    "from_linen",
    "train_classifier",
    "load_classifier",
    "classify",
    "accuracy",
    "reference_statistics",
    "classifier_score",
    "class_histogram",
    "sample_quality",
]

NUM_DIGITS = data.NUM_DIGITS
TEST_FRACTION = data.DIGITS_TEST_FRACTION
SPLIT_SEED = data.DIGITS_SPLIT_SEED
split_indices = data.digits_split_indices
_RECIPE = dict(seed=0, steps=300, batch_size=128, learning_rate=3e-3, weight_decay=1e-4)


def digits_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The digits ``split`` (:func:`jaxdiff.data.digits`) as ``(images uint8 [N, 8, 8, 1],
    labels int32 [N])``."""
    source = data.digits(split)
    examples = [source[i] for i in range(len(source))]
    return (
        np.stack([e["x"] for e in examples]),
        np.asarray([e["label"] for e in examples], np.int32),
    )


class DigitsClassifier(nnx.Module):
    """A small CNN for 8x8 digits: ``[B, 8, 8, 1]`` in [-1, 1] -> (logits [B, 10],
    features [B, feature_dim]).

    Its layers are named as jaxdiff 0.2's linen classifier named them, lower-cased
    (:func:`from_linen` converts parameters saved by that one)."""

    def __init__(self, *, feature_dim: int = 64, rngs: nnx.Rngs):
        self.conv_0 = nnx.Conv(1, 16, (3, 3), rngs=rngs)
        self.conv_1 = nnx.Conv(16, 32, (3, 3), strides=2, rngs=rngs)
        self.dense_0 = nnx.Linear(4 * 4 * 32, feature_dim, rngs=rngs)
        self.dense_1 = nnx.Linear(feature_dim, 10, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.conv_0(x))
        x = nnx.relu(self.conv_1(x))
        features = nnx.relu(self.dense_0(x.reshape(x.shape[0], -1)))
        return self.dense_1(features), features


def from_linen(params) -> dict:
    """Parameters of jaxdiff 0.2's linen classifier (``Conv_0``, ..., ``Dense_1``) with this
    classifier's names; parameters with this classifier's names are returned as they are."""
    return {name.lower(): layer for name, layer in params.items()}


def _linen_layer_key(key, name: str):
    """The key linen drew layer ``name``'s first parameter with when ``key`` initialised the
    whole network: ``key`` folded with the first 4 bytes (big-endian) of the SHA-1 of the
    layer's name followed by the count of draws (1)."""
    digest = hashlib.sha1(name.encode() + b"\x01").digest()
    return jax.random.fold_in(key, jnp.uint32(int.from_bytes(digest[:4], "big")))


def _initial_params(key) -> dict:
    """The classifier's initial parameters as jaxdiff 0.2 drew them (part of the training
    recipe, so a retrained classifier equals a cached one): biases zero, each kernel from
    LeCun's normal with the key :func:`_linen_layer_key` of its linen name."""
    params = nnx.to_pure_dict(nnx.state(DigitsClassifier(rngs=nnx.Rngs(params=key)), nnx.Param))
    kernel_init = nnx.initializers.lecun_normal()
    for name, layer in params.items():
        linen_name = name.replace("conv", "Conv").replace("dense", "Dense")
        layer["kernel"] = kernel_init(_linen_layer_key(key, linen_name), layer["kernel"].shape)
    return params


@functools.cache
def _graph() -> nnx.GraphDef:
    return nnx.graphdef(nnx.eval_shape(lambda: DigitsClassifier(rngs=nnx.Rngs(0))))


def _apply(params, x):
    """``(logits, features)`` of the classifier holding ``params``."""
    return nnx.merge(_graph(), params)(x)


def train_classifier(
    *, seed: int, steps: int, batch_size: int, learning_rate: float, weight_decay: float
):
    """Trains :class:`DigitsClassifier` on the train split with AdamW on the cross-entropy
    (one compiled ``lax.scan`` over the steps; minibatches drawn with replacement).

    Returns:
      The parameters (a plain dict).
    """
    images, labels = digits_split("train")
    x = data.to_model_range(images)
    y = jnp.asarray(labels)
    init_key, data_key = jax.random.split(jax.random.PRNGKey(seed))
    tx = optax.adamw(learning_rate, weight_decay=weight_decay)

    def loss_fn(p, idx):
        logits, _ = _apply(p, x[idx])
        return optax.softmax_cross_entropy_with_integer_labels(logits, y[idx]).mean()

    def step(carry, key):
        p, opt_state = carry
        idx = jax.random.randint(key, (batch_size,), 0, x.shape[0])
        grads = jax.grad(loss_fn)(p, idx)
        updates, opt_state = tx.update(grads, opt_state, p)
        return (optax.apply_updates(p, updates), opt_state), None

    @jax.jit
    def fit(p):
        keys = jax.random.split(data_key, steps)
        return jax.lax.scan(step, (p, tx.init(p)), keys)[0][0]

    return fit(_initial_params(init_key))


def _cache_file(cache_dir) -> Path:
    if cache_dir is None:
        default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "jaxdiff"
        cache_dir = os.environ.get("JAXDIFF_CACHE", default)
    recipe = "-".join(f"{k}{v}" for k, v in _RECIPE.items())
    return Path(cache_dir) / f"digits_classifier-{recipe}.msgpack"


def load_classifier(cache_dir=None, *, retrain: bool = False):
    """The classifier's parameters: read from the cache (files written by jaxdiff 0.2's linen
    classifier too), or trained (seconds) and cached.

    Args:
      cache_dir: where the cache file lives (``$JAXDIFF_CACHE`` or ``~/.cache/jaxdiff`` when
        None).
      retrain: train anew even if a cached file exists.
    """
    path = _cache_file(cache_dir)
    template = nnx.to_pure_dict(nnx.state(nnx.eval_shape(lambda: DigitsClassifier(rngs=nnx.Rngs(0)))))
    if path.is_file() and not retrain:
        stored = from_linen(flax.serialization.msgpack_restore(path.read_bytes()))
        return flax.serialization.from_state_dict(template, stored)
    params = train_classifier(**_RECIPE)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(flax.serialization.to_bytes(params))
    os.replace(tmp, path)
    return params


def classify(params, images, *, batch_size: int = 512, mesh=None) -> dict[str, np.ndarray]:
    """Class probabilities ``probs`` [N, 10] and ``features`` [N, 64] of ``images`` (uint8
    [N, 8, 8, 1] or floats in [-1, 1], or a data source)."""
    images = as_array(images)
    if images.ndim != 4 or images.shape[1:] != (8, 8, 1):
        raise ValueError(f"images must have shape [N, 8, 8, 1], got {list(images.shape)}")
    return map_batches(_classify, images, batch_size=batch_size, mesh=mesh, args=(params,))


def _classify(params, images, index):
    """One batch; the parameters are arguments, so one compilation serves all of them."""
    logits, features = _apply(params, data.to_model_range(images))
    return {"probs": jax.nn.softmax(logits), "features": features}


def accuracy(params, split: str = "test") -> float:
    """The classifier's accuracy on a digits split."""
    images, labels = digits_split(split)
    return float(np.mean(np.argmax(classify(params, images)["probs"], axis=1) == labels))


def reference_statistics(params, split: str = "test") -> Statistics:
    """Feature statistics of a digits split, the reference of the digits Fréchet distance."""
    return feature_statistics(classify(params, digits_split(split)[0])["features"])


def classifier_score(probs) -> float:
    """The Inception Score's formula with this classifier (Salimans et al. 2016, Sec. 4):

    .. math:: \\exp\\big(\\mathbb{E}_x\\, \\mathrm{KL}(p(y | x) \\,\\|\\, p(y))\\big),
      \\quad p(y) = \\mathbb{E}_x\\, p(y | x)

    Between 1 and 10: high when each sample is one confident class and the classes are
    balanced.

    Args:
      probs: ``[N, K]`` class probabilities.
    """
    probs = np.asarray(probs, np.float64)
    marginal = probs.mean(axis=0, keepdims=True)
    kl = np.sum(
        probs * (np.log(np.clip(probs, 1e-30, None)) - np.log(np.clip(marginal, 1e-30, None))),
        axis=1,
    )
    return float(np.exp(kl.mean()))


def class_histogram(probs) -> np.ndarray:
    """``[K]`` fraction of samples whose most probable class is k."""
    probs = np.asarray(probs)
    return np.bincount(np.argmax(probs, axis=1), minlength=probs.shape[1]) / probs.shape[0]


def sample_quality(samples, *, params=None, reference: Statistics | None = None) -> dict:
    """Every digits sample-quality figure of ``samples`` (uint8 [N, 8, 8, 1] or [-1, 1]).

    Args:
      samples: the generated digits.
      params: the classifier (:func:`load_classifier` when None).
      reference: reference statistics (the test split's, :func:`reference_statistics`, when
        None).

    Returns:
      dict with ``fd`` (digits Fréchet distance), ``score`` (:func:`classifier_score`),
      ``confidence`` (mean top probability) and ``histogram`` (list of 10 fractions).
    """
    params = load_classifier() if params is None else params
    reference = reference_statistics(params) if reference is None else reference
    out = classify(params, samples)
    stats = feature_statistics(out["features"])
    return dict(
        fd=frechet_distance(stats.mu, stats.sigma, reference.mu, reference.sigma),
        score=classifier_score(out["probs"]),
        confidence=float(np.mean(np.max(out["probs"], axis=1))),
        histogram=class_histogram(out["probs"]).tolist(),
    )
