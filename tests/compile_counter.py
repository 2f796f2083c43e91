"""Counting XLA compilations: a ``jax.monitoring`` listener on the backend-compile event."""

import contextlib

import jax

_EVENT = "/jax/core/compile/backend_compile_duration"
_total = [0]


def _listener(event, duration_secs, **kwargs):
    if event == _EVENT:
        _total[0] += 1


jax.monitoring.register_event_duration_secs_listener(_listener)


class Count:
    value = 0


@contextlib.contextmanager
def count_compilations():
    """``with count_compilations() as c: ...``; then ``c.value`` is how many programs XLA
    compiled inside the block."""
    count, start = Count(), _total[0]
    try:
        yield count
    finally:
        count.value = _total[0] - start
