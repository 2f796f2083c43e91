"""Checkpoint recovery and training failures: nothing a user saved is lost, every failure is
one line that says what is kept."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_train import TINY, leaves_equal, run, tiny_config

from jaxdiff import checkpoint, train

REPO = Path(__file__).resolve().parent.parent


def _break(step_dir: Path) -> None:
    for f in step_dir.rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")


def test_a_broken_newest_checkpoint_is_moved_aside_and_the_run_passes_it(tmp_path):
    straight = run(tiny_config(training__num_steps=6), tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # the same run, trained once
    ckpts = tmp_path / "b" / "checkpoints"
    assert checkpoint.Checkpointer(ckpts).steps() == [2, 4, 6]
    _break(ckpts / "6")
    with pytest.warns(UserWarning, match="moved unreadable checkpoint"):
        resumed = run(tiny_config(training__num_steps=6), tmp_path / "b")  # from step 4
    assert leaves_equal(resumed, straight)  # step 6 recomputed bit for bit
    assert checkpoint.Checkpointer(ckpts).steps() == [2, 4, 6]
    assert (tmp_path / "b" / "checkpoints_broken" / "6").is_dir()  # kept for inspection
    assert train.load_run(tmp_path / "b").step == 6


@pytest.mark.parametrize("damage", ["missing item folder", "empty new step directory"])
def test_one_malformed_step_directory_skips_only_itself(tmp_path, damage):
    ckpt = checkpoint.Checkpointer(tmp_path, max_to_keep=5, asynchronous=False)
    for s in (1, 2):
        ckpt.save(s, {"w": jnp.full((3,), float(s))})
    ckpt.wait()
    if damage == "missing item folder":
        shutil.rmtree(tmp_path / "2" / "default")
        expected = 1
    else:
        (tmp_path / "3").mkdir()
        expected = 2
    abstract = {"w": jax.ShapeDtypeStruct((3,), jnp.float32)}
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint"):
        step, state = ckpt.restore_latest(abstract)
    assert step == expected
    np.testing.assert_array_equal(state["w"], np.full(3, float(expected)))


class _State(flax.struct.PyTreeNode):
    step: jnp.ndarray
    w: jnp.ndarray


def _diverging_family(what):
    """A family whose update of step 3 puts Inf in the parameters (loss finite), or NaN in the
    gradient norm it reports."""

    def build(config, data_shape):
        def train_step(state, batch, rng):
            bad = state.step == 3
            w = state.w + 1.0
            metrics = {"loss": jnp.mean(batch["x"] ** 2), "grad_norm": jnp.float32(1.0)}
            if what == "params":
                w = jnp.where(bad, jnp.inf, w)
            else:
                metrics["grad_norm"] = jnp.where(bad, jnp.nan, 1.0)
            return _State(step=state.step + 1, w=w), metrics

        return train.Family(
            init_state=lambda key: _State(step=jnp.zeros((), jnp.int32), w=jnp.zeros(2)),
            train_step=train_step,
            sample=lambda state, rng, num: jnp.zeros((num, *data_shape)),
            data_shape=data_shape,
        )

    return build


@pytest.mark.parametrize("what", ["params", "grad_norm"])
def test_non_finite_update_stops_without_saving_and_names_the_last_finite_step(tmp_path, monkeypatch, what):
    monkeypatch.setitem(train.FAMILIES, "diverging", _diverging_family(what))
    config = tiny_config(training__num_steps=6, training__checkpoint_every=4)
    config.family = "diverging"
    pattern = "the updated state holds NaN or Inf" if what == "params" else "grad_norm is nan"
    with pytest.raises(train.TrainingError, match=rf"step 3 \({pattern}.*last finite state was step 3"):
        run(config, tmp_path)
    # the state of step 4 (after the bad update) was due for a checkpoint: it was not written
    assert checkpoint.Checkpointer(tmp_path / "checkpoints").steps() == []


def test_an_allowed_config_change_resumes(tmp_path):
    """optim.grad_clip may change on resume (the compatibility check allows it): the
    checkpoints stay readable, also from None to a number."""
    run(tiny_config(training__num_steps=4, optim__grad_clip="None"), tmp_path)
    state = run(tiny_config(training__num_steps=6, optim__grad_clip="0.5"), tmp_path)
    assert int(state.step) == 6


def test_config_json_that_does_not_match_the_checkpoints_is_one_line(tmp_path, capsys):
    run(tiny_config(training__num_steps=2), tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    saved["model"]["features"] = 32
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(checkpoint.IncompatibleWorkdirError, match="does not match the config"):
        train.load_run(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run(
        [sys.executable, "-m", "jaxdiff", "sample", "--workdir", str(tmp_path), "--num", "2"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2 and len(lines) == 1 and "does not match the config" in lines[0], res.stderr
    assert not (tmp_path / "samples.npz").exists()


_FULL_DISK = r"""
import os, subprocess, sys
from pathlib import Path
disk, cmd_short, cmd_long = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
assert subprocess.run(cmd_short, shell=True).returncode == 0
step_dir = disk / "run" / "checkpoints" / "4"
size = sum(f.stat().st_size for f in step_dir.rglob("*") if f.is_file())
st = os.statvfs(disk)
free = st.f_bavail * st.f_frsize
with open(disk / "filler", "wb") as f:  # leave room for about one more checkpoint
    f.write(b"\0" * max(0, free - int(1.6 * size) - 64 * 1024))
rc = subprocess.run(cmd_long, shell=True).returncode
print("RC=%d" % rc)
print("LEFT", sorted(p.name for p in (disk / "run" / "checkpoints").iterdir()))
"""


def _train_cmd(workdir, steps):
    args = [f"--config.{k}={v}" for k, v in {**TINY, "training.num_steps": steps}.items()]
    return [sys.executable, "-m", "jaxdiff", "train", "--config", str(REPO / "configs" / "toy2d_ddpm.py"),
            "--workdir", str(workdir), *args]


def test_disk_full_during_a_save_is_one_line_and_keeps_older_checkpoints(tmp_path):
    """A size-limited directory (tmpfs in a private mount namespace) filled until about one
    checkpoint fits: the failed save is one line, exit code 1 (not 2: the input was fine), the
    older checkpoints still restore, and no half-written step is left."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare for a private tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    helper = tmp_path / "fill.py"
    helper.write_text(_FULL_DISK)
    short = " ".join(_train_cmd(disk / "run", 4))
    long = " ".join(_train_cmd(disk / "run", 40))
    script = (
        f"mount -t tmpfs -o size=4m tmpfs {disk} || exit 77; "
        f"{sys.executable} {helper} {disk} '{short}' '{long}'; "
        f"{sys.executable} -c \"import jaxdiff.train as t; print('RESTORED', t.load_run('{disk}/run').step)\""
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                         env=env, timeout=600)
    if res.returncode == 77:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()[:100]}")
    out = res.stdout
    assert "RC=1" in out, out + res.stderr[-3000:]
    errors = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(errors) == 1 and errors[0].startswith("jaxdiff train: could not write"), res.stderr[-3000:]
    assert "are intact" in errors[0]
    left = eval(out.split("LEFT")[1].splitlines()[0])  # noqa: S307 - our own list repr
    assert all(name.isdigit() for name in left) and left, left  # no temporary left behind
    assert f"RESTORED {max(map(int, left))}" in out
