"""Several JAX processes training one model: start-up, agreeing to stop, failure of a peer.

``config.distributed`` (``configs/default.py``) describes the job. With ``initialize`` set,
:func:`initialize` calls ``jax.distributed.initialize`` (the coordinator address, the number
of processes and this one's id come from the config or are detected on TPU pods, SLURM, ...),
with cross-process CPU collectives over gloo, so that the same run works on one machine's
CPUs (``python -m jaxdiff.launch``) as on GPU hosts and TPU pods.

* **Stopping.** SIGTERM (a scheduler's preemption notice) or SIGINT to any process stops them
  all at the same step: JAX's preemption service spreads the notice and
  :meth:`StopSignals.should_stop` returns True in every process at one agreed step, where all
  save a checkpoint together.
* **A dead peer.** Each process sends heartbeats to the coordinator. When one dies, the others
  are stopped by JAX within ``heartbeat_timeout_seconds`` (at once if the coordinator,
  process 0, is the one that died) with the message "Terminating process because the JAX
  distributed service detected fatal errors. This most likely indicates that another task
  died", and exit non-zero; the checkpoints already complete on disk are untouched (orbax
  renames a checkpoint into place only when every process has written its part).
"""

from __future__ import annotations

import os
import signal
import socket
import time

import jax

__all__ = ["StartupError", "check_backend", "check_fields", "initialize", "is_primary", "StopSignals"]


class StartupError(RuntimeError):
    """JAX cannot start here: no backend for the platforms asked for (``JAX_PLATFORMS``), or
    the coordinator of a multi-process job cannot be reached. Not bad input of the command."""


def check_backend() -> None:
    """Starts JAX's backend (after :func:`initialize`, for a multi-process job).

    Raises:
      StartupError: in one line, when no backend starts (``JAX_PLATFORMS=tpu`` on a machine
        without a TPU).
    """
    try:
        jax.devices()
    except RuntimeError as e:
        platforms = os.environ.get("JAX_PLATFORMS")
        where = f" for JAX_PLATFORMS={platforms}" if platforms else ""
        raise StartupError(f"JAX cannot start a backend{where}: {str(e).splitlines()[0]}") from e


def _wait_for_coordinator(address: str, timeout: float) -> None:
    """Waits until something listens at ``address`` (process 0's coordinator), for at most
    ``timeout`` seconds; JAX itself would abort the process (exit 134) when it gives up."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=2).close()
            return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise StartupError(
                    f"config.distributed.coordinator_address={address} cannot be reached after "
                    f"{timeout:g} s ({e.strerror or e}); is process 0 running there?"
                ) from e
            time.sleep(0.2)


def check_fields(dist) -> None:
    """Checks ``config.distributed`` (whether or not ``initialize`` is set).

    Raises:
      ValueError: a bad ``coordinator_address`` (expected ``HOST:PORT``) or process numbers.
    """
    if dist is None:
        return
    address = dist.get("coordinator_address")
    host, _, port = (address or "").rpartition(":") if isinstance(address, str) else ("", "", "")
    if address is not None and not (host and port.isdigit()):
        raise ValueError(f"config.distributed.coordinator_address must be HOST:PORT, got {address!r}")
    num, pid = dist.get("num_processes"), dist.get("process_id")
    for name, value in (("num_processes", num), ("process_id", pid)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"config.distributed.{name} must be an integer or None, got {value!r}")
    if num is not None and num < 1:
        raise ValueError(f"config.distributed.num_processes must be >= 1, got {num}")
    if pid is not None and not 0 <= pid < (num if num is not None else pid + 1):
        raise ValueError(
            f"config.distributed.process_id must be in [0, num_processes={num}), got {pid}"
        )


def initialize(dist) -> None:
    """``jax.distributed.initialize`` as ``config.distributed`` says (nothing unless
    ``dist.initialize``; nothing if this process already joined a job). Must run before any
    JAX computation.

    Raises:
      ValueError: a bad ``coordinator_address`` (expected ``HOST:PORT``) or process numbers.
      StartupError: process 0's coordinator cannot be reached within
        ``initialization_timeout_seconds`` (checked by every other process).
    """
    check_fields(dist)
    if dist is None or not dist.get("initialize", False) or jax.distributed.is_initialized():
        return
    address = dist.get("coordinator_address")
    num, pid = dist.get("num_processes"), dist.get("process_id")
    timeout = dist.get("initialization_timeout_seconds", 300)
    if address is not None and pid:  # not the coordinator itself
        _wait_for_coordinator(address, timeout)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs = {"coordinator_address": address, "num_processes": num, "process_id": pid}
    jax.distributed.initialize(
        **{k: v for k, v in kwargs.items() if v is not None},
        heartbeat_timeout_seconds=dist.get("heartbeat_timeout_seconds", 100),
        initialization_timeout=timeout,
    )


def is_primary() -> bool:
    """Process 0: the one that writes logs, metrics, configs and sample grids."""
    return jax.process_index() == 0


class StopSignals:
    """SIGTERM and SIGINT as a request to save and stop, checked by the loop after every step.

    One process: the handlers set a flag. Several: SIGTERM is left to JAX's preemption
    notifier (installed by ``jax.distributed.initialize``), SIGINT is turned into SIGTERM, and
    :meth:`should_stop` is JAX's preemption sync point, True in every process at the same
    step. The previous handlers come back on exit.
    """

    def __init__(self):
        self.received: int | None = None
        self._previous = {}
        self._multi = jax.process_count() > 1

    def __enter__(self):
        signals = (signal.SIGINT,) if self._multi else (signal.SIGTERM, signal.SIGINT)
        for sig in signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self._multi:
            signal.raise_signal(signal.SIGTERM)  # to the preemption notifier
        else:
            self.received = signum

    def should_stop(self, step: int) -> bool:
        """Whether to save and stop after ``step``; every process must call it at every step."""
        if self._multi:
            from jax.experimental import multihost_utils

            if multihost_utils.reached_preemption_sync_point(step):
                self.received = signal.SIGTERM
        return self.received is not None

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
