"""Fréchet Inception Distance (Heusel et al. 2017): FID features of images, reference
statistics of a dataset, and the FID of samples.

The parts live by concern: :mod:`jaxdiff.metrics.frechet` (the distance between Gaussians and
feature statistics), :mod:`jaxdiff.metrics.inception` (the network and its weights) and
:mod:`jaxdiff.state_dict` (reading PyTorch files without trusting them); their public names
are re-exported here.

Example::

    variables = load_inception()                             # FileNotFoundError says what to do
    ref = dataset_statistics("cifar10", split="train", variables=variables)
    stats = feature_statistics(inception_features(variables, samples_uint8))
    fid = frechet_distance(*stats[:2], *ref[:2])

Scores match pytorch-fid's (the same network, weights and bilinear resize to 299); like
pytorch-fid's, they differ slightly from the original TensorFlow code's because the resize
differs. :func:`inception_features` compiles once for all weights of the network.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._compile import static_partial

from jaxdiff.data import ImageOptions, load_source, to_model_range
from jaxdiff.metrics import frechet, inception
from jaxdiff.metrics.batching import as_array, map_batches
from jaxdiff.metrics.frechet import (
    Statistics,
    feature_statistics,
    frechet_distance,
    load_statistics,
    save_statistics,
)
from jaxdiff.metrics.inception import (
    FEATURE_DIM,
    FID_WEIGHTS_FILE,
    FID_WEIGHTS_SHA256_PREFIX,
    FID_WEIGHTS_URL,
    INCEPTION_SIZE,
    InceptionV3,
    default_weights_path,
    download_weights,
    load_inception,
    variables_from_state_dict,
    weights_path,
)
from jaxdiff.state_dict import read_torch_state_dict

__all__ = [
    *frechet.__all__,
    *inception.__all__,
    "read_torch_state_dict",
    "preprocess",
    "inception_features",
    "dataset_statistics",
    "fid_from_samples",
]


def preprocess(images, *, size: int = INCEPTION_SIZE) -> jnp.ndarray:
    """Images to the network's input: ``[B, H, W, C]`` uint8 in [0, 255] or floats in [-1, 1],
    C = 1 (repeated to RGB) or 3, resized bilinearly (half-pixel centres, no antialiasing: as
    pytorch-fid's ``F.interpolate``) to ``[B, size, size, 3]`` floats in [-1, 1]."""
    images = jnp.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must have shape [B, H, W, 1 or 3], got {list(images.shape)}")
    images = to_model_range(images)
    images = jnp.broadcast_to(images, (*images.shape[:3], 3))
    shape = (images.shape[0], size, size, 3)
    return jax.image.resize(images, shape, method="bilinear", antialias=False)


def inception_features(
    variables, images, *, batch_size: int = 200, mesh=None, size: int = INCEPTION_SIZE
) -> np.ndarray:
    """``[N, 2048]`` FID features of ``images`` (an array or a data source, resized to
    ``size``, see :func:`preprocess`), batched and sharded over the devices. The variables are
    arguments of the compiled program: one compilation serves every set of weights."""
    fn = static_partial(_features, size=size)
    return map_batches(fn, as_array(images), batch_size=batch_size, mesh=mesh, args=(variables,))


def _features(variables, images, index, *, size):
    return InceptionV3().apply(variables, preprocess(images, size=size))


def dataset_statistics(
    dataset: str,
    *,
    split: str = "train",
    variables=None,
    output=None,
    batch_size: int = 200,
    data_dir: str | None = None,
    overwrite: bool = True,
    options: ImageOptions | None = None,
) -> Statistics:
    """Reference statistics of a dataset for FID (what ``jaxdiff stats`` computes).

    Args:
      dataset: a name :func:`jaxdiff.data.load_source` knows (``"cifar10"``,
        ``"folder:PATH"``, ``"npz:PATH"``, ...).
      split: the split to describe.
      variables: the Inception variables (:func:`load_inception` when None).
      output: write the statistics there as ``.npz`` too (replacing a file there only with
        ``overwrite``).
      batch_size, data_dir: as usual.
      options: how a user's images are read (:class:`jaxdiff.data.ImageOptions`; the
        defaults when None).
    """
    variables = load_inception() if variables is None else variables
    options = ImageOptions() if options is None else options
    source = load_source(dataset, split=split, data_dir=data_dir, options=options)
    stats = feature_statistics(inception_features(variables, source, batch_size=batch_size))
    if output is not None:
        save_statistics(output, stats, overwrite=overwrite)
    return stats


def fid_from_samples(
    samples, reference: Statistics, *, variables=None, batch_size: int = 200
) -> float:
    """FID of ``samples`` (uint8 or [-1, 1] images) against reference statistics."""
    variables = load_inception() if variables is None else variables
    stats = feature_statistics(inception_features(variables, samples, batch_size=batch_size))
    return frechet_distance(stats.mu, stats.sigma, reference.mu, reference.sigma)


def _main(argv: list[str]) -> int:
    """``python -m jaxdiff.metrics.fid download [--path P]``: fetch the weights once (reference
    statistics are ``jaxdiff stats``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m jaxdiff.metrics.fid")
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("download", help="download the FID Inception weights")
    get.add_argument("--path", default=None, help=f"default: {default_weights_path()}")
    args = parser.parse_args(argv)
    print(download_weights(args.path))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
