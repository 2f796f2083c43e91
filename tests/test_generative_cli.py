"""The VAE and the GAN through the real command line: train a few steps, resume exactly,
sample, evaluate; bad input is one line and exit code 2 with nothing written."""

import json
import shutil

import jax
import numpy as np
import pytest

from jaxdiff import checkpoint, cli, train

TINY = {
    "vae": {"model.latent_dim": 4, "model.ch": 8},
    "gan": {"model.latent_dim": 8, "model.ch": 8, "gan.d_steps": 2, "gan.instance_noise": 0.1,
            "gan.noise": "student_t"},
}
COMMON = {"training.batch_size": 8, "training.log_every": 1, "training.checkpoint_every": 2,
          "training.sample_every": 0, "sampling.num_samples": 4}


def _train(family, workdir, steps):
    overrides = {**TINY[family], **COMMON, "training.num_steps": steps}
    argv = ["train", "--config", f"digits_{family}", "--workdir", str(workdir)]
    assert cli.main(argv + [f"--config.{k}={v}" for k, v in overrides.items()]) == 0


def _leaves_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.slow
@pytest.mark.parametrize("family", ["vae", "gan"])
def test_train_resume_sample_eval(family, tmp_path, capsys):
    _train(family, tmp_path / "a", 4)
    lines = [json.loads(s) for s in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [0, 1, 2, 3] and all(np.isfinite(m["loss"]) for m in lines)
    assert (tmp_path / "a" / "samples" / "step_0000004.png").is_file()
    if family == "gan":  # a new state type: resuming from step 2 recomputes step 4 bit for bit
        straight = train.load_run(tmp_path / "a").state
        shutil.rmtree(tmp_path / "a" / "checkpoints" / "4")
        _train(family, tmp_path / "a", 4)
        resumed = train.load_run(tmp_path / "a")
        assert resumed.step == 4 and _leaves_equal(straight, resumed.state)
        assert checkpoint.Checkpointer(tmp_path / "a" / "checkpoints").steps() == [2, 4]

    out = tmp_path / "s.npz"
    assert cli.main(["sample", "--workdir", str(tmp_path / "a"), "--num", "5", "--output", str(out)]) == 0
    samples = np.load(out)["samples"]
    assert samples.dtype == np.uint8 and samples.shape == (5, 8, 8, 1)
    assert out.with_suffix(".png").is_file()

    report = tmp_path / "eval.json"
    argv = ["eval", "--workdir", str(tmp_path / "a"), "--output", str(report)]
    if family == "gan":  # no likelihood: one line, exit 2, nothing written
        assert cli.main(argv) == 2
        assert "family defines no likelihood or bound" in capsys.readouterr().err
        assert not report.exists()
        return
    assert cli.main(argv + ["--max_examples", "8", "--iwae_samples", "4"]) == 0
    r = json.loads(report.read_text())
    for key in ("total_bpd", "prior_bpd", "diffusion_bpd", "decoder_bpd", "stderr_bpd", "num_examples",
                "iwae_bpd"):
        assert key in r
    assert r["num_examples"] == 8 and r["diffusion_bpd"] == 0.0 and r["prior_bpd"] > 0
    np.testing.assert_allclose(r["total_bpd"], r["prior_bpd"] + r["decoder_bpd"], rtol=1e-5)


@pytest.mark.parametrize(
    "family, args, message",
    [
        ("gan", ["--config.gan.generator_loss=wasserstein"], "config.gan.generator_loss must be one of"),
        ("gan", ["--config.gan.noise=uniform"], "config.gan.noise must be one of"),
        ("gan", ["--config.gan.d_steps=0"], "config.gan.d_steps must be an integer >= 1, got 0"),
        ("vae", ["--config.vae.iwae_samples=0"], "config.vae.iwae_samples must be an integer >= 1"),
        ("vae", ["--config.data.dataset=swiss_roll"], "config.family='vae' needs images"),
    ],
)
def test_bad_config_is_one_line_and_writes_nothing(family, args, message, tmp_path, capsys):
    workdir = tmp_path / "run"
    assert cli.main(["train", "--config", f"digits_{family}", "--workdir", str(workdir), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not workdir.exists()
