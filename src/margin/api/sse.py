"""Server-sent events towards the client.

A stream that breaks after bytes were sent ends with an in-band error event and no `[DONE]`, so
no client mistakes a truncated answer for a complete one.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

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
        async for event in self.body_iterator:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
