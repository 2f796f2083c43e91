"""Starts N local JAX processes of one ``jaxdiff train`` run (tests, and one host with several GPUs).

::

    python -m jaxdiff.launch -n 2 [--cpu_devices 2 | --gpus_per_process 1] -- train --config digits_ddpm ...

Each process runs ``python -m jaxdiff train ...`` with ``--config.distributed.initialize=True``,
a coordinator on a free port of 127.0.0.1, ``num_processes=N`` and its ``process_id``. With
``--cpu_devices K`` each process computes on K simulated CPU devices (collectives between
processes over gloo); with ``--gpus_per_process G`` process ``i`` sees GPUs ``iG .. iG+G-1``.

SIGTERM or SIGINT to the launcher is passed on to every process as SIGTERM (they save at one
agreed step and stop). When a process fails, the launcher names it, gives the others
``--grace`` seconds to stop on their own (JAX stops them when a peer's heartbeats cease), then
kills what is left. The exit code is 0 when all succeed, else the first failure's (128 + the
signal number for a process ended by a signal).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

__all__ = ["free_port", "main"]


def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child_env(i: int, args) -> dict:
    env = dict(os.environ)
    if args.cpu_devices:
        env["JAX_PLATFORMS"] = "cpu"
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={args.cpu_devices}".strip()
    if args.gpus_per_process:
        g = args.gpus_per_process
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in range(i * g, (i + 1) * g))
    return env


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxdiff.launch", description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--num_processes", type=int, required=True)
    parser.add_argument("--cpu_devices", type=int, default=0, help="simulated CPU devices per process")
    parser.add_argument("--gpus_per_process", type=int, default=0)
    parser.add_argument("--grace", type=float, default=60.0, help="seconds before killing the rest")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- train [options]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.num_processes < 1:
        parser.error(f"-n must be a positive integer, got {args.num_processes}")
    if command[:1] != ["train"]:
        parser.error("the command must be `train ...` (after --); sample and eval run in one process")
    if args.cpu_devices and args.gpus_per_process:
        parser.error("give --cpu_devices or --gpus_per_process, not both")

    address = f"127.0.0.1:{free_port()}"
    procs = []
    for i in range(args.num_processes):
        flags = [
            "--config.distributed.initialize=True",
            f"--config.distributed.coordinator_address={address}",
            f"--config.distributed.num_processes={args.num_processes}",
            f"--config.distributed.process_id={i}",
        ]
        cmd = [sys.executable, "-m", "jaxdiff", *command, *flags]
        procs.append(subprocess.Popen(cmd, env=_child_env(i, args)))

    forwarded = []

    def forward(signum, frame):
        forwarded.append(signum)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)

    failed_at, code = None, 0
    while True:
        codes = [p.poll() for p in procs]  # poll every process, every time
        for i, c in enumerate(codes):
            if c not in (None, 0) and failed_at is None:
                code, failed_at = _exit_code(c), time.monotonic()
                if not forwarded:  # a failure, not a stop asked for
                        print(f"jaxdiff.launch: process {i} exited with code {code}; waiting up to "
                          f"{args.grace:.0f} s for the others to stop", file=sys.stderr, flush=True)
        if all(c is not None for c in codes):
            return code
        if failed_at is not None and time.monotonic() - failed_at > args.grace:
            for i, (p, c) in enumerate(zip(procs, codes)):
                if c is None:
                    print(f"jaxdiff.launch: killing process {i}", file=sys.stderr, flush=True)
                    p.kill()
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
