"""Eval calls to margin's OpenAI-compatible API, over any `Wire` (HTTP or in-process).

Every call says what it is for (`x-margin-purpose: eval`: the ledger row is tagged `eval` and runs at
endpoint class batch) and bypasses the response cache (an eval measures the model, not a stored
answer). A plain call reads margin's exact cost from `x-margin-cost-usd`; a streamed call measures
the time to the first token instead (its headers leave before the answer's cost is known).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from margin.evals.completion import Completion
from margin.evals.errors import GatewayUnusable
from margin.evals.wire import Wire, WireResponse

PURPOSE_HEADER = "x-margin-purpose"
EVAL_HEADERS = {PURPOSE_HEADER: "eval", "x-margin-cache": "no-cache, no-store"}
_ERROR_BODY_BYTES = 2000


@dataclass(slots=True)
class _Reading:
    """What a streamed answer has delivered so far."""

    text: str = ""
    first_at: float | None = None
    usage: dict[str, Any] | None = None
    done: bool = False
    error: str | None = None


class GatewayTarget:
    def __init__(self, wire: Wire, *, api_key: str | None = None, stream: bool = False, purpose: str = "eval") -> None:
        """`purpose`: what the calls declare they are for (`x-margin-purpose`, a ledger tag)."""
        self.wire = wire
        self.stream = stream
        self._headers = {"content-type": "application/json", **EVAL_HEADERS, PURPOSE_HEADER: purpose}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"

    async def complete(
        self, model: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]
    ) -> Completion:
        body: dict[str, Any] = {**params, "model": model, "messages": list(messages), "stream": self.stream}
        if self.stream:
            body["stream_options"] = {"include_usage": True}
        started = time.perf_counter()
        try:
            async with self.wire.request("POST", "/v1/chat/completions", orjson.dumps(body), self._headers) as resp:
                if resp.status >= 400:
                    return await _failed(resp, started)
                if self.stream:
                    return await _streamed(resp, started)
                return await _plain(resp, started)
        except (ConnectionError, TimeoutError) as exc:
            return Completion(text=None, error=f"{type(exc).__name__}: {exc}", latency_ms=_ms(started))

    async def models(self) -> list[str]:
        """The names the gateway answers to (GET /v1/models): groups, aliases and, as margin lists
        them under each group, deployment names (a deployment can be asked for by its own name)."""
        try:
            async with self.wire.request("GET", "/v1/models", None, self._headers) as resp:
                raw = await _read_all(resp.body())
                if resp.status >= 400:
                    raise GatewayUnusable(f"GET /v1/models answered {resp.status}: {_error_message(raw)}")
        except (ConnectionError, TimeoutError) as exc:
            raise GatewayUnusable(f"margin cannot be reached: {exc}") from None
        try:
            listed = orjson.loads(raw)["data"]
            names = [str(m["id"]) for m in listed]
            names += [str(d) for m in listed for d in m.get("deployments") or [] if str(d) not in names]
            return names
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise GatewayUnusable("GET /v1/models did not answer a model list") from None


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000


async def _read_all(blocks: AsyncIterator[bytes], limit: int | None = None) -> bytes:
    data = b""
    async for block in blocks:
        data += block
        if limit is not None and len(data) >= limit:
            break
    return data


def _error_message(raw: bytes) -> str:
    try:
        error = orjson.loads(raw).get("error", {})
        return str(error.get("message") or error)[:300]
    except (orjson.JSONDecodeError, AttributeError):
        return raw[:300].decode("utf-8", "replace")


def _decimal(value: str | None) -> Decimal | None:
    try:
        return Decimal(value) if value else None
    except InvalidOperation:
        return None


def _int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _base(resp: WireResponse, started: float) -> dict[str, Any]:
    headers = resp.headers
    return {
        "status": resp.status,
        "latency_ms": _ms(started),
        "cost_usd": _decimal(headers.get("x-margin-cost-usd")),
        "input_tokens": _int(headers.get("x-margin-input-tokens")),
        "output_tokens": _int(headers.get("x-margin-output-tokens")),
        "request_id": headers.get("x-request-id"),
        "deployment": headers.get("x-margin-deployment"),
    }


async def _failed(resp: WireResponse, started: float) -> Completion:
    raw = await _read_all(resp.body(), _ERROR_BODY_BYTES)
    return Completion(text=None, error=f"HTTP {resp.status}: {_error_message(raw)}", **_base(resp, started))


async def _plain(resp: WireResponse, started: float) -> Completion:
    raw = await _read_all(resp.body())
    fields = _base(resp, started)
    try:
        answer = orjson.loads(raw)
        text = answer["choices"][0]["message"].get("content") or ""
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
        return Completion(text=None, error="the answer is not a chat completion", **fields)
    usage = answer.get("usage") or {}
    fields["input_tokens"] = fields["input_tokens"] or _int(usage.get("prompt_tokens"))
    fields["output_tokens"] = fields["output_tokens"] or _int(usage.get("completion_tokens"))
    return Completion(text=text, **fields)


async def _streamed(resp: WireResponse, started: float) -> Completion:
    reading = _Reading()
    async for data in sse_data(resp.body()):
        _take(reading, data)
        if reading.error:
            break
    fields = {**_base(resp, started), "latency_ms": _ms(started)}
    fields["ttft_ms"] = (reading.first_at - started) * 1000 if reading.first_at is not None else None
    usage = reading.usage or {}
    fields["input_tokens"] = fields["input_tokens"] or _int(usage.get("prompt_tokens"))
    fields["output_tokens"] = fields["output_tokens"] or _int(usage.get("completion_tokens"))
    if reading.error or not reading.done:
        return Completion(text=None, error=reading.error or "the stream ended without [DONE]", **fields)
    return Completion(text=reading.text, **fields)


def _take(reading: _Reading, data: bytes) -> None:
    if data.strip() == b"[DONE]":
        reading.done = True
        return
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        reading.error = "the stream carried an unreadable event"
        return
    if "error" in event:
        reading.error = f"in-band error: {_error_message(data)}"
        return
    if event.get("usage"):
        reading.usage = event["usage"]
    for choice in event.get("choices") or []:
        piece = (choice.get("delta") or {}).get("content")
        if piece:
            reading.first_at = reading.first_at or time.perf_counter()
            reading.text += piece


async def sse_data(blocks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The `data:` payloads of a server-sent-event stream, one per event."""
    buffer = b""
    data: list[bytes] = []
    async for block in blocks:
        buffer += block
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            line = raw.rstrip(b"\r")
            if not line and data:
                yield b"\n".join(data)
                data = []
            elif line.startswith(b"data:"):
                data.append(line[5:].lstrip(b" "))
    if buffer.startswith(b"data:"):
        data.append(buffer[5:].strip())
    if data:
        yield b"\n".join(data)
