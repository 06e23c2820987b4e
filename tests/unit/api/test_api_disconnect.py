"""EventStreamResponse on real HTTP (uvicorn on loopback, a raw socket as the client): a client that
hangs up mid-stream is noticed at once, through `margin serve`'s protocol (a callback, no task) and
under plain uvicorn (a listener task); the upstream stream stops there and is closed; a stream sent
to the end is not mistaken for a hang-up and leaves its task with no cancellation pending."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send
from tests.support.processes import free_port

from margin.api.sse import EventStreamResponse
from margin.server.coalescing import CoalescingHttpToolsProtocol

PROTOCOLS = [pytest.param(CoalescingHttpToolsProtocol, id="margin-protocol"), pytest.param("httptools", id="uvicorn")]


@dataclass
class Source:
    """The pipeline stream's stand-in: counts what it produced, records its close."""

    pace_s: float
    events: int
    produced: int = 0
    closed_at: float | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    responses: list[EventStreamResponse] = field(default_factory=list)
    pending_cancels: list[int] = field(default_factory=list)

    stall_after: int | None = None  # then the upstream goes quiet for 30 s: only a read sees the hang-up

    async def chunks(self) -> AsyncIterator[bytes]:
        for n in range(self.events):
            await asyncio.sleep(30 if n == self.stall_after else self.pace_s)
            self.produced += 1
            yield f"data: {n}\n\n".encode()

    async def aclose(self) -> None:
        self.closed_at = time.monotonic()

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):  # the request's body, read as an endpoint does
            pass
        response = EventStreamResponse(self.chunks(), self, headers={})
        self.responses.append(response)
        try:
            await response(scope, receive, send)
        finally:
            task = asyncio.current_task()
            self.pending_cancels.append(task.cancelling() if task is not None else -1)
            self.ended.set()


async def _serve(source: Source, http: type | str) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    port = free_port()
    config = uvicorn.Config(
        source.app, host="127.0.0.1", port=port, lifespan="off", log_level="warning", http=http, interface="asgi3"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    return server, task, port


async def _open_stream(port: int, body_bytes: int = 0) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /stream HTTP/1.1\r\nhost: test\r\ncontent-length: %d\r\n\r\n" % body_bytes)
    writer.write(b"x" * body_bytes)
    await writer.drain()
    return reader, writer


@pytest.mark.parametrize("body_bytes", [0, 300_000])  # past uvicorn's 64 KiB: it pauses reading
@pytest.mark.parametrize("http", PROTOCOLS)
async def test_a_client_that_hangs_up_is_noticed_at_once(http: type | str, body_bytes: int) -> None:
    source = Source(pace_s=0.02, events=500, stall_after=5)  # 40 s if nobody noticed
    server, task, port = await _serve(source, http)
    try:
        reader, writer = await _open_stream(port, body_bytes)
        await reader.readuntil(b"data: 4\n\n")
        writer.close()
        hung_up = time.monotonic()
        await asyncio.wait_for(source.ended.wait(), 2)
        assert source.closed_at is not None and source.closed_at - hung_up < 0.5
        assert source.produced == 5  # stopped in the quiet wait, where the client left
        assert source.responses[0].client_left
        assert source.pending_cancels == [0]  # the hang-up's cancellation did not leak out
    finally:
        server.should_exit = True
        await task


@pytest.mark.parametrize("http", PROTOCOLS)
async def test_a_stream_sent_to_the_end_is_not_a_hang_up(http: type | str) -> None:
    source = Source(pace_s=0.001, events=20)
    server, task, port = await _serve(source, http)
    try:
        reader, writer = await _open_stream(port)
        body = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 5)  # the chunked body's end
        assert all(f"data: {n}\n\n".encode() in body for n in range(20))
        await asyncio.wait_for(source.ended.wait(), 2)
        assert source.closed_at is not None and source.produced == 20
        assert not source.responses[0].client_left and source.pending_cancels == [0]
        writer.close()
        await asyncio.sleep(0.05)  # the connection's loss after the response: no late cancellation
        assert not source.responses[0].client_left
    finally:
        server.should_exit = True
        await task


def test_the_protocol_says_when_the_client_left_before_the_stream_started() -> None:
    watched: list[bool] = []

    class Cycle:
        disconnected = True

    class Flow:
        resumed = 0

        def resume_reading(self) -> None:
            self.resumed += 1

    protocol = CoalescingHttpToolsProtocol.__new__(CoalescingHttpToolsProtocol)
    protocol.cycle = Cycle()  # type: ignore[assignment]
    protocol.flow = flow = Flow()  # type: ignore[assignment]
    assert protocol.watch_disconnect(lambda: watched.append(True)) is True
    Cycle.disconnected = False
    assert protocol.watch_disconnect(lambda: watched.append(True)) is False
    assert flow.resumed == 1  # watching reads the socket: a hang-up is an EOF to read
    protocol.watch_disconnect(None)
    assert protocol._on_lost is None and watched == []
