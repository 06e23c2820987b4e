"""`kill -9` of `margin serve` in the middle of a batch, then a restart on the same data dir: the batch
resumes by itself, every custom_id is in the output exactly once, every finished line kept the one
result it had before the kill, and the ledger has one row per upstream call (the lines in flight at
the kill included: the replica journal writes them), so no line is billed twice."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.e2e.batch_env import (
    batch_config,
    chat_line,
    fake_calls,
    file_lines,
    jsonl,
    ledger_rows,
    settled_ledger_rows,
    upload,
    wait_for,
)
from tests.support.processes import fake_upstream, gateway_process

pytestmark = pytest.mark.slow
LINES = 60
CONCURRENCY = 4
MODEL = "fake-batch-slow"


@pytest.fixture
def upstream_url() -> Iterator[str]:
    with fake_upstream("--fault", f"{MODEL}=delay=0.25") as url:
        yield url


def test_kill_9_mid_batch_then_restart_runs_every_line_exactly_once(upstream_url: str, tmp_path: Path) -> None:
    config = batch_config(upstream_url, concurrency=CONCURRENCY)
    env = {"FAKE_UPSTREAM_KEY": "sk-fake-secret-123"}
    lines = [chat_line(f"k-{n}", f"crash test {n}", model="batch-slow") for n in range(LINES)]
    with gateway_process(config, tmp_path, env=env) as (url, process):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        batch = client.batches.create(
            input_file_id=upload(client, jsonl(lines)), endpoint="/v1/chat/completions", completion_window="24h"
        )
        running = wait_for(client, batch.id, ("in_progress",))
        while running.request_counts is None or running.request_counts.completed < 12:
            time.sleep(0.05)
            running = client.batches.retrieve(batch.id)
        process.kill()  # SIGKILL: no shutdown, lines in flight, leases held, ledger rows unflushed
        process.wait()
    finished_before = running.request_counts.completed
    with gateway_process(config, tmp_path, env=env) as (url, _):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        ended = wait_for(client, batch.id, timeout=90)
        out = file_lines(client, ended.output_file_id)
        assert file_lines(client, ended.error_file_id) == []
        rows = settled_ledger_rows(tmp_path / "data", batch.id, fake_calls(upstream_url, MODEL))
    assert ended.status == "completed" and ended.request_counts is not None
    assert (ended.request_counts.total, ended.request_counts.completed) == (LINES, LINES)
    assert Counter(line["custom_id"] for line in out) == Counter(f"k-{n}" for n in range(LINES))
    # Every line's answer is billed by exactly one ledger row (its request id), and every call that
    # reached the upstream has its row: lines in flight at the kill ran twice upstream and both
    # calls are in the ledger (at most CONCURRENCY of them), none is missing, none is counted twice.
    calls = fake_calls(upstream_url, MODEL)
    assert len(rows) == calls
    assert LINES <= calls <= LINES + CONCURRENCY
    by_request = Counter(r["request_id"] for r in rows)
    assert all(by_request[line["response"]["request_id"]] == 1 for line in out)
    assert finished_before >= 12
    assert ledger_rows(tmp_path / "data", batch.id) == rows
