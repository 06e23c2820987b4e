"""Server-sent events towards the client.

A stream that breaks after bytes were sent ends with an in-band error event and no `[DONE]`, so
no client mistakes a truncated answer for a complete one.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from margin import errors
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


class EventStreamResponse(StreamingResponse):
    """SSE over a pipeline stream that is closed however the response ends: sent to the end, cut off
    by the client, or never started (the client left before the headers went out). Closing the
    stream is what ends its request (the reservation settled, the ledger rows recorded), and
    Starlette itself never closes a body iterator: left alone, an unread stream would end only when
    the garbage collector finalised it."""

    def __init__(self, events: AsyncIterator[bytes], source: Closable, headers: Mapping[str, str]) -> None:
        super().__init__(events, media_type="text/event-stream", headers=headers)
        self.source = source

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.source.aclose()
