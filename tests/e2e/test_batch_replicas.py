"""Three `margin serve` processes on one real PostgreSQL (and one shared blob directory) share one
batch: each claims chunks `FOR UPDATE SKIP LOCKED` under expiring leases. One replica is killed
(SIGKILL) mid-batch; the survivors take over its chunks when their leases expire and the batch
completes with every custom_id exactly once. The killed replica, restarted on its data dir, replays
its journal, after which the ledger has one row per upstream call."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.e2e.batch_env import batch_config, chat_line, fake_calls, file_lines, jsonl, upload, wait_for
from tests.support.postgres import PostgresServer, postgres_server
from tests.support.processes import fake_upstream, gateway_process

pytestmark = pytest.mark.slow
LINES = 90
CONCURRENCY = 3
MODEL = "fake-batch-slow"
ENV = {"FAKE_UPSTREAM_KEY": "sk-fake-secret-123"}


@pytest.fixture
def pg() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


def replica_config(upstream: str, database: str, blobs: Path) -> str:
    extra = f', blob_dir: "{blobs}"'
    return batch_config(upstream, concurrency=CONCURRENCY, extra_batch=extra) + f'database: {{url: "{database}"}}\n'


def pg_ledger_rows(database: str, batch_id: str) -> list[dict[str, Any]]:
    import psycopg

    with psycopg.connect(database) as conn:
        rows = conn.execute("SELECT request_id, status, tags FROM ledger_attempts").fetchall()
    tagged = [{"request_id": r[0], "status": r[1]} for r in rows if f"batch:{batch_id}" in json.loads(r[2])]
    return tagged


def test_three_replicas_share_a_batch_and_survive_one_killed(pg: PostgresServer, tmp_path: Path) -> None:
    database = pg.create_database("batches")
    with fake_upstream("--fault", f"{MODEL}=delay=0.25") as upstream, ExitStack() as stack:
        config = replica_config(upstream, database, tmp_path / "blobs")
        for n in range(3):
            (tmp_path / f"r{n}").mkdir()
        replicas = [stack.enter_context(gateway_process(config, tmp_path / f"r{n}", env=ENV)) for n in range(3)]
        clients = [openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) for url, _ in replicas]
        lines = [chat_line(f"r-{n}", f"replica line {n}", model="batch-slow") for n in range(LINES)]
        batch = clients[0].batches.create(
            input_file_id=upload(clients[0], jsonl(lines)), endpoint="/v1/chat/completions", completion_window="24h"
        )
        progress = wait_for(clients[1], batch.id, ("in_progress",))
        while progress.request_counts is None or progress.request_counts.completed < 20:
            time.sleep(0.05)
            progress = clients[1].batches.retrieve(batch.id)
        victim = replicas[2][1]
        victim.kill()
        victim.wait()
        ended = wait_for(clients[1], batch.id, timeout=120)
        out = file_lines(clients[0], ended.output_file_id)
        assert ended.status == "completed" and file_lines(clients[0], ended.error_file_id) == []
        assert Counter(line["custom_id"] for line in out) == Counter(f"r-{n}" for n in range(LINES))
        # The dead replica's successor on its data dir writes the rows its journal kept.
        with gateway_process(config, tmp_path / "r2", env=ENV):
            calls = fake_calls(upstream, MODEL)
            deadline = time.monotonic() + 20
            while len(rows := pg_ledger_rows(database, batch.id)) < calls and time.monotonic() < deadline:
                time.sleep(0.2)
    assert LINES <= calls <= LINES + CONCURRENCY
    assert len(rows) == calls
    by_request = Counter(r["request_id"] for r in rows)
    assert all(by_request[line["response"]["request_id"]] == 1 for line in out)
