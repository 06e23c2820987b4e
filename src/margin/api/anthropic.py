"""`POST /v1/messages`: the Anthropic Messages API over the same pipeline, so any tier serves it."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from margin.api.body import off_loop_if_large
from margin.api.openai import authenticated_body, new_context, response_headers
from margin.api.sse import EventStreamResponse, named_events
from margin.api.state import state_of
from margin.translate import (
    AnthropicStreamEncoder,
    chat_result_to_message,
    named_error_event,
    parse_messages_request,
)


async def messages(request: Request) -> Response:
    state = state_of(request)
    ctx = new_context(request, "messages")
    body = await authenticated_body(request, ctx)  # the key first: a caller without one costs no parsing
    chat = await off_loop_if_large(body, lambda: parse_messages_request(body.data))
    if not chat.stream:
        result = await state.pipeline.chat(ctx, chat)
        message = chat_result_to_message(result, model=result.model)
        return Response(
            orjson.dumps(message), media_type="application/json", headers=response_headers(ctx)
        )
    chunks = await state.pipeline.stream(ctx, chat)
    # message_start carries the upstream's input figures when it reported them first (Anthropic),
    # otherwise this prompt estimate: an OpenAI-shaped upstream reports usage only at the end.
    encoder = AnthropicStreamEncoder(
        model=ctx.model or chat.model, input_tokens=state.pipeline.meter.prompt_for(ctx, chat)
    )
    events = named_events(chunks, encoder.feed_named, encoder.finish_named, named_error_event)
    headers = {**response_headers(ctx), "cache-control": "no-cache"}
    return EventStreamResponse(events, chunks, headers=headers)
