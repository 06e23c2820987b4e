"""EventStreamResponse sends the events that are ready together, and each one before the stream
waits for the next (docs/performance.md, "Third pass: streams"); a send that fails while the stream
is suspended unwinds the stream's generators first, so closing them afterwards works."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import pytest
from starlette.types import Message

from margin.api.sse import EventStreamResponse


class Source:
    """The pipeline stream's stand-in: closed by the response however it ends."""

    def __init__(self) -> None:
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True


class Client:
    """An ASGI peer that records what was sent, and when the source began to wait."""

    def __init__(self, fail_on_body: int | None = None) -> None:
        self.sent: list[Message] = []
        self.fail_on_body = fail_on_body  # the body send (0 is the first) that fails

    async def receive(self) -> Message:
        await asyncio.Event().wait()  # the client never leaves on its own
        raise AssertionError("unreachable")

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.body" and len(self.bodies()) == self.fail_on_body:
            raise OSError("the connection is gone")
        self.sent.append(message)

    def bodies(self) -> list[bytes]:
        return [m["body"] for m in self.sent if m["type"] == "http.response.body"]


SCOPE: dict[str, Any] = {"type": "http"}


async def test_ready_events_go_in_one_send_and_before_the_stream_waits() -> None:
    client, gate = Client(), asyncio.get_running_loop().create_future()

    async def events() -> AsyncIterator[bytes]:
        for n in range(3):
            yield b"data: %d\n\n" % n
        await gate
        yield b"data: 3\n\n"
        yield b"data: 4\n\n"

    response = EventStreamResponse(events(), Source(), headers={})
    sending = asyncio.create_task(response(SCOPE, client.receive, client.send))
    await asyncio.sleep(0.01)
    seen_while_waiting = client.bodies()  # nothing may sit unsent while the stream waits
    gate.set_result(None)
    await sending
    # the first event alone, at once (the time to first byte waits for no other); then the ready ones
    assert seen_while_waiting == [b"data: 0\n\n", b"data: 1\n\ndata: 2\n\n"]
    assert client.bodies() == [b"data: 0\n\n", b"data: 1\n\ndata: 2\n\n", b"data: 3\n\ndata: 4\n\n", b""]
    assert [m.get("more_body") for m in client.sent[1:]] == [True, True, True, False]


async def test_each_event_goes_out_alone_when_the_next_is_not_ready() -> None:
    client = Client()

    async def events() -> AsyncIterator[bytes]:
        for n in range(3):
            await asyncio.sleep(0.001)
            yield b"data: %d\n\n" % n

    await EventStreamResponse(events(), Source(), headers={})(SCOPE, client.receive, client.send)
    assert client.bodies() == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n", b""]


async def test_a_failed_send_unwinds_the_suspended_stream_before_it_is_closed() -> None:
    client, source, unwound = Client(fail_on_body=1), Source(), asyncio.Event()
    never = asyncio.get_running_loop().create_future()

    async def events() -> AsyncGenerator[bytes, None]:
        try:
            yield b"data: 0\n\n"
            yield b"data: 1\n\n"
            await never  # suspended here when the send of event 1 fails
            yield b"data: 2\n\n"
        finally:
            unwound.set()

    stream = events()
    with pytest.raises(OSError, match="gone"):
        await EventStreamResponse(stream, source, headers={})(SCOPE, client.receive, client.send)
    assert unwound.is_set() and source.closed
    await stream.aclose()  # not left running: closing it again is fine
