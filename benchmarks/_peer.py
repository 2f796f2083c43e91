"""What the CPU benchmarks against diffusers share: the peer network, alternating timed rounds,
medians, and a description of the machine and its load.

Needs torch and diffusers beside jaxdiff (neither is a dependency of jaxdiff)::

    pip install torch==2.13.0 diffusers
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import jax
import numpy as np
import torch
from diffusers import UNet2DModel

from jaxdiff.models.convert import DDPM_CIFAR10_CONFIG


def diffusers_cifar10(*, seed: int = 0) -> UNet2DModel:
    """diffusers' ``UNet2DModel`` with the config of google/ddpm-cifar10-32, PyTorch's default
    random initialisation under ``seed``, and torch using every core of the machine."""
    torch.manual_seed(seed)
    torch.set_num_threads(os.cpu_count())
    return UNet2DModel(**DDPM_CIFAR10_CONFIG)


def to_nchw(x: np.ndarray) -> torch.Tensor:
    """An NHWC numpy batch as a contiguous NCHW torch tensor."""
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def alternate(runs: dict[str, Callable[[], object]], *, rounds: int, warmup: int):
    """Calls every run once per round, in turn, so that all see the same machine load; prints
    each round's times to stderr.

    Args:
      runs: name -> a callable that finishes its work before returning (block on JAX results).
      rounds: timed rounds.
      warmup: untimed rounds first.

    Returns:
      name -> the ``rounds`` wall-clock times in seconds.
    """
    for _ in range(warmup):
        for run in runs.values():
            run()
    times = {name: [] for name in runs}
    for i in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
        done = ", ".join(f"{name} {ts[-1]:.3f} s" for name, ts in times.items())
        print(f"round {i + 1}/{rounds}: {done}", file=sys.stderr, flush=True)
    return times


def summary(times) -> dict:
    """Median, minimum and maximum of wall-clock times, in seconds."""
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def machine() -> dict:
    """The processor, core count, load averages (1, 5, 15 min) and framework versions."""
    return {
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_avg": [round(load, 2) for load in os.getloadavg()],
        "jax": f"{jax.__version__} ({jax.default_backend()})",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def machine_line(info: dict) -> str:
    """:func:`machine` as one printed line."""
    load = ", ".join(f"{x:.2f}" for x in info["load_avg"])
    return (
        f"machine: {info['processor']}, {info['cpus']} CPUs, load average {load}; "
        f"jax {info['jax']}, torch {info['torch']} ({info['torch_threads']} threads)"
    )
