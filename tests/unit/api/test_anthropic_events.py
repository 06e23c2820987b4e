"""`/v1/messages` streams: what one chunk becomes goes out as one body part, byte for byte the
frames Anthropic's wire has (the same bytes `encode_sse` writes, one event at a time)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic

from margin.api.anthropic import anthropic_events
from margin.errors import UpstreamServerError
from margin.translate import AnthropicStreamEncoder, encode_sse
from margin.types import Chunk, Usage


def _chunk(delta: dict[str, Any], finish: str | None = None) -> Chunk:
    return Chunk(body={"id": "chatcmpl-1", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


async def _source(chunks: list[Chunk], fail: bool = False) -> AsyncIterator[Chunk]:
    for chunk in chunks:
        yield chunk
    if fail:
        raise UpstreamServerError("boom")


async def _parts(chunks: list[Chunk], fail: bool = False) -> list[bytes]:
    encoder = AnthropicStreamEncoder(model="m", input_tokens=5)
    return [part async for part in anthropic_events(_source(chunks, fail), encoder)]


CHUNKS = [
    _chunk({"role": "assistant", "content": ""}),
    _chunk(
        {"content": "Grüße, 世界 \u2028"}
    ),  # non-ASCII and a line separator: UTF-8, as json.dumps(ensure_ascii=False)
    _chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": '{"a"'}}]}),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}, "tool_calls"),
    Chunk(body={"id": "chatcmpl-1", "choices": []}, usage=Usage(input_uncached=5, output=3)),  # usage only
]


async def test_one_part_per_chunk_with_the_wire_bytes() -> None:
    parts = await _parts(CHUNKS)
    reference = AnthropicStreamEncoder(model="m", input_tokens=5)
    expected = [b"".join(encode_sse(e) for e in reference.feed(c)) for c in CHUNKS]
    expected = [part for part in expected if part] + [b"".join(encode_sse(e) for e in reference.finish())]
    assert parts == expected
    assert len(parts) == 5  # the usage-only chunk adds no events, so no empty part
    assert parts[0].count(b"event: ") == 2  # message_start and ping together
    events = b"".join(parts).decode().split("\n\n")[:-1]
    names = [e.split("\n")[0].removeprefix("event: ") for e in events]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]


async def test_the_stream_decodes_with_the_anthropic_sdk_parser() -> None:
    data = b"".join(await _parts(CHUNKS))
    decoder = anthropic._streaming.SSEDecoder()
    events = [e for line in data.splitlines() if (e := decoder.decode(line.decode())) is not None]
    assert [e.event for e in events][:3] == ["message_start", "ping", "content_block_start"]
    deltas = [e.json() for e in events if e.event == "content_block_delta"]
    assert deltas[0]["delta"]["text"] == "Grüße, 世界 \u2028"
    assert events[-2].json()["usage"]["output_tokens"] == 3


async def test_a_break_after_the_start_ends_with_an_error_event() -> None:
    parts = await _parts(CHUNKS[:2], fail=True)
    assert parts[-1] == encode_sse({"type": "error", "error": {"type": "api_error", "message": "boom"}})
    assert b"message_stop" not in b"".join(parts)


def test_only_a_plain_piece_of_an_open_text_block_takes_the_short_way() -> None:
    encoder = AnthropicStreamEncoder(model="m")
    assert encoder.text_delta(_chunk({"content": "a"})) is None  # nothing open yet: message_start first
    encoder.feed(_chunk({"content": "a"}))
    assert encoder.text_delta(_chunk({"content": "b"})) == (0, "b")
    assert encoder.text_delta(_chunk({"content": "b"}, "stop")) is None  # the finish reason must be kept
    assert encoder.text_delta(_chunk({"content": "b", "reasoning_content": "r"})) is None
    assert encoder.text_delta(_chunk({"content": ""})) is None
    with_usage = Chunk(body=_chunk({"content": "b"}).body, usage=Usage(output=1))
    assert encoder.text_delta(with_usage) is None
