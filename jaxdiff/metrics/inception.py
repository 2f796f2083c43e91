"""The Inception-v3 of FID (Heusel et al. 2017) in Flax, and its standard weights.

The network is the variant of Inception-v3 (Szegedy et al. 2016) that the TensorFlow FID code
used (the 2015-12-05 graph), as ported by pytorch-fid: the torchvision block structure with the
FID graph's differences -- average pools that exclude padding in the A, C and first E block,
a max pool in the last E block -- and 2048-d features from the final average pool. Its weights
are pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``, read here without PyTorch and
without trusting the file (:mod:`jaxdiff.state_dict`), or an ``.npz`` holding the same
state-dict names.

Getting the weights (about 92 MB, once)::

    python -m jaxdiff.metrics.fid download        # into ~/.cache/jaxdiff (or $JAXDIFF_FID_WEIGHTS)
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.state_dict import load_state_dict

__all__ = [
    "FID_WEIGHTS_URL",
    "FID_WEIGHTS_FILE",
    "FID_WEIGHTS_SHA256_PREFIX",
    "INCEPTION_SIZE",
    "FEATURE_DIM",
    "InceptionV3",
    "default_weights_path",
    "download_weights",
    "weights_path",
    "variables_from_state_dict",
    "load_inception",
]

FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
    "pt_inception-2015-12-05-6726825d.pth"
)
FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
# torch.hub's convention: the file name carries the first 8 hex digits of its sha256.
FID_WEIGHTS_SHA256_PREFIX = "6726825d"
INCEPTION_SIZE = 299
FEATURE_DIM = 2048


def _pad(padding: tuple[int, int]):
    return tuple((p, p) for p in padding)


class BasicConv(nn.Module):
    """Convolution without bias, batch norm (inference statistics, eps 1e-3), ReLU."""

    features: int
    kernel: tuple[int, int]
    strides: int = 1
    padding: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(
            self.features,
            self.kernel,
            strides=self.strides,
            padding=_pad(self.padding),
            use_bias=False,
            name="conv",
        )(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
        return nn.relu(x)


def _avg_pool_3x3(x):
    """3x3 average pool, stride 1, zero padding excluded from the mean (the FID graph)."""
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3(x):
    return nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))


def _max_pool_3x3_s2(x):
    return nn.max_pool(x, (3, 3), strides=(2, 2))


class InceptionA(nn.Module):
    """35x35 block: 1x1, 5x5, double 3x3 and pooled branches."""

    pool_features: int

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv(64, (1, 1), name="branch1x1")(x)
        b5 = BasicConv(48, (1, 1), name="branch5x5_1")(x)
        b5 = BasicConv(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
        b3 = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
        b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = BasicConv(self.pool_features, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17."""

    @nn.compact
    def __call__(self, x):
        b3 = BasicConv(384, (3, 3), strides=2, name="branch3x3")(x)
        bd = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = BasicConv(96, (3, 3), strides=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions of ``channels_7x7`` channels."""

    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        c7 = self.channels_7x7
        b1 = BasicConv(192, (1, 1), name="branch1x1")(x)
        b7 = BasicConv(c7, (1, 1), name="branch7x7_1")(x)
        b7 = BasicConv(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
        b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
        bd = BasicConv(c7, (1, 1), name="branch7x7dbl_1")(x)
        bd = BasicConv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
        bd = BasicConv(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
        bd = BasicConv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
        bd = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
        bp = BasicConv(192, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8."""

    @nn.compact
    def __call__(self, x):
        b3 = BasicConv(192, (1, 1), name="branch3x3_1")(x)
        b3 = BasicConv(320, (3, 3), strides=2, name="branch3x3_2")(b3)
        b7 = BasicConv(192, (1, 1), name="branch7x7x3_1")(x)
        b7 = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv(192, (3, 3), strides=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3 / 3x1 branches; ``pool`` is the pooling of the pooled branch
    (the FID graph: an average pool in Mixed_7b, a max pool in Mixed_7c)."""

    pool: Callable = _avg_pool_3x3

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv(320, (1, 1), name="branch1x1")(x)
        b3 = BasicConv(384, (1, 1), name="branch3x3_1")(x)
        b3 = jnp.concatenate(
            [
                BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3),
            ],
            axis=-1,
        )
        bd = BasicConv(448, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate(
            [
                BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd),
            ],
            axis=-1,
        )
        bp = BasicConv(192, (1, 1), name="branch_pool")(self.pool(x))
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3(nn.Module):
    """Inception-v3 (Szegedy et al. 2016) as in FID (Heusel et al. 2017): ``[B, H, W, 3]``
    images in [-1, 1] (H, W >= 75; FID uses 299, see :func:`preprocess`) to the ``[B, 2048]``
    features of the last average pool. Module names follow the PyTorch state dict."""

    @nn.compact
    def __call__(self, x):
        x = BasicConv(32, (3, 3), strides=2, name="Conv2d_1a_3x3")(x)
        x = BasicConv(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = BasicConv(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
        x = _max_pool_3x3_s2(x)
        x = BasicConv(80, (1, 1), name="Conv2d_3b_1x1")(x)
        x = BasicConv(192, (3, 3), name="Conv2d_4a_3x3")(x)
        x = _max_pool_3x3_s2(x)
        x = InceptionA(32, name="Mixed_5b")(x)
        x = InceptionA(64, name="Mixed_5c")(x)
        x = InceptionA(64, name="Mixed_5d")(x)
        x = InceptionB(name="Mixed_6a")(x)
        x = InceptionC(128, name="Mixed_6b")(x)
        x = InceptionC(160, name="Mixed_6c")(x)
        x = InceptionC(160, name="Mixed_6d")(x)
        x = InceptionC(192, name="Mixed_6e")(x)
        x = InceptionD(name="Mixed_7a")(x)
        x = InceptionE(_avg_pool_3x3, name="Mixed_7b")(x)
        x = InceptionE(_max_pool_3x3, name="Mixed_7c")(x)
        return jnp.mean(x, axis=(1, 2))


def default_weights_path() -> Path:
    """``$JAXDIFF_FID_WEIGHTS`` if set, else ``~/.cache/jaxdiff/`` + :data:`FID_WEIGHTS_FILE`
    (``$XDG_CACHE_HOME`` replaces ``~/.cache``)."""
    if os.environ.get("JAXDIFF_FID_WEIGHTS"):
        return Path(os.environ["JAXDIFF_FID_WEIGHTS"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "jaxdiff" / FID_WEIGHTS_FILE


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_sha256(path: Path, expected: str | None) -> None:
    if expected and not _sha256(path).startswith(expected.lower()):
        raise ValueError(
            f"{path}: sha256 {_sha256(path)} does not match the expected {expected}; the file is "
            f"not the FID Inception weights (or is truncated): delete it and download it again"
        )


def download_weights(
    path=None, *, url: str = FID_WEIGHTS_URL, sha256: str = FID_WEIGHTS_SHA256_PREFIX
) -> Path:
    """Downloads the FID Inception weights to ``path`` (:func:`default_weights_path` when
    None), checks the sha256 (a full hex digest or a prefix), and returns the path."""
    path = Path(path) if path is not None else default_weights_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    print(f"downloading the FID Inception weights from {url} to {path}", file=sys.stderr)
    urllib.request.urlretrieve(url, tmp)
    _check_sha256(tmp, sha256)
    os.replace(tmp, path)
    return path


def variables_from_state_dict(state_dict: dict[str, np.ndarray]) -> dict:
    """Maps pytorch-fid's Inception state dict (``Mixed_5b.branch1x1.conv.weight``, ...) onto
    the variables of :class:`InceptionV3` (``fc.*`` and ``num_batches_tracked`` are dropped).

    Raises:
      ValueError: when a variable of the network is missing or has the wrong shape.
    """
    params, stats = {}, {}
    renames = {
        "weight": ("params", "kernel"),
        "bias": ("params", "bias"),
        "running_mean": ("batch_stats", "mean"),
        "running_var": ("batch_stats", "var"),
    }
    for key, value in state_dict.items():
        *path, module, leaf = key.split(".")
        if path[:1] == ["fc"] or module == "fc" or leaf not in renames:
            continue
        collection, name = renames[leaf]
        if module == "conv":
            value = np.transpose(value, (2, 3, 1, 0))  # [O, I, kh, kw] -> [kh, kw, I, O]
        elif leaf == "weight":
            name = "scale"
        node = params if collection == "params" else stats
        for part in (*path, module):
            node = node.setdefault(part, {})
        node[name] = jnp.asarray(value, jnp.float32)
    variables = {"params": params, "batch_stats": stats}
    expected = jax.eval_shape(InceptionV3().init, jax.random.PRNGKey(0), jnp.zeros((1, 75, 75, 3)))
    want = jax.tree_util.tree_flatten_with_path(expected)[0]
    got = dict(jax.tree_util.tree_flatten_with_path(variables)[0])
    for path, leaf in want:
        name = jax.tree_util.keystr(path)
        if path not in got:
            raise ValueError(f"the Inception weights lack {name}")
        if got[path].shape != leaf.shape:
            raise ValueError(
                f"the Inception weights' {name} has shape {got[path].shape}, expected {leaf.shape}"
            )
    return variables


def weights_path(weights=None, *, download: bool = False) -> Path:
    """Where :func:`load_inception` reads the weights (``weights``, else
    :func:`default_weights_path`): a check to run before any work that needs them.

    Raises:
      FileNotFoundError: the file is missing and ``download`` is False; the message says how
        to get it.
    """
    path = Path(weights).expanduser() if weights is not None else default_weights_path()
    if not path.is_file() and not download:
        raise FileNotFoundError(
            f"FID Inception weights not found at {path}. Get them once with "
            f"`python -m jaxdiff.metrics.fid download` (or load_inception(download=True)), "
            f"which fetches {FID_WEIGHTS_URL} (~92 MB); or download that file yourself and "
            f"pass its path (weights=..., or set $JAXDIFF_FID_WEIGHTS)."
        )
    return path


def load_inception(weights=None, *, sha256: str | None = None, download: bool = False) -> dict:
    """Loads the FID Inception weights as variables of :class:`InceptionV3`.

    Args:
      weights: a pytorch-fid ``.pth`` file or an ``.npz`` of the same state dict;
        :func:`default_weights_path` when None.
      sha256: expected sha256 of the file (hex digest or prefix). None: the official prefix
        for every PyTorch file, whatever its name or where it came from (``--weights``,
        ``$JAXDIFF_FID_WEIGHTS``), nothing for an ``.npz`` (plain arrays); ``""``: no check.
        The 8-digit prefix guards against a wrong or truncated download, not against a forged
        file: the file is read by :mod:`jaxdiff.state_dict`, which runs no code from it.
      download: fetch the official file when ``weights`` does not exist. Nothing is
        downloaded unless this is set.

    Raises:
      FileNotFoundError: the file is missing (and ``download`` is False); the message says
        how to get it.
      ValueError: a wrong checksum, or a file that is not the FID weights.
    """
    path = weights_path(weights, download=download)
    if not path.is_file():
        download_weights(path)
    if sha256 is None and path.suffix != ".npz":
        sha256 = FID_WEIGHTS_SHA256_PREFIX
    _check_sha256(path, sha256)
    return variables_from_state_dict(load_state_dict(path))
