"""`margin fake-upstream`: the fake model behind real HTTP, speaking OpenAI's and Anthropic's wire
protocols, with scripted faults. Tests and benchmarks use it in place of paid APIs.

Control endpoints: ``GET /_fake/stats`` (calls per model), ``POST /_fake/reset``,
``POST /_fake/faults`` with ``{"model": spec}`` to script faults at run time, ``GET|POST /_fake/batches``
(lines run by the batch APIs per model; the delay between lines).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import orjson
from aiohttp import web

from margin.metering.usage import openai_usage
from margin.providers.fake import engine
from margin.providers.fake.anthropic_wire import anthropic_routes
from margin.providers.fake.batches import batch_routes
from margin.providers.fake.faults import Fault, FaultBook
from margin.providers.fake.state import (
    BEHAVIOUR,
    CALLS,
    CHUNK_DELAY,
    FAULTS,
    before_headers,
    behaviour_for,
    error_response,
    json_response,
    malformed_body,
    read_json,
    refusal,
    refusal_response,
)
from margin.types import JSON


def create_fake_app(
    *,
    behaviour: engine.FakeBehaviour | None = None,
    faults: dict[str, str] | None = None,
    chunk_delay_s: float = 0.0,
) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[FAULTS] = FaultBook(by_model=dict(faults or {}))
    app[CALLS] = Counter()
    app[BEHAVIOUR] = behaviour or engine.FakeBehaviour()
    app[CHUNK_DELAY] = chunk_delay_s
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/_fake/stats", stats)
    app.router.add_post("/_fake/reset", reset)
    app.router.add_post("/_fake/faults", set_faults)
    anthropic_routes(app)
    batch_routes(app)  # the providers' own Files and Batch APIs (fake/batches.py)
    return app


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await read_json(request)
    model = str(body.get("model", "fake"))
    fault = await before_headers(request, model)
    if fault is not None and fault.status:
        return error_response(fault)
    messages = body.get("messages") or []
    refused = refusal(fault, messages)
    if refused is not None:
        return refusal_response(refused)
    behaviour = behaviour_for(request, fault)
    if not body.get("stream"):
        if fault is not None and fault.malformed_body:
            return malformed_body()
        return json_response(_scripted(engine.chat_completion(messages, model, behaviour, body), fault))
    if fault is not None and fault.no_usage:
        body = {**body, "stream_options": {"include_usage": False}}
    events = [orjson.dumps(_scripted(c, fault)) for c in engine.chat_chunks(messages, model, behaviour, body)]
    return await stream_events(request, events, fault)


def _scripted(body: JSON, fault: Fault | None) -> JSON:
    """`body` with the usage the fault scripts, OpenAI-shaped (cache reads inside prompt_tokens)."""
    if fault is None or not fault.scripts_usage or not isinstance(body.get("usage"), dict):
        return body
    usage = fault.usage(openai_usage(body["usage"]))
    report: JSON = {
        "prompt_tokens": usage.input_uncached + usage.input_cache_read,
        "completion_tokens": usage.output,
        "total_tokens": usage.input_uncached + usage.input_cache_read + usage.output,
    }
    if usage.input_cache_read:
        report["prompt_tokens_details"] = {"cached_tokens": usage.input_cache_read}
    return {**body, "usage": report}


async def stream_events(request: web.Request, events: list[bytes], fault: Fault | None) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
    await response.prepare(request)
    fault = fault or Fault()
    if fault.first_token:
        await asyncio.sleep(fault.first_token)
    delay = fault.pace or request.app[CHUNK_DELAY]
    for index, event in enumerate(events):
        if fault.cut_after is not None and index > fault.cut_after:
            assert request.transport is not None
            request.transport.abort()  # drop the connection: no finish chunk, no [DONE]
            return response
        if fault.stall_after is not None and index > fault.stall_after:
            await asyncio.sleep(fault.stall)
            return response
        if fault.garbage_at == index:
            await response.write(b'data: {"choices": [{"delta": {"content": "oops"\n\n')
        payload = b'{"choices": [{"delta": {"content": "oops"' if fault.malformed_at == index else event
        await response.write(b"data: " + payload + b"\n\n")
        if delay:
            await asyncio.sleep(delay)
    if fault.cut_after is not None and fault.cut_after < len(events):
        assert request.transport is not None
        request.transport.abort()  # cut after the last event: no [DONE], no clean end
        return response
    if not fault.no_done:
        await response.write(b"data: [DONE]\n\n")
    if fault.hold:
        await asyncio.sleep(fault.hold)
    await response.write_eof()
    return response


async def completions(request: web.Request) -> web.StreamResponse:
    body = await read_json(request)
    model = str(body.get("model", "fake"))
    fault = await before_headers(request, model)
    if fault is not None and fault.status:
        return error_response(fault)
    prompt = body.get("prompt", "")
    text = prompt if isinstance(prompt, str) else " ".join(map(str, prompt))
    return json_response(engine.text_completion(text, model, behaviour_for(request, fault), body))


async def embeddings(request: web.Request) -> web.Response:
    body = await read_json(request)
    model = str(body.get("model", "fake"))
    fault = await before_headers(request, model)
    if fault is not None and fault.status:
        return error_response(fault)
    inputs = body.get("input", [])
    inputs = [inputs] if isinstance(inputs, str) else inputs
    dims = body.get("dimensions")
    size = dims if isinstance(dims, int) else request.app[BEHAVIOUR].dimensions
    return json_response(engine.embeddings(inputs, model, size))


async def list_models(request: web.Request) -> web.Response:
    calls: Counter[str] = request.app[CALLS]
    names = sorted(set(calls) | set(request.app[FAULTS].by_model) | {"fake"})
    return json_response({"object": "list", "data": [{"id": n, "object": "model", "owned_by": "fake"} for n in names]})


async def stats(request: web.Request) -> web.Response:
    calls = request.app[CALLS]
    return json_response({"calls": dict(calls), "total": sum(calls.values())})


async def reset(request: web.Request) -> web.Response:
    request.app[CALLS].clear()
    request.app[FAULTS].states.clear()
    return json_response({"ok": True})


async def set_faults(request: web.Request) -> web.Response:
    body = await read_json(request)
    for model, spec in body.items():
        if spec:
            try:
                Fault.parse(str(spec))  # reject a bad script now rather than on the next call
            except ValueError as exc:
                raise web.HTTPBadRequest(text=str(exc)) from None
            request.app[FAULTS].by_model[model] = str(spec)
        else:
            request.app[FAULTS].by_model.pop(model, None)
    request.app[FAULTS].states.clear()
    return json_response({"faults": request.app[FAULTS].by_model})


def run_fake_upstream(host: str, port: int, *, cold_for_s: float = 0.0, **kwargs: Any) -> None:
    """`cold_for_s`: refuse connections (nothing listens on the port) that long first, as a model
    server scaled to zero does while it starts (docs/deploy.md, "Scale to zero")."""
    if cold_for_s > 0:
        time.sleep(cold_for_s)
    # handler_cancellation: a client that hangs up ends its handler (a `hang` or a long `first_token`
    # sleep included), as a real server stops generating, and shutdown never waits for one.
    web.run_app(create_fake_app(**kwargs), host=host, port=port, print=None, access_log=None, handler_cancellation=True)
