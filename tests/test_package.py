"""The package as a user imports it: submodules as attributes, no import cycles."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )


def test_submodules_are_attributes_after_import_jaxdiff():
    out = _python(
        "import jaxdiff\n"
        "for name in jaxdiff.__all__:\n"
        "    getattr(jaxdiff, name)\n"
        "print(jaxdiff.analytic.__name__, jaxdiff.checkpoint.Checkpointer.__name__)"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["jaxdiff.analytic", "Checkpointer"]


def test_data_does_not_import_metrics():
    """``jaxdiff.data`` (digits splits included) needs nothing from ``jaxdiff.metrics``, so the
    two import in either order."""
    out = _python(
        "import sys, jaxdiff.data as d\n"
        "d.digits('test')\n"
        "print(any(m.startswith('jaxdiff.metrics') for m in sys.modules))\n"
        "import jaxdiff.metrics.digits as md\n"
        "assert (md.split_indices('test') == d.digits_split_indices('test')).all()"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def _source_tree(dest: Path) -> Path:
    """The files a fresh clone would hold (tracked and not ignored), copied."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()
    for name in files:
        src = ROOT / name
        if src.is_file() and not src.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).write_bytes(src.read_bytes())
    return dest


@pytest.mark.slow
def test_the_wheel_works_on_its_own(tmp_path):
    """A non-editable wheel of the source tree, installed into a folder of its own: configs are
    found by name from the installed package, from another directory; the console script,
    ``--version`` and the usage work. (CI also installs it into a fresh venv: .ci/run.)"""
    src = _source_tree(tmp_path / "src")
    wheel_dir, site = tmp_path / "dist", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheel_dir), str(src)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = wheel_dir.glob("jaxdiff-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    assert (site / "jaxdiff" / "configs" / "digits_ddpm.py").is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}

    def jaxdiff(*args):
        return subprocess.run([sys.executable, "-m", "jaxdiff", *args], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=600)

    where = subprocess.run([sys.executable, "-c", "import jaxdiff; print(jaxdiff.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True)
    assert where.stdout.startswith(str(site)), where.stdout + where.stderr
    assert jaxdiff("--version").stdout.strip() == "jaxdiff 0.1.0"
    usage = jaxdiff()
    assert usage.returncode == 0 and usage.stdout.startswith("usage: jaxdiff")
    found = subprocess.run([sys.executable, "-c", "from jaxdiff import cli; print(cli._config_path('digits_ddpm'))"],
                           cwd=elsewhere, env=env, capture_output=True, text=True)
    assert found.stdout.startswith(str(site / "jaxdiff" / "configs")), found.stdout + found.stderr
    tiny = ["--config.training.num_steps=1", "--config.training.batch_size=4", "--config.sampling.num_samples=0",
            "--config.diffusion.num_timesteps=20", "--config.model.features=16", "--config.model.num_blocks=1"]
    res = jaxdiff("train", "--config", "toy2d_ddpm", "--workdir", "run", *tiny)  # digits_ddpm: in CI
    assert res.returncode == 0, res.stderr[-2000:]
    assert (elsewhere / "run" / "checkpoints" / "1").is_dir()
    script = site / "bin" / "jaxdiff"
    assert subprocess.run([str(script), "--version"], env=env, capture_output=True, text=True).stdout.strip() == "jaxdiff 0.1.0"
