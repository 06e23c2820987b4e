"""`POST /v1/messages`: the Anthropic Messages API over the same pipeline, so any tier serves it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response

from margin.api.body import off_loop_if_large
from margin.api.openai import authenticated_body, new_context, response_headers
from margin.api.sse import EventStreamResponse
from margin.api.state import state_of
from margin.errors import MarginError
from margin.translate import (
    AnthropicStreamEncoder,
    anthropic_error_event,
    chat_result_to_message,
    parse_messages_request,
)
from margin.types import JSON, Chunk


async def messages(request: Request) -> Response:
    state = state_of(request)
    ctx = new_context(request, "messages")
    body = await authenticated_body(request, ctx)  # the key first: a caller without one costs no parsing
    chat = await off_loop_if_large(body, lambda: parse_messages_request(body.data))
    if not chat.stream:
        result = await state.pipeline.chat(ctx, chat)
        message = chat_result_to_message(result, model=result.model)
        return Response(orjson.dumps(message), media_type="application/json", headers=response_headers(ctx))
    chunks = await state.pipeline.stream(ctx, chat)
    # message_start carries the upstream's input figures when it reported them first (Anthropic),
    # otherwise this prompt estimate: an OpenAI-shaped upstream reports usage only at the end.
    encoder = AnthropicStreamEncoder(
        model=ctx.model or chat.model, input_tokens=state.pipeline.meter.prompt_for(ctx, chat)
    )
    events = anthropic_events(chunks, encoder)
    headers = {**response_headers(ctx), "cache-control": "no-cache"}
    return EventStreamResponse(events, chunks, headers=headers)


# A text_delta event's frame, as `frames` writes it (orjson keeps the keys in this order).
_TEXT_DELTA = (
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":%d,"delta":{"type":"text_delta","text":%b}}\n\n'
)


def frames(events: list[JSON]) -> bytes:
    """Anthropic SSE frames (`event: <type>` then its data) for the events one chunk became."""
    return b"".join(
        [b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n" for event in events]
    )


async def anthropic_events(chunks: AsyncIterator[Chunk], encoder: AnthropicStreamEncoder) -> AsyncIterator[bytes]:
    """The stream on Anthropic's wire: what one chunk becomes (up to four events for the first,
    message_start, ping, content_block_start and its delta) goes out as one body part, so one ASGI
    send and one write per chunk, as on the OpenAI wire. A stream that breaks after it began ends
    with an in-band `error` event."""
    try:
        async for chunk in chunks:
            text = encoder.text_delta(chunk)
            if text is not None:  # the common chunk: its one event's bytes, without building it
                yield _TEXT_DELTA % (text[0], orjson.dumps(text[1]))
                continue
            events = encoder.feed(chunk)
            if events:
                yield frames(events)
    except MarginError as error:
        yield frames([anthropic_error_event(error)])
        return
    yield frames(encoder.finish())
