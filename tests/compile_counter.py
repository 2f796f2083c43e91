"""Counting XLA compilations: ``jax.monitoring`` listeners on the backend-compile event and on
the persistent cache's hits (a program the session's cache already holds is read back instead of
compiled: it counts as a compilation, the same as when the cache is cold)."""

import contextlib

import jax

_COMPILED = "/jax/core/compile/backend_compile_duration"
_CACHE_HIT = "/jax/compilation_cache/cache_hits"
_total = [0]


def _on_duration(event, duration_secs, **kwargs):
    if event == _COMPILED:
        _total[0] += 1


def _on_event(event, **kwargs):
    if event == _CACHE_HIT:
        _total[0] += 1


jax.monitoring.register_event_duration_secs_listener(_on_duration)
jax.monitoring.register_event_listener(_on_event)


class Count:
    value = 0


@contextlib.contextmanager
def count_compilations():
    """``with count_compilations() as c: ...``; then ``c.value`` is how many programs XLA
    compiled (or read back from the persistent compilation cache) inside the block."""
    count, start = Count(), _total[0]
    try:
        yield count
    finally:
        count.value = _total[0] - start
