"""`margin simulate --from-ledger`: the per-minute trace is the requests that reached an upstream
(first attempts; retries, cache hits and refusals left out), from the ledger the config names."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.support.ledger_rows import make_row

from margin.cli import main
from margin.ledger.minute_demand import read_minute_demand
from margin.storage import LedgerStore, open_ledger_store
from margin.storage.ledger_row import LedgerRow

DAY0 = datetime(2026, 5, 4, tzinfo=UTC).timestamp()


def rows() -> list[LedgerRow]:
    return [
        make_row(1, ts=DAY0 + 5),
        make_row(1, ts=DAY0 + 30, attempt_id="req-1:1", attempt_index=1),  # a retry: the same request
        make_row(2, ts=DAY0 + 61),
        make_row(3, ts=DAY0 + 62, cache_result="exact"),  # answered from the cache: no replica loaded
        make_row(4, ts=DAY0 + 63, status="refused"),  # margin's limits refused it
        make_row(5, ts=DAY0 + 150, model_group="embed"),
        make_row(6, ts=DAY0 + 200),  # after the window
    ]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[LedgerStore]:
    opened = open_ledger_store(f"sqlite:///{tmp_path}/margin.db", tmp_path)
    await opened.migrate()
    await opened.write(rows())
    yield opened
    await opened.close()


async def test_requests_that_reached_an_upstream_per_minute(store: LedgerStore) -> None:
    assert await read_minute_demand(store, DAY0, DAY0 + 180) == [1, 1, 1]
    assert await read_minute_demand(store, DAY0, DAY0 + 180, model_group="chat") == [1, 1, 0]
    assert await read_minute_demand(store, DAY0 + 59, DAY0 + 120) == [1, 1]  # buckets start on the minute


async def _seed(tmp_path: Path) -> None:
    store = open_ledger_store(f"sqlite:///{tmp_path}/margin.db", tmp_path)
    await store.migrate()
    await store.write(rows())
    await store.close()


def test_the_command_replays_the_ledger(tmp_path: Path) -> None:
    asyncio.run(_seed(tmp_path))  # the command runs its own event loop
    config = tmp_path / "margin.yaml"
    config.write_text(f"data_dir: {tmp_path}\ndatabase: {{url: 'sqlite:///{tmp_path}/margin.db'}}\n")
    policies = tmp_path / "policies.yaml"
    policies.write_text(
        "policies:\n  - name: one\n    usd_per_gpu_hour: '3'\n    requests_per_minute_per_replica: 10\n"
        "    min_replicas: 1\n    max_replicas: 1\n"
    )
    since, until = (datetime.fromtimestamp(t, UTC).isoformat() for t in (DAY0, DAY0 + 180))
    args = ["simulate", "--policies", str(policies), "--from-ledger", "--config", str(config)]
    args += ["--since", since, "--until", until, "--format", "json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)["policies"][0]
    assert (row["offered"], row["served"], row["gpu_usd"]) == (3, 3, "0.15")  # 3 minutes of $3/h
    empty = CliRunner().invoke(main, [*args[:-6], "--since", since, "--until", until, "--model-group", "absent"])
    assert empty.exit_code == 1 and "no requests in the ledger" in empty.output
    both = CliRunner().invoke(main, [*args, "--profile", str(policies)])
    assert both.exit_code == 2 and "exactly one of" in both.output
