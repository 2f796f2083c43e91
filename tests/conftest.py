"""The test session's subprocesses (``python -m jaxdiff ...``, the launcher's workers) share a
persistent XLA compilation cache, so a program that several of them compile (the same tiny
config trained, resumed or run on more processes) is compiled once. JAX reads the setting when
it is imported, so this process, whose compilations some tests count, keeps compiling."""

import os
import tempfile

import jax  # noqa: F401  (imported before the variable is set: not for this process)

os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(
        tempfile.gettempdir(),
        f"jaxdiff-test-xla-cache-{os.environ.get('PYTEST_XDIST_TESTRUNUID', os.getpid())}",
    ),
)
