"""`server.runtime:`: the interpreter's garbage collector and the event-loop lag monitor (docs/performance.md)."""

from __future__ import annotations

from pydantic import Field

from margin.config.base import Strict

# Python's default (700, 10, 10) runs a young collection every 700 net container allocations and a
# full one every 100 young ones: under load, a full collection every 0.4-0.5 s that walks the whole
# start-up heap (35-45 ms, freeing nothing). Fewer, larger young collections and a frozen start-up
# heap keep each collection short (docs/performance.md: how these were measured).
DEFAULT_GC_THRESHOLDS = (50_000, 20, 100)


class RuntimeConfig(Strict):
    """Per worker process. The collector's pauses and the loop's lag are exported on /metrics
    (`margin_gc_pause_seconds`, `margin_event_loop_lag_seconds`) whatever these settings."""

    gc_freeze: bool = Field(
        True, description="once started, move the start-up heap out of the collector's reach (gc.freeze)"
    )
    gc_thresholds: tuple[int, int, int] | None = Field(
        DEFAULT_GC_THRESHOLDS, description="gc.set_threshold(gen0, gen1, gen2); null keeps Python's (700, 10, 10)"
    )
    loop_lag_interval_s: float = Field(
        0.25, gt=0, le=60, description="how often the event-loop lag monitor wakes to measure its own delay"
    )
    loop_lag_window_s: float = Field(
        10.0, gt=0, le=3600, description="margin_event_loop_lag_max_seconds: the largest lag over this window"
    )
