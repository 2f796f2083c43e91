"""The package as a user imports it: submodules as attributes, no import cycles."""

import os
import subprocess
import sys
from pathlib import Path

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
