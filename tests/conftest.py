"""The test session shares one persistent XLA compilation cache among all its processes: pytest,
its xdist workers and the subprocesses they start (``python -m jaxdiff ...``, the launcher's
workers), which inherit the variables. A program that several tests compile (the same tiny config
trained, resumed, sampled or run on more processes) is compiled once and read back after that.

Tests that count compilations (``compile_counter``) count a program read back from this cache as
a compilation too, so what they assert does not depend on which test ran first.

The suite's models are tiny, so compiling, not running, is most of its time: the session's
programs are compiled without LLVM's optimisations and with XLA CPU's older fusion emitters
(:data:`FAST_COMPILE`, through ``XLA_FLAGS``, which subprocesses inherit), which halves the
compile time. What is computed (the HLO) is the same and no fast-math is involved: results agree
with a default build to float rounding. A test that starts a process with ``XLA_FLAGS`` of its
own appends them to the inherited ones."""

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile

import jax

FAST_COMPILE = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false")


def _xla_accepts(flags: str) -> bool:
    """Whether this jaxlib's XLA starts with ``XLA_FLAGS=flags`` (it aborts on a flag it does
    not know, and a later XLA may drop the second of :data:`FAST_COMPILE`)."""
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    probe = [sys.executable, "-c", "import jax; jax.devices()"]
    return subprocess.run(probe, env=env, capture_output=True).returncode == 0


if "JAXDIFF_TEST_XLA_FLAGS" not in os.environ:  # the session's first process, before JAX starts
    for fast in (FAST_COMPILE, FAST_COMPILE[:1]):
        flags = " ".join([os.environ.get("XLA_FLAGS", ""), *fast]).strip()
        if _xla_accepts(flags):
            os.environ["XLA_FLAGS"] = flags
            break
    os.environ["JAXDIFF_TEST_XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "")

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # the session's first process: it owns it
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxdiff-test-xla-cache-")
    atexit.register(functools.partial(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], True))
# programs that compile in under this many seconds are not worth a file
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update(
    "jax_persistent_cache_min_compile_time_secs",
    float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
)


def pytest_collection_modifyitems(items):
    """Modules holding ``slow`` tests run first, each module's tests still together (for its
    fixtures): with ``-n``, the longest tests start early instead of leaving one worker alone at
    the end."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)  # stable: the order is kept otherwise
