"""OpenAI-compatible endpoints: parse and validate, call the pipeline, serialize. No business logic."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from margin.api import timing
from margin.api.body import JsonBody, read_body, validated
from margin.api.ids import new_request_id
from margin.api.raw_headers import picked_headers
from margin.api.schemas import ChatCompletionBody, CompletionBody, EmbeddingBody
from margin.api.sse import EventStreamResponse, openai_events
from margin.api.state import state_of
from margin.errors import ModelNotFound, shown
from margin.logs import bind_request
from margin.pipeline.context import Endpoint, RequestContext
from margin.pipeline.route_labels import route_headers
from margin.types import ChatRequest, EmbeddingRequest

_NOT_PARAMS = frozenset({"model", "messages", "prompt", "stream", "stream_options"})
_CONTEXT_HEADERS = frozenset(
    {
        b"authorization", b"x-api-key", b"x-margin-cache", b"cache-control", b"x-margin-purpose",
        b"x-margin-tier", b"x-margin-max-tier", b"x-margin-session",
    }
)  # fmt: skip


def new_context(request: Request, endpoint: Endpoint) -> RequestContext:
    rid = new_request_id()
    request.scope["margin.request_id"] = rid
    headers = picked_headers(request.scope["headers"], _CONTEXT_HEADERS)
    auth = headers.get(b"authorization")
    key = auth[7:] if auth and auth[:7].lower() == "bearer " else headers.get(b"x-api-key")
    control = headers.get(b"x-margin-cache") or headers.get(b"cache-control")
    ctx = RequestContext(request_id=rid, endpoint=endpoint, api_key=key, cache_control=control)
    ctx.purpose = headers.get(b"x-margin-purpose")  # checked by the auth stage
    bind_request(ctx)  # JSON log lines of this request name it (margin/logs.py)
    timing.attach(request.scope, ctx)  # timed from the request's arrival to the response's last byte
    tracer = state_of(request).tracer
    if tracer.enabled:
        ctx.trace = tracer.start(request.headers)  # a child of the client's traceparent, if sampled
    for header, hint in ((b"x-margin-tier", "pin"), (b"x-margin-max-tier", "cap"), (b"x-margin-session", "session")):
        value = headers.get(header)
        if value:
            ctx.route_hints[hint] = value  # pins or caps the tier of a tiered model group
    return ctx


async def read_valid_body(request: Request, ctx: RequestContext, schema: type[BaseModel]) -> dict[str, Any]:
    """The caller's key first, from the headers (a caller without one costs no parsing), then the
    body: bounded in size, shape and message count, validated off the loop when large."""
    body = await authenticated_body(request, ctx)
    await validated(schema, body)
    return body.data


async def authenticated_body(request: Request, ctx: RequestContext) -> JsonBody:
    state = state_of(request)
    await state.pipeline.authenticate(ctx)
    return await read_body(request, state.max_body_bytes, max_messages=state.config.server.max_messages)


def response_headers(ctx: RequestContext) -> dict[str, str]:
    """What margin says about the answer (`x-margin-overhead-ms` is added by `margin.api.timing`,
    right before the headers go out)."""
    headers = {"x-request-id": ctx.request_id}
    if ctx.deployment:
        headers["x-margin-deployment"] = ctx.deployment
    if ctx.decision is not None:
        headers["x-margin-model-group"] = ctx.decision.model_group
    if ctx.cost_rank is not None:
        headers["x-margin-cost-rank"] = str(ctx.cost_rank)
        # Deprecated: the same number under its old name, sent until the next release. Then
        # x-margin-tier will name the routing tier that answered, as the request header does.
        headers["x-margin-tier"] = headers["x-margin-cost-rank"]
    if len(ctx.attempts) > 1:
        headers["x-margin-attempts"] = str(len(ctx.attempts))
    if ctx.cost is not None:
        # Exact, unrounded: what the ledger records for this request (all its attempts).
        headers["x-margin-cost-usd"] = format(ctx.cost.total.usd, "f")
        if ctx.cost.basis == "unknown":
            headers["x-margin-price-unknown"] = "true"
    if ctx.usage is not None:
        headers["x-margin-input-tokens"] = str(ctx.usage.input_total)
        headers["x-margin-output-tokens"] = str(ctx.usage.output_total)
    headers.update(route_headers(ctx))  # x-margin-route: policy, tier, deployment and why
    headers.update(ctx.extra_headers)
    return headers


def chat_request(raw: dict[str, Any], *, kind: str = "chat") -> ChatRequest:
    options = raw.get("stream_options") or {}
    return ChatRequest(
        model=raw["model"],
        messages=raw.get("messages") or [],
        params={k: v for k, v in raw.items() if k not in _NOT_PARAMS},
        stream=bool(raw.get("stream")),
        include_usage=bool(options.get("include_usage")),
        kind="completion" if kind == "completion" else "chat",
        prompt=raw.get("prompt"),
    )


async def chat_completions(request: Request) -> Response:
    return await _sampling(request, "chat", ChatCompletionBody)


async def completions(request: Request) -> Response:
    return await _sampling(request, "completions", CompletionBody)


async def _sampling(
    request: Request, endpoint: Endpoint, schema: type[ChatCompletionBody] | type[CompletionBody]
) -> Response:
    state = state_of(request)
    ctx = new_context(request, endpoint)
    raw = await read_valid_body(request, ctx, schema)
    chat = chat_request(raw, kind="completion" if endpoint == "completions" else "chat")
    if not chat.stream:
        result = await state.pipeline.chat(ctx, chat)
        return Response(orjson.dumps(result.body), media_type="application/json", headers=response_headers(ctx))
    chunks = await state.pipeline.stream(ctx, chat)
    return EventStreamResponse(openai_events(chunks), chunks, headers=_stream_headers(ctx))


def _stream_headers(ctx: RequestContext) -> dict[str, str]:
    return {**response_headers(ctx), "cache-control": "no-cache", "x-accel-buffering": "no"}


async def embeddings(request: Request) -> Response:
    state = state_of(request)
    ctx = new_context(request, "embeddings")
    raw = await read_valid_body(request, ctx, EmbeddingBody)
    inputs = raw["input"]
    if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
        inputs = [inputs]
    embedding = EmbeddingRequest(
        model=raw["model"],
        inputs=inputs,
        params={k: v for k, v in raw.items() if k not in ("model", "input")},
    )
    result = await state.pipeline.embed(ctx, embedding)
    return Response(orjson.dumps(result.body), media_type="application/json", headers=response_headers(ctx))


async def list_models(request: Request) -> Response:
    """The models the caller's key may use (all of them where no key is needed); a key where keys
    are required, as on every other /v1 endpoint."""
    cards = await _callers_cards(request)
    return Response(orjson.dumps({"object": "list", "data": cards}), media_type="application/json")


async def get_model(request: Request) -> Response:
    model_id = request.path_params["model_id"]
    for card in await _callers_cards(request):
        if card["id"] == model_id:
            return Response(orjson.dumps(card), media_type="application/json")
    # The same answer for a model that does not exist and one the key may not use: a key learns
    # nothing about the models it cannot reach.
    raise ModelNotFound(f"The model {shown(model_id)} does not exist on this gateway.", param="model")


async def _callers_cards(request: Request) -> list[dict[str, Any]]:
    state = state_of(request)
    auth = request.headers.get("authorization")
    key = auth[7:] if auth and auth[:7].lower() == "bearer " else request.headers.get("x-api-key")
    principal = await state.pipeline.auth.principal_for(key)
    return state.model_cards(principal)
