"""The request path with in-process providers: failover, metering, stream accounting."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from margin import errors
from margin.app import create_app
from margin.config import parse_config
from margin.pipeline.context import RequestContext
from margin.pipeline.handler import Pipeline
from margin.pipeline.record import RequestRecord
from margin.providers.fake.adapter import FakeProvider
from margin.storage.memory import MemoryKeyStore
from margin.types import ChatRequest, Chunk

CONFIG = """
deployments:
  - {name: primary, provider: fake, model: big, price: {input: "1", output: "2"}}
  - {name: backup, provider: fake, model: small, price: {input: "0.5", output: "1"}}
  - {name: silent, provider: fake, model: no-usage, price: {input: "1", output: "1"}}
models:
  - {name: chat, deployments: [primary, backup]}
  - {name: quiet, deployments: [silent]}
"""


class FailingProvider(FakeProvider):
    """The shipped fake, made to fail with a given error before answering."""

    def __init__(self, deployment, error: errors.MarginError) -> None:  # type: ignore[no-untyped-def]
        super().__init__(deployment)
        self.error = error

    async def chat(self, request: ChatRequest):  # type: ignore[no-untyped-def]
        self.calls += 1
        raise self.error

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        self.calls += 1
        raise self.error
        yield  # pragma: no cover - makes this an async generator


class UsagelessProvider(FakeProvider):
    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        async for chunk in super().stream(request):
            if chunk.usage is None:
                yield chunk


def build(**overrides: object) -> tuple[Pipeline, list[RequestRecord]]:
    config = parse_config(CONFIG)
    deployments = {d.name: d for d in config.deployments}
    providers = {name: factory(deployments[name]) for name, factory in overrides.items()}  # type: ignore[operator]
    app = create_app(config, providers=providers, key_store=MemoryKeyStore())
    pipeline: Pipeline = app.state.gateway.pipeline
    records: list[RequestRecord] = []
    pipeline.recorder.submit = records.append  # type: ignore[method-assign]
    return pipeline, records


def request(model: str = "chat", text: str = "hello world", **params: object) -> ChatRequest:
    return ChatRequest(model=model, messages=[{"role": "user", "content": text}], params=dict(params))


def ctx() -> RequestContext:
    return RequestContext(request_id="req_test", endpoint="chat")


async def test_answer_is_metered_exactly() -> None:
    pipeline, records = build()
    context = ctx()
    result = await pipeline.chat(context, request())
    usage = result.usage
    assert usage is not None and context.cost is not None
    expected = (Decimal(usage.input_total) * 1 + Decimal(usage.output_total) * 2) / 1_000_000
    assert context.cost.total.usd == expected
    assert records[0].status == "ok" and context.deployment == "primary"


async def test_overloaded_primary_is_retried_then_fails_over_and_is_not_billed() -> None:
    pipeline, records = build(primary=lambda d: FailingProvider(d, errors.UpstreamOverloaded("busy", deployment="p")))
    context = ctx()
    result = await pipeline.chat(context, request())
    assert result.model == "small"
    assert [a.deployment for a in context.attempts] == ["primary", "primary", "backup"]  # one retry in place
    assert all(a.status == "error" and a.cost is None for a in context.attempts[:2])
    assert context.cost is not None and context.cost.total.usd > 0
    assert records[0].status == "ok"


async def test_bad_request_is_not_failed_over() -> None:
    pipeline, records = build(primary=lambda d: FailingProvider(d, errors.UpstreamBadRequest("no", deployment="p")))
    context = ctx()
    with pytest.raises(errors.UpstreamBadRequest):
        await pipeline.chat(context, request())
    assert [a.deployment for a in context.attempts] == ["primary"]
    assert records[0].status == "UpstreamBadRequest"


async def test_stream_failover_before_first_chunk_is_invisible() -> None:
    pipeline, _ = build(primary=lambda d: FailingProvider(d, errors.UpstreamConnection("reset", deployment="p")))
    context = ctx()
    chunks = [c async for c in await pipeline.stream(context, request(text="abc def"))]
    text = "".join(c.body["choices"][0]["delta"].get("content") or "" for c in chunks if c.body.get("choices"))
    assert text == "abc def"
    assert context.deployment == "backup"


async def test_usage_chunk_is_stripped_unless_asked() -> None:
    pipeline, records = build()
    chunks = [c async for c in await pipeline.stream(ctx(), request())]
    assert all(c.body.get("choices") for c in chunks)
    assert records[0].usage is not None and records[0].usage.source == "reported"


async def test_usage_is_estimated_and_sent_when_upstream_reports_none() -> None:
    pipeline, records = build(silent=UsagelessProvider)
    req = request("quiet", text="one two three four")
    req.include_usage = True
    chunks = [c async for c in await pipeline.stream(ctx(), req)]
    assert chunks[-1].body["choices"] == [] and chunks[-1].body["usage"]["completion_tokens"] > 0
    assert chunks[-1].body["usage"]["margin_estimated"] is True  # documented extension: margin counted it
    assert records[0].usage is not None and records[0].usage.source == "estimated"


async def test_client_disconnect_meters_what_was_generated() -> None:
    pipeline, records = build()
    context = ctx()
    stream = await pipeline.stream(context, request(text="a b c d e f g h i j k l m n o p"))
    received = [await anext(stream), await anext(stream), await anext(stream)]
    await stream.aclose()  # what the server does when the client goes away
    assert len(received) == 3
    record = records[0]
    assert record.status == "cancelled"
    assert record.usage is not None and record.usage.source == "estimated"
    assert 0 < record.usage.output < 10
    assert context.attempts[0].status == "cancelled" and context.cost is not None


async def test_unknown_model_is_rejected_before_any_call() -> None:
    pipeline, records = build()
    with pytest.raises(errors.ModelNotFound):
        await pipeline.chat(ctx(), request("nope"))
    assert records[0].status == "ModelNotFound"


async def test_legacy_completion_through_chat_only_provider() -> None:
    pipeline, _ = build()
    req = ChatRequest(model="chat", messages=[], kind="completion", prompt="tell me")
    result = await pipeline.chat(ctx(), req)
    assert result.body["object"] == "text_completion"
    assert result.body["choices"][0]["text"] == "tell me"
