"""Fréchet Inception Distance (Heusel et al. 2017): the Inception-v3 of FID in Flax, its
standard weights, feature statistics and the Fréchet distance between Gaussians.

The network is the variant of Inception-v3 (Szegedy et al. 2016) that the TensorFlow FID code
used (the 2015-12-05 graph), as ported by pytorch-fid: the torchvision block structure with the
FID graph's differences -- average pools that exclude padding in the A, C and first E block,
a max pool in the last E block -- and 2048-d features from the final average pool. Its weights
are pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``, read here without PyTorch (or an
``.npz`` holding the same state-dict names).

Getting the weights (about 92 MB, once)::

    python -m jaxdiff.metrics.fid download        # into ~/.cache/jaxdiff (or $JAXDIFF_FID_WEIGHTS)

Example::

    variables = load_inception()                             # FileNotFoundError says what to do
    ref = dataset_statistics("cifar10", split="train", variables=variables)
    stats = feature_statistics(inception_features(variables, samples_uint8))
    fid = frechet_distance(*stats[:2], *ref[:2])

Scores match pytorch-fid's (the same network, weights and bilinear resize to 299); like
pytorch-fid's, they differ slightly from the original TensorFlow code's because the resize
differs.
"""

from __future__ import annotations

import collections
import hashlib
import os
import pickle
import sys
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.data import to_model_range
from jaxdiff.metrics.batching import as_array, map_batches

__all__ = [
    "FID_WEIGHTS_URL",
    "FID_WEIGHTS_FILE",
    "FID_WEIGHTS_SHA256_PREFIX",
    "INCEPTION_SIZE",
    "InceptionV3",
    "Statistics",
    "frechet_distance",
    "feature_statistics",
    "save_statistics",
    "load_statistics",
    "default_weights_path",
    "download_weights",
    "read_torch_state_dict",
    "variables_from_state_dict",
    "load_inception",
    "preprocess",
    "inception_features",
    "dataset_statistics",
    "fid_from_samples",
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


# --- the Fréchet distance ----------------------------------------------------------------------


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix (eigenvalues
    below zero, from rounding, are clipped)."""
    w, v = np.linalg.eigh(matrix)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """The squared Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2)
    (Dowson & Landau 1982; the FID of Heusel et al. 2017, Sec. 3 "FID"):

    .. math:: d^2 = \\lVert\\mu_1 - \\mu_2\\rVert^2 + \\operatorname{tr}\\left(\\Sigma_1
        + \\Sigma_2 - 2 (\\Sigma_1 \\Sigma_2)^{1/2}\\right)

    The trace of the matrix square root is computed without a non-symmetric ``sqrtm``: with
    R = Sigma_1^{1/2}, Sigma_1 Sigma_2 is similar to the symmetric PSD R Sigma_2 R, so
    tr((Sigma_1 Sigma_2)^{1/2}) = sum_i sqrt(lambda_i(R Sigma_2 R)). Two symmetric
    eigendecompositions in float64, eigenvalues clipped at zero: finite and real for singular
    covariances (fewer samples than dimensions), where ``scipy.linalg.sqrtm`` of the product
    needs an ``eps * I`` offset and returns a complex result. Runs on the host (NumPy).

    Args:
      mu1, mu2: ``[D]`` means.
      sigma1, sigma2: ``[D, D]`` covariances (symmetric positive semi-definite).

    Returns:
      The distance d^2 as a Python float (>= 0 up to rounding).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(
        np.asarray(mu2, np.float64)
    )
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    dim = mu1.shape[0]
    for name, value, shape in (
        ("mu1", mu1, (dim,)),
        ("mu2", mu2, (dim,)),
        ("sigma1", sigma1, (dim, dim)),
        ("sigma2", sigma2, (dim, dim)),
    ):
        if value.shape != shape:
            raise ValueError(
                f"{name} must have shape {list(shape)} (mu1 is [{dim}]), got {list(value.shape)}"
            )
    sigma1 = 0.5 * (sigma1 + sigma1.T)
    sigma2 = 0.5 * (sigma2 + sigma2.T)
    root1 = _sqrt_psd(sigma1)
    inner = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    trace_sqrt = np.sum(np.sqrt(np.clip(inner, 0.0, None)))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)


class Statistics(NamedTuple):
    """The Gaussian fitted to a set of features: ``mu`` [D], ``sigma`` [D, D] (float64) and
    ``num``, the number of feature vectors."""

    mu: np.ndarray
    sigma: np.ndarray
    num: int


def feature_statistics(features) -> Statistics:
    """Mean and unbiased covariance (``np.cov``, ddof = 1) of ``[N, D]`` features, in float64."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must have shape [N >= 2, D], got {list(features.shape)}")
    return Statistics(features.mean(axis=0), np.cov(features, rowvar=False), features.shape[0])


def save_statistics(path, stats: Statistics) -> None:
    """Writes statistics as ``.npz`` with keys ``mu``, ``sigma`` (pytorch-fid's layout) and
    ``num``."""
    np.savez(path, mu=stats.mu, sigma=stats.sigma, num=stats.num)


def load_statistics(path) -> Statistics:
    """Reads statistics written by :func:`save_statistics` (or pytorch-fid's ``.npz``)."""
    with np.load(path) as f:
        if "mu" not in f or "sigma" not in f:
            raise ValueError(f"{path} holds no FID statistics (expected keys 'mu' and 'sigma')")
        num = int(f["num"]) if "num" in f else 0
        return Statistics(f["mu"].astype(np.float64), f["sigma"].astype(np.float64), num)


# --- the network -------------------------------------------------------------------------------


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


# --- weights -----------------------------------------------------------------------------------


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


class _Storage:
    """A tensor storage of a PyTorch checkpoint: its dtype now, its bytes once read."""

    def __init__(self, dtype: np.dtype, key: str):
        self.dtype, self.key, self.array = dtype, key, None


class _LazyTensor(NamedTuple):
    storage: _Storage
    offset: int
    size: tuple
    stride: tuple

    def materialize(self) -> np.ndarray:
        itemsize = self.storage.dtype.itemsize
        flat = self.storage.array[self.offset :]
        strides = tuple(s * itemsize for s in self.stride)
        return np.lib.stride_tricks.as_strided(flat, self.size, strides).copy()


def _rebuild_tensor(storage, offset, size, stride, *unused):
    return _LazyTensor(storage, offset, tuple(size), tuple(stride))


_TORCH_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ByteStorage": np.uint8,
}


class _TorchUnpickler(pickle.Unpickler):
    """Unpickles a PyTorch state dict into :class:`_LazyTensor` leaves without PyTorch; only
    the few classes a state dict uses are allowed (nothing else is imported or run)."""

    def __init__(self, file, storages: dict):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch" and name in _TORCH_DTYPES:
            return np.dtype(_TORCH_DTYPES[name])
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"unsupported object {module}.{name} in a PyTorch state dict")

    def persistent_load(self, pid):
        if pid[0] != "storage" or len(pid) > 5 and pid[5] is not None:
            raise pickle.UnpicklingError(f"unsupported storage record {pid[:2]} in a PyTorch file")
        dtype, key = pid[1], str(pid[2])
        if key not in self._storages:
            self._storages[key] = _Storage(dtype, key)
        return self._storages[key]


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def read_torch_state_dict(path) -> dict[str, np.ndarray]:
    """Reads a PyTorch ``state_dict`` file (``torch.save``, zip or legacy format) into NumPy
    arrays, without PyTorch and without running code from the file."""
    path = Path(path)
    storages: dict[str, _Storage] = {}
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            pkl = next(n for n in archive.namelist() if n.endswith("data.pkl"))
            prefix = pkl[: -len("data.pkl")]
            tree = _TorchUnpickler(archive.open(pkl), storages).load()
            for s in storages.values():
                s.array = np.frombuffer(
                    archive.read(f"{prefix}data/{s.key}"), s.dtype.newbyteorder("<")
                )
    else:
        with open(path, "rb") as f:
            if pickle.load(f) != _LEGACY_MAGIC:
                raise ValueError(f"{path} is not a PyTorch checkpoint (zip or legacy pickle)")
            pickle.load(f)  # protocol version
            pickle.load(f)  # system info
            tree = _TorchUnpickler(f, storages).load()
            for key in pickle.load(f):
                s = storages[str(key)]
                numel = int(np.frombuffer(f.read(8), "<i8")[0])
                s.array = np.frombuffer(f.read(numel * s.dtype.itemsize), s.dtype.newbyteorder("<"))
    return {k: v.materialize() for k, v in tree.items() if isinstance(v, _LazyTensor)}


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


def load_inception(weights=None, *, sha256: str | None = None, download: bool = False) -> dict:
    """Loads the FID Inception weights as variables of :class:`InceptionV3`.

    Args:
      weights: a pytorch-fid ``.pth`` file or an ``.npz`` of the same state dict;
        :func:`default_weights_path` when None.
      sha256: expected sha256 of the file (hex digest or prefix); by default the official
        prefix is checked for a file named :data:`FID_WEIGHTS_FILE`, nothing for others.
      download: fetch the official file when ``weights`` does not exist. Nothing is
        downloaded unless this is set.

    Raises:
      FileNotFoundError: the file is missing (and ``download`` is False); the message says
        how to get it.
      ValueError: a wrong checksum, or a file that is not the FID weights.
    """
    path = Path(weights).expanduser() if weights is not None else default_weights_path()
    if not path.is_file():
        if not download:
            raise FileNotFoundError(
                f"FID Inception weights not found at {path}. Get them once with "
                f"`python -m jaxdiff.metrics.fid download` (or load_inception(download=True)), "
                f"which fetches {FID_WEIGHTS_URL} (~92 MB); or download that file yourself and "
                f"pass its path (weights=..., or set $JAXDIFF_FID_WEIGHTS)."
            )
        download_weights(path)
    if sha256 is None and path.name == FID_WEIGHTS_FILE:
        sha256 = FID_WEIGHTS_SHA256_PREFIX
    _check_sha256(path, sha256)
    if path.suffix == ".npz":
        with np.load(path) as f:
            state_dict = {k: f[k] for k in f.files}
    else:
        state_dict = read_torch_state_dict(path)
    return variables_from_state_dict(state_dict)


# --- features and statistics -------------------------------------------------------------------


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


def inception_features(variables, images, *, batch_size: int = 200, mesh=None) -> np.ndarray:
    """``[N, 2048]`` FID features of ``images`` (an array or a data source, see
    :func:`preprocess`), batched and sharded over the devices."""
    net = InceptionV3()
    fn = lambda x, index: net.apply(variables, preprocess(x))  # noqa: E731
    return map_batches(fn, as_array(images), batch_size=batch_size, mesh=mesh)


def dataset_statistics(
    dataset: str,
    *,
    split: str = "train",
    variables=None,
    output=None,
    batch_size: int = 200,
    data_dir: str | None = None,
) -> Statistics:
    """Reference statistics of a dataset for FID (what ``jaxdiff stats`` computes).

    Args:
      dataset: a name :func:`jaxdiff.data.load_source` knows (``"cifar10"``, ...).
      split: the split to describe.
      variables: the Inception variables (:func:`load_inception` when None).
      output: write the statistics there as ``.npz`` too.
      batch_size, data_dir: as usual.
    """
    from jaxdiff import data

    variables = load_inception() if variables is None else variables
    source = data.load_source(dataset, split=split, data_dir=data_dir)
    stats = feature_statistics(inception_features(variables, source, batch_size=batch_size))
    if output is not None:
        save_statistics(output, stats)
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
