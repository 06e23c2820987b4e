"""The worker's own runtime: garbage-collection pauses and event-loop lag, both on /metrics.

`RuntimeMonitor` is started last by the lifespan, once everything built at start-up exists:
- it sets the collector's thresholds and freezes the start-up heap (`gc.freeze`), so a full
  collection walks only what was allocated since, not every module, config and compiled route;
- a `gc.callbacks` hook times each collection. The hook only appends to a bounded deque (it runs
  inside the collector, where taking prometheus_client's non-reentrant lock could deadlock);
- a periodic task sleeps `loop_lag_interval_s` and measures how late it wakes: the time every
  request on this worker waited for the loop. Each wake also moves the pauses into their histogram.
Nothing here runs on the request path. Shutting down restores the collector as it found it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections import deque
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram

from margin.config.runtime import RuntimeConfig

PAUSE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
LAG_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
PAUSES_KEPT = 10_000  # between two wakes of the monitor; older pauses are dropped, never blocking


class RuntimeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.gc_pause = Histogram(
            "margin_gc_pause_seconds", "Garbage-collection pauses of this worker, by generation", ["generation"],
            buckets=PAUSE_BUCKETS, registry=r,
        )  # fmt: skip
        self.gc_pause_max = Gauge(
            "margin_gc_pause_max_seconds", "Longest collection pause over the last window", registry=r
        )
        self.lag = Histogram(
            "margin_event_loop_lag_seconds", "How late the event loop ran a timer: what every request waited",
            buckets=LAG_BUCKETS, registry=r,
        )  # fmt: skip
        self.lag_max = Gauge(
            "margin_event_loop_lag_max_seconds", "Largest event-loop lag over the last window", registry=r
        )
        self.generations = [self.gc_pause.labels(str(g)) for g in range(3)]


class WindowMax:
    """The largest value seen in the last complete window (and the current one, once larger)."""

    __slots__ = ("_current", "_ends", "_previous", "window_s")

    def __init__(self, window_s: float, now: float) -> None:
        self.window_s = window_s
        self._ends = now + window_s
        self._current = self._previous = 0.0

    def add(self, value: float, now: float) -> float:
        if now >= self._ends:
            skipped = now - self._ends >= self.window_s  # a whole window went by without a value
            self._previous, self._current = (0.0 if skipped else self._current), 0.0
            self._ends = now + self.window_s
        self._current = max(self._current, value)
        return max(self._previous, self._current)


class GcPauses:
    """The `gc.callbacks` hook: (generation, seconds) of each collection, kept until drained."""

    def __init__(self, kept: int = PAUSES_KEPT) -> None:
        self.pauses: deque[tuple[int, float]] = deque(maxlen=kept)
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._started))

    def drain(self) -> list[tuple[int, float]]:
        out = []
        while self.pauses:
            out.append(self.pauses.popleft())
        return out


class RuntimeMonitor:
    def __init__(self, config: RuntimeConfig, registry: CollectorRegistry) -> None:
        self.config = config
        self.metrics = RuntimeMetrics(registry)
        self.pauses = GcPauses()
        self._task: asyncio.Task[None] | None = None
        self._thresholds: tuple[int, int, int] | None = None
        self._froze = False

    def start(self) -> None:
        """Called once start-up is done: what exists now lives as long as the worker."""
        if self.config.gc_thresholds is not None:
            self._thresholds = gc.get_threshold()
            gc.set_threshold(*self.config.gc_thresholds)
        if self.config.gc_freeze:
            gc.collect()  # start-up's garbage is freed, not frozen for the worker's life
            gc.freeze()
            self._froze = True
        gc.callbacks.append(self.pauses)
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="margin-loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self.pauses)
        if self._froze:
            gc.unfreeze()  # another app in this process (tests) must not inherit a frozen heap
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.config.loop_lag_interval_s
        lag_max = WindowMax(self.config.loop_lag_window_s, loop.time())
        pause_max = WindowMax(self.config.loop_lag_window_s, loop.time())
        while True:
            expected = loop.time() + interval
            await asyncio.sleep(interval)
            now = loop.time()
            lag = max(0.0, now - expected)
            self.metrics.lag.observe(lag)
            self.metrics.lag_max.set(lag_max.add(lag, now))
            longest = 0.0
            for generation, seconds in self.pauses.drain():
                self.metrics.generations[min(generation, 2)].observe(seconds)
                longest = max(longest, seconds)
            self.metrics.gc_pause_max.set(pause_max.add(longest, now))
