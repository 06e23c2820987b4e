"""Rollups: per minute, hour and UTC day, per key/team/tag/model/tier/deployment, with latency
histograms, computed from a batch of rows in Python and upserted by the backends in the same
transaction as the rows. Pure functions, no driver.

Latency and TTFT go into log-spaced bins with fixed boundaries, four per doubling of milliseconds
from 0.125 ms to 2^20 ms (17.5 min; a time outside falls in the first or last bin): a percentile read
back from a histogram is the bin's geometric midpoint, within 9% of the exact value. Each cell keeps
its bins as fixed columns beside the tokens generated and the time spent generating them
(`margin.storage.timing`), so a read costs the same per cell however many rows the cell holds. Timing
cells exist for hours and days only (a window's percentiles and tokens/s read whole hours: its edges
widen to the hour), which keeps their writes near what the per-bin rows they replaced cost.

Each cell also counts requests by what their cache lookup found: hits by kind, misses, bypasses by
reason (from the request's rows: `cache_result`, and the `cache` entry its last row's `extra` has).
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
BINS_PER_DOUBLING = 4
FIRST_BIN = -3 * BINS_PER_DOUBLING  # [0.125 ms, 0.149 ms); anything faster counts here
N_BINS = 23 * BINS_PER_DOUBLING  # the last, from 2^(79/4) ms, takes anything slower
_SMALLEST_MS = 0.01
CACHE_HITS = frozenset({"exact", "semantic", "coalesced"})
BYPASS_REASONS = ("disabled", "sampled", "media")  # margin.pipeline.cache's; any other counts as "other"
CACHE_COLUMNS = (
    "hits_exact", "hits_semantic", "hits_coalesced", "cache_misses",
    *(f"bypass_{reason}" for reason in (*BYPASS_REASONS, "other")),
)  # fmt: skip
# rejected: answers produced but not sent (a cascade checked and escalated them); refused_*: requests
# margin's own limits refused (402 budget, 429 rate or concurrency), counted in `requests` too, never
# as attempts (no upstream call) nor in the latency histograms.
COUNT_COLUMNS = (
    "attempts", "requests", "successful", "error_attempts", "cache_hits", "price_unknown", "rejected",
    "refused_budget", "refused_rate_limit", *CACHE_COLUMNS,
)  # fmt: skip
ROLLUP_INT_COLUMNS = (*COUNT_COLUMNS, *USAGE_COLUMNS)
_CACHE_AT = {name: COUNT_COLUMNS.index(name) for name in CACHE_COLUMNS}
_FIRST_USAGE = len(COUNT_COLUMNS)
ROLLUP_MONEY_COLUMNS = ("cost_total", "saved_cost", "routing_savings")

RollupKey = tuple[int, int, str, str]  # period_s, bucket_start, dimension, value


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
        counts = self.counts
        for i, value in enumerate(flags):
            counts[i] += int(value)
        for i, column in enumerate(USAGE_COLUMNS, _FIRST_USAGE):
            counts[i] += getattr(row, column)
        cache = _cache_column(row)
        if cache is not None:
            self.counts[_CACHE_AT[cache]] += 1
        self.cost_total += row.cost_total
        self.saved_cost += row.saved_cost
        self.routing_savings += row.routing_savings

    def add(self, other: RollupDelta) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.cost_total += other.cost_total
        self.saved_cost += other.saved_cost
        self.routing_savings += other.routing_savings


def _cache_column(row: LedgerRow) -> str | None:
    """What the request's cache lookup found: a hit by its row's `cache_result`; a miss or a bypass
    (and its reason) by the `cache` entry of the request's last row's `extra` (the x-margin-cache
    header the client got: `miss`, `bypass; sampled`), so each request counts once."""
    if row.cache_result in CACHE_HITS:
        return f"hits_{row.cache_result}"
    found = row.extra.get("cache")
    if found is None or row.status == "refused":
        return None
    if found == "miss":
        return "cache_misses"
    if not found.startswith("bypass"):
        return None
    reason = found.partition(";")[2].strip()
    return f"bypass_{reason}" if reason in BYPASS_REASONS else "bypass_other"


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
    found = math.floor(math.log2(max(ms, _SMALLEST_MS)) * BINS_PER_DOUBLING)
    return min(max(found, FIRST_BIN), FIRST_BIN + N_BINS - 1)


def bin_midpoint(index: int) -> float:
    return float(2 ** ((index + 0.5) / BINS_PER_DOUBLING))


@dataclass(slots=True)
class TimingDelta:
    """What a set of rows adds to one cell's timings: latency and TTFT bins (`latency_bin`), and the
    output tokens of rows that measured a generation rate with the time that generation took."""

    latency: dict[int, int] = field(default_factory=dict)
    ttft: dict[int, int] = field(default_factory=dict)
    generated_tokens: int = 0
    generation_us: int = 0

    def add_row(self, row: LedgerRow) -> None:
        if row.status == "refused":
            return  # answered by margin alone in microseconds: not an upstream latency
        index = latency_bin(row.latency_ms)
        self.latency[index] = self.latency.get(index, 0) + 1
        if row.ttft_ms is not None:
            index = latency_bin(row.ttft_ms)
            self.ttft[index] = self.ttft.get(index, 0) + 1
        tokens = row.output + row.output_reasoning + row.output_audio
        if row.tokens_per_s and tokens > 0:
            self.generated_tokens += tokens
            self.generation_us += round(tokens / row.tokens_per_s * 1e6)

    def add(self, other: TimingDelta) -> None:
        for mine, theirs in ((self.latency, other.latency), (self.ttft, other.ttft)):
            for index, n in theirs.items():
                mine[index] = mine.get(index, 0) + n
        self.generated_tokens += other.generated_tokens
        self.generation_us += other.generation_us

    def __bool__(self) -> bool:
        return bool(self.latency or self.ttft or self.generated_tokens)


# Rows with the same minute and the same group values land in the same cells: sum them first.
_Signature = tuple[int, str, str, tuple[str, ...], str, int | None, str]


def rollup_deltas(rows: Iterable[LedgerRow]) -> tuple[dict[RollupKey, RollupDelta], dict[RollupKey, TimingDelta]]:
    """Sum rows into rollup cells and their timings (sorted later, so upserts lock in one order);
    a cell only refused requests reached has no timings."""
    by_signature: dict[_Signature, tuple[RollupDelta, TimingDelta]] = {}
    for row in rows:
        minute = int(row.ts // MINUTE) * MINUTE
        signature = (minute, row.key_id, row.team, row.tags, row.model, row.tier, row.deployment)
        delta, timing = by_signature.setdefault(signature, (RollupDelta(), TimingDelta()))
        delta.add_row(row)
        timing.add_row(row)
    deltas: dict[RollupKey, RollupDelta] = {}
    timings: dict[RollupKey, TimingDelta] = {}
    for (minute, key_id, team, tags, model, tier, deployment), (delta, timing) in by_signature.items():
        for cell in cells_of(minute, group_values(key_id, team, tags, model, tier, deployment)):
            deltas.setdefault(cell, RollupDelta()).add(delta)
            if timing and cell[0] != MINUTE:  # timings are kept per hour and day (`timing_segments`)
                timings.setdefault(cell, TimingDelta()).add(timing)
    return deltas, timings


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


def timing_segments(since: float, until: float) -> list[tuple[int, int, int]]:
    """The timing cells covering [since, until) widened to whole hours (the finest timing cell)."""
    lo, hi = math.floor(since / HOUR) * HOUR, math.ceil(until / HOUR) * HOUR
    return _cover(lo, hi, (DAY, HOUR)) if hi > lo else []


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
