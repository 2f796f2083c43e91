"""Writing outputs so that a user never finds a truncated file or loses an existing one.

Every output (samples ``.npz`` and PNG grids, evaluation JSON, FID statistics, run files) is
written by :func:`write_file`: into a temporary file in the same directory, flushed to disk,
then moved to its name in one step, so the final path holds either nothing or the whole file.
Without ``overwrite`` the move is ``os.link``, which fails if the name exists at that moment
(not only when the command started), so an existing file is never replaced. On any failure
(a full disk) the temporary file is removed and :class:`OutputWriteError` says what happened.

:func:`check_new_output` is the early check (before minutes of sampling): the directory exists
and is writable, and the file does not exist yet.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

import numpy as np

__all__ = ["PENDING", "OutputWriteError", "check_new_output", "write_file", "write_text", "write_npz_stream",
           "read_json_object"]


# The temporary files of the outputs being written now: a command stopped by a signal removes
# them (jaxdiff._command).
PENDING: set[Path] = set()


class OutputWriteError(OSError):
    """An output could not be written (a full disk, no permission): not bad input."""


def check_new_output(path, *, flag: str, overwrite: bool = False) -> Path:
    """Checks, before any computation, that ``path`` can be written.

    Raises:
      ValueError: naming ``flag`` when the file exists (and ``overwrite`` is False), its
        directory does not exist, or the directory is not writable.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a directory")
    if not overwrite and (path.exists() or path.is_symlink()):
        raise ValueError(f"{flag} {path} exists; not overwriting it (choose another {flag})")
    parent = path.parent
    if not parent.is_dir():
        raise ValueError(f"{flag} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: directory {parent} is not writable")
    return path


def _link_new(tmp: Path, path: Path) -> None:
    """``tmp`` becomes ``path`` only if ``path`` does not exist (atomically)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise ValueError(f"{path} exists; not overwriting it") from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        # a file system without hard links: claim the name exclusively, then fill it
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def write_file(path, write: Callable[[IO[bytes]], None], *, overwrite: bool = False) -> Path:
    """Writes a file atomically: ``write(f)`` fills a temporary binary file in the same
    directory, which then takes the name ``path`` (replacing an existing file only with
    ``overwrite``).

    Raises:
      ValueError: ``path`` exists and ``overwrite`` is False (checked at the moment of writing).
      OutputWriteError: the file could not be written; nothing is left behind.
    """
    path = Path(path)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise OutputWriteError(f"could not write {path}: {e.strerror or e}") from e
    tmp = Path(name)
    PENDING.add(tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_new(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and not isinstance(e, OutputWriteError):
            raise OutputWriteError(f"could not write {path}: {e.strerror or e}") from e
        raise
    finally:
        PENDING.discard(tmp)
    return path


def write_text(path, text: str, *, overwrite: bool = False) -> Path:
    """:func:`write_file` of UTF-8 text."""
    return write_file(path, lambda f: f.write(text.encode()), overwrite=overwrite)


def write_npz_stream(path, name: str, shape, dtype, chunks: Iterable[np.ndarray]) -> Path:
    """Writes an ``.npz`` holding one array ``name`` of ``shape`` and ``dtype`` (what
    ``np.load(path)[name]`` reads back), from ``chunks`` along its first axis, without holding
    the whole array: each chunk goes to the file as it comes. Atomic, like :func:`write_file`.

    Raises:
      ValueError: the chunks do not add up to ``shape``, or ``path`` exists.
      OutputWriteError: the file could not be written; nothing is left behind.
    """
    shape, dtype = tuple(shape), np.dtype(dtype)

    def write(f) -> None:
        rows = 0
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
                np.lib.format.write_array_header_2_0(member, header)
                for chunk in chunks:
                    chunk = np.ascontiguousarray(chunk, dtype)
                    if chunk.shape[1:] != shape[1:]:
                        raise ValueError(f"a chunk of shape {chunk.shape} for an array of shape {shape}")
                    member.write(chunk.tobytes())
                    rows += chunk.shape[0]
        if rows != shape[0]:
            raise ValueError(f"{rows} rows written for an array of shape {shape}")

    return write_file(path, write)


def read_json_object(path, *, what: str) -> dict:
    """The JSON object (a dict) in the file ``path``.

    Raises:
      FileNotFoundError: there is no such file.
      ValueError: one line naming the file (described as ``what``) when it cannot be read, is
        not UTF-8 JSON (truncated, say), or holds another JSON value than an object.
    """
    path = Path(path)
    try:
        value = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise
    except OSError as e:
        raise ValueError(f"{what} {path} cannot be read: {e.strerror or e}") from e
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        detail = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise ValueError(f"{what} {path} is not valid JSON ({detail})") from e
    if not isinstance(value, dict):
        raise ValueError(f"{what} {path} holds a JSON {type(value).__name__}, not an object")
    return value
