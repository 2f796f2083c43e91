"""A run directory has one writer, and a run writes only inside its directory.

* :class:`WorkdirLock`: ``jaxdiff train`` holds an exclusive ``flock`` on ``WORKDIR/lock``
  while it runs, as a database holds its single-writer lock. A second writer is refused at once
  with a :class:`WorkdirBusyError` naming the first one's host and pid (recorded in the file).
  The kernel releases the lock when its holder dies, however it dies (SIGKILL included), so a
  lock left by a dead process is free by construction: there is no liveness check that could
  race with a new holder, and no stale file to delete. Readers (``jaxdiff sample``, ``eval``)
  take no lock: checkpoints become visible only when complete (orbax renames them into place),
  and the run's JSON files are replaced atomically.
* :func:`check_contained`: no symbolic link inside the workdir leads out of it, checked before
  a run writes anything; the files a run appends to are also opened without following a link
  (:func:`open_append`), so a link made later is refused rather than followed.

Like every ``flock``, the lock is advisory and per host: a workdir on a network file system
shared by several hosts is protected only if that file system implements ``flock``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import IO

__all__ = [
    "LOCK_FILE",
    "WorkdirBusyError",
    "UnsafeWorkdirError",
    "WorkdirLock",
    "check_contained",
    "open_append",
]

LOCK_FILE = "lock"


class WorkdirBusyError(ValueError):
    """Another process is writing to the workdir (a training running there)."""


class UnsafeWorkdirError(ValueError):
    """The workdir holds a symbolic link that would make a run write outside it."""


class WorkdirLock:
    """The single-writer lock of a workdir, held from ``__enter__`` (or :meth:`acquire`) to
    ``__exit__`` (or :meth:`release`), and released by the kernel if the process dies.

    Raises (from :meth:`acquire`):
      WorkdirBusyError: another process (or another ``WorkdirLock`` in this one) holds it.
      UnsafeWorkdirError: ``WORKDIR/lock`` is a symbolic link.
    """

    def __init__(self, workdir):
        self.path = Path(workdir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise UnsafeWorkdirError(f"{self.path} is a symbolic link; remove it") from e
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise WorkdirBusyError(
                f"workdir {self.path.parent} is being written by another training ({holder}); "
                f"wait for it to end or stop it, or use another --workdir"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Releases the lock (the file stays: deleting it would let two processes lock two
        different files of the same name)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> WorkdirLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _holder(fd: int) -> str:
    """``host H, pid P`` of the lock's holder, from the file (it writes them right after
    locking, so a moment's wait covers a holder that has just started)."""
    for _ in range(20):
        try:
            info = json.loads(os.pread(fd, 4096, 0) or b"null")
            return f"host {info['host']}, pid {info['pid']}, since {info['since']}"
        except (ValueError, TypeError, KeyError):
            time.sleep(0.05)
    return "host and pid not recorded"


def check_contained(workdir) -> None:
    """Checks that no symbolic link inside ``workdir`` resolves to a place outside it (a link
    that stays inside is allowed); nothing to check when ``workdir`` does not exist yet.

    Raises:
      UnsafeWorkdirError: naming the first such link and its target.
    """
    workdir = Path(workdir)
    if not workdir.is_dir():
        return
    root = workdir.resolve()
    for parent, dirs, files in os.walk(workdir):  # does not descend into linked folders
        for name in (*dirs, *files):
            path = Path(parent) / name
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                raise UnsafeWorkdirError(
                    f"{path} is a symbolic link out of the workdir (to {os.readlink(path)}); a run "
                    f"writes only inside its workdir: remove the link, or use another --workdir"
                )


def open_append(path) -> IO[str]:
    """``open(path, "a")`` (readable too, with ``os.pread`` on its descriptor), refusing to
    follow a symbolic link at ``path``.

    Raises:
      UnsafeWorkdirError: ``path`` is a symbolic link.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnsafeWorkdirError(f"{path} is a symbolic link; a run does not write through one") from e
        raise
    return os.fdopen(fd, "a")
