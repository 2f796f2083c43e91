"""Data pipelines: a random-access source of examples, and batches that are a pure function of
``(seed, step)``.

Every dataset -- scikit-learn's bundled 8x8 digits, 2-D toy distributions, or any named
TFDS dataset read through ``tfds.data_source`` -- is a random-access sequence of examples
(``{"x": uint8 [H, W, C] or float32 [D], "label": int32}``). :class:`Batches` turns it into an
infinite, deterministic stream with grain: a per-epoch shuffle, optional random horizontal
flips (each seeded by the example's position in the stream), and fixed-size batches. Batch
``step`` depends only on ``(seed, step)``, so a resumed run reads exactly the batches an
uninterrupted one would have read, without saving any iterator state.

Images stay uint8 NHWC on the host; :func:`to_model_range` scales them to [-1, 1] on the
device, and :func:`to_uint8` maps model outputs back.

Example::

    source = jaxdiff.data.load_source("digits")
    batches = jaxdiff.data.Batches(source, batch_size=128, seed=0, random_flip=False)
    batch = batches[0]                     # {"x": uint8 [128, 8, 8, 1], "label": int32 [128]}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import grain
import jax.numpy as jnp
import numpy as np

from jaxdiff._io import write_file

__all__ = [
    "BUILTIN_DATASETS",
    "DataError",
    "Batches",
    "load_source",
    "digits",
    "digits_split_indices",
    "swiss_roll",
    "gaussian_mixture",
    "gaussian_grid",
    "two_moons",
    "tfds_source",
    "to_model_range",
    "to_uint8",
    "image_grid",
    "save_image_grid",
    "save_samples_png",
]

Example = dict[str, Any]


class DataError(ValueError):
    """A dataset that cannot be found, read or prepared; the message says what to do."""


# --- in-memory sources -------------------------------------------------------------------------


class _ArraySource:
    """A random-access source over in-memory arrays of equal length (grain ``RandomAccessDataSource``)."""

    def __init__(self, **arrays: np.ndarray):
        lengths = {len(a) for a in arrays.values()}
        if len(lengths) != 1:
            raise ValueError(f"arrays must have the same length, got {lengths}")
        self._arrays = arrays
        self._len = lengths.pop()

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> Example:
        return {k: a[index] for k, a in self._arrays.items()}


NUM_DIGITS = 1797
DIGITS_TEST_FRACTION = 0.2
DIGITS_VALID_FRACTION = 0.1  # of the train split
DIGITS_SPLIT_SEED = 0


def digits_split_indices(split: str, *, num: int = NUM_DIGITS) -> np.ndarray:
    """Indices of the digits ``split``: ``"train"`` (1,438), ``"test"`` (359), ``"all"``, or
    the train split's two parts ``"valid"`` (144, for early stopping) and ``"fit"`` (1,294,
    the rest of train).

    The test split is the first 20 % of ``RandomState(0).permutation(1797)`` (NumPy's legacy
    generator, whose stream is frozen), sorted; train is the rest; valid is the next 10 % of
    train in the same permutation, fit the remainder.
    """
    if split == "all":
        return np.arange(num)
    if split not in ("train", "test", "valid", "fit"):
        raise ValueError(f"split must be 'train', 'test', 'valid', 'fit' or 'all', got {split!r}")
    perm = np.random.RandomState(DIGITS_SPLIT_SEED).permutation(num)
    num_test = int(round(DIGITS_TEST_FRACTION * num))
    num_valid = int(round(DIGITS_VALID_FRACTION * (num - num_test)))
    parts = {
        "test": perm[:num_test],
        "train": perm[num_test:],
        "valid": perm[num_test : num_test + num_valid],
        "fit": perm[num_test + num_valid :],
    }
    return np.sort(parts[split])


def digits(split: str = "all") -> _ArraySource:
    """scikit-learn's bundled handwritten digits (Alpaydin & Kaynak 1998): 1,797 images of 8x8.

    The 17 grey levels 0..16 are mapped linearly to 0..255 (rounded), giving uint8 images of
    shape [8, 8, 1] and their labels 0..9. Needs no download.

    Args:
      split: ``"all"``, or ``"train"`` / ``"test"`` (about 80 / 20 %) as fixed by
        :func:`digits_split_indices` (the split the evaluation uses), or train's parts
        ``"fit"`` / ``"valid"`` (90 / 10 % of it).
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int32)
    if split != "all":
        keep = digits_split_indices(split, num=len(labels))
        images, labels = images[keep], labels[keep]
    return _ArraySource(x=images, label=labels)


_TOY_SEEDS = {"train": 0, "test": 1}


def _toy_seed(split: str) -> int:
    """Toy datasets draw their train and test points with different seeds."""
    if split not in _TOY_SEEDS:
        raise DataError(f"split must be one of {sorted(_TOY_SEEDS)} for a toy dataset, got {split!r}")
    return _TOY_SEEDS[split]


def _points(points: np.ndarray, labels: np.ndarray) -> _ArraySource:
    return _ArraySource(x=points.astype(np.float32), label=labels.astype(np.int32))


def swiss_roll(split: str = "train", *, num: int = 20000, noise: float = 0.05) -> _ArraySource:
    """A 2-D swiss roll: r = theta / (3 pi) for theta ~ U(1.5 pi, 4.5 pi), point (r cos, r sin)
    plus N(0, noise^2) jitter; it fills roughly [-1.3, 1.3]^2. Label: 0."""
    rng = np.random.default_rng(_toy_seed(split))
    theta = rng.uniform(1.5 * np.pi, 4.5 * np.pi, num)
    r = theta / (3.0 * np.pi)
    pts = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)
    return _points(pts + noise * rng.standard_normal(pts.shape), np.zeros(num))


def gaussian_mixture(
    split: str = "train", *, num: int = 20000, modes: int = 8, radius: float = 1.0, std: float = 0.05
) -> _ArraySource:
    """``modes`` equally weighted isotropic Gaussians (std ``std``) on a circle of ``radius``.
    Label: the mode."""
    rng = np.random.default_rng(_toy_seed(split))
    labels = rng.integers(0, modes, num)
    angle = 2.0 * np.pi * labels / modes
    centres = radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return _points(centres + std * rng.standard_normal(centres.shape), labels)


def gaussian_grid(
    split: str = "train", *, num: int = 20000, side: int = 5, spacing: float = 0.5, std: float = 0.02
) -> _ArraySource:
    """``side`` x ``side`` equally weighted isotropic Gaussians (std ``std``) centred on a square
    grid of ``spacing``, centred at the origin (5 x 5 by default: [-1, 1]^2), the mode-collapse
    benchmark of Srivastava et al. (2017, VEEGAN), rescaled. Label: the mode (row-major)."""
    rng = np.random.default_rng(_toy_seed(split))
    labels = rng.integers(0, side * side, num)
    offsets = spacing * (np.arange(side) - (side - 1) / 2)
    centres = np.stack([offsets[labels // side], offsets[labels % side]], axis=1)
    return _points(centres + std * rng.standard_normal(centres.shape), labels)


def two_moons(split: str = "train", *, num: int = 20000, noise: float = 0.05) -> _ArraySource:
    """Two interleaved half circles (scikit-learn's ``make_moons``), centred and divided by 1.5
    to lie in about [-1, 1] x [-0.5, 0.5]. Label: the moon."""
    from sklearn.datasets import make_moons

    pts, labels = make_moons(num, noise=noise, random_state=_toy_seed(split))
    return _points((pts - np.array([0.5, 0.25])) / 1.5, labels)


# name -> source(split); the "train" split is what training reads.
BUILTIN_DATASETS: dict[str, Callable[[str], _ArraySource]] = {
    "digits": digits,
    "swiss_roll": swiss_roll,
    "gaussian_mixture": gaussian_mixture,
    "gaussian_grid": gaussian_grid,
    "two_moons": two_moons,
}


# --- TFDS --------------------------------------------------------------------------------------


def _tfds_prepare_hint(name: str, data_dir: str | None) -> str:
    where = data_dir or "~/tensorflow_datasets (or $TFDS_DATA_DIR)"
    return (
        f"prepare it once with TensorFlow installed (pip install 'jaxdiff[tfds]', i.e. "
        f"tensorflow-cpu) and network access: `tfds build {name} --file_format=array_record` "
        f"then copy the {name}/ folder into {where}; or let jaxdiff download and prepare it "
        f"(--config.data.download=True, or download=True)"
    )


def tfds_source(
    name: str, *, split: str = "train", data_dir: str | None = None, download: bool = False
) -> Sequence[Example]:
    """A TFDS dataset as a random-access source (``tfds.data_source``, ArrayRecord files).

    Examples are mapped to ``{"x": image uint8 [H, W, C], "label": int32}`` (``label`` is 0
    when the dataset has none).

    Args:
      name: a registered TFDS name (``"mnist"``, ``"cifar10"``, ``"celeb_a:2.1.0"``, ...).
      split: the split to read (TFDS slicing syntax works, e.g. ``"train[:90%]"``).
      data_dir: where the prepared dataset lives; TFDS's default when None.
      download: if the dataset is not prepared, try to download and prepare it (needs
        TensorFlow and network access). Off by default: nothing touches the network unless
        asked.

    Raises:
      DataError: the name is not a TFDS dataset, or it is not prepared and cannot be
        prepared here (the message says what to install or where to put the files).
    """
    import tensorflow_datasets as tfds

    try:
        tfds.builder_cls(name.split(":")[0])
    except tfds.core.registered.DatasetNotFoundError as e:
        raise DataError(
            f"unknown dataset {name!r}: not one of the built-in datasets "
            f"{sorted(BUILTIN_DATASETS)} nor a TFDS dataset name"
        ) from e
    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as missing:  # noqa: BLE001 - any failure means "not prepared here"
        if not download:
            raise DataError(
                f"TFDS dataset {name!r} is not prepared in ArrayRecord format "
                f"({type(missing).__name__}); {_tfds_prepare_hint(name, data_dir)}"
            ) from missing
        try:
            tfds.builder(name, data_dir=data_dir, file_format="array_record").download_and_prepare()
            source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
        except Exception as e:  # noqa: BLE001 - no TensorFlow, no network, bad split, ...
            raise DataError(
                f"TFDS dataset {name!r} is not prepared and could not be downloaded "
                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                f"{_tfds_prepare_hint(name, data_dir)}"
            ) from e
    return _TfdsImages(source)


class _TfdsImages:
    """Maps TFDS feature dicts to ``{"x", "label"}`` examples."""

    def __init__(self, source):
        self._source = source

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> Example:
        ex = self._source[index]
        image = np.asarray(ex["image"], dtype=np.uint8)
        return {"x": image, "label": np.int32(ex.get("label", 0))}


def load_source(
    name: str, *, split: str = "train", data_dir: str | None = None, download: bool = False
) -> Sequence[Example]:
    """Resolves a dataset name: a built-in one (:data:`BUILTIN_DATASETS`) or a TFDS name.

    Raises:
      DataError: for an unknown name, or a TFDS dataset that is not available (see
        :func:`tfds_source`).
    """
    if not isinstance(name, str) or not name:
        raise DataError(f"dataset must be a non-empty name, got {name!r}")
    if name in BUILTIN_DATASETS:
        return BUILTIN_DATASETS[name](split)
    return tfds_source(name, split=split, data_dir=data_dir, download=download)


# --- batches -----------------------------------------------------------------------------------


def _flip(example: Example, rng: np.random.Generator) -> Example:
    """Flips an image left-right with probability 1/2 (Ho et al. 2020, App. B: CIFAR-10)."""
    if rng.random() < 0.5:
        return {**example, "x": example["x"][:, ::-1]}
    return example


class Batches:
    """Deterministic batches: ``batches[step]`` is a pure function of ``(seed, step)``.

    The example stream is the source shuffled anew each epoch (grain's index shuffle with the
    seed folded with the epoch), then randomly flipped per example. Global batch ``step`` is
    the stream's examples ``[step * B, (step + 1) * B)``; process ``p`` of ``P`` reads the
    ``p``-th of its ``P`` equal parts, so the hosts together read each global batch once.

    Args:
      source: a random-access source of ``{"x", "label"}`` examples.
      batch_size: the global batch size B (all processes together).
      seed: the data seed (shuffle order and flips).
      random_flip: flip images left-right with probability 1/2.
      process_index, process_count: this host's place among the hosts (``jax.process_index()``
        and ``jax.process_count()`` in a multi-host run).
    """

    def __init__(
        self,
        source: Sequence[Example],
        *,
        batch_size: int,
        seed: int,
        random_flip: bool = False,
        process_index: int = 0,
        process_count: int = 1,
    ):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if batch_size % process_count:
            raise ValueError(
                f"batch_size {batch_size} must be divisible by the number of processes {process_count}"
            )
        if len(source) < 1:
            raise DataError("the dataset is empty")
        self.batch_size = batch_size
        self.local_batch_size = batch_size // process_count
        self._process_index = process_index
        self._process_count = process_count
        ds = grain.MapDataset.source(source).seed(seed).shuffle().repeat()
        if random_flip:
            ds = ds.random_map(_flip)
        self._ds = ds.batch(self.local_batch_size)

    def __getitem__(self, step: int) -> dict[str, np.ndarray]:
        """This process's part of global batch ``step``: ``{"x": [B / P, ...], "label": [B / P]}``."""
        if step < 0:
            raise IndexError(f"step must be non-negative, got {step}")
        return self._ds[step * self._process_count + self._process_index]


# --- value ranges and image grids --------------------------------------------------------------


def to_model_range(x) -> jnp.ndarray:
    """uint8 pixels in [0, 255] -> float32 in [-1, 1] (Ho et al. 2020, Sec. 3.3: x / 127.5 - 1).

    Non-integer data (e.g. 2-D points) are returned as float32 unchanged. The branch is on the
    static dtype, so this works under ``jit``.
    """
    x = jnp.asarray(x)
    if x.dtype == jnp.uint8:
        return x.astype(jnp.float32) / 127.5 - 1.0
    return x.astype(jnp.float32)


def to_uint8(x) -> np.ndarray:
    """float images in [-1, 1] -> uint8 in [0, 255] (clipped, rounded): the inverse of
    :func:`to_model_range`. Returns a NumPy array."""
    x = np.asarray(x, dtype=np.float32)
    return np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def image_grid(images: np.ndarray, *, ncols: int | None = None, pad: int = 1) -> np.ndarray:
    """Tiles uint8 images ``[N, H, W, C]`` into one ``[rows * (H + pad) + pad, ..., C]`` image
    (``ncols`` defaults to ceil(sqrt(N)); the padding is white)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(
            f"images must be uint8 of shape [N, H, W, C], got {images.dtype} {images.shape}"
        )
    n, h, w, c = images.shape
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, q = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        grid[y : y + h, x : x + w] = images[i]
    return grid


def save_image_grid(
    images: np.ndarray, path, *, scale: int | None = None, overwrite: bool = True
) -> None:
    """Writes :func:`image_grid` of uint8 images as a PNG (atomically, see
    :func:`jaxdiff._io.write_file`); small images are enlarged by an integer factor (nearest
    neighbour) so the grid is at least ~400 pixels wide."""
    from PIL import Image

    grid = image_grid(images)
    if scale is None:
        scale = max(1, 400 // grid.shape[1])
    grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    image = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    write_file(path, lambda f: image.save(f, format="PNG"), overwrite=overwrite)


def save_samples_png(samples, path, *, overwrite: bool = True) -> None:
    """Writes model samples as a PNG (atomically; an existing file is replaced only with
    ``overwrite``): images ``[N, H, W, C]`` in [-1, 1] as a grid, 2-D points ``[N, 2]`` as a
    scatter plot."""
    samples = np.asarray(samples)
    if samples.ndim == 4:
        save_image_grid(to_uint8(samples), path, overwrite=overwrite)
        return
    if samples.ndim != 2 or samples.shape[1] != 2:
        raise ValueError(f"samples must be images [N, H, W, C] or points [N, 2], got {samples.shape}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.5)
    ax.set_aspect("equal")
    try:
        write_file(path, lambda f: fig.savefig(f, format="png", dpi=100), overwrite=overwrite)
    finally:
        plt.close(fig)
