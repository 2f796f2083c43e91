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

import dataclasses
import math
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grain
import jax.numpy as jnp
import numpy as np
from PIL import Image

from jaxdiff._io import write_file

__all__ = [
    "BUILTIN_DATASETS",
    "DataError",
    "Batches",
    "load_source",
    "digits",
    "digits_split_indices",
    "split_indices",
    "ImageOptions",
    "ImageFolder",
    "npz_source",
    "fit_image",
    "config_source",
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


def split_indices(
    split: str, *, num: int, seed: int, test_fraction: float, valid_fraction: float
) -> np.ndarray:
    """Sorted indices of ``split`` among ``num`` examples: a deterministic function of
    ``(num, seed, test_fraction, valid_fraction)``.

    The test split is the first ``round(test_fraction * num)`` of
    ``RandomState(seed).permutation(num)`` (NumPy's legacy generator, whose stream is frozen);
    ``"train"`` is the rest; ``"valid"`` is the next ``round(valid_fraction * len(train))`` of
    the same permutation (held out from training for early stopping when training reads
    ``"fit"``), ``"fit"`` the remainder of train; ``"all"`` is every index.

    Raises:
      ValueError: for another split name.
    """
    if split == "all":
        return np.arange(num)
    if split not in ("train", "test", "valid", "fit"):
        raise ValueError(f"split must be 'train', 'test', 'valid', 'fit' or 'all', got {split!r}")
    perm = np.random.RandomState(seed).permutation(num)
    num_test = int(round(test_fraction * num))
    num_valid = int(round(valid_fraction * (num - num_test)))
    parts = {
        "test": perm[:num_test],
        "train": perm[num_test:],
        "valid": perm[num_test : num_test + num_valid],
        "fit": perm[num_test + num_valid :],
    }
    return np.sort(parts[split])


def digits_split_indices(split: str, *, num: int = NUM_DIGITS) -> np.ndarray:
    """Indices of the digits ``split``: ``"train"`` (1,438), ``"test"`` (359), ``"all"``, or
    the train split's two parts ``"valid"`` (144, for early stopping) and ``"fit"`` (1,294,
    the rest of train): :func:`split_indices` with seed 0, a test fifth and a valid tenth."""
    return split_indices(
        split,
        num=num,
        seed=DIGITS_SPLIT_SEED,
        test_fraction=DIGITS_TEST_FRACTION,
        valid_fraction=DIGITS_VALID_FRACTION,
    )


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


# --- a user's images: a folder of files or a .npz array -----------------------------------------

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FOLDER_PREFIX, NPZ_PREFIX = "folder:", "npz:"
_GREY_MODES = ("1", "L", "I", "I;16", "F")
_UNREADABLE = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImageOptions:
    """How a user's images (``folder:PATH`` or ``npz:PATH``) are read; the ``config.data``
    fields of the same names.

    Attributes:
      image_size: resize (the short side, bicubic with antialiasing) and centre-crop every image
        to ``image_size`` x ``image_size``; None keeps the images' own size, which must then be
        the same for all of them.
      bad_images: ``"error"`` (an unreadable image file stops with its name) or ``"skip"``
        (leave it out, with one warning that counts them).
      split_seed, test_fraction, valid_fraction: the split (:func:`split_indices`).
    """

    image_size: int | None = None
    bad_images: str = "error"
    split_seed: int = 0
    test_fraction: float = 0.1
    valid_fraction: float = 0.1

    def __post_init__(self):
        if self.image_size is not None and (
            isinstance(self.image_size, bool) or not isinstance(self.image_size, int) or self.image_size < 1
        ):
            raise ValueError(f"image_size must be a positive integer or None, got {self.image_size!r}")
        if self.bad_images not in ("error", "skip"):
            raise ValueError(f"bad_images must be 'error' or 'skip', got {self.bad_images!r}")
        for name in ("test_fraction", "valid_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")

    def indices(self, split: str, num: int) -> np.ndarray:
        """The examples of ``split`` among ``num``."""
        return split_indices(
            split,
            num=num,
            seed=self.split_seed,
            test_fraction=self.test_fraction,
            valid_fraction=self.valid_fraction,
        )


def fit_image(image: Image.Image, size: int | None) -> Image.Image:
    """Scales ``image`` so that its short side is ``size`` (bicubic; Pillow antialiases when
    shrinking), then crops the central ``size`` x ``size`` square; an image already of that
    size, or ``size`` None, is returned as it is."""
    width, height = image.size
    if size is None or (width, height) == (size, size):
        return image
    scale = size / min(width, height)
    width, height = max(size, round(width * scale)), max(size, round(height * scale))
    image = image.resize((width, height), Image.Resampling.BICUBIC)
    left, top = (width - size) // 2, (height - size) // 2
    return image.crop((left, top, left + size, top + size))


def _pixels(image: Image.Image, channels: int, size: int | None) -> np.ndarray:
    """uint8 [H, W, channels] of a PIL image: grey ("L") or RGB (alpha dropped), fitted."""
    image = fit_image(image.convert("L" if channels == 1 else "RGB"), size)
    return np.asarray(image, dtype=np.uint8).reshape(image.size[1], image.size[0], channels)


class ImageFolder:
    """The PNG and JPEG files under a folder, indexed once and decoded when read.

    Class subfolders become labels: the images under ``PATH/NAME/`` (at any depth) have the
    label of ``NAME`` among the subfolders in sorted order (``classes``); with no subfolders,
    every image directly in ``PATH`` has label 0. The index reads each file's header and checks
    its data (``PIL.Image.verify``), not its pixels. Examples are
    ``{"x": uint8 [H, W, C], "label": int32}`` with C = 1 when every image is grey, else 3.

    Args:
      path: the folder.
      split: the part to read (:func:`split_indices` over the sorted files).
      options: size, bad files and split (:class:`ImageOptions`).

    Raises:
      DataError: naming the file: no folder, no images, an unreadable image (unless skipped),
        images of different sizes without ``image_size``, images beside class subfolders.
    """

    def __init__(self, path, *, split: str = "train", options: ImageOptions = ImageOptions()):
        root = Path(path)
        if not root.is_dir():
            raise DataError(f"{root}: not a folder (folder:PATH needs a folder of PNG or JPEG images)")
        files, labels, self.classes = _index_files(root)
        files, labels, sizes, modes = _read_headers(files, labels, options.bad_images, root)
        if options.image_size is None:
            _check_one_size(files, sizes)
        keep = options.indices(split, len(files))
        self._files = [files[i] for i in keep]
        self._labels = np.asarray(labels, np.int32)[keep]
        self.channels = 1 if all(m in _GREY_MODES for m in modes) else 3
        self._size = options.image_size

    def __len__(self) -> int:
        return len(self._files)

    def __getitem__(self, index: int) -> Example:
        path = self._files[index]
        try:
            with Image.open(path) as image:
                x = _pixels(image, self.channels, self._size)
        except _UNREADABLE as e:
            raise DataError(f"{path}: cannot read the image ({e})") from e
        return {"x": x, "label": self._labels[index]}


def _image_files(folder: Path) -> list[Path]:
    """The image files at any depth under ``folder``, sorted, hidden ones left out."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _index_files(root: Path) -> tuple[list[Path], list[int], tuple[str, ...]]:
    """(files, labels, class names) of a folder: class subfolders, or images directly in it."""
    files = _image_files(root)
    if not files:
        raise DataError(f"{root}: no PNG or JPEG images under this folder")
    top = [p for p in files if p.parent == root]
    classes = tuple(sorted({p.relative_to(root).parts[0] for p in files if p.parent != root}))
    if classes and top:
        raise DataError(
            f"{top[0]}: an image directly in {root} beside class subfolders "
            f"({', '.join(classes[:3])}{', ...' if len(classes) > 3 else ''}); move it into one"
        )
    label = {name: i for i, name in enumerate(classes)}
    labels = [label[p.relative_to(root).parts[0]] if classes else 0 for p in files]
    return files, labels, classes


def _read_headers(files, labels, bad_images: str, root: Path):
    """Sizes and modes of the files, checking each one; unreadable ones raise or are skipped."""
    kept, kept_labels, sizes, modes, bad = [], [], [], [], []
    for path, label in zip(files, labels):
        try:
            with Image.open(path) as image:
                size, mode = image.size, image.mode
                image.verify()
        except _UNREADABLE as e:
            if bad_images == "error":
                raise DataError(
                    f"{path}: not a readable image ({type(e).__name__}: {e}); remove it, or "
                    f"leave such files out with config.data.bad_images='skip'"
                ) from e
            bad.append(path)
            continue
        kept.append(path)
        kept_labels.append(label)
        sizes.append(size)
        modes.append(mode)
    if bad:
        warnings.warn(f"{root}: skipped {len(bad)} unreadable image file(s), the first {bad[0]}")
    if not kept:
        raise DataError(f"{root}: none of its {len(files)} image files is readable")
    return kept, kept_labels, sizes, modes


def _check_one_size(files: Sequence[Path], sizes: Sequence[tuple[int, int]]) -> None:
    for path, size in zip(files, sizes):
        if size != sizes[0]:
            raise DataError(
                f"{path}: {size[0]}x{size[1]} pixels, but {files[0]} is {sizes[0][0]}x{sizes[0][1]}; "
                f"set config.data.image_size=N to resize and centre-crop every image to N x N"
            )


def npz_source(path, *, split: str = "train", options: ImageOptions = ImageOptions()) -> _ArraySource:
    """Images from a ``.npz`` file: ``images`` uint8 [N, H, W, C] (C = 1 or 3) or [N, H, W]
    (grey), and optionally ``labels``, N integers >= 0 (0 for every image when absent).

    Args:
      path: the ``.npz`` file (``np.savez``; nothing in it is unpickled).
      split: the part to read (:func:`split_indices`).
      options: size and split (:class:`ImageOptions`; ``bad_images`` does not apply).

    Raises:
      DataError: naming the file: unreadable, no ``images``, not uint8, not 3-D or 4-D, 2 or
        more than 3 channels, ``labels`` that are not one integer >= 0 per image.
    """
    path = Path(path)
    try:
        archive = np.load(path, allow_pickle=False)
        if isinstance(archive, np.lib.npyio.NpzFile):
            with archive:
                arrays = {k: archive[k] for k in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: cannot read it as a .npz file ({type(e).__name__}: {e})") from e
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: one array, not a .npz archive of named arrays; write it with np.savez(PATH, images=...)")
    images = arrays.get("images")
    if images is None:
        raise DataError(f"{path}: no array 'images' in it (it has: {', '.join(arrays) or 'nothing'})")
    channels = images.shape[-1] if images.ndim == 4 else 1
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or channels not in (1, 3):
        raise DataError(
            f"{path}: 'images' must be uint8 of shape [N, H, W, C] with C = 1 or 3, or "
            f"[N, H, W], got {images.dtype} {list(images.shape)}"
        )
    if images.ndim == 3:
        images = images[..., None]
    if len(images) == 0:
        raise DataError(f"{path}: 'images' holds no image")
    labels = arrays.get("labels", np.zeros(len(images), np.int32))
    if (
        labels.shape != (len(images),)
        or not np.issubdtype(labels.dtype, np.integer)
        or (labels.size and labels.min() < 0)
        or (labels.size and labels.max() > np.iinfo(np.int32).max)
    ):
        raise DataError(
            f"{path}: 'labels' must be {len(images)} integers >= 0, one per image, "
            f"got {labels.dtype} {list(labels.shape)}"
        )
    keep = options.indices(split, len(images))
    images, labels = images[keep], labels[keep].astype(np.int32)
    size = options.image_size
    if size is not None and images.shape[1:3] != (size, size) and len(images):
        mode = "L" if images.shape[-1] == 1 else "RGB"
        fitted = [_pixels(Image.fromarray(im.squeeze(-1) if mode == "L" else im), images.shape[-1], size) for im in images]
        images = np.stack(fitted)
    return _ArraySource(x=images, label=labels)


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
    name: str,
    *,
    split: str = "train",
    data_dir: str | None = None,
    download: bool = False,
    options: ImageOptions = ImageOptions(),
) -> Sequence[Example]:
    """Resolves a dataset name: a built-in one (:data:`BUILTIN_DATASETS`), ``folder:PATH``
    (:class:`ImageFolder`), ``npz:PATH`` (:func:`npz_source`) or a TFDS name.

    Args:
      name: the dataset.
      split: the split to read.
      data_dir, download: for a TFDS dataset (:func:`tfds_source`).
      options: for ``folder:`` and ``npz:`` (:class:`ImageOptions`).

    Raises:
      DataError: for an unknown name, a TFDS dataset that is not available (see
        :func:`tfds_source`), or a user's images that cannot be read, naming the file.
    """
    if not isinstance(name, str) or not name:
        raise DataError(f"dataset must be a non-empty name, got {name!r}")
    if name.startswith(FOLDER_PREFIX):
        return ImageFolder(name.removeprefix(FOLDER_PREFIX), split=split, options=options)
    if name.startswith(NPZ_PREFIX):
        return npz_source(name.removeprefix(NPZ_PREFIX), split=split, options=options)
    if name in BUILTIN_DATASETS:
        return BUILTIN_DATASETS[name](split)
    return tfds_source(name, split=split, data_dir=data_dir, download=download)


def config_source(data_config, *, split: str | None = None) -> Sequence[Example]:
    """The source that ``config.data`` names (its ``split`` unless ``split`` is given); fields a
    run saved before they existed take their defaults."""
    defaults = ImageOptions()
    options = ImageOptions(
        **{f.name: data_config.get(f.name, getattr(defaults, f.name)) for f in dataclasses.fields(ImageOptions)}
    )
    return load_source(
        data_config.dataset,
        split=data_config.split if split is None else split,
        data_dir=data_config.get("data_dir"),
        download=data_config.get("download", False),
        options=options,
    )


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
