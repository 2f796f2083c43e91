"""Reading weight files into ``{name: numpy array}`` without PyTorch, and without trusting them.

Used by :mod:`jaxdiff.metrics.inception` (pytorch-fid's Inception weights) and
:mod:`jaxdiff.models.convert` (diffusers U-Nets). Formats:

* ``torch.save`` files, zip (PyTorch >= 1.6) or legacy, by :func:`read_torch_state_dict`;
* safetensors, by :func:`read_safetensors`;
* ``.npz`` (read with ``allow_pickle=False``).

A weights file is untrusted input. Every pickle in a PyTorch file goes through an unpickler
that builds only tensors, their storages and ``OrderedDict`` (any other global, e.g. the
``os.system`` of a crafted ``__reduce__``, is refused before it is imported), and every tensor
record is checked against its storage (dtype, offset, sizes and strides in bounds, byte counts)
before a view is taken, so a crafted file gives a ``ValueError`` naming the record, never a
read outside the buffer.
"""

from __future__ import annotations

import collections
import io
import json
import math
import pickle
import zipfile
from pathlib import Path
from typing import NamedTuple

import ml_dtypes
import numpy as np

__all__ = ["UnsafeFileError", "read_torch_state_dict", "read_safetensors", "load_state_dict"]


class UnsafeFileError(ValueError):
    """A weights file that is malformed or asks for something a state dict never needs."""


class _Storage:
    """A tensor storage of a PyTorch checkpoint: its dtype now, its elements once read."""

    def __init__(self, dtype: np.dtype, key: str, numel: int):
        self.dtype, self.key, self.numel, self.array = dtype, key, numel, None


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


class _LazyTensor(NamedTuple):
    storage: _Storage
    offset: int
    size: tuple
    stride: tuple

    def materialize(self, name: str) -> np.ndarray:
        """The tensor as a new array, after checking that every element it addresses lies in
        its storage."""
        where = f"tensor {name!r}"
        if not isinstance(self.storage, _Storage):
            raise UnsafeFileError(f"{where}: its storage is not a storage record")
        array = self.storage.array
        if array is None:
            raise UnsafeFileError(f"{where}: its storage {self.storage.key!r} has no data")
        if not (_is_int(self.offset) and self.offset >= 0):
            raise UnsafeFileError(f"{where}: bad storage offset {self.offset!r}")
        if len(self.size) != len(self.stride) or not all(
            _is_int(v) and v >= 0 for v in (*self.size, *self.stride)
        ):
            raise UnsafeFileError(
                f"{where}: sizes {self.size!r} and strides {self.stride!r} must be equally many "
                f"non-negative ints"
            )
        if math.prod(self.size) == 0:
            return np.zeros(self.size, array.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if last >= array.size:
            raise UnsafeFileError(
                f"{where}: sizes {self.size} with strides {self.stride} at offset {self.offset} "
                f"reach element {last}, but its storage holds {array.size}"
            )
        itemsize = array.dtype.itemsize
        strides = tuple(s * itemsize for s in self.stride)
        view = np.lib.stride_tricks.as_strided(array[self.offset :], self.size, strides)
        return view.copy()


def _rebuild_tensor(storage, offset, size, stride, *unused):
    if not (isinstance(size, tuple | list) and isinstance(stride, tuple | list)):
        raise UnsafeFileError(f"a tensor record has sizes {size!r} and strides {stride!r}")
    return _LazyTensor(storage, offset, tuple(size), tuple(stride))


_TORCH_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _DataUnpickler(pickle.Unpickler):
    """Plain data only (numbers, strings, lists, tuples, dicts): every global is refused."""

    def find_class(self, module, name):
        raise UnsafeFileError(f"refusing to load {module}.{name} from a weights file")

    def persistent_load(self, pid):
        raise UnsafeFileError("unexpected persistent record in a weights file")


class _TorchUnpickler(_DataUnpickler):
    """A PyTorch state dict into :class:`_LazyTensor` leaves: only the few globals a state dict
    uses are allowed (nothing else is imported or run)."""

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
        return super().find_class(module, name)

    def persistent_load(self, pid):
        # ("storage", dtype, key, location, numel[, view metadata])
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise UnsafeFileError(f"unsupported persistent record {str(pid)[:60]} in a PyTorch file")
        if len(pid) > 5 and pid[5] is not None:
            raise UnsafeFileError("storage views are not supported in a PyTorch state dict")
        dtype, key, numel = pid[1], str(pid[2]), pid[4]
        if not isinstance(dtype, np.dtype) or not _is_int(numel) or numel < 0:
            raise UnsafeFileError(f"storage {key!r}: bad dtype {dtype!r} or size {numel!r}")
        if key not in self._storages:
            self._storages[key] = _Storage(dtype, key, numel)
        elif self._storages[key].dtype != dtype:
            raise UnsafeFileError(f"storage {key!r} is declared with two dtypes")
        return self._storages[key]


def _elements(buffer: bytes, storage: _Storage, path) -> np.ndarray:
    want = storage.numel * storage.dtype.itemsize
    if len(buffer) != want:
        raise UnsafeFileError(
            f"{path}: storage {storage.key!r} has {len(buffer)} bytes, its record says {want}"
        )
    return np.frombuffer(buffer, storage.dtype.newbyteorder("<"))


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _read_zip(path: Path, storages: dict):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkls = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkls) != 1:
            raise UnsafeFileError(f"{path}: expected one data.pkl in the archive, found {len(pkls)}")
        prefix = pkls[0][: -len("data.pkl")]
        tree = _TorchUnpickler(io.BytesIO(archive.read(pkls[0])), storages).load()
        for s in storages.values():
            name = f"{prefix}data/{s.key}"
            if name not in names:
                raise UnsafeFileError(f"{path}: storage {s.key!r} is missing from the archive")
            s.array = _elements(archive.read(name), s, path)
    return tree


def _read_legacy(path: Path, storages: dict):
    with open(path, "rb") as f:
        try:
            magic = _DataUnpickler(f).load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
            if isinstance(e, UnsafeFileError):
                raise
            raise UnsafeFileError(f"{path} is not a PyTorch file (zip or legacy pickle)") from e
        if magic != _LEGACY_MAGIC:
            raise UnsafeFileError(f"{path} is not a PyTorch file (zip or legacy pickle)")
        _DataUnpickler(f).load()  # protocol version
        _DataUnpickler(f).load()  # system info
        tree = _TorchUnpickler(f, storages).load()
        keys = _DataUnpickler(f).load()
        if not isinstance(keys, list):
            raise UnsafeFileError(f"{path}: the storage key list is {type(keys).__name__}")
        for key in keys:
            s = storages.get(str(key))
            if s is None:
                raise UnsafeFileError(f"{path}: data for storage {key!r}, which no tensor uses")
            header = f.read(8)
            if len(header) != 8:
                raise UnsafeFileError(f"{path}: truncated at storage {key!r}")
            numel = int(np.frombuffer(header, "<i8")[0])
            if numel != s.numel:
                raise UnsafeFileError(
                    f"{path}: storage {key!r} holds {numel} elements, its record says {s.numel}"
                )
            s.array = _elements(f.read(numel * s.dtype.itemsize), s, path)
    return tree


def read_torch_state_dict(path) -> dict[str, np.ndarray]:
    """Reads a PyTorch ``state_dict`` file (``torch.save``, zip or legacy format) into NumPy
    arrays, without PyTorch and without running code from the file.

    Raises:
      UnsafeFileError: (a ``ValueError``) for a file that is not a state dict of tensors, asks
        for any other Python object, or has a tensor that reaches outside its storage.
    """
    path = Path(path)
    storages: dict[str, _Storage] = {}
    try:
        tree = (_read_zip if zipfile.is_zipfile(path) else _read_legacy)(path, storages)
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, TypeError) as e:
        raise UnsafeFileError(f"{path}: not a readable PyTorch state dict ({e})") from e
    if not isinstance(tree, dict):
        raise UnsafeFileError(f"{path}: holds a {type(tree).__name__}, not a state dict")
    return {str(k): v.materialize(k) for k, v in tree.items() if isinstance(v, _LazyTensor)}


_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
    "BOOL": np.bool_,
}  # fmt: skip


def read_safetensors(path) -> dict[str, np.ndarray]:
    """Reads a safetensors file (an 8-byte little-endian header length, a JSON header of
    ``{name: {dtype, shape, data_offsets}}``, then the bytes) into NumPy arrays; every record's
    byte range is checked against its shape and the file. Half-precision tensors (``F16``,
    ``BF16``, as most diffusers checkpoints ship) keep their dtype (``BF16`` is
    ``ml_dtypes.bfloat16``).

    Raises:
      UnsafeFileError: for a header that is not a JSON object of records (a list, a number,
        nesting too deep to parse) or a record out of bounds.
    """
    path = Path(path)
    raw = path.read_bytes()
    if len(raw) < 8:
        raise UnsafeFileError(f"{path}: too short for a safetensors file")
    n = int.from_bytes(raw[:8], "little")
    if n > len(raw) - 8:
        raise UnsafeFileError(f"{path}: header of {n} bytes in a file of {len(raw)}")
    try:
        header = json.loads(raw[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        detail = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise UnsafeFileError(f"{path}: the safetensors header is not JSON ({detail})") from e
    if not isinstance(header, dict):
        raise UnsafeFileError(
            f"{path}: the safetensors header is a JSON {type(header).__name__}, not an object "
            f"of tensor records"
        )
    data = memoryview(raw)[8 + n :]
    out = {}
    for name, rec in header.items():
        if name == "__metadata__":
            continue
        try:
            if not isinstance(rec, dict):
                raise TypeError(f"a {type(rec).__name__}")
            dtype = np.dtype(_SAFETENSORS_DTYPES[rec["dtype"]])
            shape = tuple(rec["shape"])
            begin, end = rec["data_offsets"]
        except (KeyError, TypeError, ValueError) as e:
            raise UnsafeFileError(f"{path}: bad record for tensor {name!r} ({e})") from e
        ints = all(_is_int(v) and v >= 0 for v in (*shape, begin, end))
        if not ints or end - begin != math.prod(shape) * dtype.itemsize or end > len(data):
            raise UnsafeFileError(
                f"{path}: tensor {name!r} ({rec['dtype']} {list(shape)}) has bytes "
                f"[{begin}, {end}) of {len(data)}"
            )
        out[name] = np.frombuffer(data[begin:end], dtype.newbyteorder("<")).reshape(shape).copy()
    return out


def load_state_dict(path) -> dict[str, np.ndarray]:
    """A state dict from ``.safetensors``, ``.npz`` (no pickles) or a PyTorch file (``.pth``,
    ``.bin``, ``.pt``, anything else)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        except (ValueError, OSError, zipfile.BadZipFile) as e:
            raise UnsafeFileError(f"{path}: not a readable .npz of arrays ({e})") from e
    return read_torch_state_dict(path)
