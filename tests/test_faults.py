"""Fault injection: hostile files, full disks, read-only folders, concurrent runs, signals and
kills, each case with its stated expectation (issue 24). The promises checked:

* every failure is one line on stderr (no traceback), exit code 2 for input and 1 otherwise,
  and nothing half-written;
* a workdir has one writer, and a run writes only inside its workdir;
* a run killed at any moment resumes to the bit-identical result of the uninterrupted run.

Run with ``-s`` to see the totals (cases, kills, resumes bitwise equal, files outside the
workdir touched, tracebacks seen by the user); the slow cases are marked ``slow`` (CI runs
them).
"""

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from jaxdiff import checkpoint, cli, state_dict
from jaxdiff import workdir as workdir_lib
from jaxdiff.metrics import fid, frechet
from jaxdiff.models import convert
from jaxdiff.state_dict import UnsafeFileError

REPO = Path(__file__).resolve().parent.parent
TOY = str(REPO / "configs" / "toy2d_ddpm.py")
TINY = ["--config.model.features=16", "--config.model.num_blocks=1", "--config.diffusion.num_timesteps=20",
        "--config.training.batch_size=8", "--config.training.num_steps=2", "--config.training.checkpoint_every=2",
        "--config.training.sample_every=0", "--config.sampling.num_samples=0"]

TOTALS = {"cases": 0, "kills": 0, "resumes bitwise equal": 0, "files outside the workdir touched": 0,
          "tracebacks seen by the user": 0}


@pytest.fixture(scope="module", autouse=True)
def _totals():
    yield
    print("\nfault-injection totals: " + ", ".join(f"{k} {v}" for k, v in TOTALS.items()))


def _cli(capsys, argv) -> tuple[int, str]:
    """Runs ``jaxdiff ARGV`` in this process: (exit code, stderr)."""
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err.strip()


def expect_one_line(code: int, err: str, *, exit_code: int, fragment: str) -> str:
    """The case's expectation: exit ``exit_code``, one line on stderr holding ``fragment``."""
    TOTALS["cases"] += 1
    TOTALS["tracebacks seen by the user"] += "Traceback" in err
    assert code == exit_code, err
    assert len(err.splitlines()) == 1, err
    assert fragment in err, err
    return err


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A two-step toy run (DDPM on the swiss roll) to sample, evaluate and damage copies of."""
    workdir = tmp_path_factory.mktemp("toy") / "run"
    assert cli.main(["train", "--config", TOY, "--workdir", str(workdir), *TINY]) == 0
    return workdir


# --- defect 9 and 11: a run's files and the config files ------------------------------------------


@pytest.mark.parametrize(
    "content, fragment",
    [("[1, 2]", "holds a JSON list, not an object"), ('{"name": "toy', "is not valid JSON")],
    ids=["a JSON list", "truncated"],
)
def test_a_damaged_config_json_is_one_line_naming_the_file(capsys, toy_run, tmp_path, content, fragment):
    """Expectation: sample and resume refuse in one line, exit 2, naming WORKDIR/config.json;
    nothing is written."""
    import shutil

    workdir = tmp_path / "run"
    shutil.copytree(toy_run, workdir)
    (workdir / "config.json").write_text(content)
    before = sorted(p.name for p in workdir.rglob("*"))
    err = expect_one_line(*_cli(capsys, ["sample", "--workdir", str(workdir), "--num", "2"]),
                          exit_code=2, fragment=fragment)
    assert str(workdir / "config.json") in err
    err = expect_one_line(*_cli(capsys, ["train", "--workdir", str(workdir)]), exit_code=2, fragment=fragment)
    assert sorted(p.name for p in workdir.rglob("*")) == before


def test_config_files_that_mislead_no_more(capsys, tmp_path):
    """Expectation: a non-.py config says so; a shipped config copied elsewhere loads; the
    U-Net's width 0 names config.model.ch (not GroupNorm)."""
    (tmp_path / "c.txt").write_text("def get_config(): pass\n")
    expect_one_line(*_cli(capsys, ["train", "--config", str(tmp_path / "c.txt")]), exit_code=2,
                    fragment="a config is a Python file ending in .py")
    copy = tmp_path / "mine.py"
    copy.write_text((REPO / "configs" / "digits_edm.py").read_text())
    assert cli.load_config_file(str(copy)).diffusion.kind == "edm"
    expect_one_line(*_cli(capsys, ["train", "--workdir", str(tmp_path / "w"), "--config.model.ch=0"]),
                    exit_code=2, fragment="config.model.ch must be an integer >= 1, got 0")
    assert not (tmp_path / "w").exists()


# --- defect 6: a sampler that does not fit the run's process -------------------------------------


def test_a_sampler_that_does_not_fit_the_process_is_one_line(capsys, toy_run, tmp_path):
    """Expectation: a DDPM run sampled with langevin, and an NCSN config trained with ddim, are
    refused before any work, exit 2, with the samplers that fit."""
    expect_one_line(*_cli(capsys, ["sample", "--workdir", str(toy_run), "--sampler", "langevin",
                                   "--output", str(tmp_path / "s.npz")]),
                    exit_code=2, fragment="sampler=langevin does not fit this run's process (config.diffusion.kind=ddpm)")
    expect_one_line(*_cli(capsys, ["train", "--config", "digits_ncsn", "--workdir", str(tmp_path / "w"),
                                   "--config.sampling.sampler=ddim"]),
                    exit_code=2, fragment="config.sampling.sampler=ddim does not fit this run's process")
    assert not list(tmp_path.iterdir())


# --- defect 7: FID inputs, checked before any work -----------------------------------------------


def test_fid_inputs_are_checked_before_any_work(capsys, toy_run, tmp_path, monkeypatch):
    """Expectation: a file that is not a zip, and statistics whose mu [5] and sigma [3, 3]
    disagree, are one line exit 2; missing Inception weights are found before the evaluation
    starts (it is never called); an unknown stats dataset is named as such."""
    from jaxdiff import evaluate

    def never(*args, **kwargs):
        raise AssertionError("the evaluation started")

    monkeypatch.setattr(evaluate, "evaluate_run", never)
    monkeypatch.setenv("JAXDIFF_FID_WEIGHTS", str(tmp_path / "no_weights.pth"))
    prefix = ["eval", "--workdir", str(toy_run), "--num_samples", "4", "--output", str(tmp_path / "e.json")]
    (tmp_path / "zip.npz").write_bytes(b"not a zip at all")
    expect_one_line(*_cli(capsys, [*prefix, "--fid_stats", str(tmp_path / "zip.npz")]), exit_code=2,
                    fragment="is not an .npz of FID statistics")
    np.savez(tmp_path / "shapes.npz", mu=np.zeros(5), sigma=np.eye(3))
    expect_one_line(*_cli(capsys, [*prefix, "--fid_stats", str(tmp_path / "shapes.npz")]), exit_code=2,
                    fragment="mu [5] and sigma [3, 3] are not the mean [D] and covariance [D, D]")
    np.savez(tmp_path / "ok.npz", mu=np.zeros(3), sigma=np.eye(3))
    expect_one_line(*_cli(capsys, [*prefix, "--fid_stats", str(tmp_path / "ok.npz")]), exit_code=2,
                    fragment="FID Inception weights not found")
    expect_one_line(*_cli(capsys, ["stats", "--dataset", "no_such_set", "--output", str(tmp_path / "st.npz")]),
                    exit_code=2, fragment="unknown dataset 'no_such_set'")
    assert not (tmp_path / "e.json").exists() and not (tmp_path / "st.npz").exists()


def test_fid_statistics_read_back_exactly(tmp_path):
    mu, sigma = np.arange(3.0), np.diag([1.0, 2.0, 3.0])
    np.savez(tmp_path / "s.npz", mu=mu, sigma=sigma, num=7)
    stats = frechet.load_statistics(tmp_path / "s.npz")
    np.testing.assert_array_equal(stats.mu, mu)
    np.testing.assert_array_equal(stats.sigma, sigma)
    assert stats.num == 7
    with pytest.raises(FileNotFoundError):
        fid.weights_path(tmp_path / "absent.pth")


# --- defect 10: weight files through the library -------------------------------------------------


def _safetensors(header: bytes, data: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + data


@pytest.mark.parametrize(
    "header",
    [b"[1,2,3]", b"42", b"[" * 100_000 + b"]" * 100_000, b'{"w": [1, 2]}', b'{"w": "F32"}'],
    ids=["a list", "a number", "deeply nested", "a record that is a list", "a record that is a string"],
)
def test_a_safetensors_header_that_is_not_an_object_is_unsafe(tmp_path, header):
    """Expectation: the documented UnsafeFileError (a ValueError), never AttributeError or
    RecursionError."""
    TOTALS["cases"] += 1
    (tmp_path / "w.safetensors").write_bytes(_safetensors(header))
    with pytest.raises(UnsafeFileError, match="w.safetensors"):
        state_dict.read_safetensors(tmp_path / "w.safetensors")


def test_half_precision_safetensors_read_exactly(tmp_path):
    """F16 and BF16 tensors, as diffusers checkpoints ship, read exactly. The bytes are written
    by hand from the formats' bit layouts: IEEE binary16 (1.0 = 0x3C00, -2.0 = 0xC000,
    0.5 = 0x3800) and bfloat16, the upper half of a float32 (1.5 = 0x3FC0, -0.15625 = 0xBE20)."""
    f16 = struct.pack("<3H", 0x3C00, 0xC000, 0x3800)
    bf16 = struct.pack("<2H", 0x3FC0, 0xBE20)
    header = json.dumps({
        "h": {"dtype": "F16", "shape": [3], "data_offsets": [0, 6]},
        "b": {"dtype": "BF16", "shape": [2, 1], "data_offsets": [6, 10]},
    }).encode()
    (tmp_path / "w.safetensors").write_bytes(_safetensors(header, f16 + bf16))
    out = state_dict.read_safetensors(tmp_path / "w.safetensors")
    assert out["h"].dtype == np.float16 and out["b"].dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(out["h"].astype(np.float32), [1.0, -2.0, 0.5])
    np.testing.assert_array_equal(out["b"].astype(np.float32), [[1.5], [-0.15625]])


def test_load_diffusers_with_a_config_that_is_not_an_object(tmp_path):
    TOTALS["cases"] += 1
    (tmp_path / "config.json").write_text("[1, 2]")
    (tmp_path / "diffusion_pytorch_model.safetensors").write_bytes(_safetensors(b"{}"))
    with pytest.raises(ValueError, match=r"config.json holds a JSON list, not an object"):
        convert.load_diffusers(tmp_path)


def test_load_config_names_the_file(tmp_path):
    (tmp_path / "config.json").write_text('{"a": ')
    with pytest.raises(checkpoint.IncompatibleWorkdirError, match="config.json is not valid JSON"):
        checkpoint.load_config(tmp_path)


# --- defect 1: one writer per workdir ------------------------------------------------------------


def _copy(run: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, tmp_path / "run", symlinks=True))


def _tree(path: Path) -> dict:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_a_second_writer_is_refused_and_readers_go_on(capsys, toy_run, tmp_path):
    """Expectation: while a writer holds the workdir, ``train`` there is refused in one line,
    exit 2, naming the writer's host and pid, and changes nothing; ``sample`` works beside it."""
    workdir = _copy(toy_run, tmp_path)
    with workdir_lib.WorkdirLock(workdir):  # as a running training holds it
        before = _tree(workdir)
        err = expect_one_line(*_cli(capsys, ["train", "--workdir", str(workdir), "--config.training.num_steps=4"]),
                              exit_code=2, fragment="is being written by another training")
        assert f"host {socket.gethostname()}, pid {os.getpid()}" in err
        assert _tree(workdir) == before
        code, err = _cli(capsys, ["sample", "--workdir", str(workdir), "--num", "4", "--output", str(tmp_path / "s.npz")])
        assert code == 0 and not err, err
    assert cli.main(["train", "--workdir", str(workdir), "--config.training.num_steps=4"]) == 0  # free again
    assert checkpoint.Checkpointer(workdir / "checkpoints").steps()[-1] == 4


def test_a_lock_left_by_a_dead_process_is_taken_over(toy_run, tmp_path):
    """Expectation: the lock file of a process that died (its pid gone) does not block; the new
    writer records itself in it."""
    workdir = _copy(toy_run, tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (workdir / workdir_lib.LOCK_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "since": "then"}))
    TOTALS["cases"] += 1
    assert cli.main(["train", "--workdir", str(workdir), "--config.training.num_steps=4"]) == 0
    assert json.loads((workdir / workdir_lib.LOCK_FILE).read_text())["pid"] == os.getpid()


# --- defect 2: a run writes only inside its workdir ----------------------------------------------


@pytest.mark.parametrize("name", ["metrics.jsonl", "config.json", "checkpoints", "samples", "tensorboard", "lock"])
def test_a_symlink_out_of_the_workdir_is_never_followed(capsys, toy_run, tmp_path, name):
    """Expectation: a link from inside the workdir to a file or folder outside it is refused in
    one line, exit 2, before anything is written; the outside file is untouched."""
    workdir = _copy(toy_run, tmp_path)
    outside = tmp_path / "important"
    if name in ("checkpoints", "samples", "tensorboard"):
        import shutil

        outside.mkdir()
        (outside / "keep.txt").write_text("precious")
        if (workdir / name).exists():
            shutil.rmtree(workdir / name)
    else:
        outside.write_text("precious\n")
        (workdir / name).unlink(missing_ok=True)
    (workdir / name).symlink_to(Path("..") / outside.name)
    before = _tree(outside) if outside.is_dir() else outside.read_bytes()
    expect_one_line(*_cli(capsys, ["train", "--workdir", str(tmp_path / "run"), "--config", TOY, *TINY,
                                   "--config.training.num_steps=4"]),
                    exit_code=2, fragment=f"{workdir / name} is a symbolic link out of the workdir")
    after = _tree(outside) if outside.is_dir() else outside.read_bytes()
    TOTALS["files outside the workdir touched"] += after != before
    assert after == before


def test_a_link_made_while_running_is_not_followed_either(tmp_path):
    """Expectation: the metrics file is opened without following a link (a link created after
    the start-up check), so the partial-line cut never truncates another file."""
    from jaxdiff.engine.loop import _drop_partial_line

    outside = tmp_path / "important.txt"
    outside.write_text("no newline at the end")
    (tmp_path / "metrics.jsonl").symlink_to(outside)
    with pytest.raises(workdir_lib.UnsafeWorkdirError, match="symbolic link"):
        _drop_partial_line(tmp_path / "metrics.jsonl")
    assert outside.read_text() == "no newline at the end"
    TOTALS["cases"] += 1


def test_a_link_that_stays_inside_is_allowed(toy_run, tmp_path):
    workdir = _copy(toy_run, tmp_path)
    (workdir / "latest").symlink_to("checkpoints/2")
    assert cli.main(["train", "--workdir", str(workdir), "--config.training.num_steps=4"]) == 0


# --- defect 8: the environment -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distributed_fields_that_disagree_are_refused_without_initialize(capsys, tmp_path):
    """Expectation: process_id=5 of num_processes=2 is one line, exit 2, even with
    initialize=False, and nothing is written."""
    expect_one_line(*_cli(capsys, ["train", "--config", TOY, "--workdir", str(tmp_path / "w"), *TINY,
                                   "--config.distributed.process_id=5", "--config.distributed.num_processes=2"]),
                    exit_code=2, fragment="config.distributed.process_id must be in [0, num_processes=2), got 5")
    assert not (tmp_path / "w").exists()


def test_an_unreachable_coordinator_is_one_line(capsys, tmp_path):
    """Expectation: process 1 of a job whose coordinator never answers gives up after the
    config's initialization timeout in one line, exit 1 (JAX itself aborts: exit 134)."""
    address = f"127.0.0.1:{_free_port()}"
    expect_one_line(*_cli(capsys, ["train", "--config", TOY, "--workdir", str(tmp_path / "w"), *TINY,
                                   "--config.distributed.initialize=True",
                                   f"--config.distributed.coordinator_address={address}",
                                   "--config.distributed.num_processes=2", "--config.distributed.process_id=1",
                                   "--config.distributed.initialization_timeout_seconds=1"]),
                    exit_code=1, fragment=f"coordinator_address={address} cannot be reached after 1 s")
    assert not (tmp_path / "w").exists()


def _jaxdiff(*args, env=None, **kwargs) -> subprocess.Popen:
    """``python -m jaxdiff ARGS`` in a new process (stdout and stderr piped)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    env.pop("JAXDIFF_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "jaxdiff", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kwargs)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err.strip()


def test_a_platform_this_machine_lacks_is_one_line(toy_run, tmp_path):
    """Expectation: JAX_PLATFORMS=tpu without a TPU is one line naming the setting, exit 1."""
    code, err = _finish(_jaxdiff("sample", "--workdir", toy_run, "--output", tmp_path / "s.npz",
                                 env={"JAX_PLATFORMS": "tpu"}))
    expect_one_line(code, err, exit_code=1, fragment="JAX cannot start a backend for JAX_PLATFORMS=tpu")
    assert not list(tmp_path.iterdir())


# --- defect 5: a large --num ---------------------------------------------------------------------


def test_samples_are_drawn_in_batches_and_streamed(capsys, toy_run, tmp_path):
    """Expectation: --num 10 in batches of 4 writes the three draws of the sampler (keys: the
    seed's key, then fold_in(key, 1), fold_in(key, 2)), cut to 10; a --num that cannot fit on
    the disk is refused up front, exit 2, with nothing written."""
    import jax

    from jaxdiff import train

    out = tmp_path / "s.npz"
    assert cli.main(["sample", "--workdir", str(toy_run), "--num", "10", "--batch", "4", "--seed", "3",
                     "--output", str(out)]) == 0
    run = train.load_run(toy_run)
    sample = train.build_sampler(run.config, run.experiment)
    key = jax.random.PRNGKey(3)
    keys = [key, jax.random.fold_in(key, 1), jax.random.fold_in(key, 2)]
    expected = np.concatenate([np.asarray(sample(run.variables, k, 4)) for k in keys])[:10]
    np.testing.assert_allclose(np.load(out)["samples"], expected, rtol=1e-5, atol=1e-6)
    expect_one_line(*_cli(capsys, ["sample", "--workdir", str(toy_run), "--num", str(10**13),
                                   "--output", str(tmp_path / "big.npz")]),
                    exit_code=2, fragment="--num: the samples need")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npz", "s.png"]


# --- full disks, read-only and immutable folders ------------------------------------------------


@contextlib.contextmanager
def file_size_limit(nbytes: int):
    """Writes past ``nbytes`` fail with EFBIG (RLIMIT_FSIZE, as ``ulimit -f``; Python ignores
    SIGXFSZ): a disk that fills. Lifted before pytest writes its report (which may go to a
    file)."""
    import resource

    saved = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, saved[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, saved)


def test_a_disk_that_fills_during_a_sample_and_an_eval(capsys, toy_run, tmp_path):
    """Expectation: the write fails partway; one line, exit 1 (not bad input), and no file, not
    even a temporary, is left."""
    with file_size_limit(200):
        result = _cli(capsys, ["sample", "--workdir", str(toy_run), "--num", "64", "--output", str(tmp_path / "s.npz")])
    expect_one_line(*result, exit_code=1, fragment="File too large")
    with file_size_limit(20):
        result = _cli(capsys, ["eval", "--workdir", str(toy_run), "--max_examples", "8", "--output",
                               str(tmp_path / "e.json")])
    expect_one_line(*result, exit_code=1, fragment="File too large")
    assert not list(tmp_path.iterdir())


@pytest.fixture
def unwritable():
    """``make(path)``: the folder becomes unwritable, immutable (``chattr +i``) for root, whom
    permissions do not stop, read-only (mode 555) for anyone else."""
    made = []

    def make(path: Path) -> None:
        if os.geteuid() == 0:
            if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
                pytest.skip("chattr +i is not supported here")
        else:
            path.chmod(0o555)
        made.append(path)

    yield make
    for path in made:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)])
        else:
            path.chmod(0o755)


def test_read_only_and_immutable_folders(capsys, toy_run, tmp_path, unwritable):
    """Expectation: resuming a run in an unwritable workdir, and sampling into an unwritable
    folder, are refused up front: one line each naming the path, exit 2, and nothing changes."""
    workdir = _copy(toy_run, tmp_path)
    (tmp_path / "out").mkdir()
    unwritable(workdir)
    unwritable(tmp_path / "out")
    before = _tree(workdir)
    code, err = _cli(capsys, ["train", "--workdir", str(workdir), "--config.training.num_steps=4"])
    expect_one_line(code, err, exit_code=2, fragment=f"{workdir} is not a writable directory")
    code, err = _cli(capsys, ["sample", "--workdir", str(workdir), "--num", "4", "--output",
                              str(tmp_path / "out" / "s.npz")])
    expect_one_line(code, err, exit_code=2, fragment=f"directory {tmp_path / 'out'} is not writable")
    assert _tree(workdir) == before and not list((tmp_path / "out").iterdir())


# --- defect 4: signals during compilation and during sampling (slow: new processes) ------------

# Runs `jaxdiff ARGS` with the sampler wrapped so that the process signals itself at a chosen
# moment and that moment then lasts a minute: while the sampling program is traced and compiled
# ("compile"), or while it runs ("sample", from a host callback inside the computation).
_SIGNAL_DRIVER = """
import os, signal, sys, time
import jax, numpy as np
from jaxdiff import cli
from jaxdiff.families import diffusion

phase, signum = sys.argv[1], getattr(signal, sys.argv[2])
build = diffusion.sampler

def hold(x):
    print("signalled at", time.time(), flush=True)
    os.kill(os.getpid(), signum)
    time.sleep(60)
    return x

def build_slow(*args, **kwargs):
    sample = build(*args, **kwargs)

    def slow(variables, rng, num):
        if phase == "compile":
            hold(None)
        x = sample(variables, rng, num)
        if phase == "sample":
            x = jax.pure_callback(hold, jax.ShapeDtypeStruct(x.shape, x.dtype), x)
        return x

    return slow

diffusion.sampler = build_slow  # what the diffusion family's sample calls
sys.argv = ["jaxdiff", *sys.argv[3:]]
sys.exit(cli.main())
"""


@pytest.mark.slow
@pytest.mark.parametrize("phase, name", [("compile", "SIGINT"), ("sample", "SIGTERM")])
def test_a_signal_during_compilation_or_sampling_ends_the_command_at_once(toy_run, tmp_path, phase, name):
    """Expectation: the command ends within seconds (not after the minute the work still
    takes), with one line, exit 128 + N (no traceback, no segmentation fault), and no output or
    temporary file left."""
    driver = tmp_path / "driver.py"
    driver.write_text(_SIGNAL_DRIVER)
    (tmp_path / "out").mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, str(driver), phase, name, "sample", "--workdir", str(toy_run), "--num", "8",
                          "--output", str(tmp_path / "out" / "s.npz")], capture_output=True, text=True, env=env,
                         timeout=120)
    waited = time.time() - float(res.stdout.split("signalled at")[1].split()[0])
    expect_one_line(res.returncode, res.stderr.strip(), exit_code=128 + getattr(signal, name),
                    fragment=f"stopped by {name}")
    assert waited < 15, waited  # the held minute was cut short
    assert not list((tmp_path / "out").iterdir())


# --- defect 3: a checkpoint write that fails partway (slow) --------------------------------------


def _train_args(workdir: Path, steps: int, *extra) -> list:
    return ["train", "--config", TOY, "--workdir", workdir, *TINY, f"--config.training.num_steps={steps}", *extra]


@pytest.mark.slow
def test_a_checkpoint_write_that_fails_partway_is_one_line(toy_run, tmp_path):
    """Expectation: with files limited to 12 kB (``ulimit -f 12``) the next checkpoint's
    files fail while orbax writes them in its background threads: one line on stderr (not the
    storm of "Event loop is closed" tracebacks), exit 1, the older checkpoint intact, and no
    temporary folder left."""
    import resource

    workdir = _copy(toy_run, tmp_path)

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (12 * 1024, resource.RLIM_INFINITY))

    code, err = _finish(_jaxdiff(*_train_args(workdir, 6), preexec_fn=limit))
    # a full disk also refuses JAX's compilation cache: a warning, of one line
    err = "\n".join(line for line in err.splitlines() if not line.startswith("jaxdiff train: warning: "))
    expect_one_line(code, err, exit_code=1, fragment="could not write checkpoint 4")
    assert "File too large" in err and "(2) are intact" in err
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["2"]


# --- SIGKILL at random moments, resume, and a second writer (slow) ------------------------------


def _final_state(workdir: Path):
    from jaxdiff import train

    return train.load_run(workdir, checkpoint="latest").state


def _steps(directory: Path) -> list[int]:
    return [int(p.name) for p in directory.glob("*") if p.name.isdigit()] if directory.is_dir() else []


@pytest.mark.slow
def test_killed_at_random_moments_resumes_bit_for_bit(tmp_path):
    """Expectation: a training killed (SIGKILL) at random moments of training and saving (a
    checkpoint every step), each time resumed, ends bit-for-bit equal to the uninterrupted
    run; each resume takes over the lock its killed predecessor left."""
    import random

    import jax

    steps, extra = 60, ["--config.training.checkpoint_every=1", "--config.training.log_every=1"]
    straight = tmp_path / "straight"
    assert cli.main([str(a) for a in _train_args(straight, steps, *extra)]) == 0
    workdir, ckpts = tmp_path / "killed", tmp_path / "killed" / "checkpoints"
    rng = random.Random(24)
    for _ in range(2):
        proc = _jaxdiff(*_train_args(workdir, steps, *extra))
        before = max(_steps(ckpts), default=0)
        while proc.poll() is None and max(_steps(ckpts), default=0) <= before:
            time.sleep(0.02)  # until it trains and saves
        time.sleep(rng.uniform(0.0, 0.3))
        proc.kill()
        proc.wait()
        TOTALS["kills"] += proc.returncode == -9
    code, err = _finish(_jaxdiff(*_train_args(workdir, steps, *extra)))
    assert code == 0, err
    equal = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(_final_state(workdir)),
                                                     jax.tree.leaves(_final_state(straight))))
    TOTALS["cases"] += 1
    TOTALS["resumes bitwise equal"] += equal
    assert equal


@pytest.mark.slow
def test_a_second_training_process_is_refused_and_sample_runs_beside_it(tmp_path):
    """Expectation: while one ``jaxdiff train`` runs, a second one on its workdir (another
    learning rate) is refused in one line naming the first's pid, exit 2, and changes nothing;
    ``sample`` works beside it; SIGTERM then stops the first at a saved step (exit 143)."""
    workdir = tmp_path / "run"
    first = _jaxdiff(*_train_args(workdir, 10**6, "--config.training.checkpoint_every=50"))
    while first.poll() is None and not (workdir / "checkpoints" / "50").is_dir():
        time.sleep(0.05)
    code, err = _finish(_jaxdiff(*_train_args(workdir, 10**6, "--config.optim.learning_rate=0.5")))
    expect_one_line(code, err, exit_code=2, fragment=f"pid {first.pid}")
    code, err = _finish(_jaxdiff("sample", "--workdir", workdir, "--num", "4", "--output", tmp_path / "s.npz"))
    assert code == 0 and (tmp_path / "s.npz").is_file(), err
    first.send_signal(signal.SIGTERM)
    code, err = _finish(first, timeout=60)
    assert code == 143, err
    assert json.loads((workdir / "config.json").read_text())["optim"]["learning_rate"] != 0.5
