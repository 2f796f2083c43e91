"""Several JAX processes on this machine (gloo collectives over 127.0.0.1), and checkpoints that
move between device counts. Every process is a subprocess running `python -m jaxdiff train`."""

import functools
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxdiff import checkpoint, cli, launch, sharding, train

REPO = Path(__file__).resolve().parent.parent

# The toy MLP run of test_train, with FSDP on (so that checkpoints hold sharded arrays).
TINY = {
    "model.features": 16,
    "model.num_blocks": 1,
    "diffusion.num_timesteps": 20,
    "training.batch_size": 8,
    "training.log_every": 1,
    "training.checkpoint_every": 10,
    "training.keep_checkpoints": 10,
    "training.sample_every": 0,
    "sampling.num_samples": 0,
    "optim.warmup_steps": 2,
    "sharding.fsdp": True,
    "sharding.min_size": 64,
}


def _args(workdir, **overrides):
    fields = {**TINY, **{k.replace("__", "."): v for k, v in overrides.items()}}
    return ["train", "--config", "toy2d_ddpm", "--workdir", str(workdir),
            *(f"--config.{k}={v}" for k, v in fields.items())]


def _env(devices: int) -> dict:
    return {**os.environ, "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"}


_STARTS = itertools.count()


def _processes(n: int, devices: int, workdir, **overrides) -> list[subprocess.Popen]:
    """``n`` processes of one run (one: no ``jax.distributed``), ``devices`` CPU devices each,
    started directly; their outputs go to log files (read them with :func:`_finish`)."""
    address = f"127.0.0.1:{launch.free_port()}"
    procs = []
    for i in range(n):
        dist = [f"--config.distributed.{k}={v}" for k, v in
                {"initialize": True, "coordinator_address": address, "num_processes": n, "process_id": i}.items()]
        dist = dist if n > 1 else []
        log = open(f"{workdir}.{next(_STARTS)}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "jaxdiff", *_args(workdir, **overrides), *dist],
                                cwd=REPO, env=_env(devices), stdout=log, stderr=subprocess.STDOUT)
        proc.log = log
        procs.append(proc)
    return procs


def _finish(procs, timeout=180) -> list[tuple[int, str]]:
    """Waits for the processes; their exit codes and outputs."""
    out = []
    for p in procs:
        code = p.wait(timeout=timeout)
        p.log.close()
        out.append((code, Path(p.log.name).read_text()))
    return out


def _state(workdir, step=None):
    """The whole train state of a run's checkpoint ``step`` (the latest when None), on one device."""
    config = checkpoint.load_config(workdir)
    exp = train.build_experiment(config, data_shape=(2,))
    key = jax.random.PRNGKey(0)
    shapes = jax.eval_shape(functools.partial(train.initial_state, exp, rng=key), key)
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = sharding.abstract(shapes, jax.tree.map(lambda _: one, shapes))
    with ocp.CheckpointManager(Path(workdir) / "checkpoints") as manager:
        step = manager.latest_step() if step is None else step
        return step, manager.restore(step, args=ocp.args.StandardRestore(target))


def _assert_close(a, b, **tol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)


def _assert_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


_ONE_PROCESS_FOUR_DEVICES = r"""
import sys
from jaxdiff import cli
assert cli.main(sys.argv[1:-1]) == 0
workdir = sys.argv[sys.argv.index("--workdir") + 1]
assert cli.main(["sample", "--workdir", workdir, "--sampler", "ddim", "--steps", "10", "--num", "16",
                 "--output", sys.argv[-1]]) == 0
"""


def _wait_for_lines(path: Path, count: int, procs, timeout=120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and all(p.poll() is None for p in procs):
        if path.exists() and len(path.read_text().splitlines()) >= count:
            return
        time.sleep(0.01)
    raise AssertionError(f"{path} did not reach {count} lines")


@pytest.mark.slow
def test_two_processes_equal_one_sigterm_resumes_exactly_and_checkpoints_move(tmp_path):
    n = 20
    one, two, stopped = tmp_path / "1x4", tmp_path / "2x2", tmp_path / "stopped"
    # at once: 1 process x 4 devices (then DDIM samples on those 4 devices); 2 processes x 2
    # devices started by the launcher; 2 x 2 again, to be stopped by SIGTERM
    single = subprocess.Popen([sys.executable, "-c", _ONE_PROCESS_FOUR_DEVICES,
                               *_args(one, training__num_steps=n), str(tmp_path / "s4.npz")],
                              cwd=REPO, env=_env(4), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    launched = subprocess.Popen([sys.executable, "-m", "jaxdiff.launch", "-n", "2", "--cpu_devices", "2", "--",
                                 *_args(two, training__num_steps=n, sampling__num_samples=4)],
                                cwd=REPO, env=_env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    interrupted = _processes(2, 2, stopped, training__num_steps=n)
    _wait_for_lines(stopped / "metrics.jsonl", 1, interrupted)
    interrupted[1].send_signal(signal.SIGTERM)  # the non-primary: the primary must learn of it
    results = _finish(interrupted)
    assert [code for code, _ in results] == [128 + signal.SIGTERM] * 2, results[0][1][-3000:]
    k, _ = _state(stopped)
    assert 0 < k < n and f"saved checkpoint at step {k}" in results[0][1]
    assert "saved checkpoint" not in results[1][1]  # one voice: the primary's
    out = single.communicate(timeout=180)[0]
    assert single.returncode == 0, out[-3000:]
    stdout, stderr = launched.communicate(timeout=180)
    assert launched.returncode == 0, stderr[-3000:]

    # at once: the stopped run resumed; the 4-device (FSDP) checkpoint of step 10 resumed on
    # 2 devices
    moved = tmp_path / "moved"
    shutil.copytree(one, moved)
    shutil.rmtree(moved / "checkpoints" / str(n))
    resumed = _processes(2, 2, stopped, training__num_steps=n)
    resumed_moved = _processes(1, 2, moved, training__num_steps=n)
    outputs = _finish(resumed) + _finish(resumed_moved)
    for code, text in outputs:
        assert code == 0, text[-3000:]
    assert f"resuming from {moved / 'checkpoints' / '10'}" in outputs[-1][1]
    # meanwhile the 4-device checkpoint samples on this process's single device, identically
    assert jax.device_count() == 1
    assert cli.main(["sample", "--workdir", str(one), "--sampler", "ddim", "--steps", "10", "--num", "16",
                     "--output", str(tmp_path / "s1.npz")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "s1.npz")["samples"], np.load(tmp_path / "s4.npz")["samples"],
                               rtol=1e-5, atol=1e-6)

    # 2 x 2 == 1 x 4: the same global batches and keys, equal up to the order of float sums
    states = {name: _state(tmp_path / name) for name in ("1x4", "2x2", "stopped", "moved")}
    assert {step for step, _ in states.values()} == {n}
    _assert_close(states["2x2"][1], states["1x4"][1], rtol=1e-5, atol=1e-6)
    _assert_close(states["moved"][1], states["1x4"][1], rtol=1e-5, atol=1e-6)
    _assert_equal(states["stopped"][1], states["2x2"][1])  # SIGTERM and resume: bit for bit
    # the primary process alone logs and writes metrics and grids
    lines = [json.loads(s) for s in (two / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == list(range(n))
    assert stdout.count(f"done: step {n}") == 1 and stdout.count(f"step {n - 1}: loss") == 1
    assert sorted(p.name for p in (two / "samples").iterdir()) == [f"step_{n:07d}.png"]


@pytest.mark.slow
def test_a_killed_peer_stops_the_other_and_the_last_checkpoint_is_intact(tmp_path):
    workdir = tmp_path / "run"
    procs = _processes(2, 2, workdir, training__num_steps=100_000, training__checkpoint_every=5,
                       training__keep_checkpoints=2, distributed__heartbeat_timeout_seconds=10)
    _wait_for_lines(workdir / "metrics.jsonl", 12, procs)  # two checkpoints were started
    procs[1].kill()
    killed_at = time.time()
    code = procs[0].wait(timeout=90)
    waited = time.time() - killed_at
    (_, out), _ = _finish(procs)
    assert code != 0 and waited < 60, (code, waited)
    assert "another task died" in out, out[-3000:]
    # the newest complete checkpoint restores (here, on one device), and is a state of its step
    complete = checkpoint.Checkpointer(workdir / "checkpoints").steps()
    assert complete and complete[-1] % 5 == 0
    step, state = _state(workdir, complete[-1])
    assert int(state.step) == step


def test_bad_distributed_and_sharding_settings_are_one_line_errors(tmp_path, capsys):
    base = ["train", "--config", "toy2d_ddpm", "--workdir", str(tmp_path / "run")]
    bad = {
        "--config.distributed.coordinator_address=localhost": "coordinator_address must be HOST:PORT",
        "--config.distributed.process_id=2": "process_id must be in [0, num_processes=2)",
        "--config.sharding.model_parallel=3": "model_parallel=3 must divide the number of devices",
    }
    for flag, message in bad.items():
        dist = ["--config.distributed.initialize=True", "--config.distributed.num_processes=2"]
        assert cli.main([*base, flag, *(dist if "distributed" in flag else [])]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()
    with pytest.raises(SystemExit) as e:
        launch.main(["-n", "2", "--", "sample", "--workdir", str(tmp_path)])
    assert e.value.code == 2 and "the command must be `train" in capsys.readouterr().err
