"""Issue 21, section 4: the performance page's work is bounded by the rollup cells in its window, not by
the ledger's rows. Two real SQLite ledgers hold the same cells (every hour of a day, each of three
deployments); the second has ten times the rows, spread over many more latency bins. The database work
of building the page (SQLite virtual-machine steps, counted by a progress handler on the store's own
connection) is the same on both, and so are the rows the queries return; the figures differ."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from margin.dashboard.explorer import Scope
from margin.dashboard.live import NoLive
from margin.dashboard.performance import build_performance
from margin.storage.ledger_row import LedgerRow
from margin.storage.sqlite.store import SqliteLedgerStore
from tests.support.ledger_rows import make_row

DAY = datetime(2026, 12, 10, tzinfo=UTC).timestamp()
NOW = datetime(2026, 12, 11, 12, tzinfo=UTC)
DEPLOYMENTS = ("small", "mid", "large")


def ledger_rows(per_cell: int, spread: float, seed: int) -> list[LedgerRow]:
    """`per_cell` rows in every (hour, deployment) cell of DAY; latencies lognormal with `spread`."""
    rng = random.Random(seed)
    rows = []
    for hour in range(24):
        for d, deployment in enumerate(DEPLOYMENTS):
            for i in range(per_cell):
                n = (hour * len(DEPLOYMENTS) + d) * per_cell + i
                rows.append(make_row(n, ts=DAY + hour * 3600 + 60 + i % 3000, deployment=deployment,
                                     model=deployment, latency_ms=rng.lognormvariate(6, spread),
                                     ttft_ms=rng.lognormvariate(4.5, spread), output=rng.randint(10, 500),
                                     tokens_per_s=rng.uniform(20, 120)))  # fmt: skip
    return rows


async def page_work(tmp_path: Path, rows: list[LedgerRow], query: dict[str, str]) -> tuple[int, int, dict[str, Any]]:
    """(VM steps, rows returned by the store's queries, figures) of one performance page."""
    store = SqliteLedgerStore(tmp_path / "ledger.db")
    await store.migrate()
    for start in range(0, len(rows), 500):
        await store.write(rows[start : start + 500])
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    def watch(on: bool) -> None:
        store._connection().set_progress_handler(count if on else None, 1)

    returned = [0]
    fetch_all = store._fetch_all

    def counted_fetch(sql: str, params: Any) -> list[Any]:
        found = fetch_all(sql, params)
        returned[0] += len(found)
        return found

    store._fetch_all = counted_fetch  # type: ignore[method-assign]
    try:
        await store._call(watch, True)
        figures = await build_performance(store, NoLive(), query, NOW, Scope(None))
        await store._call(watch, False)
    finally:
        await store.close()
    return steps[0], returned[0], figures


def test_the_performance_pages_database_work_does_not_grow_with_the_ledger(tmp_path: Path) -> None:
    small = ledger_rows(per_cell=4, spread=0.05, seed=1)  # 288 rows, a few bins per cell
    large = ledger_rows(per_cell=40, spread=0.9, seed=2)  # 2,880 rows, dozens of bins per cell
    for query in ({"since": "2026-12-10", "until": "2026-12-11", "period": "hour"}, {"since": "7d"}):
        a = asyncio.run(page_work(tmp_path / f"small-{len(query)}", small, query))
        b = asyncio.run(page_work(tmp_path / f"large-{len(query)}", large, query))
        assert a[0] == b[0] and a[1] == b[1], (query, a[:2], b[:2])
        assert a[2]["summary"]["attempts"] * 10 == b[2]["summary"]["attempts"]
        assert a[2]["summary"]["latency_p95_ms"] != b[2]["summary"]["latency_p95_ms"]
        assert a[2]["summary"]["tokens_per_s"] is not None and b[2]["summary"]["tokens_per_s"] is not None
