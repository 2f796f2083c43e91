"""What the ``jaxdiff`` command sets up process-wide, so that every way it ends is one line.

* **Signals.** Python acts on SIGINT and SIGTERM only between bytecodes of the main thread:
  not while XLA compiles or computes (a sampling ran 155 s on after Ctrl-C; a
  ``KeyboardInterrupt`` unwinding through a compilation gave a traceback, then a segmentation
  fault). Here CPython's C-level handler writes the signal's number to a wake-up pipe at once,
  and a watcher thread reading it removes the temporaries of outputs being written
  (:data:`jaxdiff._io.PENDING`), prints one line and ends the process with code 128 + N
  within moments, whatever the main thread is doing. Where the command has put a handler of its
  own in place (the training loop, which saves a checkpoint at the next step), the first signal
  is left to that handler and a second one ends the process the same way.
* **Background errors.** Exceptions in other threads (orbax's and tensorstore's writers
  calling into an event loop that a failed save has closed, TensorBoard's writer) are the main
  thread's to report: it sees the failure (a save's ``wait``) and says it in one line. They are
  not printed; one that the main thread never saw turns a success into one line and exit 1.
  Exceptions that Python itself calls ignored (in a ``__del__``) are not printed either.
* **Warnings** (a checkpoint skipped as unreadable, a compilation cache entry that a full disk
  refused) are one line each too, ``jaxdiff CMD: warning: ...``, without the source line.

``JAXDIFF_DEBUG=1`` keeps Python's own reporting, tracebacks included.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import warnings

from jaxdiff._io import PENDING

__all__ = ["install", "background_error", "DEBUG"]

DEBUG = bool(os.environ.get("JAXDIFF_DEBUG"))
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_background: list[BaseException] = []


def background_error() -> BaseException | None:
    """The first exception raised in a thread other than the main one, if any."""
    return _background[0] if _background else None


def _note(signum, frame) -> None:
    """The Python-level handler: nothing to do, the watcher acts (it must exist for CPython
    to write the wake-up byte)."""


def _exit(command: str, signum: int) -> None:
    for path in list(PENDING):  # outputs being written: their temporaries go
        try:
            os.unlink(path)
        except OSError:
            pass
    name = signal.Signals(signum).name
    os.write(2, f"jaxdiff {command}: stopped by {name}; no file was left half-written\n".encode())
    os._exit(128 + signum)


def _watch(command: str, read_fd: int) -> None:
    deferred = False
    while True:
        data = os.read(read_fd, 1)
        if not data:
            return
        signum = data[0]
        if signum not in _STOP_SIGNALS:
            continue
        if signal.getsignal(signum) is not _note and not deferred:
            deferred = True  # the command's own handler acts on the first one
            continue
        _exit(command, signum)


def _record(error: BaseException | None) -> None:
    if error is not None and not _background:
        _background.append(error)


def install(command: str) -> None:
    """Sets up signals and background errors for the command ``command`` (call it from the
    main thread, once, before the work starts)."""
    if DEBUG:
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    for sig in _STOP_SIGNALS:
        signal.signal(sig, _note)
    threading.Thread(target=_watch, args=(command, read_fd), name="jaxdiff-signals", daemon=True).start()

    main = threading.main_thread()
    previous = sys.excepthook

    def excepthook(kind, value, tb):  # PyErr_Print from a C++ thread lands here
        if threading.current_thread() is main:
            previous(kind, value, tb)
        else:
            _record(value)

    sys.excepthook = excepthook
    threading.excepthook = lambda args: _record(args.exc_value)
    sys.unraisablehook = lambda unraisable: None  # "Exception ignored in ...": ignored
    warnings.formatwarning = lambda message, *args, **kwargs: (
        f"jaxdiff {command}: warning: {str(message).strip().splitlines()[0]}\n"
    )
