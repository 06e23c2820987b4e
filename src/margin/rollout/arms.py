"""Per-arm totals from the stored signal windows, and the figures a person reads off them."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from margin.storage.rollouts import ArmWindow, HistogramMetric, SignalDelta

# Latency histograms: bucket b holds durations in (GROWTH^(b-1), GROWTH^b] milliseconds (10% wide),
# so a p95 read off it is within 10% and replicas' histograms add exactly.
GROWTH = 1.1
_LOG_GROWTH = math.log(GROWTH)
# The online judge's outcomes on an arm's answers, kept as the "judge" histogram (bucket = index):
# only `agreed` verdicts add to the quality signal.
JUDGE_OUTCOMES = ("agreed", "disagreed", "unparseable", "error", "dropped")


def bucket_of(ms: float) -> int:
    return math.ceil(math.log(max(ms, 0.01)) / _LOG_GROWTH)


def bucket_upper_ms(bucket: int) -> float:
    return GROWTH**bucket


@dataclass(slots=True)
class ArmTotals:
    requests: int = 0
    errors: int = 0
    successes: int = 0
    cost_success: Decimal = Decimal(0)
    cost_total: Decimal = Decimal(0)
    quality_n: int = 0
    quality_sum: float = 0.0
    quality_sumsq: float = 0.0
    dropped: int = 0
    histograms: dict[HistogramMetric, dict[int, int]] = field(default_factory=dict)

    def add(self, window: ArmWindow | SignalDelta) -> None:
        """Add a stored window's totals, or a replica's unflushed delta, to these."""
        self.requests += window.requests
        self.errors += window.errors
        self.successes += window.successes
        self.cost_success += window.cost_success
        self.cost_total += window.cost_total
        self.quality_n += window.quality_n
        self.quality_sum += window.quality_sum
        self.quality_sumsq += window.quality_sumsq
        self.dropped += window.dropped
        for metric, buckets in window.histograms.items():
            mine = self.histograms.setdefault(metric, {})
            for bucket, count in buckets.items():
                mine[bucket] = mine.get(bucket, 0) + count

    def quantile_bucket(self, metric: HistogramMetric, q: float) -> int | None:
        buckets = self.histograms.get(metric) or {}
        total = sum(buckets.values())
        if total == 0:
            return None
        seen = 0
        for bucket in sorted(buckets):
            seen += buckets[bucket]
            if seen >= q * total:
                return bucket
        return max(buckets)

    def above(self, metric: HistogramMetric, bucket: int) -> tuple[int, int]:
        """(observations in buckets above `bucket`, all observations)."""
        buckets = self.histograms.get(metric) or {}
        return sum(c for b, c in buckets.items() if b > bucket), sum(buckets.values())

    def summary(self) -> dict[str, object]:
        p95 = self.quantile_bucket("latency", 0.95)
        ttft = self.quantile_bucket("ttft", 0.95)
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.errors / self.requests, 6) if self.requests else None,
            "p95_latency_ms": round(bucket_upper_ms(p95), 3) if p95 is not None else None,
            "ttft_p95_ms": round(bucket_upper_ms(ttft), 3) if ttft is not None else None,
            "cost_per_success_usd": str(self.cost_success / self.successes) if self.successes else None,
            "quality": round(self.quality_sum / self.quality_n, 6) if self.quality_n else None,
            "quality_n": self.quality_n,
            "cost_usd": str(self.cost_total),
            "dropped": self.dropped,
            **self._judged(),
        }

    def _judged(self) -> dict[str, object]:
        counts = self.histograms.get("judge")
        if not counts:
            return {}
        return {"judge": {name: counts.get(i, 0) for i, name in enumerate(JUDGE_OUTCOMES)}}


def totals(windows: Iterable[ArmWindow], *, arm: str, steps: Iterable[int] | None = None) -> ArmTotals:
    """One arm's totals over the given steps (all steps when None)."""
    wanted = None if steps is None else set(steps)
    out = ArmTotals()
    for window in windows:
        if window.arm == arm and (wanted is None or window.step in wanted):
            out.add(window)
    return out
