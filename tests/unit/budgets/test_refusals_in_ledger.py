"""Requests margin's own limits refused are in the ledger (one `refused` row each, cost 0) and in
the report's own columns; a key hammering a spent budget cannot flood the ledger."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from limits_support import serve

from margin.ledger.report import build_spend_report
from margin.ledger.report_render import TABLE_WIDTH, render
from margin.pipeline.context import RequestContext
from margin.pipeline.error_labels import ErrorLabels
from margin.pipeline.record import RequestRecord
from margin.pipeline.refusal_rows import RefusalRows
from margin.storage import open_ledger_store
from margin.types import Principal

LIMITS = "rate_limits: [{scope: 'team:ops', requests_per_minute: 2}]"


async def test_refused_requests_are_rows_and_report_columns(tmp_path: Path) -> None:
    async with serve(tmp_path, LIMITS) as gw:
        spender, _ = await gw.create_key(name="search-bot", team="search", budget={"limit_usd": "0.05"})
        ops, _ = await gw.create_key(name="ops-bot", team="ops")
        statuses = [(await gw.chat(spender, model="cheap", max_tokens=8)).status_code for _ in range(2)]
        await gw.settled()
        statuses += [(await gw.chat(spender, model="chat", max_tokens=50)).status_code for _ in range(2)]
        statuses += [(await gw.chat(ops, model="cheap", max_tokens=8)).status_code for _ in range(3)]
        assert statuses == [200, 200, 402, 402, 200, 200, 429]
    store = open_ledger_store(f"sqlite:///{tmp_path}/margin.db", tmp_path)
    now = datetime.now(UTC)
    rows = [row async for row in store.query_rows(0, 4e9)]
    by_team = await build_spend_report(store, since=now - timedelta(hours=1), until=now, group_by="team")
    by_model = await build_spend_report(store, since=now - timedelta(hours=1), until=now, group_by="model")
    await store.close()

    refused = [row for row in rows if row.status == "refused"]
    assert sorted(row.error_class or "" for row in refused) == ["budget_exceeded"] * 2 + ["rate_limit_exceeded"]
    assert all(row.cost_total == 0 and row.deployment == "" and row.model_group for row in refused)
    teams = {line.group: line for line in by_team.lines}
    search, ops_line = teams["search"], teams["ops"]
    assert (search.requests, search.successful, search.refused_budget, search.refused_rate_limit) == (4, 2, 2, 0)
    assert (ops_line.requests, ops_line.successful, ops_line.refused_rate_limit) == (3, 2, 1)
    assert search.attempts == 2 and search.error_attempts == 0  # a refusal never called an upstream
    assert by_team.total.requests == 7 and by_team.total.refused_budget == 2
    models = {line.group: line.requests for line in by_model.lines}
    assert models["(none)"] == 3  # refused before any model answered
    table = render(by_team, "table")
    assert isinstance(table, str) and max(len(line) for line in table.splitlines()) <= TABLE_WIDTH
    header = table.splitlines()[1].split()
    assert header[:6] == ["team", "requests", "ok", "402", "budget", "429"]
    workbook = render(by_team, "xlsx")
    assert isinstance(workbook, bytes)
    with zipfile.ZipFile(io.BytesIO(workbook)) as book:
        strings = book.read("xl/sharedStrings.xml").decode()
        sheets = book.read("xl/workbook.xml").decode()
    assert 'name="Report"' in sheets and 'name="About"' in sheets
    assert all(word in strings for word in ("refused_budget", "refused_rate_limit", "search", "ops", "(total)"))


def _refused(key: str, at: float, status: str = "BudgetRefusal") -> RequestRecord:
    ctx = RequestContext(request_id=f"r{at}", endpoint="chat", wall_started=at, principal=Principal(key_id=key))
    return RequestRecord(ctx=ctx, status=status, usage=None, latency_s=0.0001, ttft_s=None, overhead_s=0.0)


def test_refusal_rows_are_capped_per_key_and_second() -> None:
    rows = RefusalRows(ErrorLabels(), max_per_key_s=3)
    written = [rows.row_of(_refused("k1", 100.0 + i / 100)) for i in range(10)]
    assert sum(row is not None for row in written) == 3 and rows.unrecorded == 7
    assert rows.row_of(_refused("k2", 100.5)) is not None  # another key has its own allowance
    assert rows.row_of(_refused("k1", 101.0)) is not None  # the next second starts afresh
    assert rows.row_of(_refused("k1", 101.1, status="UpstreamTimeout")) is None  # not a refusal
    assert rows.row_of(_refused("k1", 101.2, status="RateLimited")) is not None
