"""Eval calls over a wire: what they send (purpose, no cache, key), what they read back (answer,
exact cost, tokens, timings), and how failures come out; in-process through the ASGI wire."""

from __future__ import annotations

from collections.abc import MutableMapping
from decimal import Decimal
from typing import Any

import orjson
import pytest

from margin.evals.asgi_wire import AsgiWire
from margin.evals.errors import GatewayUnusable
from margin.evals.gateway import GatewayTarget

Scope = MutableMapping[str, Any]


class FakeMargin:
    """An ASGI app shaped like margin's API, scripted per model name."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.lifespan: list[str] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].split(".")[-1]
                self.lifespan.append(kind)
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        if scope["path"] == "/v1/models":
            await self._send(send, 200, {"data": [{"id": "chat", "deployments": ["chat-a"]}]})
            return
        body = orjson.loads((await receive())["body"])
        self.requests.append((headers, body))
        model = body["model"]
        if model == "missing":
            await self._send(send, 404, {"error": {"message": "The model 'missing' does not exist"}})
        elif body["stream"]:
            await self._stream(send, model)
        else:
            answer = {
                "choices": [{"message": {"content": "Paris"}}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 1},
            }
            cost = {"x-margin-cost-usd": "0.000012345", "x-request-id": "req_1", "x-margin-deployment": "chat-a"}
            await self._send(send, 200, answer, cost)

    async def _send(self, send: Any, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        raw = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": orjson.dumps(body)})

    async def _stream(self, send: Any, model: str) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        pieces = [{"choices": [{"delta": {"role": "assistant", "content": ""}}]}]
        pieces += [{"choices": [{"delta": {"content": p}}]} for p in ("Par", "is")]
        pieces.append({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}})
        for piece in pieces:
            await send(
                {"type": "http.response.body", "body": b"data: " + orjson.dumps(piece) + b"\n\n", "more_body": True}
            )
        if model == "cut":
            await send({"type": "http.response.body", "body": b"", "more_body": False})  # no [DONE]
            return
        if model == "broken":
            error = {"error": {"message": "upstream stream failed", "type": "upstream_error"}}
            await send(
                {"type": "http.response.body", "body": b"data: " + orjson.dumps(error) + b"\n\n", "more_body": False}
            )
            return
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


@pytest.fixture
async def wired() -> Any:
    app = FakeMargin()
    wire = AsgiWire(app)
    await wire.start()
    yield app, wire
    await wire.aclose()
    assert app.lifespan == ["startup", "shutdown"]


async def test_a_plain_call_reads_the_answer_the_exact_cost_and_the_tokens(wired: Any) -> None:
    app, wire = wired
    done = await GatewayTarget(wire, api_key="sk-eval").complete(
        "chat", [{"role": "user", "content": "?"}], {"temperature": 0}
    )
    assert done.ok and done.text == "Paris" and done.status == 200
    assert done.cost_usd == Decimal("0.000012345") and isinstance(done.cost_usd, Decimal)
    assert (done.input_tokens, done.output_tokens, done.request_id, done.deployment) == (9, 1, "req_1", "chat-a")
    assert done.ttft_ms is None and done.latency_ms > 0
    headers, body = app.requests[0]
    assert headers["x-margin-purpose"] == "eval" and headers["x-margin-cache"] == "no-cache, no-store"
    assert headers["authorization"] == "Bearer sk-eval"
    assert body == {"temperature": 0, "model": "chat", "messages": [{"role": "user", "content": "?"}], "stream": False}


async def test_a_streamed_call_measures_time_to_first_token_and_has_no_cost(wired: Any) -> None:
    app, wire = wired
    done = await GatewayTarget(wire, stream=True).complete("chat", [{"role": "user", "content": "?"}], {})
    assert done.ok and done.text == "Paris" and done.cost_usd is None
    assert done.ttft_ms is not None and 0 < done.ttft_ms <= done.latency_ms
    assert (done.input_tokens, done.output_tokens) == (9, 2)
    assert app.requests[0][1]["stream_options"] == {"include_usage": True}
    assert "authorization" not in app.requests[0][0]


@pytest.mark.parametrize(
    ("model", "stream", "error"),
    [
        ("missing", False, "HTTP 404: The model 'missing' does not exist"),
        ("cut", True, "the stream ended without [DONE]"),
        ("broken", True, "in-band error: upstream stream failed"),
    ],
)
async def test_failed_calls_say_why_and_carry_no_answer(wired: Any, model: str, stream: bool, error: str) -> None:
    _, wire = wired
    done = await GatewayTarget(wire, stream=stream).complete(model, [{"role": "user", "content": "?"}], {})
    assert not done.ok and done.text is None and done.error == error


async def test_models_lists_groups_and_their_deployments(wired: Any) -> None:
    _, wire = wired
    assert await GatewayTarget(wire).models() == ["chat", "chat-a"]


class Unreachable:
    def request(self, *args: Any) -> Any:
        raise ConnectionError("connection refused")

    async def aclose(self) -> None:
        return None


async def test_an_unreachable_gateway_is_a_failed_call_or_an_unusable_gateway() -> None:
    target = GatewayTarget(Unreachable())
    done = await target.complete("chat", [], {})
    assert done.error == "ConnectionError: connection refused"
    with pytest.raises(GatewayUnusable, match="cannot be reached"):
        await target.models()
