"""Bad input, tried as a careless or hostile user would: every case is one line on stderr,
exit code 2, and nothing written. The same table feeds the closing note's list of cases."""

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from jaxdiff import cli, schedules
from jaxdiff._io import OutputWriteError, check_new_output, write_file

REPO = Path(__file__).resolve().parent.parent
TOY = str(REPO / "configs" / "toy2d_ddpm.py")
TINY = ["--config.model.features=16", "--config.model.num_blocks=1", "--config.diffusion.num_timesteps=20",
        "--config.training.batch_size=8", "--config.training.num_steps=2", "--config.training.checkpoint_every=2",
        "--config.training.sample_every=0", "--config.sampling.num_samples=0"]

# (name, argv after the command, expected fragment); WORKDIR / OUT / RUN are filled in
TRAIN_CASES = [
    ("negative batch size", ["--config.training.batch_size=-4"], "config.training.batch_size must be an integer >= 1"),
    ("zero steps", ["--config.training.num_steps=0"], "config.training.num_steps must be an integer >= 1"),
    ("zero log interval", ["--config.training.log_every=0"], "config.training.log_every must be"),
    ("zero checkpoint interval", ["--config.training.checkpoint_every=0"], "config.training.checkpoint_every must be"),
    ("keep no checkpoints", ["--config.training.keep_checkpoints=0"], "config.training.keep_checkpoints must be"),
    ("negative sample interval", ["--config.training.sample_every=-1"], "config.training.sample_every must be"),
    ("EMA decay above 1", ["--config.training.ema_decay=1.5"], "config.training.ema_decay must be a finite number in [0.0, 1.0]"),
    ("negative learning rate", ["--config.optim.learning_rate=-0.1"], "config.optim.learning_rate must be a finite number > 0.0"),
    ("infinite learning rate", ["--config.optim.learning_rate=inf"], "config.optim.learning_rate"),
    ("negative warmup", ["--config.optim.warmup_steps=-5"], "config.optim.warmup_steps must be an integer >= 0"),
    ("zero grad clip", ["--config.optim.grad_clip=0.0"], "config.optim.grad_clip must be a finite number > 0.0 or None"),
    ("Adam b1 of 1", ["--config.optim.b1=1.0"], "config.optim.b1 must be a finite number in [0.0, 1.0)"),
    ("negative Adam eps", ["--config.optim.eps=-1e-8"], "config.optim.eps must be"),
    ("unknown dtype", ["--config.model.dtype=float8"], "config.model.dtype must be one of float32, bfloat16, float16"),
    ("dropout 1", ["--config.model.dropout=1.0"], "config.model.dropout must be a finite number in [0.0, 1.0)"),
    ("odd MLP width", ["--config.model.features=15"], "config.model: MLP: features must be an even integer >= 4, got 15"),
    ("negative MLP depth", ["--config.model.num_blocks=-1"], "config.model: MLP: num_blocks must be an integer >= 0"),
    ("zero timesteps", ["--config.diffusion.num_timesteps=0"], "config.diffusion.num_timesteps must be an integer >= 1"),
    ("unknown schedule", ["--config.diffusion.schedule=quadratic"], "config.diffusion.schedule must be one of"),
    ("unknown prediction", ["--config.diffusion.prediction=score"], "config.diffusion.prediction must be one of eps, x0, v"),
    ("unknown variance", ["--config.diffusion.variance=huge"], "config.diffusion.variance must be one of"),
    ("unknown kind", ["--config.diffusion.kind=sde"], "config.diffusion.kind must be one of"),
    ("loss of another kind", ["--config.loss.name=dsm"], "config.loss.name must be one of hybrid, simple, vlb"),
    ("unknown sampler", ["--config.sampling.sampler=magic"], "config.sampling.sampler must be one of"),
    ("negative sample count", ["--config.sampling.num_samples=-2"], "config.sampling.num_samples must be an integer >= 0"),
    ("zero sampler steps", ["--config.sampling.num_steps=0"], "config.sampling.num_steps must be an integer >= 1"),
    ("DPM-Solver order 4", ["--config.sampling.order=4"], "config.sampling.order must be one of 1, 2, 3"),
    ("more DDPM steps than T", ["--config.sampling.ddpm_num_steps=50"], "config.sampling.ddpm_num_steps must be at most"),
    ("negative DDIM eta", ["--config.sampling.eta=-1.0"], "config.sampling.eta must be"),
    ("negative seed", ["--config.seed=-1"], "config.seed must be an integer >= 0"),
    ("huge seed", ["--config.seed=99999999999"], "config.seed must be an integer in [0, 2^32)"),
    ("empty dataset name", ["--config.data.dataset="], "config.data.dataset must be a non-empty string"),
    ("unknown dataset", ["--config.data.dataset=no_such_set"], "unknown dataset 'no_such_set'"),
    ("unknown family", ["--config.family=vae2"], "unknown config field: config.family"),
    ("unknown field", ["--config.training.no_such=1"], "unknown config field: config.training.no_such"),
    ("wrong type", ["--config.training.num_steps=many"], "config.training.num_steps: cannot set 'many'"),
    ("override without value", ["--config.training.num_steps"], "--config.training.num_steps needs a value"),
    ("stray argument", ["--bogus"], "unrecognized argument: --bogus"),
]


def _run(capsys, argv):
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    captured = capsys.readouterr()
    return code, captured.err.strip()


def _one_line(code, err):
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("name, args, message", TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_bad_train_config_is_one_line_exit_2_nothing_written(capsys, tmp_path, name, args, message):
    workdir = tmp_path / "run"
    err = _one_line(*_run(capsys, ["train", "--config", TOY, "--workdir", str(workdir), *TINY, *args]))
    assert message in err, err
    assert not workdir.exists()


def test_config_file_errors_name_the_file_and_line(capsys, tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import ml_collections\n\ndef get_config():\n    c = ml_collections.ConfigDict()\n    return c.missing_field\n")
    err = _one_line(*_run(capsys, ["train", "--config", str(bad), "--workdir", str(tmp_path / "w")]))
    assert f"{bad}, line 5" in err and "missing_field" in err
    (tmp_path / "syntax.py").write_text("def get_config(:\n    pass\n")
    err = _one_line(*_run(capsys, ["train", "--config", str(tmp_path / "syntax.py")]))
    assert "line 1" in err and "SyntaxError" in err
    (tmp_path / "imports.py").write_text("import no_such_module_xyz\n")
    err = _one_line(*_run(capsys, ["train", "--config", str(tmp_path / "imports.py")]))
    assert "line 1" in err and "no_such_module_xyz" in err
    (tmp_path / "empty.py").write_text("x = 1\n")
    assert "has no get_config()" in _one_line(*_run(capsys, ["train", "--config", str(tmp_path / "empty.py")]))
    assert "no such file" in _one_line(*_run(capsys, ["train", "--config", "no_such_config"]))
    assert not (tmp_path / "w").exists()


def test_unwritable_or_bad_workdir(capsys, tmp_path):
    (tmp_path / "file").write_text("x")
    err = _one_line(*_run(capsys, ["train", "--config", TOY, "--workdir", str(tmp_path / "file"), *TINY]))
    assert "is a file, not a directory" in err
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
        err = _one_line(*_run(capsys, ["train", "--config", TOY, "--workdir", str(locked / "run"), *TINY]))
        assert "not a writable directory" in err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A two-step toy run to sample and evaluate from."""
    workdir = tmp_path_factory.mktemp("run")
    assert cli.main(["train", "--config", TOY, "--workdir", str(workdir), *TINY]) == 0
    return workdir


def _sample_cases(run, out):
    return [
        ("--num 0", ["--num", "0"], "argument --num: must be an integer >= 1, got 0"),
        ("--num negative", ["--num", "-3"], "argument --num: must be an integer >= 1, got -3"),
        ("--num not a number", ["--num", "ten"], "argument --num: must be an integer, got 'ten'"),
        ("--steps 0", ["--steps", "0"], "argument --steps: must be an integer >= 1"),
        ("--seed negative", ["--seed", "-1"], "argument --seed: must be an integer in [0, 4294967295]"),
        ("--sampler unknown", ["--sampler", "magic"], "sampler must be one of"),
        ("--output not .npz", ["--output", str(out / "x.txt")], "--output must end in .npz"),
        ("--output in a missing directory", ["--output", str(out / "no" / "x.npz")], "does not exist"),
        ("--output exists", ["--output", str(run / "config.json.npz")], "exists; not overwriting"),
        ("--output is a directory", ["--output", str(out / "d.npz")], "is a directory"),
        ("--workdir not a run", ["--workdir", str(out)], "is not a jaxdiff run directory"),
    ]


def _all_one_line(capsys, prefix, cases):
    for name, args, message in cases:
        err = _one_line(*_run(capsys, [*prefix, *args]))
        assert message in err, (name, err)


def test_bad_sample_input(capsys, trained, tmp_path):
    (trained / "config.json.npz").write_text("keep me")
    (tmp_path / "d.npz").mkdir()
    prefix = ["sample", "--workdir", str(trained), "--output", str(tmp_path / "s.npz")]
    _all_one_line(capsys, prefix, _sample_cases(trained, tmp_path))
    assert (trained / "config.json.npz").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]


def eval_cases(tmp_path):
    missing = str(tmp_path / "none.npz")
    return [
        ("--max_examples negative", ["--max_examples", "-1"], "argument --max_examples: must be an integer >= 1, got -1"),
        ("--max_examples 0", ["--max_examples", "0"], "argument --max_examples: must be an integer >= 1, got 0"),
        ("--num_samples negative", ["--num_samples", "-5"], "argument --num_samples: must be an integer >= 0"),
        ("--num_samples 1", ["--num_samples", "1"], "--num_samples must be 0 or at least 2"),
        ("--variance unknown", ["--variance", "wide"], "argument --variance: invalid choice: 'wide'"),
        ("--variance learned on a fixed run", ["--variance", "learned"], "variance learned does not fit this run"),
        ("--fid_stats without samples", ["--fid_stats", missing], "--fid_stats needs --num_samples"),
        ("--fid_stats missing file", ["--fid_stats", missing, "--num_samples", "4"], "--fid_stats"),
        ("--output not .json", ["--output", str(tmp_path / "e.txt")], "--output must end in .json"),
        ("--sampler unknown", ["--sampler", "magic", "--num_samples", "4"], "sampler must be one of"),
        ("--split unknown", ["--split", "validation"], "split must be one of"),
        ("--seed not a number", ["--seed", "x"], "argument --seed: must be an integer, got 'x'"),
    ]


def stats_cases(tmp_path):
    out = str(tmp_path / "st.npz")
    return [
        ("--batch_size 0", ["--dataset", "digits", "--output", out, "--batch_size", "0"], "argument --batch_size: must be an integer >= 1"),
        ("--output not .npz", ["--dataset", "digits", "--output", str(tmp_path / "st.txt")], "--output must end in .npz"),
        ("no FID weights", ["--dataset", "digits", "--output", out], "FID Inception weights not found"),
        ("--weights missing", ["--dataset", "digits", "--output", out, "--weights", str(tmp_path / "w.pth")], "not found"),
        ("--dataset missing", ["--output", out], "the following arguments are required: --dataset"),
    ]


def test_bad_eval_input(capsys, trained, tmp_path):
    prefix = ["eval", "--workdir", str(trained), "--output", str(tmp_path / "e.json")]
    _all_one_line(capsys, prefix, eval_cases(tmp_path))
    assert not list(tmp_path.iterdir())


def test_bad_stats_input(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("JAXDIFF_FID_WEIGHTS", str(tmp_path / "missing.pth"))
    _all_one_line(capsys, ["stats"], stats_cases(tmp_path))
    assert not list(tmp_path.iterdir())


def test_version_and_usage(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == "jaxdiff 0.1.0"
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: jaxdiff") and "train" in out and "sample" in out


# --- outputs -----------------------------------------------------------------------------------


def test_outputs_never_overwrite_at_the_moment_of_writing(tmp_path):
    """The early check passes, then another process creates the file: the write refuses and
    leaves that file and no temporary behind."""
    path = tmp_path / "out.npz"
    check_new_output(path, flag="--output")
    path.write_bytes(b"theirs")
    with pytest.raises(ValueError, match="exists; not overwriting"):
        write_file(path, lambda f: f.write(b"ours"))
    assert path.read_bytes() == b"theirs" and sorted(p.name for p in tmp_path.iterdir()) == ["out.npz"]


def test_a_failed_write_leaves_neither_a_truncated_file_nor_a_temporary(tmp_path):
    def half_then_disk_full(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputWriteError, match="No space left on device"):
        write_file(tmp_path / "out.json", half_then_disk_full)
    assert not list(tmp_path.iterdir())


def test_sample_on_a_full_disk_writes_nothing(capsys, trained, tmp_path, monkeypatch):
    """A full disk while writing the PNG grid: one line, exit 1, and the .npz written just
    before it is removed again (the pair is whole or absent)."""
    from jaxdiff import data

    def full(*args, **kwargs):
        raise OutputWriteError("could not write grid: No space left on device")

    monkeypatch.setattr(data, "save_samples_png", full)
    code, err = _run(capsys, ["sample", "--workdir", str(trained), "--num", "4", "--output", str(tmp_path / "s.npz")])
    assert code == 1 and len(err.splitlines()) == 1 and "No space left" in err
    assert not list(tmp_path.iterdir())


def test_metrics_file_partial_line_is_cut_on_resume(tmp_path):
    from jaxdiff.engine.loop import _drop_partial_line

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0}\n{"step": 1, "lo')
    _drop_partial_line(path)
    assert path.read_text() == '{"step": 0}\n'


# --- library checks ----------------------------------------------------------------------------


def test_from_betas_rejects_decreasing_and_out_of_range_betas():
    with pytest.raises(ValueError, match=r"non-decreasing, got betas\[1\] = 0.2 > betas\[2\] = 0.1"):
        schedules.from_betas([0.1, 0.2, 0.1])
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        schedules.from_betas([0.1, 1.2])
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        schedules.from_betas([0.1, float("nan")])
    s = schedules.from_betas([0.1, 0.1, 0.3])  # constant steps are fine
    np.testing.assert_allclose(s.alphas_cumprod, np.cumprod([0.9, 0.9, 0.7]), rtol=1e-6)


def test_data_download_is_off_by_default_and_the_message_says_how(tmp_path):
    from jaxdiff import data

    config = cli.load_config_file("digits_ddpm")
    assert config.data.download is False
    with pytest.raises(data.DataError, match="tfds build mnist.*data.download=True"):
        data.load_source("mnist", data_dir=str(tmp_path))
