"""The command line: bad input is one line on stderr and exit code 2 with nothing written; a
one-step end-to-end run of the real entry point on TFDS mock data, then sample and eval."""

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxdiff import cli

REPO = Path(__file__).resolve().parent.parent
TOY = str(REPO / "configs" / "toy2d_ddpm.py")


def error_line(capsys, argv):
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config", "configs/no_such.py"], "--config configs/no_such.py: no such file"),
        (["--config", TOY, "--config.training.no_such=1"], "unknown config field: config.training.no_such"),
        (["--config", TOY, "--config.nope.x=1"], "unknown config field: config.nope"),
        (["--config", TOY, "--config.training.num_steps=many"], "config.training.num_steps: cannot set 'many'"),
        (["--config", TOY, "--config.data.dataset=no_such_set"], "unknown dataset 'no_such_set'"),
        (["--config", TOY, "--config.model.name=NoNet"], "no model 'NoNet' in jaxdiff.models"),
        (["--config", TOY, "--config.sampling.sampler=magic"], "config.sampling.sampler must be one of"),
        (["--config", TOY, "--bogus"], "unrecognized argument: --bogus"),
    ],
)
def test_bad_train_input_is_one_line_and_exit_2(capsys, tmp_path, args, message):
    workdir = tmp_path / "run"
    err = error_line(capsys, ["train", "--workdir", str(workdir), *args])
    assert message in err
    assert not workdir.exists()  # nothing half-written


def test_incompatible_workdir_is_refused_and_left_alone(capsys, tmp_path):
    from jaxdiff import checkpoint

    config = cli.load_config_file(TOY)
    checkpoint.save_config(config, tmp_path)
    before = (tmp_path / "config.json").read_text()
    err = error_line(capsys, ["train", "--config", TOY, "--workdir", str(tmp_path),
                              "--config.model.features=64"])
    assert "incompatible config (model.features: 128 (saved) vs 64)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
    assert (tmp_path / "config.json").read_text() == before


def test_sample_needs_a_run(capsys, tmp_path):
    err = error_line(capsys, ["sample", "--workdir", str(tmp_path)])
    assert "is not a jaxdiff run directory" in err


@pytest.mark.slow
def test_one_step_end_to_end_on_tfds_mock_data(capsys, tmp_path):
    tiny = {
        "model.ch": 8, "model.ch_mult": "(1,)", "model.num_res_blocks": 1, "model.num_groups": 8,
        "model.attn_resolutions": "()", "diffusion.num_timesteps": 10, "training.batch_size": 2,
        "training.num_steps": 1, "sampling.num_samples": 2, "sampling.sampler": "ddim",
        "sampling.num_steps": 2,
    }
    workdir = tmp_path / "run"
    overrides = [f"--config.{k}={v}" for k, v in tiny.items()]
    with tfds.testing.mock_data(num_examples=4, policy=tfds.testing.MockPolicy.USE_CODE):
        assert cli.main(["train", "--config", "mnist_ddpm", "--workdir", str(workdir), *overrides]) == 0
        saved = json.loads((workdir / "config.json").read_text())
        assert saved["data"]["dataset"] == "mnist" and saved["model"]["ch"] == 8
        assert (workdir / "checkpoints" / "1").is_dir()
        assert (workdir / "samples" / "step_0000001.png").is_file()
        assert json.loads((workdir / "metrics.jsonl").read_text().splitlines()[0])["step"] == 0
        assert any((workdir / "tensorboard").iterdir())

        out = tmp_path / "s.npz"
        args = ["sample", "--workdir", str(workdir), "--sampler", "ddpm", "--num", "3", "--output", str(out)]
        assert cli.main(args) == 0
        samples = np.load(out)["samples"]
        assert samples.shape == (3, 28, 28, 1) and samples.dtype == np.uint8
        assert out.with_suffix(".png").is_file()
        # an existing output is never overwritten
        assert "exists; not overwriting" in error_line(capsys, args)
        np.testing.assert_array_equal(np.load(out)["samples"], samples)

        report = tmp_path / "eval.json"
        assert cli.main(["eval", "--workdir", str(workdir), "--output", str(report)]) == 0
        results = json.loads(report.read_text())
        assert results["step"] == 1 and np.isfinite(results["total_bpd"])


def test_stats_without_fid_weights_is_one_line_and_writes_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("JAXDIFF_FID_WEIGHTS", str(tmp_path / "missing.pth"))
    output = tmp_path / "stats.npz"
    assert cli.main(["stats", "--dataset", "digits", "--output", str(output)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "FID Inception weights not found" in err
    assert not output.exists()
