"""Hourly traffic read back from the ledger, for `margin plan --from-ledger`: per UTC hour and cost_rank,
the requests, tokens, cache hits and spend.

By default it reads the ledger's hourly rollups (`ledger_rollup`, dimension `tier`, which holds each
deployment's cost_rank): one range scan, and hour cells outlive `prune`. Rollups are kept per single
dimension and none of them is the model group, so for one model group it reads the raw attempt rows of
the window instead (slower, and only as far back as rows are kept).

Both read whole UTC hours: those that start inside [since, until).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from margin.storage.ledger_row import LedgerRow
from margin.storage.protocols import BucketRow, LedgerStore
from margin.storage.rollups import CACHE_HITS, HOUR, NO_VALUE

INPUT_BUCKETS = ("input_uncached", "input_cache_read", "input_cache_write", "input_audio", "input_image")
OUTPUT_BUCKETS = ("output", "output_reasoning", "output_audio")


@dataclass(frozen=True, slots=True)
class HourlyUsage:
    """What one cost_rank served in one UTC hour. `requests` counts first attempts (cache hits
    included); tokens and spend sum every attempt, retries and fallbacks included."""

    hour: datetime
    tier: str  # the deployments' cost_rank as text, or "(none)" (cache hits, unranked deployments)
    requests: int
    input_tokens: int
    output_tokens: int
    cache_hits: int
    cost_total: Decimal


async def read_hourly_usage(
    store: LedgerStore, since: float, until: float, model_group: str | None = None
) -> list[HourlyUsage]:
    """The hours that start in [since, until), in (hour, tier) order; all model groups unless one is named."""
    if model_group is None:
        return [_from_bucket(bucket) for bucket in await store.bucket_report(since, until, "tier", HOUR)]
    first, end = (math.ceil(moment / HOUR) * HOUR for moment in (since, until))
    cells = _HourlyCells()
    async for row in store.query_rows(first, end):
        if row.model_group == model_group:
            cells.add(row)
    return cells.usage()


def _from_bucket(bucket: BucketRow) -> HourlyUsage:
    row = bucket.row
    return HourlyUsage(
        hour=datetime.fromtimestamp(bucket.start, UTC),
        tier=row.group,
        requests=row.requests - row.refused_budget - row.refused_rate_limit,  # served traffic only
        input_tokens=_sum(row.tokens, INPUT_BUCKETS),
        output_tokens=_sum(row.tokens, OUTPUT_BUCKETS),
        cache_hits=row.cache_hits,
        cost_total=row.cost_total,
    )


def _sum(tokens: Mapping[str, int], buckets: Iterable[str]) -> int:
    return sum(tokens.get(bucket, 0) for bucket in buckets)


class _HourlyCells:
    """The rollups' figures (see `storage.rollups.RollupDelta`), summed from raw rows as they stream by."""

    def __init__(self) -> None:
        self._counts: dict[tuple[int, str], list[int]] = {}  # requests, input, output, cache hits
        self._spend: dict[tuple[int, str], Decimal] = {}

    def add(self, row: LedgerRow) -> None:
        if row.status == "refused":
            return  # never served: no capacity used
        key = (int(row.ts // HOUR) * HOUR, NO_VALUE if row.tier is None else str(row.tier))
        counts = self._counts.setdefault(key, [0, 0, 0, 0])
        counts[0] += row.attempt_index == 0
        counts[1] += sum(getattr(row, bucket) for bucket in INPUT_BUCKETS)
        counts[2] += sum(getattr(row, bucket) for bucket in OUTPUT_BUCKETS)
        counts[3] += row.cache_result in CACHE_HITS
        self._spend[key] = self._spend.get(key, Decimal(0)) + row.cost_total

    def usage(self) -> list[HourlyUsage]:
        out = []
        for start, tier in sorted(self._counts):
            requests, tokens_in, tokens_out, hits = self._counts[(start, tier)]
            hour = datetime.fromtimestamp(start, UTC)
            out.append(HourlyUsage(hour, tier, requests, tokens_in, tokens_out, hits, self._spend[(start, tier)]))
        return out
