"""Training runs for the comparison experiments, timed: the training of a workdir records its
wall time and this process's CPU time (compilation included) in ``timing.json``, summed over
interrupted and resumed sessions; once the run is complete a rerun reuses it and reports the
recorded times. On a shared machine the CPU time is the steadier of the two."""

from __future__ import annotations

import json
import time
from pathlib import Path

from jaxdiff import train


def timed_train(config, workdir, *, log=lambda _: None) -> dict:
    """Trains (or resumes) ``config`` in ``workdir``; returns its recorded
    ``{"seconds": wall, "cpu_seconds": cpu, "complete": True}``."""
    workdir = Path(workdir)
    timing = workdir / "timing.json"
    recorded = json.loads(timing.read_text()) if timing.is_file() else None
    if recorded and recorded["complete"]:
        return recorded
    recorded = recorded or {"seconds": 0.0, "cpu_seconds": 0.0, "complete": False}
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        train.train(config, workdir, log=log)
        recorded["complete"] = True
    finally:
        recorded["seconds"] += time.perf_counter() - wall
        recorded["cpu_seconds"] += time.process_time() - cpu
        if workdir.is_dir():
            timing.write_text(json.dumps(recorded) + "\n")
    return recorded
