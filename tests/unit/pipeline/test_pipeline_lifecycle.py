"""The request lifecycle (margin.pipeline.lifecycle): each request ends once, each step of the end
runs whatever the one before it did, and a stream ends even when nobody ever reads it.

The fault matrix over every endpoint, through real HTTP, is tests/e2e/test_lifecycle_faults.py;
here are the cases HTTP on loopback cannot produce on demand."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import ClientDisconnect
from tests.support.counters import HoldTracker

import margin
from margin import errors
from margin.app import create_app
from margin.config import parse_config
from margin.pipeline.context import RequestContext
from margin.pipeline.handler import Pipeline
from margin.pipeline.lifecycle import RequestLifecycle
from margin.pipeline.record import RequestRecord
from margin.providers.fake.adapter import FakeProvider
from margin.storage.memory import MemoryKeyStore
from margin.types import ChatRequest, Chunk

CONFIG = """
deployments:
  - {name: primary, provider: fake, model: big, price: {input: "1", output: "2"}, fake: {chunks: 20}}
models:
  - {name: chat, deployments: [primary]}
cache: {enabled: true, backend: memory}
budgets: [{scope: global, limit_usd: "1000"}]
rate_limits: [{scope: global, concurrency: 4}]
"""


@contextlib.asynccontextmanager
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[Any, Pipeline, HoldTracker, list[RequestRecord]]]:
    config = parse_config(f"{CONFIG}\ndata_dir: {tmp_path}\n")
    counters = HoldTracker()
    providers = {d.name: FakeProvider(d) for d in config.deployments}
    app = create_app(config, providers=providers, counters=counters, key_store=MemoryKeyStore())
    pipeline: Pipeline = app.state.gateway.pipeline
    records: list[RequestRecord] = []
    pipeline.recorder.submit = records.append  # type: ignore[method-assign]
    async with app.router.lifespan_context(app):
        yield app, pipeline, counters, records


async def post_to_a_client_already_gone(app: Any, path: str, body: dict[str, Any]) -> None:
    """One ASGI call as a server on ASGI spec 2.4 makes it when the client left before the response
    started: sending the response head raises OSError (Starlette turns it into ClientDisconnect).
    The body iterator of the streamed response is never started."""
    payload = json.dumps(body).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }
    messages = [{"type": "http.request", "body": payload, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            raise OSError("the client is gone")

    with contextlib.suppress(ClientDisconnect, OSError):
        await app(scope, receive, send)


STREAMED = [
    pytest.param("/v1/chat/completions", {"model": "chat", "stream": True}, id="chat-stream"),
    pytest.param("/v1/completions", {"model": "chat", "prompt": "hello there", "stream": True}, id="completions"),
    pytest.param("/v1/messages", {"model": "chat", "max_tokens": 50, "stream": True}, id="messages-stream"),
]


@pytest.mark.parametrize(("path", "body"), STREAMED)
async def test_a_stream_whose_response_never_started_ends(tmp_path: Path, path: str, body: dict[str, Any]) -> None:
    async with gateway(tmp_path) as (app, pipeline, counters, records):
        body = {"messages": [{"role": "user", "content": "a b c d e f g"}], **body}
        await post_to_a_client_already_gone(app, path, body)
        assert pipeline.limits.limiter is not None
        await pipeline.limits.limiter.drain()
        assert counters.reservations == 1 and await counters.held() == 0
        assert [r.status for r in records] == ["cancelled"]
        assert [a.status for a in records[0].ctx.attempts] == ["cancelled"]
        assert pipeline.caller.in_flight == {"primary": 0}


async def test_a_replay_whose_response_never_started_still_ends(tmp_path: Path) -> None:
    async with gateway(tmp_path) as (app, pipeline, counters, records):
        turns = [{"role": "user", "content": "cache me please"}]
        await pipeline.chat(RequestContext("req_warm", "chat"), request(turns, temperature=0))
        assert pipeline.cache is not None
        await pipeline.cache.flush()  # the answer is kept in the background
        await post_to_a_client_already_gone(
            app, "/v1/chat/completions", {"model": "chat", "messages": turns, "temperature": 0, "stream": True}
        )
        assert pipeline.limits.limiter is not None
        await pipeline.limits.limiter.drain()
        assert counters.reservations == 2 and await counters.held() == 0
        assert [r.status for r in records] == ["ok", "cancelled"]
        assert records[1].ctx.cache_row is not None  # the replay's one ledger row


async def test_an_unread_stream_closed_by_its_owner_ends_once(tmp_path: Path) -> None:
    async with gateway(tmp_path) as (_, pipeline, counters, records):
        ctx = RequestContext("req_unread", "chat")
        stream = await pipeline.stream(ctx, request([{"role": "user", "content": "never read"}], stream=True))
        await stream.aclose()
        await stream.aclose()  # idempotent: a second close (the API layer's, after the generator's own) is harmless
        assert pipeline.limits.limiter is not None
        await pipeline.limits.limiter.drain()
        assert await counters.held() == 0
        assert [(r.ctx.request_id, r.status) for r in records] == [("req_unread", "cancelled")]


async def test_an_adapter_bug_ends_its_attempt_and_the_request(tmp_path: Path) -> None:
    async with gateway(tmp_path) as (_, pipeline, counters, records):
        provider = pipeline.caller.providers["primary"]

        async def broken(_: ChatRequest) -> Any:
            raise KeyError("choices")  # an adapter that misread a payload: not a MarginError

        provider.chat = broken  # type: ignore[method-assign]
        with pytest.raises(KeyError):
            await pipeline.chat(RequestContext("req_bug", "chat"), request([{"role": "user", "content": "hi"}]))
        assert pipeline.limits.limiter is not None
        await pipeline.limits.limiter.drain()
        assert await counters.held() == 0
        assert [r.status for r in records] == ["KeyError"]
        attempt = records[0].ctx.attempts[0]
        assert (attempt.status, attempt.error_class) == ("error", "KeyError") and attempt.latency_ms > 0
        assert pipeline.caller.in_flight == {"primary": 0}


def test_only_a_lifecycle_takes_a_reservation() -> None:
    """Stage ② is entered through `RequestLifecycle.reserve` alone, so every reservation belongs to a
    lifecycle that settles it: a new path that reserved on its own could leak."""
    package = Path(margin.__file__).parent
    reserving = sorted(
        str(path.relative_to(package)) for path in package.rglob("*.py") if "limits.admit(" in path.read_text()
    )
    assert reserving == ["pipeline/lifecycle.py"]


# --- the lifecycle object on its own --------------------------------------------------------------------


class Spy:
    """Stands in for the meter and the recorder (and, through `Release`, the limits stage): logs each
    step of the end, and raises in the one named `fail`."""

    def __init__(self, *, fail: str | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail

    def _step(self, name: str) -> None:
        self.calls.append(name)
        if self.fail == name:
            raise RuntimeError(f"{name} failed")

    def settle(self, ctx: RequestContext, usage: object) -> None:  # the meter's
        self._step("meter")

    def submit(self, record: RequestRecord) -> None:
        self._step("record")
        self.calls.append(f"status={record.status}")


class Release:
    def __init__(self, spy: Spy) -> None:
        self.spy = spy

    def settle(self, ctx: RequestContext) -> None:
        self.spy._step("release")


def lifecycle(spy: Spy) -> RequestLifecycle:
    ctx = RequestContext("req_spy", "chat")
    return RequestLifecycle(
        ctx,
        meter=spy,  # type: ignore[arg-type]
        limits=Release(spy),  # type: ignore[arg-type]
        recorder=spy,  # type: ignore[arg-type]
        end_attempt=lambda c, a: None,
    )


async def test_ends_once_in_order() -> None:
    spy = Spy()
    life = lifecycle(spy)
    cleaned: list[str] = []

    async def cleanup() -> None:
        cleaned.append("cleanup")

    life.on_end(cleanup)
    await life.end("ok", None)
    await life.end("UpstreamTimeout", None)
    assert cleaned == ["cleanup"] and spy.calls == ["meter", "release", "record", "status=ok"]


@pytest.mark.parametrize("step", ["meter", "release", "record"])
async def test_each_step_of_the_end_runs_when_the_one_before_raised(step: str) -> None:
    spy = Spy(fail=step)
    with pytest.raises(RuntimeError, match=f"{step} failed"):
        await lifecycle(spy).end("ok", None)
    assert [c for c in spy.calls if not c.startswith("status=")] == ["meter", "release", "record"]


@pytest.mark.parametrize(
    ("raised", "status"),
    [
        (errors.UpstreamTimeout("slow", deployment="primary"), "UpstreamTimeout"),
        (asyncio.CancelledError(), "cancelled"),
        (KeyError("bug"), "KeyError"),
    ],
)
async def test_an_error_leaving_the_block_ends_the_request_and_goes_on(raised: BaseException, status: str) -> None:
    spy = Spy()
    with pytest.raises(type(raised)):
        async with lifecycle(spy):
            raise raised
    assert spy.calls == ["meter", "release", "record", f"status={status}"]


async def test_a_handed_off_stream_is_ended_by_its_generator_not_by_the_block() -> None:
    spy = Spy()
    life = lifecycle(spy)

    async def chunks() -> AsyncGenerator[Chunk, None]:
        try:
            yield Chunk(body={"n": 1})
            yield Chunk(body={"n": 2})
        finally:
            await life.end("cancelled", None)

    async with life:
        stream = await life.stream(chunks())
    assert spy.calls == []  # the block handed the end over: nothing ended yet
    assert (await anext(stream)).body == {"n": 1}
    await stream.aclose()
    assert spy.calls == ["meter", "release", "record", "status=cancelled"]


def request(messages: list[dict[str, Any]], *, stream: bool = False, **params: Any) -> ChatRequest:
    return ChatRequest(model="chat", messages=messages, params=params, stream=stream)
