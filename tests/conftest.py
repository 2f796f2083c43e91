"""The test session's subprocesses (``python -m jaxdiff ...``, the launcher's workers) share a
persistent XLA compilation cache, so a program that several of them compile (the same tiny
config trained, resumed or run on more processes) is compiled once. The test processes
themselves (pytest and its xdist workers, which inherit the variable) keep compiling in
memory only: some tests count compilations."""

import atexit
import functools
import os
import shutil
import tempfile

import jax

jax.config.update("jax_compilation_cache_dir", None)
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # the session's first process: it owns it
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxdiff-test-xla-cache-")
    atexit.register(functools.partial(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], True))
