"""What the batch e2e tests share: a gateway config with a slow model for batches, JSONL input files,
polling a batch to its end with the official openai SDK, and reading a batch's ledger rows."""

from __future__ import annotations

import io
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import openai
from openai.types import Batch

from tests.conftest import fake_config

FINAL = ("completed", "failed", "expired", "cancelled")
SLOW_DELAY_S = 0.25  # each call to the slow model waits this long at the fake upstream


def batch_config(upstream: str, *, concurrency: int = 4, extra_batch: str = "") -> str:
    """The shared fake config, plus a slow model (`batch-slow`) and quick batch leases and polling."""
    slow = f"""  - name: fake-batch-slow
    provider: openai_compat
    model: fake-batch-slow
    base_url: {upstream}/v1
    price: {{input: "1", output: "2"}}
"""
    config = fake_config(upstream, slow)
    config += "  - name: batch-slow\n    deployments: [fake-batch-slow]\n"
    return config + (
        f"batch: {{concurrency: {concurrency}, chunk_lines: 5, lease_s: 3, poll_s: 0.1, "
        f'completion_windows: ["24h", "1h"]{extra_batch}}}\n'
    )


def chat_line(custom_id: str, text: str, model: str = "gpt-4o", **extra: Any) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body, **extra}


def jsonl(lines: list[dict[str, Any]] | list[str]) -> bytes:
    return "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines).encode() + b"\n"


def upload(client: openai.OpenAI, content: bytes, name: str = "input.jsonl") -> str:
    return client.files.create(file=(name, io.BytesIO(content)), purpose="batch").id


def wait_for(client: openai.OpenAI, batch_id: str, statuses: tuple[str, ...] = FINAL, timeout: float = 60) -> Batch:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in statuses:
            return batch
        if time.monotonic() > deadline:
            raise TimeoutError(f"batch {batch_id} is still {batch.status} after {timeout}s: {batch}")
        time.sleep(0.1)


def file_lines(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def ledger_rows(data_dir: Path, batch_id: str) -> list[dict[str, Any]]:
    """The ledger rows whose tags name `batch_id` (read straight from the SQLite ledger)."""
    with sqlite3.connect(data_dir / "margin.db") as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM ledger_attempts").fetchall()
    return [dict(r) for r in rows if f"batch:{batch_id}" in json.loads(r["tags"])]


def settled_ledger_rows(data_dir: Path, batch_id: str, expected: int, timeout: float = 15) -> list[dict[str, Any]]:
    """`ledger_rows` once `expected` of them are written (the ledger writer batches its inserts), or
    whatever is there at the deadline."""
    deadline = time.monotonic() + timeout
    rows = ledger_rows(data_dir, batch_id)
    while len(rows) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
        rows = ledger_rows(data_dir, batch_id)
    return rows


def fake_calls(upstream: str, model: str) -> int:
    import httpx

    calls: dict[str, int] = httpx.get(f"{upstream}/_fake/stats").json()["calls"]
    return sum(count for name, count in calls.items() if model in name)
