"""Rates and p95s over a sliding window, from margin's own cumulative metrics.

Every tick the autoscaler copies the cumulative values it needs out of the registry (attempts,
tokens in and out, the latency and TTFT histograms' buckets, per deployment); the window's figures
are the difference between the newest copy and the oldest one still inside the window. Nothing is
added to the request path: the recorder already keeps these counters off it."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client import Counter, Histogram

from margin.metrics import Metrics

INPUT_BUCKETS = frozenset({"input_uncached", "input_cache_read", "input_cache_write"})
OUTPUT_BUCKETS = frozenset({"output"})  # output_reasoning is a part of output, not added to it


@dataclass(slots=True)
class Totals:
    """Cumulative values for one deployment at one instant."""

    attempts: float = 0.0
    unserved: float = 0.0  # requests that found no healthy endpoint (circuit open, connection refused)
    tokens_in: float = 0.0
    tokens_out: float = 0.0
    latency: dict[float, float] = field(default_factory=dict)  # le -> cumulative count
    ttft: dict[float, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Rates:
    seconds: float  # how much time the window actually covers (shorter right after start-up)
    attempts_per_s: float
    unserved_per_s: float
    tokens_in_per_s: float
    tokens_out_per_s: float
    latency_p95_s: float | None  # None: nothing finished in the window
    ttft_p95_s: float | None


def read_totals(metrics: Metrics, names: Iterable[str], unserved: Mapping[str, int]) -> dict[str, Totals]:
    totals = {name: Totals(unserved=float(unserved.get(name, 0))) for name in names}
    for sample in _samples(metrics.attempts):
        if sample[0] == "margin_upstream_attempts_total" and (t := totals.get(sample[1]["deployment"])):
            t.attempts += sample[2]
    for name, labels, value in _samples(metrics.tokens):
        t = totals.get(labels["deployment"])
        if t is None or not name.endswith("_total"):
            continue
        if labels["bucket"] in INPUT_BUCKETS:
            t.tokens_in += value
        elif labels["bucket"] in OUTPUT_BUCKETS:
            t.tokens_out += value
    for histogram, attr in ((metrics.latency, "latency"), (metrics.ttft, "ttft")):
        for name, labels, value in _samples(histogram):
            if name.endswith("_bucket") and (t := totals.get(labels["deployment"])):
                getattr(t, attr)[float(labels["le"])] = value
    return totals


def _samples(metric: Counter | Histogram) -> Iterable[tuple[str, dict[str, str], float]]:
    for family in metric.collect():
        for sample in family.samples:
            yield sample.name, sample.labels, sample.value


class Window:
    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._snapshots: deque[tuple[float, dict[str, Totals]]] = deque()

    def add(self, now: float, totals: dict[str, Totals]) -> None:
        self._snapshots.append((now, totals))
        # keep the newest snapshot at least window_s old as the window's start
        while len(self._snapshots) > 2 and now - self._snapshots[1][0] >= self.window_s:
            self._snapshots.popleft()

    def rates(self, name: str) -> Rates | None:
        if len(self._snapshots) < 2:
            return None
        (t0, first), (t1, last) = self._snapshots[0], self._snapshots[-1]
        a, b, seconds = first.get(name, Totals()), last.get(name, Totals()), max(t1 - t0, 1e-9)
        return Rates(
            seconds=seconds,
            attempts_per_s=(b.attempts - a.attempts) / seconds,
            unserved_per_s=(b.unserved - a.unserved) / seconds,
            tokens_in_per_s=(b.tokens_in - a.tokens_in) / seconds,
            tokens_out_per_s=(b.tokens_out - a.tokens_out) / seconds,
            latency_p95_s=quantile(a.latency, b.latency, 0.95),
            ttft_p95_s=quantile(a.ttft, b.ttft, 0.95),
        )


def quantile(before: Mapping[float, float], after: Mapping[float, float], q: float) -> float | None:
    """The q-quantile of the observations between two cumulative bucket snapshots, interpolated
    linearly inside its bucket as Prometheus' histogram_quantile does (the +Inf bucket answers its
    lower bound)."""
    bounds = sorted(after)
    counts = [after[le] - before.get(le, 0.0) for le in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for le, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if math.isinf(le):
                return lower
            inside = count - below
            return lower + (le - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = le, count
    return lower
