"""The per-request log on SQLite and PostgreSQL: one request's rows in attempt order, and requests
listed once each by their last row, filtered by team, status and time, newest first, page by page."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from tests.support.postgres import postgres_server

from margin.ledger.request_view import explain_request, list_requests, request_query
from margin.storage import open_ledger_store
from margin.storage.ledger_row import LedgerRow, RowStatus
from margin.storage.protocols import LedgerStore
from margin.storage.request_log import RequestQuery

T0 = 1_765_000_000.0


def attempt(request_id: str, index: int, ts: float, team: str, status: RowStatus, **extra: str) -> LedgerRow:
    return LedgerRow(
        attempt_id=f"{request_id}:{index}", request_id=request_id, attempt_index=index, ts=ts, endpoint="chat",
        key_id="key_1", org="default", team=team, user="u", tags=(), endpoint_class="interactive",
        model_group="chain", route_policy="static", tier=1, deployment=f"d{index}", model="m",
        fallback_index=index, is_final=status == "ok", status=status, error_class=None if status == "ok" else "Boom",
        latency_ms=5.0, ttft_ms=None, tokens_per_s=None, cost_total=Decimal("0.001") * (index + 1), extra=extra,
    )  # fmt: skip


ROWS = [
    attempt("r1", 0, T0, "search", "ok", route="static;deployment=d0"),
    attempt("r2", 0, T0 + 1, "search", "error"),  # a fallback: its last row answered
    attempt("r2", 1, T0 + 1.5, "search", "ok", fallback_from="d0", fallback_reason="upstream_error"),
    attempt("r3", 0, T0 + 2, "ads", "refused"),
    attempt("r4", 0, T0 + 3, "search", "error"),
    attempt("r5", 0, T0 + 3, "search", "ok"),  # the same ts as r4: the attempt id breaks the tie
]


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/ledger.db"
        return
    with postgres_server() as server:
        yield server.create_database("requests")


@pytest.fixture
async def store(store_url: str, tmp_path: Path) -> AsyncIterator[LedgerStore]:
    opened = open_ledger_store(store_url, tmp_path)
    await opened.migrate()
    await opened.write(ROWS)
    yield opened
    await opened.close()


async def test_one_request_is_its_rows_with_the_billed_sum(store: LedgerStore) -> None:
    found = await explain_request(store, "r2")
    assert found is not None
    assert [a["deployment"] for a in found["attempt_rows"]] == ["d0", "d1"]
    assert Decimal(found["cost_usd"]) == Decimal("0.003")
    assert found["decision"] == {"fallback_from": "d0", "fallback_reason": "upstream_error"}
    assert found["status"] == "ok" and found["attempts"] == 2
    assert await explain_request(store, "nope") is None


async def test_requests_are_listed_once_by_their_last_row_and_filtered(store: LedgerStore) -> None:
    every = await store.list_requests(RequestQuery())
    assert [row.request_id for row in every] == ["r5", "r4", "r3", "r2", "r1"]
    assert [row.attempt_index for row in every if row.request_id == "r2"] == [1]
    search_errors = await store.list_requests(RequestQuery(team="search", status="error"))
    assert [row.request_id for row in search_errors] == ["r4"]
    recent = await store.list_requests(RequestQuery(since=T0 + 2))
    assert [row.request_id for row in recent] == ["r5", "r4", "r3"]


async def test_pages_cover_every_request_once(store: LedgerStore) -> None:
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(5):
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = await list_requests(store, request_query(params))
        seen += [item["request_id"] for item in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["r5", "r4", "r3", "r2", "r1"]


def test_query_parameters_are_checked() -> None:
    now = datetime.fromtimestamp(T0, UTC)
    assert request_query({"since": "1h", "team": "x"}, now=now) == RequestQuery(team="x", since=T0 - 3600)
    for bad, message in (({"status": "happy"}, "status must be one of"), ({"limit": "0"}, "limit must be"),
                         ({"limit": "x"}, "whole number"), ({"cursor": "junk"}, "not a cursor"),
                         ({"tem": "x"}, "unknown query parameter(s): tem")):  # fmt: skip
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            request_query(bad, now=now)
