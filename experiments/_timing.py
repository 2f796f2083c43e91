"""Training runs for the comparison experiments, timed: the first training of a workdir records
its wall time (compilation included) in ``timing.json``; a rerun reuses or resumes the run and
reports the recorded time."""

from __future__ import annotations

import json
import time
from pathlib import Path

from jaxdiff import train


def timed_train(config, workdir, *, log=lambda _: None) -> float:
    """Trains (or resumes) ``config`` in ``workdir``; returns its recorded training seconds."""
    workdir = Path(workdir)
    timing = workdir / "timing.json"
    recorded = json.loads(timing.read_text())["seconds"] if timing.is_file() else None
    start = time.perf_counter()
    train.train(config, workdir, log=log)
    if recorded is None:
        recorded = time.perf_counter() - start
        timing.write_text(json.dumps({"seconds": recorded}) + "\n")
    return recorded
