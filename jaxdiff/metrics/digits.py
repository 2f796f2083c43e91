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

import os
from pathlib import Path

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

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


class DigitsClassifier(nn.Module):
    """A small CNN for 8x8 digits: ``[B, 8, 8, 1]`` in [-1, 1] -> (logits [B, 10],
    features [B, feature_dim])."""

    feature_dim: int = 64

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(16, (3, 3))(x))
        x = nn.relu(nn.Conv(32, (3, 3), strides=2)(x))
        features = nn.relu(nn.Dense(self.feature_dim)(x.reshape(x.shape[0], -1)))
        return nn.Dense(10)(features), features


def train_classifier(
    *, seed: int, steps: int, batch_size: int, learning_rate: float, weight_decay: float
):
    """Trains :class:`DigitsClassifier` on the train split with AdamW on the cross-entropy
    (one compiled ``lax.scan`` over the steps; minibatches drawn with replacement).

    Returns:
      The parameters.
    """
    images, labels = digits_split("train")
    x = data.to_model_range(images)
    y = jnp.asarray(labels)
    model = DigitsClassifier()
    init_key, data_key = jax.random.split(jax.random.PRNGKey(seed))
    params = model.init(init_key, x[:1])["params"]
    tx = optax.adamw(learning_rate, weight_decay=weight_decay)

    def loss_fn(p, idx):
        logits, _ = model.apply({"params": p}, x[idx])
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

    return fit(params)


def _cache_file(cache_dir) -> Path:
    if cache_dir is None:
        default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "jaxdiff"
        cache_dir = os.environ.get("JAXDIFF_CACHE", default)
    recipe = "-".join(f"{k}{v}" for k, v in _RECIPE.items())
    return Path(cache_dir) / f"digits_classifier-{recipe}.msgpack"


def load_classifier(cache_dir=None, *, retrain: bool = False):
    """The classifier's parameters: read from the cache, or trained (seconds) and cached.

    Args:
      cache_dir: where the cache file lives (``$JAXDIFF_CACHE`` or ``~/.cache/jaxdiff`` when
        None).
      retrain: train anew even if a cached file exists.
    """
    path = _cache_file(cache_dir)
    template = jax.eval_shape(
        lambda: DigitsClassifier().init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))["params"]
    )
    if path.is_file() and not retrain:
        return flax.serialization.from_bytes(template, path.read_bytes())
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
    logits, features = DigitsClassifier().apply({"params": params}, data.to_model_range(images))
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
