"""Where adapters say how long the upstream itself took, per attempt.

The gateway's overhead is a request's time minus the time its upstreams spent. Only the adapter
knows when the request bytes start going out and when the upstream's last byte came in, so it marks
those two moments on the clock of the attempt in progress. The call stage opens that clock
(`track`) right before it calls the adapter; a context variable carries it, so the one `Provider`
protocol stays as it is (an adapter that marks nothing falls back to the call stage's own timing).

A context variable is per task, and the clock is a mutable object: a stream read later by another
task (Starlette's response task, the drain pump) inherits the clock that was current when that task
was created, and an attempt started inside that task sets its own.
"""

from __future__ import annotations

import time
from contextvars import ContextVar

import aiohttp

from margin.types import UpstreamClock

_CURRENT: ContextVar[UpstreamClock | None] = ContextVar("margin_upstream_clock", default=None)


def track(clock: UpstreamClock) -> None:
    """Make `clock` the one the adapter called next in this task marks."""
    _CURRENT.set(clock)


def sent() -> None:
    """The adapter is about to write the request (its body is already serialised)."""
    clock = _CURRENT.get()
    if clock is not None:
        clock.sent_at = time.perf_counter()
        clock.read_at = None


def received() -> None:
    """The adapter has just read bytes from the upstream (or seen it fail)."""
    clock = _CURRENT.get()
    if clock is not None and clock.sent_at is not None:
        clock.read_at = time.perf_counter()


def trace_headers() -> dict[str, str] | None:
    """The W3C trace context the adapter sends with the request it is about to write (None when
    the request is not traced)."""
    clock = _CURRENT.get()
    return clock.trace_headers if clock is not None else None


async def read_body(response: aiohttp.ClientResponse) -> bytes:
    """The whole body of an HTTP upstream's answer: its part of the attempt ends with the last byte
    (or with its failure)."""
    try:
        return await response.read()
    finally:
        received()
