"""`native` batches, provider side: margin's clients of the providers' own Batch APIs
(margin.providers.batch_api) against the `margin fake-upstream` process over real HTTP, and each
answer mapped to margin's output line at the price catalog's batch price (half the standard price
for gpt-4o-mini and claude-3-5-haiku): every custom_id once, the cost exact, a line the provider did
not run costs nothing, and which batches may go native at all."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from margin import errors
from margin.batch.files import FileService
from margin.batch.native import NativeBatchAPI, native_deployment, native_result, upstream_lines
from margin.batch.native_run import NativeRunner
from margin.config.batch import BatchConfig
from margin.config.model import DeploymentConfig
from margin.metering.catalog import load_builtin_catalog
from margin.metering.pricebook import PriceBook
from margin.metering.unknown import UnknownPricePolicy
from margin.providers.batch_api import AnthropicBatchAPI, OpenAIBatchAPI
from margin.storage.batch_stores import open_batch_store, open_blob_store
from margin.storage.batches import BatchRecord, BatchStore, LineResult, LineSpec
from margin.storage.protocols import StorageError
from margin.types import Cost, Usage
from tests.support.processes import fake_upstream, free_port


@pytest.fixture(scope="module")
def fake() -> Iterator[str]:
    with fake_upstream() as url:
        yield url


def _book() -> PriceBook:
    deployments = [
        DeploymentConfig(
            name="oa", provider="openai_compat", model="gpt-4o-mini", base_url="http://x/v1", api_key=None
        ),
        DeploymentConfig(name="an", provider="anthropic", model="claude-3-5-haiku", base_url="http://x", api_key=None),
    ]
    return PriceBook(deployments, load_builtin_catalog(), UnknownPricePolicy.BLOCK)


async def _run(api: NativeBatchAPI, endpoint: str, lines: list[tuple[str, dict[str, Any]]], deployment: str,
               cancel_after_s: float | None = None) -> list[LineResult]:  # fmt: skip
    tag = f"batch_test_{len(lines)}_{time.monotonic_ns()}"
    native_id = await api.submit(
        endpoint, upstream_lines(lines, "gpt-4o-mini" if deployment == "oa" else "claude-3-5-haiku"), tag
    )
    # After a crash the next look finds the batch by margin's id where the provider keeps a label.
    assert await api.find(tag) == (native_id if api.provider == "openai" else None)
    assert await api.find("batch_never_submitted") is None
    if cancel_after_s is not None:
        await asyncio.sleep(cancel_after_s)
        await api.cancel(native_id)
    async with asyncio.timeout(20):
        while not (await api.progress(native_id)).ended:
            await asyncio.sleep(0.05)
    book, line_no = _book(), {custom_id: n for n, (custom_id, _) in enumerate(lines, 1)}
    return [
        native_result(answer, line_no[answer.custom_id], provider=api.provider, request_id=f"req_{n}",
                      finished_at=time.time(), price=lambda usage: book.cost(deployment, usage, batch=True))
        async for n, answer in _numbered(api.answers(native_id))
    ]  # fmt: skip


async def _numbered(answers: Any) -> Any:
    n = 0
    async for answer in answers:
        n += 1
        yield n, answer


def _chat(n: int, model: str = "chat") -> tuple[str, dict[str, Any]]:
    return f"q{n}", {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": f"say {n}"}]}


def _standard(deployment: str, usage: Usage) -> Decimal:
    return _book().cost(deployment, usage).total.usd


async def test_openai_native_batch_each_line_once_at_half_price(fake: str) -> None:
    api = OpenAIBatchAPI(f"{fake}/v1", "sk-fake-secret")
    try:
        lines = [_chat(n) for n in range(6)]
        lines.append(("bad", {"model": "chat", "max_tokens": 16}))  # no messages: the provider answers 400
        results = await _run(api, "/v1/chat/completions", lines, "oa")
    finally:
        await api.aclose()
    by_id = {json.loads(r.result)["custom_id"]: r for r in results}
    assert sorted(by_id) == sorted(c for c, _ in lines) and len(results) == len(lines)
    assert by_id["bad"].outcome == "failed" and by_id["bad"].cost == 0
    good = [by_id[f"q{n}"] for n in range(6)]
    assert all(r.outcome == "completed" and r.input_tokens > 0 for r in good)
    for r in good:
        usage = Usage(input_uncached=r.input_tokens, output=r.output_tokens)
        assert r.cost == _standard("oa", usage) / 2 and r.cost > 0
    line = json.loads(good[0].result)
    assert line["response"]["status_code"] == 200 and line["response"]["body"]["model"] == "gpt-4o-mini"
    assert httpx.get(f"{fake}/_fake/batches").json()["lines_run"]["gpt-4o-mini"] >= 7


async def test_anthropic_native_batch_and_a_cancel(fake: str) -> None:
    api = AnthropicBatchAPI(fake, "sk-ant-fake-secret")
    try:
        results = await _run(api, "/v1/messages", [_chat(n) for n in range(4)], "an")
        httpx.post(f"{fake}/_fake/batches", json={"line_delay_s": 0.05}).raise_for_status()
        try:
            cancelled = await _run(api, "/v1/messages", [_chat(n) for n in range(40)], "an", cancel_after_s=0.3)
        finally:
            httpx.post(f"{fake}/_fake/batches", json={"line_delay_s": 0}).raise_for_status()
    finally:
        await api.aclose()
    assert [r.outcome for r in results] == ["completed"] * 4
    for r in results:
        assert r.cost == _standard("an", Usage(input_uncached=r.input_tokens, output=r.output_tokens)) / 2
    assert len(cancelled) == 40 and len({json.loads(r.result)["custom_id"] for r in cancelled}) == 40
    unrun = [json.loads(r.result) for r in cancelled if json.loads(r.result)["response"] is None]
    assert 0 < len(unrun) < 40 and {u["error"]["code"] for u in unrun} == {"batch_cancelled"}
    assert sum(r.cost for r in cancelled if json.loads(r.result)["response"] is None) == 0


def test_which_batches_go_native() -> None:
    oa, an = OpenAIBatchAPI("http://x/v1", None), AnthropicBatchAPI("http://x", None)
    apis: dict[str, NativeBatchAPI] = {"oa": oa, "an": an}
    where = {"chat": "oa", "gpt": "oa", "claude": "an", "local": "qwen"}.get
    assert native_deployment("/v1/chat/completions", ["chat", "gpt"], where, apis) == "oa"
    assert native_deployment("/v1/messages", ["claude"], where, apis) == "an"
    assert native_deployment("/v1/chat/completions", ["chat", "claude"], where, apis) is None  # two deployments
    assert native_deployment("/v1/chat/completions", ["local"], where, apis) is None  # no Batch API
    assert native_deployment("/v1/chat/completions", ["nope"], where, apis) is None  # unknown model
    assert native_deployment("/v1/messages", ["chat"], where, apis) is None  # OpenAI runs no /v1/messages batch


async def test_a_provider_that_refuses_or_is_down_is_an_upstream_error_without_the_key(fake: str) -> None:
    api = OpenAIBatchAPI(f"{fake}/v1", "sk-fake-secret-xyz")
    down = AnthropicBatchAPI(f"http://127.0.0.1:{free_port()}", "sk-ant-secret-xyz")
    try:
        with pytest.raises(errors.UpstreamError) as refused:
            await api.progress("batch_nope")
        with pytest.raises(errors.UpstreamError) as unreachable:
            await down.progress("msgbatch_nope")
    finally:
        await api.aclose()
        await down.aclose()
    assert "404" in refused.value.message and "sk-fake-secret-xyz" not in refused.value.message
    assert "could not be reached" in unreachable.value.message


class _Backend:
    """The pipeline's side of a native batch, for one OpenAI deployment at its catalog price."""

    def __init__(self, api: OpenAIBatchAPI) -> None:
        self.api = api
        self.rows: list[str] = []
        self.settled: list[Decimal] = []

    def native_apis(self, deployments: list[str]) -> dict[str, NativeBatchAPI]:
        return {"oa": self.api}

    def deployment_of(self, model: str) -> str | None:
        return "oa" if model == "mini" else None

    def upstream_model(self, deployment: str) -> str:
        return "gpt-4o-mini"

    def batch_price(self, deployment: str, usage: Usage) -> Cost:
        return _book().cost(deployment, usage, batch=True)

    def record_native(self, batch: BatchRecord, deployment: str, result: LineResult, usage: Usage | None) -> None:
        self.rows.append(result.request_id)

    async def reserve_native(self, batch: BatchRecord, deployment: str, bodies: list[dict[str, Any]]) -> dict[str, Any]:
        return {"counters": [], "cost_nano": 0, "tokens": 0, "settled": False}  # no budgets here

    def settle_native(self, hold: dict[str, Any], cost: Decimal, tokens: int) -> None:
        self.settled.append(cost)


class _LosesTheFirstNativeId:
    """A real store whose first write of a provider batch id is lost, as if the process died then."""

    def __init__(self, inner: BatchStore) -> None:
        self.inner, self.lost = inner, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def update_batch(self, batch_id: str, expected: Any, changes: dict[str, Any]) -> bool:
        if "native_id" in changes and not self.lost:
            self.lost = True
            raise StorageError("killed before the provider's id was written")
        return await self.inner.update_batch(batch_id, expected, changes)


async def test_a_batch_submitted_before_a_crash_is_found_again_not_submitted_twice(fake: str, tmp_path: Path) -> None:
    settings = BatchConfig(native_deployments=["oa"])
    inner = open_batch_store(f"sqlite:///{tmp_path}/margin.db", tmp_path)
    await inner.migrate()
    store = _LosesTheFirstNativeId(inner)
    blobs = open_blob_store("{data_dir}/blobs", tmp_path)
    api = OpenAIBatchAPI(f"{fake}/v1", "sk-fake")
    backend = _Backend(api)
    runner = NativeRunner(store, blobs, backend, settings, time.time)
    files = FileService(inner, blobs, settings, time.time)
    body = b"".join(
        orjson.dumps({"custom_id": f"r{n}", "method": "POST", "url": "/v1/chat/completions",
                      "body": {"model": "mini", "messages": [{"role": "user", "content": f"r {n}"}]}}) + b"\n"
        for n in range(3)
    )  # fmt: skip

    async def once() -> Any:
        yield body

    try:
        file = await files.upload("key_a", "in.jsonl", "batch", once())
        record = a_native_batch(file.file_id)
        await inner.add_batch(record)
        await inner.add_lines(record.batch_id, [LineSpec(n + 1, 0, 1, f"r{n}") for n in range(3)])
        assert await runner.choose(record) == "oa"
        submitted = httpx.get(f"{fake}/_fake/batches").json()["batches"]
        with pytest.raises(StorageError):
            await runner.step(record)  # submitted; the id is lost
        assert await runner.step(record) is None  # found by its metadata and written, not submitted again
        assert httpx.get(f"{fake}/_fake/batches").json()["batches"] == submitted + 1
        async with asyncio.timeout(20):
            while (ending := await runner.step(await _get(inner, record.batch_id))) is None:
                await asyncio.sleep(0.05)
        rows = await inner.line_rows(record.batch_id, after_line=0, limit=10)
    finally:
        await api.aclose()
        await inner.close()
    assert ending == "completed" and [r.outcome for r in rows] == ["completed"] * 3
    assert len(backend.rows) == 3 == len(set(backend.rows))


def a_native_batch(file_id: str) -> BatchRecord:
    return BatchRecord(
        batch_id="batch_native_crash", owner="key_a", api="openai", endpoint="/v1/chat/completions",
        input_file_id=file_id, completion_window="24h", status="in_progress", created_at=time.time(),
        expires_at=time.time() + 86_400, principal={"key_id": "key_a"}, native_deployment="oa",
    )  # fmt: skip


async def _get(store: BatchStore, batch_id: str) -> BatchRecord:
    found = await store.get_batch(batch_id)
    assert found is not None
    return found
