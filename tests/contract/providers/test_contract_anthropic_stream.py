"""Contract: the anthropic adapter on a broken or corrupted Messages stream (issue 15, items 1 and 2).

Anthropic reports the input usage first (`message_start`) and the cumulative totals later
(`message_delta`). Whatever breaks the stream, the error the adapter raises carries what had been
reported (`usage_so_far`), so the call stage bills it; an event that is not valid JSON breaks the
stream like a dropped connection. The replay server sends each script over real HTTP on loopback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import pytest_asyncio
from tests.contract.providers.replay_upstream import ABORT, ReplayServer, Reply, Step, chat, collect, deployment

from margin import errors
from margin.providers.anthropic import AnthropicProvider
from margin.types import Chunk, Usage

SSE = {"content-type": "text/event-stream"}
START_USAGE = {
    "input_tokens": 1500,
    "cache_creation_input_tokens": 2500,
    "cache_read_input_tokens": 5000,
    "output_tokens": 1,
}
INPUT = Usage(input_uncached=1500, input_cache_write=2500, input_cache_read=5000)


def frame(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: ".encode() + orjson.dumps(event) + b"\n\n"


MESSAGE = [
    frame({"type": "message_start", "message": {"id": "msg_1", "model": "claude", "usage": START_USAGE}}),
    frame({"type": "ping"}),
    frame({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    frame({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
    frame({"type": "content_block_stop", "index": 0}),
    frame({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 40}}),
    frame({"type": "message_stop"}),
]
EVENT_TYPES = ["message_start", "ping", "content_block_start", "content_block_delta", "content_block_stop"]


@pytest_asyncio.fixture
async def provider(replay: ReplayServer) -> AsyncIterator[Any]:
    made: list[AnthropicProvider] = []

    def build(*steps: Step, **reply: Any) -> AnthropicProvider:
        sid = replay.script(Reply(headers=SSE, stream=list(steps)) if steps else Reply(**reply))
        made.append(AnthropicProvider(deployment(replay.url(sid), name="claude-a", provider="anthropic")))
        return made[-1]

    yield build
    for adapter in made:
        await adapter.aclose()


async def test_the_role_chunk_carries_the_input_usage_of_message_start(provider: Any) -> None:
    chunks = await collect(provider(*MESSAGE).stream(chat()))
    assert chunks[0].usage_so_far is not None
    assert chunks[0].usage_so_far.input_total == INPUT.input_total
    assert chunks[0].usage_so_far.estimated_buckets == ("output",)  # 1 output token is only a floor
    assert chunks[-1].usage == Usage(input_uncached=1500, input_cache_write=2500, input_cache_read=5000, output=40)


@pytest.mark.parametrize("cut", range(len(EVENT_TYPES)), ids=EVENT_TYPES)
async def test_a_cut_before_message_delta_carries_the_input_usage(provider: Any, cut: int) -> None:
    received: list[Chunk] = []
    with pytest.raises(errors.StreamInterrupted) as caught:
        await collect(provider(*MESSAGE[: cut + 1], ABORT).stream(chat()), received)
    reported = caught.value.usage_so_far
    assert isinstance(reported, Usage)
    assert (reported.input_uncached, reported.input_cache_write, reported.input_cache_read) == (1500, 2500, 5000)
    assert (reported.output, reported.estimated_buckets) == (1, ("output",))


async def test_a_cut_after_message_delta_carries_the_final_counts(provider: Any) -> None:
    with pytest.raises(errors.StreamInterrupted) as caught:
        await collect(provider(*MESSAGE[:6], ABORT).stream(chat()))
    assert caught.value.usage_so_far == Usage(
        input_uncached=1500, input_cache_write=2500, input_cache_read=5000, output=40
    )


async def test_a_stream_that_ends_without_message_stop_carries_the_usage(provider: Any) -> None:
    with pytest.raises(errors.StreamInterrupted) as caught:
        await collect(provider(*MESSAGE[:4]).stream(chat()))  # closed cleanly, but never finished
    reported = caught.value.usage_so_far
    assert isinstance(reported, Usage) and reported.input_cache_read == 5000


async def test_a_malformed_event_breaks_the_stream_and_is_counted(provider: Any) -> None:
    broken = b'event: content_block_delta\ndata: {"type": "content_block_delta", "delta\n\n'
    adapter = provider(*MESSAGE[:3], broken, *MESSAGE[3:])
    received: list[Chunk] = []
    with pytest.raises(errors.MalformedUpstreamEvent) as caught:
        await collect(adapter.stream(chat()), received)
    assert len(received) == 1  # the role chunk; nothing after the hole is passed on
    reported = caught.value.usage_so_far
    assert isinstance(reported, Usage) and reported.input_uncached == 1500
    assert adapter.malformed.events == 1


async def test_an_error_event_mid_stream_carries_the_usage(provider: Any) -> None:
    error = frame({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    with pytest.raises(errors.UpstreamOverloaded) as caught:
        await collect(provider(*MESSAGE[:4], error).stream(chat()))
    reported = caught.value.usage_so_far
    assert isinstance(reported, Usage) and reported.input_cache_write == 2500


async def test_a_body_that_is_not_json_is_a_malformed_response(provider: Any) -> None:
    adapter = provider(status=200, headers={"content-type": "application/json"}, body=b'{"id": "msg_1", "cont')
    with pytest.raises(errors.MalformedUpstreamResponse) as caught:
        await adapter.chat(chat())
    assert caught.value.status == 502 and caught.value.failover and caught.value.retryable
    assert adapter.malformed.events == 1
