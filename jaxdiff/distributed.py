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

import signal

import jax

__all__ = ["initialize", "is_primary", "StopSignals"]


def initialize(dist) -> None:
    """``jax.distributed.initialize`` as ``config.distributed`` says (nothing unless
    ``dist.initialize``; nothing if this process already joined a job). Must run before any
    JAX computation.

    Raises:
      ValueError: a bad ``coordinator_address`` (expected ``HOST:PORT``) or process numbers.
    """
    if dist is None or not dist.get("initialize", False) or jax.distributed.is_initialized():
        return
    address = dist.get("coordinator_address")
    host, _, port = (address or "").rpartition(":")
    if address is not None and not (host and port.isdigit()):
        raise ValueError(f"config.distributed.coordinator_address must be HOST:PORT, got {address!r}")
    num, pid = dist.get("num_processes"), dist.get("process_id")
    if num is not None and pid is not None and not 0 <= pid < num:
        raise ValueError(
            f"config.distributed.process_id must be in [0, num_processes={num}), got {pid}"
        )
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs = {"coordinator_address": address, "num_processes": num, "process_id": pid}
    jax.distributed.initialize(
        **{k: v for k, v in kwargs.items() if v is not None},
        heartbeat_timeout_seconds=dist.get("heartbeat_timeout_seconds", 100),
        initialization_timeout=dist.get("initialization_timeout_seconds", 300),
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
