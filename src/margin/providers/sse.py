"""Server-sent-event parsing for upstream streams: just enough of the spec for LLM servers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp

from margin.providers import timing


async def iter_sse(content: aiohttp.StreamReader) -> AsyncIterator[tuple[str, bytes]]:
    """Yield (event, data) pairs. `event` is "" when the server sends data-only events (OpenAI)."""
    event = ""
    data: list[bytes] = []
    buffer = b""
    # iter_any rather than line iteration: aiohttp's readline refuses lines over 512 KiB, and a
    # single SSE event (a big tool call, an embedded image) can be longer than that.
    blocks = content.iter_any()
    while True:
        try:
            block = await anext(blocks, None)
        finally:
            timing.received()  # bytes came in, the stream ended, or it failed: the upstream's time so far
        if block is None:
            break
        buffer += block
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            line = raw.rstrip(b"\r")
            if not line:
                if data:
                    yield event, b"\n".join(data)
                event, data = "", []
            elif line.startswith(b"data:"):
                data.append(line[5:].lstrip(b" "))
            elif line.startswith(b"event:"):
                event = line[6:].strip().decode("ascii", "replace")
            # comments (":"), id: and retry: lines carry nothing a gateway needs
    if buffer.strip().startswith(b"data:"):
        data.append(buffer.strip()[5:].lstrip(b" "))
    if data:  # a stream that ends without the blank line still delivers its last event
        yield event, b"\n".join(data)
