"""Streams: Anthropic events <-> OpenAI chunks, checked with both vendors' own SDK accumulators."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk
from pydantic import TypeAdapter

from margin.errors import UpstreamOverloaded, UpstreamServerError
from margin.translate import (
    AnthropicStreamDecoder,
    AnthropicStreamEncoder,
    anthropic_error_event,
    encode_sse,
)
from margin.types import Chunk, Usage

FIXTURES = Path(__file__).parent / "fixtures"
EVENT = TypeAdapter(RawMessageStreamEvent)


def sse_events(name: str) -> list[dict[str, Any]]:
    """The JSON payloads of a recorded SSE stream, checking each `event:` name matches its `type`."""
    events = []
    for frame in (FIXTURES / name).read_text().strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in frame.splitlines())
        data = json.loads(lines["data"])
        assert lines["event"] == data["type"]
        events.append(data)
    return events


def openai_chunks(name: str) -> list[Chunk]:
    return [Chunk(body=json.loads(line)) for line in (FIXTURES / name).read_text().splitlines()]


def decode(events: list[dict[str, Any]], **kwargs: Any) -> tuple[AnthropicStreamDecoder, list[Chunk]]:
    decoder = AnthropicStreamDecoder(created=1700000000, **kwargs)
    chunks = [chunk for event in events for chunk in decoder.feed(event)]
    return decoder, chunks


def openai_final(chunks: list[Chunk]) -> Any:
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk.body))  # each chunk is valid OpenAI
    return state.get_final_completion()


def anthropic_final(events: list[dict[str, Any]]) -> Message:
    snapshot = None
    buffers: dict[int, bytes] = {}
    for event in events:
        if event["type"] == "ping":  # keep-alive; not part of the SDK's event union
            continue
        parsed = EVENT.validate_python(event)  # each event is a valid Anthropic stream event
        snapshot = accumulate_event(event=parsed, current_snapshot=snapshot, json_bufs=buffers)
    assert snapshot is not None
    return snapshot


# --- Anthropic upstream -> OpenAI chunks ---------------------------------------------------------


def test_decoder_streamed_tool_use() -> None:
    decoder, chunks = decode(sse_events("anthropic_stream_tool_use.sse"))
    final = openai_final(chunks)
    choice = final.choices[0]
    assert choice.message.content == "Okay, let's check the weather for San Francisco, CA:"
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.id == "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "San Francisco, CA", "unit": "fahrenheit"}
    # first tool delta has index/id/name, the rest only argument fragments
    tool_deltas = [
        c.body["choices"][0]["delta"]["tool_calls"][0] for c in chunks if "tool_calls" in c.body["choices"][0]["delta"]
    ]
    assert tool_deltas[0] == {
        "index": 0,
        "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert all(set(d) == {"index", "function"} and set(d["function"]) == {"arguments"} for d in tool_deltas[1:])
    assert decoder.done and decoder.stop_reason == "tool_use"
    assert decoder.usage == Usage(input_uncached=472, output=89)
    # usage rides on the last chunk only
    assert chunks[-1].usage == decoder.usage
    assert all(c.usage is None for c in chunks[:-1])


def test_decoder_include_usage_appends_usage_chunk() -> None:
    _, chunks = decode(sse_events("anthropic_stream_tool_use.sse"), include_usage=True)
    assert chunks[-2].body["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1].body["choices"] == []
    assert chunks[-1].body["usage"] == {"prompt_tokens": 472, "completion_tokens": 89, "total_tokens": 561}
    assert chunks[-1].usage == Usage(input_uncached=472, output=89)
    assert chunks[0].body["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert {c.body["id"] for c in chunks} == {"msg_014p7gG3wDgGV9EUtLvnow3U"}


def test_decoder_thinking_and_cache_usage() -> None:
    decoder, chunks = decode(sse_events("anthropic_stream_thinking.sse"))
    deltas = [c.body["choices"][0]["delta"] for c in chunks if c.body["choices"]]
    reasoning = "".join(d.get("reasoning_content", "") for d in deltas)
    assert reasoning.startswith("I need to find the GCD") and reasoning.endswith("= 21")
    assert {"thinking_signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"} in deltas
    assert openai_final(chunks).choices[0].message.content == "The greatest common divisor of 1071 and 462 is **21**."
    assert decoder.usage == Usage(input_uncached=40, input_cache_read=2048, output=120)


def test_decoder_error_event_raises_classified_error() -> None:
    decoder = AnthropicStreamDecoder(deployment="claude-a")
    events = sse_events("anthropic_stream_overloaded.sse")
    assert len(decoder.feed(events[0])) == 1
    with pytest.raises(UpstreamOverloaded) as info:
        decoder.feed(events[1])
    assert info.value.deployment == "claude-a" and info.value.retryable
    assert not decoder.done
    with pytest.raises(UpstreamServerError):
        AnthropicStreamDecoder().feed({"type": "error", "error": {"type": "api_error", "message": "x"}})


def test_decoder_message_delta_usage_is_cumulative() -> None:
    decoder = AnthropicStreamDecoder()
    decoder.feed(
        {
            "type": "message_start",
            "message": {"id": "msg_x", "model": "m", "usage": {"input_tokens": 5, "output_tokens": 1}},
        }
    )
    decoder.feed({"type": "message_delta", "delta": {"stop_reason": None}, "usage": {"output_tokens": 10}})
    decoder.feed(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "max_tokens"},
            "usage": {"output_tokens": 30, "input_tokens": 9, "cache_read_input_tokens": 4},
        }
    )
    decoder.feed({"type": "future_event", "payload": 1})
    chunks = decoder.feed({"type": "message_stop"})
    assert decoder.usage == Usage(input_uncached=9, input_cache_read=4, output=30)
    assert chunks[-1].body["choices"][0]["finish_reason"] == "length"


# --- OpenAI chunks -> /v1/messages events -----------------------------------------------------------


def encode(chunks: list[Chunk], **kwargs: Any) -> tuple[AnthropicStreamEncoder, list[dict[str, Any]]]:
    encoder = AnthropicStreamEncoder(model="claude-alias", **kwargs)
    events = [event for chunk in chunks for event in encoder.feed(chunk)]
    return encoder, events + encoder.finish()


def test_encoder_streamed_tool_calls() -> None:
    encoder, events = encode(openai_chunks("openai_stream_tool_calls.jsonl"))
    assert [e["type"] for e in events[:3]] == ["message_start", "ping", "content_block_start"]
    assert events[2]["content_block"] == {
        "type": "tool_use",
        "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
        "name": "get_weather",
        "input": {},
    }
    assert [e["type"] for e in events[-4:]] == [
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    final = anthropic_final(events)
    assert final.id == "msg_AbC123" and final.model == "claude-alias"
    assert final.stop_reason == "tool_use"
    assert final.content[0].type == "tool_use"
    assert final.content[0].input == {"location": "Paris, France"}
    # the usage chunk had no Chunk.usage: it is read from the OpenAI body (64 of 72 cached)
    assert (final.usage.input_tokens, final.usage.cache_read_input_tokens, final.usage.output_tokens) == (
        8,
        64,
        17,
    )
    assert encoder.usage == Usage(input_uncached=8, input_cache_read=64, output=17)


def _chunk(delta: dict[str, Any], finish: str | None = None) -> Chunk:
    return Chunk(body={"id": "chatcmpl-1", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def test_encoder_thinking_text_and_parallel_tools() -> None:
    chunks = [
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"reasoning_content": "Plan: "}),
        _chunk({"reasoning_content": "call both."}),
        _chunk({"content": "Checking "}),
        _chunk({"content": "two cities."}),
        _chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "w", "arguments": '{"c":'},
                    }
                ]
            }
        ),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        _chunk(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "w", "arguments": ""},
                    }
                ]
            }
        ),
        _chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"c":"Oslo"}'}}]}),
        _chunk({}, "tool_calls"),
    ]
    chunks[-1].usage = Usage(input_uncached=11, output=22, output_reasoning=5)
    _, events = encode(chunks, input_tokens=11)
    assert events[0]["message"]["usage"]["input_tokens"] == 11
    starts = [(e["index"], e["content_block"]["type"]) for e in events if e["type"] == "content_block_start"]
    assert starts == [(0, "thinking"), (1, "text"), (2, "tool_use"), (3, "tool_use")]
    stops = [e["index"] for e in events if e["type"] == "content_block_stop"]
    assert stops == [0, 1, 2, 3]  # each block closed before the next opens
    final = anthropic_final(events)
    assert final.content[0].thinking == "Plan: call both."  # type: ignore[union-attr]
    assert final.content[1].text == "Checking two cities."  # type: ignore[union-attr]
    assert [b.input for b in final.content[2:]] == [{"c": "Paris"}, {"c": "Oslo"}]  # type: ignore[union-attr]
    assert final.usage.output_tokens == 27


def test_encoder_finish_without_chunks_and_stop_mapping() -> None:
    encoder = AnthropicStreamEncoder(model="m", message_id="msg_fixed")
    events = encoder.finish()
    assert [e["type"] for e in events] == ["message_start", "ping", "message_delta", "message_stop"]
    assert events[0]["message"]["id"] == "msg_fixed"
    assert events[2]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert encoder.finish() == []  # idempotent
    _, events = encode([_chunk({"content": "abc"}, "length")])
    assert events[-2]["delta"]["stop_reason"] == "max_tokens"


def test_round_trip_anthropic_stream_through_internal_chunks() -> None:
    """Anthropic upstream -> internal chunks -> /v1/messages client: the client sees the same message."""
    for fixture in ("anthropic_stream_tool_use.sse", "anthropic_stream_thinking.sse"):
        original = sse_events(fixture)
        _, chunks = decode(original)
        _, events = encode(chunks)
        before, after = anthropic_final(original), anthropic_final(events)
        assert after.content == before.content  # thinking signature included
        assert after.stop_reason == before.stop_reason
        assert after.usage.input_tokens == before.usage.input_tokens
        assert after.usage.output_tokens == before.usage.output_tokens
        assert after.usage.cache_read_input_tokens == (before.usage.cache_read_input_tokens or 0)


def test_encode_sse_frames_and_error_event() -> None:
    assert encode_sse({"type": "ping"}) == b'event: ping\ndata: {"type":"ping"}\n\n'
    err = anthropic_error_event(UpstreamOverloaded("Overloaded"))
    frame = encode_sse(err).decode()
    assert frame.startswith("event: error\ndata: ")
    assert json.loads(frame.split("data: ", 1)[1]) == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


def test_redacted_thinking_survives_both_directions_and_stop_is_once() -> None:
    events = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_r",
                "model": "m",
                "content": [],
                "usage": {"input_tokens": 3, "output_tokens": 1},
            },
        },
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "redacted_thinking", "data": "EmwKAhgB"},
        },
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Done."}},
        {"type": "content_block_stop", "index": 1},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 7},
        },
        {"type": "message_stop"},
    ]
    decoder, chunks = decode(events)
    assert {"redacted_thinking": "EmwKAhgB"} in [c.body["choices"][0]["delta"] for c in chunks]
    assert decoder.feed({"type": "message_stop"}) == []
    _, encoded = encode(chunks)
    final = anthropic_final(encoded)
    assert [b.type for b in final.content] == ["redacted_thinking", "text"]
    assert final.content[0].data == "EmwKAhgB"  # type: ignore[union-attr]


# --- usage reported before the end (issue 15 item 2) -------------------------------------------------


def test_decoder_reports_the_input_usage_of_message_start_at_once() -> None:
    decoder, chunks = decode(sse_events("anthropic_stream_thinking.sse")[:1])
    so_far = chunks[0].usage_so_far  # the role chunk
    assert so_far == decoder.usage_so_far
    assert so_far is not None and (so_far.input_uncached, so_far.input_cache_read) == (40, 2048)
    assert so_far.estimated_buckets == ("output",) and so_far.source == "estimated"  # output: only a floor
    assert AnthropicStreamDecoder().usage_so_far is None  # nothing reported before message_start


def test_decoder_usage_so_far_is_final_once_message_delta_brings_the_totals() -> None:
    events = sse_events("anthropic_stream_thinking.sse")
    decoder, _ = decode([e for e in events if e["type"] != "message_stop"])
    assert decoder.usage_so_far == Usage(input_uncached=40, input_cache_read=2048, output=120)
    assert not decoder.done


def test_encoder_message_start_carries_the_upstreams_input_usage() -> None:
    reported = Usage(input_uncached=1500, input_cache_write=2500, input_cache_read=5000, output=1)
    first = Chunk(body={"id": "x", "choices": [{"index": 0, "delta": {"role": "assistant"}}]}, usage_so_far=reported)
    _, events = encode([first], input_tokens=20)
    start = events[0]["message"]["usage"]
    assert start == {
        "input_tokens": 1500,
        "cache_creation_input_tokens": 2500,
        "cache_read_input_tokens": 5000,
        "output_tokens": 1,
    }


def test_encoder_message_start_falls_back_to_the_prompt_estimate() -> None:
    first = Chunk(body={"id": "x", "choices": [{"index": 0, "delta": {"role": "assistant"}}]})
    _, events = encode([first], input_tokens=20)
    assert events[0]["message"]["usage"]["input_tokens"] == 20
