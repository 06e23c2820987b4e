"""Server-sent events towards the client.

A stream that breaks after bytes were sent ends with an in-band error event and no `[DONE]`, so
no client mistakes a truncated answer for a complete one.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Generator, Mapping
from typing import Any, Protocol

import orjson
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from margin import errors
from margin.api.disconnect import ClientWatch
from margin.types import Chunk

log = logging.getLogger("margin.api")

DONE = b"data: [DONE]\n\n"


async def openai_events(chunks: AsyncIterator[Chunk]) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            yield b"data: " + orjson.dumps(chunk.body) + b"\n\n"
    except errors.MarginError as error:
        yield b"data: " + orjson.dumps(error.to_openai()) + b"\n\n"
        return
    yield DONE


class Closable(Protocol):
    async def aclose(self) -> None: ...


class EventStreamResponse(Response):
    """SSE over a pipeline stream that is closed however the response ends: sent to the end, cut off
    by the client, or never started (the client left before the headers went out). Closing the
    stream is what ends its request (the reservation settled, the ledger rows recorded); left alone,
    an unread stream would end only when the garbage collector finalised it.

    Sent directly on ASGI rather than through Starlette's `StreamingResponse`, which starts a task
    group and a disconnect-listener task per stream: `ClientWatch` cancels the sending when the
    client's connection is lost (through `margin serve`'s protocol, no task at all).
    `client_left` says whether it did."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[bytes], source: Closable, headers: Mapping[str, str]) -> None:
        self.body_iterator = events
        self.source = source
        self.status_code = 200
        self.background = None
        self.client_left = False
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watch = ClientWatch(scope, receive)
        try:
            await watch.run(lambda: self._send_events(send))
        finally:
            self.client_left = watch.left
            await self.source.aclose()

    async def _send_events(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        first = await anext(self.body_iterator, None)
        if first is not None:  # at once, with the head: the time to first byte waits for no other event
            await send(_body([first]))
            await _send_batched(send, self.body_iterator)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _send_batched(send: Send, events: AsyncIterator[bytes]) -> None:
    """Each event goes out as soon as the next one is not ready: the events that are (an upstream
    block often holds several, under load a whole answer) go out together in one `send()`."""
    ready: list[bytes] = []
    while True:
        step = events.__anext__().__await__()  # run by hand: does the next event come without a wait?
        try:
            waiting = step.send(None)
        except StopIteration as done:
            ready.append(done.value)
            continue
        except StopAsyncIteration:
            break
        if ready:  # the next event needs a wait (on the upstream): first send what is here
            await _send_or_unwind(send, _body(ready), step)
            ready = []
        try:
            ready.append(await Resumed(step, waiting))
        except StopAsyncIteration:
            break
    if ready:
        await send(_body(ready))


def _body(events: list[bytes]) -> Message:
    return {
        "type": "http.response.body",
        "body": events[0] if len(events) == 1 else b"".join(events),
        "more_body": True,
    }


async def _send_or_unwind(send: Send, message: Message, step: Generator[Any, Any, Any]) -> None:
    """`send(message)` while `step` is suspended mid-way; if the send fails (the client left: a
    cancellation), the same error goes into `step` first, so the stream's generators unwind as they
    would had it come while they waited, and none is left running, which `aclose` would refuse."""
    try:
        await send(message)
    except BaseException as error:  # any failed send, a cancellation too, unwinds the stream first; re-raised
        with contextlib.suppress(BaseException):  # the stream's own end of it: `error` is what counts
            await Resumed(step, None, error)
        raise


class Resumed:
    """Awaits `step`, an awaitable already started by hand and suspended on `waiting` (what it
    yielded for the task to wait on); with `error`, throws that into it first. Delegates as `await`
    does: values sent and errors thrown into the task go on to `step`."""

    __slots__ = ("error", "step", "waiting")

    def __init__(self, step: Generator[Any, Any, Any], waiting: Any, error: BaseException | None = None) -> None:
        self.step, self.waiting, self.error = step, waiting, error

    def __await__(self) -> Generator[Any, Any, Any]:
        step, waiting, error = self.step, self.waiting, self.error
        while True:
            try:
                waiting = step.throw(error) if error is not None else waiting
            except StopIteration as done:
                return done.value
            error = None
            try:
                value = yield waiting
            except GeneratorExit:
                step.close()
                raise
            except BaseException as thrown:  # noqa: BLE001 (a cancellation or any error thrown into the task: goes on into `step`)
                error = thrown
                continue
            try:
                waiting = step.send(value)
            except StopIteration as done:
                return done.value
