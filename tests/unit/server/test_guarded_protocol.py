"""`margin serve`'s protocol bounds client connections (issue 16, item 3): headers must arrive in
time, idle keep-alive connections close, and past the cap a new connection gets a 503.

uvicorn serves a tiny ASGI app in the test's loop on a loopback port, with GuardedHttpProtocol and
a ConnectionGuard handed over through the lifespan state exactly as create_app does; the clients
are raw sockets, so each test controls what is sent and when."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import uvicorn
from tests.support.processes import free_port

from margin.api.connections import CONNECTIONS_STATE_KEY, ConnectionGuard, ConnectionLimits
from margin.server.guarded import GuardedHttpProtocol

HEADER_S, IDLE_S = 0.3, 0.4
REQUEST = b"GET /fast HTTP/1.1\r\nHost: margin\r\n\r\n"


def app_with(guard: ConnectionGuard) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                scope["state"][CONNECTIONS_STATE_KEY] = guard  # what margin's Lifespan yields
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["path"] == "/slow":
            await asyncio.sleep(3 * HEADER_S)  # longer than the header timeout
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


@asynccontextmanager
async def guarded(max_connections: int = 100) -> AsyncIterator[tuple[int, ConnectionGuard]]:
    guard = ConnectionGuard(ConnectionLimits(HEADER_S, IDLE_S, max_connections))
    port = free_port()
    config = uvicorn.Config(
        app_with(guard), host="127.0.0.1", port=port, http=GuardedHttpProtocol, lifespan="on", log_level="error"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield port, guard
    finally:
        server.should_exit = True
        await task


async def read_until_closed(reader: asyncio.StreamReader, limit_s: float = 5.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed."""
    data = b""
    async with asyncio.timeout(limit_s):
        try:
            while chunk := await reader.read(65536):
                data += chunk
        except ConnectionResetError:
            pass
    return data, time.monotonic()


async def test_a_connection_that_sends_nothing_is_closed_silently() -> None:
    async with guarded() as (port, guard):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        opened = time.monotonic()
        data, closed = await read_until_closed(reader)
        writer.close()
    assert data == b""
    assert HEADER_S * 0.9 <= closed - opened < HEADER_S + 1.0
    assert guard.counts.header_timeouts_total == 1


async def test_partial_headers_get_a_408_envelope_and_a_trickle_does_not_extend_the_deadline() -> None:
    async with guarded() as (port, guard):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        opened = time.monotonic()
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: margin\r\n")

        async def trickle() -> None:  # a slowloris client: one more header byte every 50 ms
            for _ in range(100):
                await asyncio.sleep(0.05)
                writer.write(b"X")

        dripping = asyncio.create_task(trickle())
        data, closed = await read_until_closed(reader)
        dripping.cancel()
        writer.close()
    assert closed - opened < HEADER_S + 1.0  # the deadline counts from the opening, not the last byte
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 Request Timeout") and b"connection: close" in head
    assert orjson.loads(body)["error"]["code"] == "request_timeout"
    assert guard.counts.header_timeouts_total == 1


async def test_keep_alive_connections_close_when_idle_and_each_request_has_its_own_deadline() -> None:
    async with guarded() as (port, guard):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(3):  # kept alive: slower in total than one header timeout, each request in time
            await asyncio.sleep(HEADER_S / 2)
            writer.write(REQUEST)
            assert (await reader.readuntil(b"ok")).startswith(b"HTTP/1.1 200")
        answered = time.monotonic()
        data, closed = await read_until_closed(reader)
        writer.close()
        assert data == b"" and IDLE_S * 0.9 <= closed - answered < IDLE_S + 1.0
        assert guard.counts.idle_closed_total == 1 and guard.counts.header_timeouts_total == 0

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(REQUEST + b"GET /fast HTTP/1.1\r\nHo")  # a next request that stalls mid-headers
        data, _ = await read_until_closed(reader)
        writer.close()
    assert data.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 408" in data
    assert guard.counts.header_timeouts_total == 1


async def test_a_late_pipelined_request_never_cuts_the_response_in_progress() -> None:
    async with guarded() as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: margin\r\n\r\nGET /fast HTTP/1.1\r\nHo")
        data, _ = await read_until_closed(reader)
        writer.close()
    first, _, rest = data.partition(b"ok")
    assert first.startswith(b"HTTP/1.1 200") and rest.startswith(b"HTTP/1.1 408")


async def test_past_the_cap_a_new_connection_gets_a_503_and_is_counted() -> None:
    async with guarded(max_connections=3) as (port, guard):
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            refused = await client.get("/fast")
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["code"] == "too_many_connections"
            assert guard.counts.rejected_total == 1
            for _, writer in held:
                writer.close()
            await asyncio.sleep(0.1)
            assert (await client.get("/fast")).status_code == 200
        assert guard.counts.open <= 1
