"""The test session shares one persistent XLA compilation cache among all its processes: pytest,
its xdist workers and the subprocesses they start (``python -m jaxdiff ...``, the launcher's
workers), which inherit the variables. A program that several tests compile (the same tiny config
trained, resumed, sampled or run on more processes) is compiled once and read back after that.

Tests that count compilations (``compile_counter``) count a program read back from this cache as
a compilation too, so what they assert does not depend on which test ran first."""

import atexit
import functools
import os
import shutil
import tempfile

import jax

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
