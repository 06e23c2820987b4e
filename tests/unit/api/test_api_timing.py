"""ResponseTiming: the overhead header is taken right before the headers go out, and the request's
records wait for the response's last byte (or for the client to leave)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from margin.api.timing import ResponseTiming, attach
from margin.pipeline.context import RequestContext
from margin.types import Attempt

MARGIN_WORK_S = 0.03
UPSTREAM_S = 0.04


class Seen:
    """What the endpoint saw: its context, and when each held callback ran."""

    def __init__(self) -> None:
        self.ctx: RequestContext | None = None
        self.released_at: list[float] = []
        self.last_chunk_at = 0.0


def app(seen: Seen, endpoint: Callable[[Request], object], *, expose: bool = True) -> Starlette:
    async def handle(request: Request) -> Response:
        ctx = RequestContext(request_id="req_1", endpoint="chat")
        attach(request.scope, ctx)
        seen.ctx = ctx
        ctx.after_written(lambda: seen.released_at.append(time.perf_counter()))
        await asyncio.sleep(MARGIN_WORK_S)  # the gateway's own time
        await upstream_call(ctx)
        result = endpoint(request)
        assert isinstance(result, Response)
        return result

    return Starlette(
        routes=[Route("/", handle, methods=["POST"])],
        middleware=[Middleware(ResponseTiming, expose_header=expose)],
    )


async def upstream_call(ctx: RequestContext) -> None:
    """An attempt whose adapter marked UPSTREAM_S of upstream time."""
    attempt = Attempt(request_id=ctx.request_id, index=0, deployment="d", model="m", started_at=time.perf_counter())
    ctx.attempts.append(attempt)
    attempt.upstream.sent_at = time.perf_counter()
    await asyncio.sleep(UPSTREAM_S)
    attempt.upstream.read_at = time.perf_counter()


async def post(application: Starlette) -> tuple[httpx.Response, float]:
    transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://margin") as client:
        started = time.perf_counter()
        response = await client.post("/", json={})
        return response, (time.perf_counter() - started) * 1000


async def test_the_header_counts_the_gateways_time_and_not_the_upstreams() -> None:
    seen = Seen()
    response, client_ms = await post(app(seen, lambda _: Response(b"{}", media_type="application/json")))
    overhead = float(response.headers["x-margin-overhead-ms"])
    assert overhead >= MARGIN_WORK_S * 1000  # the gateway's sleep is in it...
    assert overhead <= client_ms - UPSTREAM_S * 1000  # ...the upstream's is not


async def test_records_wait_for_the_last_byte_and_get_the_complete_figure() -> None:
    seen = Seen()

    def stream(_: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            yield b"data: 1\n\n"
            await asyncio.sleep(0.02)  # the gateway still writing after the headers went out
            seen.last_chunk_at = time.perf_counter()
            yield b"data: 2\n\n"

        return StreamingResponse(body(), media_type="text/event-stream")

    response, _ = await post(app(seen, stream))
    ctx = seen.ctx
    assert ctx is not None and ctx.written_at is not None
    assert len(seen.released_at) == 1 and seen.released_at[0] >= seen.last_chunk_at
    complete = ctx.overhead_ms(ctx.written_at)
    assert complete >= float(response.headers["x-margin-overhead-ms"]) + 20  # the stream's tail counts


async def test_a_failing_endpoint_still_releases_what_waited() -> None:
    seen = Seen()

    def boom(_: Request) -> Response:
        raise RuntimeError("the endpoint broke")

    response, _ = await post(app(seen, boom))
    assert response.status_code == 500
    assert seen.ctx is not None and seen.ctx.written_at is not None
    assert len(seen.released_at) == 1


async def test_the_header_can_be_switched_off() -> None:
    seen = Seen()
    response, _ = await post(app(seen, lambda _: Response(b"{}"), expose=False))
    assert "x-margin-overhead-ms" not in response.headers
    assert seen.ctx is not None and seen.ctx.written_at is not None  # the records are still timed


async def test_without_the_middleware_nothing_is_held() -> None:
    ctx = RequestContext(request_id="req_2", endpoint="chat")
    attach({"type": "http"}, ctx)
    assert ctx.after_written(lambda: None) is False  # recorded at once, as outside the HTTP layer
