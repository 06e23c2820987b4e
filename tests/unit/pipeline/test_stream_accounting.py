"""The per-chunk accounting's fast paths (docs/performance.md, "Third pass: streams"): a delta with
text only skips the checks for reasoning and tool calls, and those are still counted when present;
keep-alives, malformed events and finish reasons are read as before."""

from __future__ import annotations

import pytest

from margin import errors
from margin.pipeline.call import _finishes
from margin.pipeline.meter import StreamMeter
from margin.providers.malformed import MalformedCount
from margin.providers.openai_compat import _has_finish_reason, _parse_chunk
from margin.types import ChatRequest, Chunk


def chunk(*choices: dict[str, object], usage: dict[str, int] | None = None) -> Chunk:
    body: dict[str, object] = {"id": "c", "object": "chat.completion.chunk", "choices": list(choices)}
    if usage is not None:
        body["usage"] = usage
    return Chunk(body=body)


def delta(index: int = 0, finish: str | None = None, **fields: object) -> dict[str, object]:
    return {"index": index, "delta": fields, "finish_reason": finish}


def test_a_meter_counts_reasoning_and_tool_arguments_beside_plain_text() -> None:
    request = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}], stream=True)
    meter = StreamMeter(request, estimate=len, prompt_tokens=7)
    stream = [
        chunk(delta(role="assistant", content="")),
        chunk(delta(content="Hello")),
        chunk(delta(reasoning_content="think")),
        chunk(delta(content=" world", reasoning="more")),
        chunk(delta(tool_calls=[{"index": 0, "function": {"name": "f", "arguments": '{"a":1}'}}])),
        chunk(delta(finish="stop")),
    ]
    assert [meter.observe(c) for c in stream] == stream  # every chunk goes on to the client
    usage = meter.final_usage()  # no usage reported: estimated from everything generated
    assert (usage.input_uncached, usage.output) == (7, len("Hello world" + "think" + "more" + '{"a":1}'))
    assert meter.answer(100) == "Hello world"


def test_a_meter_counts_a_legacy_completion_text() -> None:
    request = ChatRequest(model="m", messages=[], stream=True, kind="completion", prompt="p")
    meter = StreamMeter(request, estimate=len, prompt_tokens=1)
    meter.observe(Chunk(body={"object": "text_completion", "choices": [{"index": 0, "text": "abc"}]}))
    assert meter.final_usage().output == 3


def test_a_keep_alive_is_skipped_and_a_malformed_event_counted() -> None:
    count = MalformedCount("up")
    assert _parse_chunk(b"", "up", count) is None
    assert _parse_chunk(b" \r\n\t", "up", count) is None
    with pytest.raises(errors.MalformedUpstreamEvent):
        _parse_chunk(b'{"choices": [{"delta": {"content": "oops"', "up", count)
    assert count.events == 1
    parsed = _parse_chunk(b'{"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}', "up", count)
    assert (
        parsed is not None
        and parsed.usage is not None
        and (parsed.usage.input_uncached, parsed.usage.output)
        == (
            3,
            4,
        )
    )
    assert count.events == 1


@pytest.mark.parametrize(
    ("body", "finished"),
    [
        ({"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None}]}, False),
        ({"choices": [delta(0), delta(1, finish="length")]}, True),
        ({"choices": []}, False),
        ({"usage": {"prompt_tokens": 1}}, False),
        ({"choices": ["not a choice", delta(0, finish="stop")]}, True),
    ],
)
def test_a_finish_reason_is_seen_in_any_choice(body: dict[str, object], finished: bool) -> None:
    assert _has_finish_reason(body) is finished
    assert _finishes(Chunk(body=body)) is finished
