"""Per-minute demand on the upstreams, read from the ledger's rows: the trace `margin simulate
--from-ledger` replays against a self-hosted tier's autoscaling policies."""

from __future__ import annotations

import math

from margin.storage.ledger_row import LedgerRow
from margin.storage.protocols import LedgerStore
from margin.storage.rollups import CACHE_HITS

MINUTE = 60


def reached_an_upstream(row: LedgerRow, model_group: str | None) -> bool:
    """A request a model server had to serve: its first attempt, not refused by margin's limits and
    not answered from the cache (those never load a replica)."""
    if model_group is not None and row.model_group != model_group:
        return False
    return row.status != "refused" and row.attempt_index == 0 and row.cache_result not in CACHE_HITS


async def read_minute_demand(
    store: LedgerStore, since: float, until: float, model_group: str | None = None
) -> list[int]:
    """Requests per minute over [since, until), the first bucket starting at the minute `since`
    falls in; minutes without requests are 0."""
    first = math.floor(since / MINUTE) * MINUTE
    counts = [0] * max(0, math.ceil((until - first) / MINUTE))
    async for row in store.query_rows(first, until):
        index = int((row.ts - first) // MINUTE)
        if 0 <= index < len(counts) and reached_an_upstream(row, model_group):
            counts[index] += 1
    return counts
