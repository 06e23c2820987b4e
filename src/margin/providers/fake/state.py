"""What both faces of the fake upstream (OpenAI and Anthropic wire) share: counters, fault book,
and the part of a request that happens before any response bytes."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from typing import Any

import orjson
from aiohttp import web

from margin.providers.fake import engine
from margin.providers.fake.faults import Fault, FaultBook
from margin.types import JSON

FAULTS = web.AppKey("faults", FaultBook)
CALLS: web.AppKey[Counter[str]] = web.AppKey("calls")
BEHAVIOUR = web.AppKey("behaviour", engine.FakeBehaviour)
CHUNK_DELAY = web.AppKey("chunk_delay", float)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


async def read_json(request: web.Request) -> JSON:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=f"invalid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body


def error_body(fault: Fault) -> JSON:
    kind = {429: "rate_limit_error", 401: "authentication_error", 404: "not_found_error"}.get(
        fault.status or 500, "invalid_request_error" if (fault.status or 500) < 500 else "server_error"
    )
    message = {
        "context_length_exceeded": "This model's maximum context length is 128 tokens.",
        "content_filter": "The response was filtered due to the prompt triggering the content management policy.",
    }.get(fault.code or "", f"fake upstream scripted error {fault.status}")
    return {"error": {"message": message, "type": kind, "param": None, "code": fault.code}}


async def before_headers(request: web.Request, model: str) -> Fault | None:
    """Count the call and play the part of a fault that happens before any response bytes."""
    request.app[CALLS][model] += 1
    fault = request.app[FAULTS].active(model, request.headers.get("x-fake-fault"))
    if fault is None:
        return None
    if fault.delay:
        await asyncio.sleep(fault.delay)
    if fault.hang:
        await asyncio.sleep(3600)
    if fault.reset and request.transport is not None:
        request.transport.abort()
        raise asyncio.CancelledError
    return fault


def behaviour_for(request: web.Request, fault: Fault | None) -> engine.FakeBehaviour:
    """The fake's behaviour for this request: the server's, with a `wrong=` fault's share and the
    `judge` and `judge_bias` faults applied."""
    behaviour = request.app[BEHAVIOUR]
    if fault is None or not (fault.wrong or fault.judge or fault.judge_bias):
        return behaviour
    return replace(
        behaviour, wrong=fault.wrong or behaviour.wrong, judge=fault.judge or behaviour.judge,
        judge_bias=fault.judge_bias or behaviour.judge_bias,
    )  # fmt: skip


def malformed_body() -> web.Response:
    """A 200 whose JSON body is cut off half-way (a proxy that truncated it, a crashed server)."""
    truncated = b'{"id": "chatcmpl-broken", "choices": [{"message": {"content": "trunc'
    return web.Response(body=truncated, content_type="application/json")


def error_response(fault: Fault) -> web.Response:
    headers = {"retry-after": str(int(fault.retry_after))} if fault.retry_after is not None else None
    return json_response(error_body(fault), status=fault.status or 500, headers=headers)


def refusal(fault: Fault | None, messages: list[JSON]) -> tuple[int, str, str] | None:
    """(status, code, message) when the request body itself is refused by a scripted limit."""
    if fault is None:
        return None
    if fault.reject_prefill and messages and messages[-1].get("role") == "assistant":
        return 400, "prefill_unsupported", "This model does not support a final assistant message (prefill)."
    tokens = engine.prompt_tokens(messages)
    if fault.max_context is not None and tokens > fault.max_context:
        message = (
            f"This model's maximum context length is {fault.max_context} tokens. "
            f"However, you requested {tokens} tokens."
        )
        return 400, "context_length_exceeded", message
    return None


def refusal_response(refused: tuple[int, str, str]) -> web.Response:
    status, code, message = refused
    error = {"message": message, "type": "invalid_request_error", "param": "messages", "code": code}
    return json_response({"error": error}, status=status)
