"""The fake upstream's Anthropic face: `POST /v1/messages`, JSON and SSE, with the same faults."""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from margin.errors import InvalidRequest
from margin.metering.usage import openai_usage
from margin.providers.fake import engine
from margin.providers.fake.faults import Fault
from margin.providers.fake.state import before_headers, behaviour_for, error_body, malformed_body, read_json, refusal
from margin.translate import (
    AnthropicStreamEncoder,
    chat_result_to_message,
    encode_sse,
    parse_messages_request,
    usage_to_anthropic,
)
from margin.types import JSON, ChatResult, Chunk, Usage

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def anthropic_error(status: int, message: str, retry_after: float | None = None) -> web.Response:
    kind = _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    headers = {"retry-after": str(int(retry_after))} if retry_after is not None else None
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


async def messages(request: web.Request) -> web.StreamResponse:
    raw = await read_json(request)
    try:
        chat = parse_messages_request(raw)
    except InvalidRequest as exc:
        return anthropic_error(400, exc.message)
    fault = await before_headers(request, chat.model)
    if fault is not None and fault.status:
        return anthropic_error(fault.status, error_body(fault)["error"]["message"], fault.retry_after)
    refused = refusal(fault, chat.messages)
    if refused is not None:
        return anthropic_error(refused[0], refused[2])
    behaviour = behaviour_for(request, fault)
    params = {k: v for k, v in chat.params.items() if k != "anthropic"}
    fault = fault or Fault()
    if not chat.stream:
        if fault.malformed_body:
            return malformed_body()
        body = engine.chat_completion(chat.messages, chat.model, behaviour, params)
        result = ChatResult(body=body, usage=fault.usage(openai_usage(body["usage"])), model=chat.model)
        return web.Response(body=orjson.dumps(chat_result_to_message(result)), content_type="application/json")
    return await _stream(request, _events(chat.messages, chat.model, behaviour, params, fault), fault)


def _events(
    messages: list[JSON], model: str, behaviour: engine.FakeBehaviour, params: JSON, fault: Fault
) -> list[JSON]:
    """The answer as Anthropic stream events, with the usage where Anthropic reports it: the input
    figures in `message_start`, the cumulative totals in `message_delta`."""
    encoder = AnthropicStreamEncoder(model=model, input_tokens=engine.prompt_tokens(messages))
    events: list[JSON] = []
    usage: Usage | None = None
    for body in engine.chat_chunks(messages, model, behaviour, {**params, "stream_options": {"include_usage": True}}):
        reported = body.get("usage")
        if reported:
            usage = fault.usage(openai_usage(reported))
        events.extend(encoder.feed(Chunk(body=body, usage=usage if reported else None)))
    events.extend(encoder.finish())
    if fault.scripts_usage and usage is not None:
        start = {**usage_to_anthropic(usage), "output_tokens": 1}  # Anthropic's first output count
        events[0]["message"]["usage"] = start
        for event in events:
            if event.get("type") == "message_delta":
                event["usage"] = usage_to_anthropic(usage)
    return events


async def _stream(request: web.Request, events: list[JSON], fault: Fault) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
    await response.prepare(request)
    if fault.first_token:
        await asyncio.sleep(fault.first_token)
    for index, event in enumerate(events):
        if fault.cut_after is not None and index > fault.cut_after:
            return _abort(request, response)
        if fault.stall_after is not None and index > fault.stall_after:
            await asyncio.sleep(fault.stall)
            return response
        frame = encode_sse(event)
        if fault.malformed_at == index:
            frame = f'event: {event.get("type")}\ndata: {{"type": "{event.get("type")}", "delta\n\n'.encode()
        await response.write(frame)
        if fault.cut_after_event is not None and event.get("type") == fault.cut_after_event:
            return _abort(request, response)
        if fault.pace:
            await asyncio.sleep(fault.pace)
    await response.write_eof()
    return response


def _abort(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """Drop the TCP connection mid-answer: no message_stop, no clean end of the HTTP response."""
    assert request.transport is not None
    request.transport.abort()
    return response


def anthropic_routes(app: web.Application) -> None:
    app.router.add_post("/v1/messages", messages)
