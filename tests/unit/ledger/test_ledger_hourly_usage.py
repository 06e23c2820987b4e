"""margin.ledger.hourly_usage: the hourly series `margin plan --from-ledger` reads, from rollups and from rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from tests.support.ledger_rows import make_row

from margin.ledger.hourly_usage import HourlyUsage, read_hourly_usage
from margin.storage import LedgerStore, open_ledger_store
from margin.storage.ledger_row import LedgerRow

DAY0 = datetime(2026, 5, 4, tzinfo=UTC).timestamp()
HOUR = 3600


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[LedgerStore]:
    opened = open_ledger_store(f"sqlite:///{tmp_path}/ledger.db", tmp_path)
    await opened.migrate()
    yield opened
    await opened.close()


def _rows() -> list[LedgerRow]:
    cost = Decimal("0.000125")
    return [
        # 09:xx, chat on cost_rank 1: a request with a failed first attempt and a retry, and a plain one
        make_row(1, ts=DAY0 + 9 * HOUR + 5, status="error", is_final=False, input_uncached=0, cost_total=Decimal(0)),
        make_row(
            1,
            ts=DAY0 + 9 * HOUR + 6,
            attempt_id="req-1:1",
            attempt_index=1,
            input_uncached=90,
            input_cache_read=10,
            output=40,
            output_reasoning=2,
            cost_total=cost,
        ),
        make_row(2, ts=DAY0 + 9 * HOUR + 7, input_uncached=50, output=20, cost_total=cost),
        # 09:xx, a cache hit (no cost_rank)
        make_row(
            3,
            ts=DAY0 + 9 * HOUR + 8,
            tier=None,
            cache_result="exact",
            input_uncached=50,
            output=20,
            cost_total=Decimal(0),
        ),
        # 11:xx, the embeddings group on cost_rank 2
        make_row(4, ts=DAY0 + 11 * HOUR, model_group="embed", tier=2, input_uncached=7, cost_total=cost),
    ]


async def test_rollups_give_each_hour_and_cost_rank(store: LedgerStore) -> None:
    await store.write(_rows())
    series = await read_hourly_usage(store, DAY0, DAY0 + 24 * HOUR)
    nine, eleven = datetime.fromtimestamp(DAY0 + 9 * HOUR, UTC), datetime.fromtimestamp(DAY0 + 11 * HOUR, UTC)
    assert series == [
        HourlyUsage(nine, "(none)", 1, 50, 20, 1, Decimal(0)),
        HourlyUsage(nine, "1", 2, 150, 62, 0, Decimal("0.00025")),
        HourlyUsage(eleven, "2", 1, 7, 0, 0, Decimal("0.000125")),
    ]


async def test_a_model_group_is_read_from_rows_with_the_same_figures(store: LedgerStore) -> None:
    await store.write(_rows())
    chat = await read_hourly_usage(store, DAY0, DAY0 + 24 * HOUR, model_group="chat")
    everything = await read_hourly_usage(store, DAY0, DAY0 + 24 * HOUR)
    assert chat == [usage for usage in everything if usage.tier != "2"]
    assert await read_hourly_usage(store, DAY0, DAY0 + 24 * HOUR, model_group="absent") == []


async def test_only_hours_that_start_inside_the_window(store: LedgerStore) -> None:
    await store.write(_rows())
    late = DAY0 + 9 * HOUR + 1  # 09:00 started before the window: left out by both readers
    assert [u.tier for u in await read_hourly_usage(store, late, DAY0 + 24 * HOUR)] == ["2"]
    assert await read_hourly_usage(store, late, DAY0 + 24 * HOUR, model_group="chat") == []
