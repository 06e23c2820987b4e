"""A batch whose budget runs out mid-batch, through the real pipeline (create_app, stage ② with a
daily budget, fake providers): the refused line is not failed, the batch pauses and says why, and it
resumes by itself when the next day's budget opens, every line answered once."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import httpx

from tests.unit.budgets.limits_support import serve

HOUR_S = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_767_225_600.0 + 3600  # 2026-01-01 01:00 UTC

    def __call__(self) -> float:
        return self.now


def jsonl(count: int) -> bytes:
    lines = [
        {"custom_id": f"b{n}", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "cheap", "max_tokens": 4, "messages": [{"role": "user", "content": "hello world"}]}}
        for n in range(count)
    ]  # fmt: skip
    return "\n".join(json.dumps(line) for line in lines).encode()


async def poll(client: httpx.AsyncClient, batch_id: str, until: str, timeout: float = 15) -> dict[str, object]:
    async with asyncio.timeout(timeout):
        while True:
            batch: dict[str, object] = (await client.get(f"/v1/batches/{batch_id}")).json()
            extension = batch["margin"]
            assert isinstance(extension, dict)
            if (until == "paused" and extension["paused"]) or batch["status"] == until:
                return batch
            await asyncio.sleep(0.02)


async def test_a_spent_budget_pauses_the_batch_until_the_next_window(tmp_path: Path) -> None:
    clock = Clock()
    extra = "budgets: [{scope: global, limit_usd: '0.045', window: day}]\nbatch: {poll_s: 0.02, concurrency: 1}"
    async with serve(tmp_path, extra, clock=clock) as gw:
        uploaded = await gw.client.post(
            "/v1/files", files={"file": ("in.jsonl", io.BytesIO(jsonl(5)))}, data={"purpose": "batch"}
        )
        spec = {"input_file_id": uploaded.json()["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
        batch_id = (await gw.client.post("/v1/batches", json=spec)).json()["id"]
        paused = await poll(gw.client, batch_id, "paused")
        extension = paused["margin"]
        assert isinstance(extension, dict) and "budget" in str(extension["paused"])
        counts = paused["request_counts"]
        assert isinstance(counts, dict) and 1 <= counts["completed"] < 5 and counts["failed"] == 0
        calls_at_pause = gw.calls()
        await asyncio.sleep(0.3)
        assert gw.calls() == calls_at_pause  # nothing runs while paused
        clock.now += 23 * HOUR_S  # past midnight: the next day's budget opens, inside the 24h window
        done = await poll(gw.client, batch_id, "completed")
        done_counts = done["request_counts"]
        assert isinstance(done_counts, dict) and done_counts["completed"] == 5
        assert gw.calls() == 5  # every line answered once: the refused ones were never sent upstream
