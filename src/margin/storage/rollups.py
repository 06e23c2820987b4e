"""Rollups: per minute, hour and UTC day, per key/team/tag/model/tier/deployment, with latency
histograms, computed from a batch of rows in Python and upserted by the backends in the same
transaction as the rows. Pure functions, no driver.

Latency and TTFT go into log-spaced bins, eight per doubling: a percentile read back from a
histogram is the bin's geometric midpoint, within 4.5% of the exact value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from margin.storage.ledger_row import BUDGET_REFUSED, RATE_LIMIT_REFUSED, USAGE_COLUMNS, LedgerRow
from margin.storage.protocols import GROUP_BY_CHOICES, GroupBy

MINUTE, HOUR, DAY = 60, 3600, 86400
PERIODS = (MINUTE, HOUR, DAY)
NO_VALUE = "(none)"
BINS_PER_DOUBLING = 8
_SMALLEST_MS = 0.01
CACHE_HITS = frozenset({"exact", "semantic", "coalesced"})
# rejected: answers produced but not sent (a cascade checked and escalated them); refused_*: requests
# margin's own limits refused (402 budget, 429 rate or concurrency), counted in `requests` too, never
# as attempts (no upstream call) nor in the latency histograms.
COUNT_COLUMNS = (
    "attempts", "requests", "successful", "error_attempts", "cache_hits", "price_unknown", "rejected",
    "refused_budget", "refused_rate_limit",
)  # fmt: skip
ROLLUP_INT_COLUMNS = (*COUNT_COLUMNS, *USAGE_COLUMNS)
ROLLUP_MONEY_COLUMNS = ("cost_total", "saved_cost", "routing_savings")

RollupKey = tuple[int, int, str, str]  # period_s, bucket_start, dimension, value
HistogramKey = tuple[int, int, str, str, str, int]  # ... metric ("latency" | "ttft"), bin


@dataclass(slots=True)
class RollupDelta:
    """What a set of rows adds to one rollup cell."""

    counts: list[int] = field(default_factory=lambda: [0] * len(ROLLUP_INT_COLUMNS))
    cost_total: Decimal = Decimal(0)
    saved_cost: Decimal = Decimal(0)
    routing_savings: Decimal = Decimal(0)

    def add_row(self, row: LedgerRow) -> None:
        refused = row.status == "refused"
        flags = (
            not refused,
            row.attempt_index == 0,
            row.is_final and row.status == "ok",
            row.status not in ("ok", "refused"),
            row.cache_result in CACHE_HITS,
            row.price_unknown,
            row.status == "ok" and not row.is_final,
            refused and row.error_class == BUDGET_REFUSED,
            refused and row.error_class == RATE_LIMIT_REFUSED,
        )
        for i, value in enumerate((*flags, *(getattr(row, c) for c in USAGE_COLUMNS))):
            self.counts[i] += int(value)
        self.cost_total += row.cost_total
        self.saved_cost += row.saved_cost
        self.routing_savings += row.routing_savings

    def add(self, other: RollupDelta) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.cost_total += other.cost_total
        self.saved_cost += other.saved_cost
        self.routing_savings += other.routing_savings


def dimension_values(row: LedgerRow) -> dict[GroupBy, tuple[str, ...]]:
    """The group(s) a row belongs to per dimension; a row with two tags counts under both."""
    return group_values(row.key_id, row.team, row.tags, row.model, row.tier, row.deployment)


def group_values(
    key_id: str, team: str, tags: Iterable[str], model: str, tier: int | None, deployment: str
) -> dict[GroupBy, tuple[str, ...]]:
    return {
        "key": (key_id or NO_VALUE,),
        "team": (team or NO_VALUE,),
        "tag": tuple(dict.fromkeys(tags)) or (NO_VALUE,),
        "model": (model or NO_VALUE,),
        "tier": (NO_VALUE if tier is None else str(tier),),
        "deployment": (deployment or NO_VALUE,),
    }


def cells_of(ts: float, values: Mapping[GroupBy, tuple[str, ...]]) -> list[RollupKey]:
    """Every rollup cell a row at `ts` with these dimension values contributes to."""
    return [
        (period, int(ts // period) * period, dimension, value)
        for period in PERIODS
        for dimension in GROUP_BY_CHOICES
        for value in values[dimension]
    ]


def latency_bin(ms: float) -> int:
    return math.floor(math.log2(max(ms, _SMALLEST_MS)) * BINS_PER_DOUBLING)


def bin_midpoint(index: int) -> float:
    return float(2 ** ((index + 0.5) / BINS_PER_DOUBLING))


# Rows with the same minute and the same group values land in the same cells: sum them first.
_Signature = tuple[int, str, str, tuple[str, ...], str, int | None, str]


def rollup_deltas(rows: Iterable[LedgerRow]) -> tuple[dict[RollupKey, RollupDelta], dict[HistogramKey, int]]:
    """Sum rows into rollup cells and histogram bins (sorted later, so upserts lock in one order)."""
    by_signature: dict[_Signature, tuple[RollupDelta, dict[tuple[str, int], int]]] = {}
    for row in rows:
        minute = int(row.ts // MINUTE) * MINUTE
        signature = (minute, row.key_id, row.team, row.tags, row.model, row.tier, row.deployment)
        delta, timings = by_signature.setdefault(signature, (RollupDelta(), {}))
        delta.add_row(row)
        if row.status == "refused":
            continue  # answered by margin alone in microseconds: not an upstream latency
        for metric, ms in (("latency", row.latency_ms), ("ttft", row.ttft_ms)):
            if ms is not None:
                timing = (metric, latency_bin(ms))
                timings[timing] = timings.get(timing, 0) + 1
    deltas: dict[RollupKey, RollupDelta] = {}
    bins: dict[HistogramKey, int] = {}
    for (minute, key_id, team, tags, model, tier, deployment), (delta, timings) in by_signature.items():
        for cell in cells_of(minute, group_values(key_id, team, tags, model, tier, deployment)):
            deltas.setdefault(cell, RollupDelta()).add(delta)
            for (metric, index), n in timings.items():
                key = (*cell, metric, index)
                bins[key] = bins.get(key, 0) + n
    return deltas, bins


def percentile(histogram: Mapping[int, int], q: float) -> float | None:
    """The nearest-rank q-quantile (0 < q <= 1) of a histogram, as its bin's midpoint."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return bin_midpoint(index)
    return bin_midpoint(max(histogram))


def merge_histograms(histograms: Iterable[Mapping[int, int]]) -> dict[int, int]:
    merged: dict[int, int] = {}
    for histogram in histograms:
        for index, n in histogram.items():
            merged[index] = merged.get(index, 0) + n
    return merged


def rollup_segments(since: float, until: float) -> list[tuple[int, int, int]]:
    """Cover [since, until), widened to whole minutes (the finest rollup: since rounds down, until up,
    so a window ending now includes the current minute), with the fewest rollup buckets:
    (period_s, first bucket_start, end) triples, days in the middle, hours and minutes at the edges."""
    lo, hi = math.floor(since / MINUTE) * MINUTE, math.ceil(until / MINUTE) * MINUTE
    return _cover(lo, hi, (DAY, HOUR, MINUTE)) if hi > lo else []


def _cover(lo: int, hi: int, periods: tuple[int, ...]) -> list[tuple[int, int, int]]:
    if lo >= hi:
        return []
    period, finer = periods[0], periods[1:]
    if not finer:
        return [(period, lo, hi)]
    first, last = -(-lo // period) * period, hi // period * period
    if first >= last:
        return _cover(lo, hi, finer)
    return [*_cover(lo, first, finer), (period, first, last), *_cover(last, hi, finer)]
