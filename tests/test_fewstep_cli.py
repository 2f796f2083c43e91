"""The few-step family through the real command line, in process: consistency training,
MeanFlow, and distillation (consistency distillation, reflow) of a trained EDM run, each a few
steps of a tiny U-Net; sampling at 1, 2 and 4 evaluations; evaluation by samples; bad input is
one line, exit code 2 and nothing written."""

import json

import numpy as np
import pytest

from jaxdiff import cli, train

TINY = {"model.ch": 8, "model.ch_mult": "(1,)", "training.batch_size": 8,
        "training.log_every": 1, "training.checkpoint_every": 2, "training.sample_every": 0,
        "sampling.num_samples": 0, "training.num_steps": 2}


def _train(config, workdir, **overrides):
    options = {**TINY, **overrides}
    argv = ["train", "--config", config, "--workdir", str(workdir)]
    return cli.main(argv + [f"--config.{k}={v}" for k, v in options.items()])


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fewstep") / "edm"
    assert _train("digits_edm", workdir) == 0
    return workdir


STUDENTS = {
    "consistency_training": ("digits_consistency", {}),
    "meanflow": ("digits_meanflow", {}),
    "consistency_distillation": ("digits_consistency", {"distillation.num_levels": 4}),
    "reflow": ("digits_reflow", {"distillation.num_pairs": 16, "distillation.teacher_steps": 2,
                                 "reflow.distill_from": 1}),
}
_RUNS = {}


@pytest.fixture(scope="module")
def student(request, tmp_path_factory):
    """``student(name) -> workdir``: each student trained once (2 steps) for the module; the
    teacher only when a distilled student first needs it."""

    def get(name):
        if name not in _RUNS:
            config, overrides = STUDENTS[name]
            if "distillation" in name or name == "reflow":
                overrides = {**overrides, "distillation.teacher": str(request.getfixturevalue("teacher"))}
            workdir = tmp_path_factory.mktemp("fewstep") / name
            assert _train(config, workdir, **overrides) == 0
            _RUNS[name] = workdir
        return _RUNS[name]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("name", list(STUDENTS))
def test_train_and_sample(name, student, tmp_path):
    """Every method trains (finite losses), keeps its teacher's parameters or pairs, and samples
    at 1 evaluation; consistency training also at 2 and 4, and evaluates by its samples."""
    workdir = student(name)
    lines = [json.loads(s) for s in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [0, 1] and all(np.isfinite(m["loss"]) for m in lines)
    state = train.load_run(workdir).state
    assert (state.teacher is not None) == (name == "consistency_distillation")
    assert (state.pairs is not None) == (name == "reflow")
    for steps in (1, 2, 4) if name == "consistency_training" else (1,):
        out = tmp_path / f"s{steps}.npz"
        argv = ["sample", "--workdir", str(workdir), "--num", "3", "--steps", str(steps)]
        assert cli.main(argv + ["--output", str(out)]) == 0
        samples = np.load(out)["samples"]
        assert samples.dtype == np.uint8 and samples.shape == (3, 8, 8, 1)
    if name == "consistency_training":
        report = tmp_path / "eval.json"
        argv = ["eval", "--workdir", str(workdir), "--num_samples", "8", "--steps", "2"]
        assert cli.main(argv + ["--output", str(report)]) == 0
        assert np.isfinite(json.loads(report.read_text())["digits_fd"])


def _fails(argv, message, capsys, written):
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse's own errors leave through sys.exit
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not written.exists()


@pytest.mark.parametrize(
    "config, overrides, message",
    [
        ("digits_consistency", {"distillation.teacher": "MISSING"}, "config.distillation.teacher="),
        ("digits_consistency", {"distillation.teacher": "SELF"}, "a fewstep run cannot teach"),
        ("digits_reflow", {}, "needs config.distillation.teacher=WORKDIR"),
        ("digits_consistency", {"meanflow.ratio": 0.5}, "unknown config field: config.meanflow"),
        ("digits_meanflow", {"distillation.teacher": "x"}, "unknown config field: config.distillation"),
        ("digits_ddpm", {"consistency.sigma_max": 10.0}, "unknown config field: config.consistency"),
        ("digits_consistency", {"consistency.distance": "l1"}, "config.consistency.distance must be"),
    ],
    ids=["missing_teacher", "fewstep_teacher", "reflow_without_teacher", "meanflow_option",
         "teacher_for_meanflow", "consistency_option_for_ddpm", "bad_distance"],
)
def test_bad_training_input_is_one_line_and_writes_nothing(
    config, overrides, message, tmp_path, capsys, request
):
    workdir = tmp_path / "student"
    names = {"MISSING": str(tmp_path / "nowhere")}
    if "SELF" in overrides.values():  # a trained run that is not a diffusion or flow run
        names["SELF"] = str(request.getfixturevalue("student")("meanflow"))
        capsys.readouterr()
    overrides = {k: names.get(v, v) for k, v in overrides.items()}
    argv = ["train", "--config", config, "--workdir", str(workdir)]
    _fails(argv + [f"--config.{k}={v}" for k, v in {**TINY, **overrides}.items()], message, capsys, workdir)


def test_bad_sampling_input_is_one_line_and_writes_nothing(student, tmp_path, capsys):
    workdir = student("meanflow")
    capsys.readouterr()
    out = tmp_path / "s.npz"
    base = ["sample", "--workdir", str(workdir), "--output", str(out)]
    _fails(base + ["--steps", "0"], "--steps: must be an integer >= 1, got 0", capsys, out)
    _fails(base + ["--sampler", "ddim"], "sampler does not apply to this run", capsys, out)
    report = tmp_path / "eval.json"
    argv = ["eval", "--workdir", str(workdir), "--output", str(report)]
    _fails(argv, "defines no likelihood or bound", capsys, report)
