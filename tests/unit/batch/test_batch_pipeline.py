"""Batches through the real pipeline (create_app, stage ②, fake providers): a batch whose daily budget
runs out pauses (the refused line is not failed) and resumes when the next day's budget opens, every
line answered once; the lines of a key revoked mid-batch fail with the 401 a live request would get."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import httpx

from margin.storage.batch_stores import open_batch_store
from tests.unit.budgets.limits_support import ADMIN, serve

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


async def test_lines_of_a_revoked_key_fail_with_401_once_it_is_revoked(tmp_path: Path) -> None:
    extra = "batch: {poll_s: 0.02, concurrency: 1, chunk_lines: 1}"
    async with serve(tmp_path, extra) as gw:
        key, record = await gw.create_key(name="nightly")
        auth = {"authorization": f"Bearer {key}"}
        content = jsonl(6).replace(b'"cheap"', b'"slow"')  # 300 ms per line: time to revoke mid-batch
        uploaded = await gw.client.post(
            "/v1/files", files={"file": ("in.jsonl", io.BytesIO(content))}, data={"purpose": "batch"}, headers=auth
        )
        spec = {"input_file_id": uploaded.json()["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
        batch_id = (await gw.client.post("/v1/batches", json=spec, headers=auth)).json()["id"]
        async with asyncio.timeout(15):
            while (await gw.client.get(f"/v1/batches/{batch_id}", headers=auth)).json()["request_counts"][
                "completed"
            ] < 1:
                await asyncio.sleep(0.02)
        revoked = await gw.client.post(
            f"/admin/keys/{record['key_id']}/revoke", headers={"authorization": f"Bearer {ADMIN}"}
        )
        assert revoked.status_code == 200
        # The key can no longer read its batch, so its database is read directly.
        store = open_batch_store(f"sqlite:///{tmp_path}/margin.db", tmp_path)
        try:
            async with asyncio.timeout(15):
                while not (ended := await store.get_batch(batch_id)) or not ended.is_final:
                    await asyncio.sleep(0.05)
            rows = await store.line_rows(batch_id, after_line=0, limit=100)
        finally:
            await store.close()
        calls = gw.calls()
    assert ended.status == "completed" and ended.failed >= 1 and 1 <= ended.completed < 6
    results = [json.loads(r.result) for r in rows if r.result]
    refused = [r for r in results if r["response"]["status_code"] == 401]
    assert len(refused) == ended.failed
    assert all(r["response"]["body"]["error"]["code"] == "invalid_api_key" for r in refused)
    assert calls == ended.completed  # no refused line reached an upstream
