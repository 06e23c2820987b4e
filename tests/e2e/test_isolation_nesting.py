"""Deep nesting must not lock other tenants out (issue 16, 2).

Found on loopback: JSON nested 255-1,000 levels parsed fine, but serialising the upstream body
(`orjson.dumps` in the OpenAI-compatible adapter) raised TypeError, and the request's ending was
skipped: `in_flight` grew, concurrency holds and budget reservations stayed held, and no ledger row
was written. Three such requests locked a team out with 429; one with a large max_tokens got the
other team of the same org a 402.

Here a real gateway (create_app, served on loopback in this process so its counters can be read)
forwards to the fake upstream through the real adapter:
- over HTTP, with the SDKs: a body nested deeper than margin can forward is a 400 in the endpoint's
  own envelope, on chat, streaming, embeddings and messages, and nothing is held afterwards; a body
  nested at the bound is forwarded and answered;
- in process, with the TypeError itself (a request built past the parser): every request still
  ends once, holds nothing, leaves no attempt open and writes its ledger row;
- in both, the tenants around the bad client keep their limits: the same team's concurrency and
  the same org's budget are whole again.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from margin.api.body_shape import MAX_JSON_DEPTH
from margin.app import create_app
from margin.config import parse_config
from margin.identity.key_spec import KeySpec
from margin.pipeline.context import Endpoint, RequestContext
from margin.pipeline.handler import Pipeline
from margin.pipeline.record import RequestRecord
from margin.storage.memory import MemoryKeyStore
from margin.storage.sqlite import SqliteLedgerStore
from margin.translate import parse_messages_request
from margin.types import ChatRequest, EmbeddingRequest
from tests.support.counters import HoldTracker
from tests.support.loopback import serving

BIG_MAX_TOKENS = 490_000  # at $2/M output: $0.98 of the org's $1 held while the request runs


def config(upstream: str, data_dir: Path) -> str:
    return f"""
data_dir: {data_dir}
auth: required
deployments:
  - {{name: upstream, provider: openai_compat, model: fake-large, base_url: "{upstream}/v1",
     price: {{input: "1", output: "2"}}}}
  - {{name: embed, provider: openai_compat, model: fake-embedding, base_url: "{upstream}/v1",
     capabilities: {{embeddings: true}}, price: {{input: "1", output: "0"}}}}
models:
  - {{name: chat, deployments: [upstream]}}
  - {{name: embeddings, deployments: [embed]}}
budgets: [{{scope: "org:*", limit_usd: "1"}}]
rate_limits: [{{scope: "team:*", concurrency: 3}}]
"""


@dataclass
class Gateway:
    url: str
    data_dir: Path
    pipeline: Pipeline
    counters: HoldTracker
    records: list[RequestRecord]
    keys: dict[str, str]
    clients: list[openai.AsyncOpenAI | anthropic.AsyncAnthropic] = field(default_factory=list)

    async def settled(self, requests: int) -> None:
        """Wait until `requests` requests were recorded and their settles applied."""
        async with asyncio.timeout(10):
            while len(self.records) < requests:
                await asyncio.sleep(0.01)
        assert self.pipeline.limits.limiter is not None
        await self.pipeline.limits.limiter.drain()

    async def nothing_held(self) -> None:
        assert await self.counters.held() == 0, "a reservation or concurrency hold was left held"
        assert all(n == 0 for n in self.pipeline.caller.in_flight.values()), "an upstream attempt was left open"

    def openai(self, team: str) -> openai.AsyncOpenAI:
        client = openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key=self.keys[team], max_retries=0)
        self.clients.append(client)
        return client

    def anthropic(self, team: str) -> anthropic.AsyncAnthropic:
        client = anthropic.AsyncAnthropic(base_url=self.url, api_key=self.keys[team], max_retries=0)
        self.clients.append(client)
        return client


@asynccontextmanager
async def gateway(upstream: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    data_dir = tmp_path / "data"
    counters = HoldTracker()
    ledger = SqliteLedgerStore(data_dir / "ledger.db")
    app = create_app(
        parse_config(config(upstream, data_dir)), counters=counters, ledger=ledger, key_store=MemoryKeyStore()
    )
    pipeline: Pipeline = app.state.gateway.pipeline
    records: list[RequestRecord] = []
    pipeline.recorder.sinks.append(records.extend)
    async with serving(app) as url:
        keys = pipeline.limits.keys
        assert keys is not None
        secrets = {team: (await keys.create(KeySpec(org="acme", team=team)))[1] for team in ("a", "b")}
        gw = Gateway(url, data_dir, pipeline, counters, records, secrets)
        try:
            yield gw
        finally:
            for client in gw.clients:
                await client.close()


def nested(depth: int) -> Any:
    """`depth` levels of arrays and objects, alternating: what a JSON schema or metadata looks like."""
    value: Any = "leaf"
    for level in range(depth):
        value = {"items": value} if level % 2 else [value]
    return value


@contextmanager
def deep_enough_for(depth: int) -> Iterator[None]:
    """The SDKs encode with the standard library, which recurses once per level."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(limit + 4 * depth)
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)


USER: Any = [{"role": "user", "content": "Say hello."}]
Send = Callable[[Gateway, Any], Awaitable[object]]


async def chat(gw: Gateway, value: Any) -> object:
    return await gw.openai("a").chat.completions.create(
        model="chat", messages=USER, max_tokens=BIG_MAX_TOKENS, extra_body={"x_trace": value}
    )


async def chat_stream(gw: Gateway, value: Any) -> object:
    stream: Any = await gw.openai("a").chat.completions.create(
        model="chat", messages=USER, max_tokens=BIG_MAX_TOKENS, stream=True, extra_body={"x_trace": value}
    )
    return [chunk async for chunk in stream]


async def embeddings(gw: Gateway, value: Any) -> object:
    return await gw.openai("a").embeddings.create(model="embeddings", input="hello", extra_body={"x_trace": value})


async def messages(gw: Gateway, value: Any) -> object:
    tool = {"name": "lookup", "input_schema": {"type": "object", "properties": {"q": value}}}
    tools: Any = [tool]
    return await gw.anthropic("a").messages.create(
        model="chat", max_tokens=BIG_MAX_TOKENS, messages=USER, tools=tools, timeout=30
    )


ENDPOINTS: dict[str, tuple[Send, int]] = {
    # what `value` sits under, in levels of the body: x_trace is one; a tool schema's property five
    "chat": (chat, 1),
    "chat-stream": (chat_stream, 1),
    "embeddings": (embeddings, 1),
    "messages": (messages, 5),
}


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
async def test_a_body_nested_deeper_than_margin_forwards_is_a_400_and_holds_nothing(
    upstream: str, tmp_path: Path, endpoint: str
) -> None:
    send, _ = ENDPOINTS[endpoint]
    async with gateway(upstream, tmp_path) as gw:
        for depth in (300, 1000):  # past orjson's 254, and the parser's own limit
            with deep_enough_for(depth), pytest.raises((openai.BadRequestError, anthropic.BadRequestError)) as refused:
                await send(gw, nested(depth))
            body = getattr(refused.value, "body", None)
            assert isinstance(body, dict)
            if endpoint == "messages":  # Anthropic's envelope on /v1/messages
                assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
                assert "levels deep" in body["error"]["message"]
            else:
                assert body["code"] == "json_too_deep" and body["type"] == "invalid_request_error"
        await gw.nothing_held()
        await neighbours_keep_their_limits(gw)


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
async def test_a_body_nested_at_the_bound_is_forwarded(upstream: str, tmp_path: Path, endpoint: str) -> None:
    send, above = ENDPOINTS[endpoint]
    async with gateway(upstream, tmp_path) as gw:
        await send(gw, nested(MAX_JSON_DEPTH - above))  # the whole body exactly MAX_JSON_DEPTH deep
        await gw.settled(1)
        assert gw.records[-1].status == "ok"
        await gw.nothing_held()


# --- the non-margin exception itself, past the parser ---------------------------------------------


def deep_requests() -> dict[str, Callable[[], ChatRequest | EmbeddingRequest]]:
    deep = nested(300)
    tool = {"name": "lookup", "input_schema": {"type": "object", "properties": {"q": deep}}}
    anthropic_body = {"model": "chat", "max_tokens": BIG_MAX_TOKENS, "messages": USER, "tools": [tool]}
    return {
        "chat": lambda: ChatRequest(model="chat", messages=USER, params={"max_tokens": BIG_MAX_TOKENS, "x": deep}),
        "chat-stream": lambda: ChatRequest(
            model="chat", messages=USER, params={"max_tokens": BIG_MAX_TOKENS, "x": deep}, stream=True
        ),
        "embeddings": lambda: EmbeddingRequest(model="embeddings", inputs=["hello"], params={"x": deep}),
        "messages": lambda: parse_messages_request(anthropic_body),
    }


async def call(gw: Gateway, ctx: RequestContext, request: ChatRequest | EmbeddingRequest) -> None:
    if isinstance(request, EmbeddingRequest):
        await gw.pipeline.embed(ctx, request)
    elif request.stream:
        stream = await gw.pipeline.stream(ctx, request)
        await stream.aclose()
    else:
        await gw.pipeline.chat(ctx, request)


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
async def test_an_unexpected_exception_still_ends_the_request_once(
    upstream: str, tmp_path: Path, endpoint: str
) -> None:
    build = deep_requests()[endpoint]
    async with gateway(upstream, tmp_path) as gw:
        for i in range(3):  # as many as team a may have in flight
            kind: Endpoint = (
                "messages" if endpoint == "messages" else "embeddings" if endpoint == "embeddings" else "chat"
            )
            ctx = RequestContext(request_id=f"req_deep_{i}", endpoint=kind, api_key=gw.keys["a"])
            with pytest.raises(TypeError, match="Recursion limit"):
                await call(gw, ctx, build())
            await gw.settled(i + 1)  # the settle runs in the background; the next request comes after it
        await gw.nothing_held()
        assert [r.status for r in gw.records] == ["TypeError"] * 3
        assert all(len(r.ctx.attempts) == 1 and r.ctx.attempts[0].status == "error" for r in gw.records)
        await neighbours_keep_their_limits(gw)
    with sqlite3.connect(gw.data_dir / "ledger.db") as db:
        rows = {row[0]: row[1] for row in db.execute("SELECT attempt_id, status FROM ledger_attempts")}
    assert {f"req_deep_{i}:0" for i in range(3)} <= set(rows), rows
    assert {rows[f"req_deep_{i}:0"] for i in range(3)} == {"error"}


async def neighbours_keep_their_limits(gw: Gateway) -> None:
    """Team a may still have 3 requests in flight; team b (same org) still fits a request in the
    org's budget: nothing the bad requests reserved is still held."""
    client = gw.openai("a")
    answers = await asyncio.gather(
        *(client.chat.completions.create(model="chat", messages=USER, max_tokens=5) for _ in range(3))
    )
    assert all(a.choices for a in answers)
    other = await gw.openai("b").chat.completions.create(model="chat", messages=USER, max_tokens=8_000)
    assert other.choices
