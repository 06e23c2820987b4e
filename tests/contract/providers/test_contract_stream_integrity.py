"""Contract: how the openai_compat adapter judges a stream complete, broken, stalled or late.

The replay server (replay_upstream.py) scripts each stream over real HTTP on loopback: pauses, dropped
connections, missing terminators and garbage events. Timeouts are kept at fractions of a second.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest
from tests.contract.providers.replay_upstream import (
    ABORT,
    ProviderFactory,
    ReplayServer,
    Reply,
    Step,
    chat,
    closed_port,
    collect,
    data_events,
    json_reply,
    sse_bytes,
    sse_events,
    sse_reply,
)

from margin import errors
from margin.types import Chunk

SSE = {"content-type": "text/event-stream"}
FAST = {"connect": 1.0, "first_token": 0.3, "idle": 0.3, "total": 10.0}


def event(body: dict[str, object]) -> bytes:
    return b"data: " + orjson.dumps(body) + b"\n\n"


def delta(content: str, finish: str | None = None) -> bytes:
    return event(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
        }
    )


DONE = b"data: [DONE]\n\n"


def stream_of(*steps: Step) -> Reply:
    return Reply(headers=SSE, stream=list(steps))


# --- complete or not ----------------------------------------------------------------------------


async def test_a_finish_reason_without_done_is_a_complete_answer(
    replay: ReplayServer, make_provider: ProviderFactory
) -> None:
    sid = replay.script(stream_of(delta("Hel"), delta("lo"), delta("", "stop")))
    chunks = await collect(make_provider(replay.url(sid)).stream(chat()))
    assert [c.body["choices"][0]["delta"]["content"] for c in chunks] == ["Hel", "lo", ""]
    assert chunks[-1].body["choices"][0]["finish_reason"] == "stop"


async def test_a_clean_end_before_any_finish_reason_is_interrupted(
    replay: ReplayServer, make_provider: ProviderFactory
) -> None:
    sid = replay.script(stream_of(delta("Hel"), delta("lo")))
    received: list[Chunk] = []
    with pytest.raises(errors.StreamInterrupted) as caught:
        await collect(make_provider(replay.url(sid)).stream(chat()), received)
    assert len(received) == 2  # what arrived was passed on before the verdict
    assert caught.value.failover is True and caught.value.retryable is False
    assert caught.value.deployment == "upstream-a"


async def test_a_dropped_connection_mid_stream_is_interrupted(
    replay: ReplayServer, make_provider: ProviderFactory
) -> None:
    sid = replay.script(stream_of(delta("Hel"), 0.05, ABORT))
    received: list[Chunk] = []
    with pytest.raises(errors.StreamInterrupted):
        await collect(make_provider(replay.url(sid)).stream(chat()), received)
    assert [c.body["choices"][0]["delta"]["content"] for c in received] == ["Hel"]


async def test_a_recorded_stream_cut_short_is_interrupted(replay: ReplayServer, make_provider: ProviderFactory) -> None:
    events = sse_events(sse_bytes("openai_chat_stream_usage.sse"))
    sid = replay.script(stream_of(*events[:4], ABORT))
    with pytest.raises(errors.StreamInterrupted):
        await collect(make_provider(replay.url(sid)).stream(chat()))


async def test_a_malformed_event_in_the_middle_breaks_the_stream(
    replay: ReplayServer, make_provider: ProviderFactory
) -> None:
    """Issue 15 item 1: the rest of the stream is fine and ends with "stop" and [DONE], but what the
    malformed event carried is lost, so the answer is not complete."""
    sid = replay.script(
        stream_of(
            delta("Hel"),
            b'data: {"choices": [{"delta": {"content": "oops"\n\n',
            delta("lo"),
            delta("", "stop"),
            DONE,
        )
    )
    provider = make_provider(replay.url(sid))
    received: list[Chunk] = []
    with pytest.raises(errors.MalformedUpstreamEvent) as caught:
        await collect(provider.stream(chat()), received)
    assert [c.body["choices"][0]["delta"]["content"] for c in received] == ["Hel"]
    assert isinstance(caught.value, errors.StreamInterrupted) and caught.value.failover is True
    assert "oops" not in caught.value.message  # the payload (part of someone's answer) is not quoted
    assert provider.malformed.events == 1


async def test_a_malformed_first_event_fails_before_anything_reaches_the_client(
    replay: ReplayServer, make_provider: ProviderFactory
) -> None:
    sid = replay.script(stream_of(b"data: {not json\n\n", delta("lo"), delta("", "stop"), DONE))
    with pytest.raises(errors.MalformedUpstreamEvent):
        await anext(make_provider(replay.url(sid)).stream(chat()))


async def test_a_malformed_event_after_the_finish_reason_ends_a_whole_answer(
    replay: ReplayServer, make_provider: ProviderFactory
) -> None:
    """The answer was whole; only the usage report the broken event may have been is lost."""
    sid = replay.script(stream_of(delta("Hel"), delta("lo", "stop"), b'data: {"usage": {"prompt_\n\n', DONE))
    provider = make_provider(replay.url(sid))
    chunks = await collect(provider.stream(chat()))
    assert [c.body["choices"][0]["finish_reason"] for c in chunks] == [None, "stop"]
    assert provider.malformed.events == 1


@pytest.mark.parametrize("usage_chunk", [False, True], ids=["after-finish", "after-usage"])
async def test_a_connection_dropped_after_the_finish_reason_ends_a_whole_answer(
    replay: ReplayServer, make_provider: ProviderFactory, usage_chunk: bool
) -> None:
    usage = event({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}})
    steps = [delta("Hel"), delta("lo", "stop"), *([usage] if usage_chunk else []), ABORT]
    sid = replay.script(stream_of(*steps))
    chunks = await collect(make_provider(replay.url(sid)).stream(chat()))
    assert chunks[1].body["choices"][0]["finish_reason"] == "stop"
    assert (chunks[-1].usage is not None) is usage_chunk


async def test_empty_data_events_are_not_malformed(replay: ReplayServer, make_provider: ProviderFactory) -> None:
    sid = replay.script(stream_of(delta("Hel"), b"data:\n\n", delta("lo", "stop"), DONE))
    provider = make_provider(replay.url(sid))
    chunks = await collect(provider.stream(chat()))
    assert len(chunks) == 2 and provider.malformed.events == 0


async def test_non_object_events_are_skipped(replay: ReplayServer, make_provider: ProviderFactory) -> None:
    sid = replay.script(stream_of(delta("a"), b"data: [1, 2]\n\n", b'data: "ping"\n\n', delta("", "stop"), DONE))
    chunks = await collect(make_provider(replay.url(sid)).stream(chat()))
    assert len(chunks) == 2


async def test_comments_event_names_and_crlf_are_tolerated(
    replay: ReplayServer, make_provider: ProviderFactory
) -> None:
    keepalive = b": OPENROUTER PROCESSING\r\n\r\n"
    crlf = delta("Hel").replace(b"\n", b"\r\n")
    named = b"event: message\nid: 7\nretry: 1000\n" + delta("lo")
    sid = replay.script(stream_of(keepalive, crlf, named, delta("", "stop"), DONE))
    chunks = await collect(make_provider(replay.url(sid)).stream(chat()))
    assert [c.body["choices"][0]["delta"]["content"] for c in chunks] == ["Hel", "lo", ""]


# --- errors inside a 200 stream -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "message", "before"),
    [
        ("openai_chat_stream_error.sse", "The server had an error while processing your request", 2),
        ("vllm_chat_stream_error.sse", "Engine loop has died", 2),
    ],
)
async def test_an_error_event_mid_stream_interrupts_it(
    replay: ReplayServer, make_provider: ProviderFactory, fixture: str, message: str, before: int
) -> None:
    sid = replay.script(sse_reply(fixture))
    received: list[Chunk] = []
    with pytest.raises(errors.StreamInterrupted) as caught:
        await collect(make_provider(replay.url(sid)).stream(chat()), received)
    assert message in caught.value.message
    assert len(received) == before
    assert all("error" not in c.body for c in received)  # the error envelope is never passed off as a chunk


async def test_an_error_event_as_the_first_event_fails_before_any_chunk(
    replay: ReplayServer, make_provider: ProviderFactory
) -> None:
    sid = replay.script(stream_of(event({"error": {"message": "model is overloaded", "type": "server_error"}})))
    stream = make_provider(replay.url(sid)).stream(chat())
    with pytest.raises(errors.StreamInterrupted, match="model is overloaded"):
        await anext(stream)


async def test_llamacpp_error_line_then_done_is_not_a_complete_answer(
    replay: ReplayServer, make_provider: ProviderFactory
) -> None:
    sid = replay.script(sse_reply("llamacpp_chat_stream_error_line.sse"))
    with pytest.raises(errors.StreamInterrupted):
        await collect(make_provider(replay.url(sid)).stream(chat()))


async def test_done_before_any_finish_reason_is_interrupted(
    replay: ReplayServer, make_provider: ProviderFactory
) -> None:
    sid = replay.script(stream_of(delta("Hel"), delta("lo"), DONE))
    with pytest.raises(errors.StreamInterrupted):
        await collect(make_provider(replay.url(sid)).stream(chat()))


async def test_an_event_over_half_a_megabyte_never_escapes_as_a_raw_aiohttp_error(
    replay: ReplayServer, make_provider: ProviderFactory
) -> None:
    big = delta("x" * 600_000, "stop")  # e.g. a whole tool call's arguments in one Ollama chunk
    sid = replay.script(stream_of(big, DONE))
    try:
        chunks = await collect(make_provider(replay.url(sid)).stream(chat()))
    except errors.UpstreamError:
        return
    assert len(chunks[0].body["choices"][0]["delta"]["content"]) == 600_000


# --- timeouts and connection failures -----------------------------------------------------------


async def test_an_idle_stall_after_the_first_event_is_an_idle_timeout(
    replay: ReplayServer, make_provider: ProviderFactory
) -> None:
    sid = replay.script(stream_of(delta("Hel"), 3.0, delta("", "stop")))
    received: list[Chunk] = []
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(errors.UpstreamTimeout) as caught:
        await collect(make_provider(replay.url(sid), timeouts=FAST).stream(chat()), received)
    assert caught.value.error_code == "idle_timeout"
    assert len(received) == 1
    assert loop.time() - started < 2.0  # bounded by timeouts.idle, not by the upstream's pause
    await asyncio.sleep(0.1)
    assert replay.disconnect(sid).after_s is not None  # the stalled upstream is hung up on


async def test_a_late_first_event_is_a_first_token_timeout(
    replay: ReplayServer, make_provider: ProviderFactory
) -> None:
    sid = replay.script(stream_of(1.5, delta("Hel"), delta("", "stop")))
    provider = make_provider(replay.url(sid), timeouts={**FAST, "idle": 5.0})
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(errors.UpstreamTimeout) as caught:
        await anext(provider.stream(chat()))
    assert caught.value.error_code == "first_token_timeout"
    assert (caught.value.retryable, caught.value.failover) == (False, True)
    assert loop.time() - started < 1.2


async def test_late_headers_are_a_first_token_timeout(replay: ReplayServer, make_provider: ProviderFactory) -> None:
    reply = sse_reply("openai_chat_stream.sse")
    reply.header_delay = 1.5
    sid = replay.script(reply)
    with pytest.raises(errors.UpstreamTimeout) as caught:
        await anext(make_provider(replay.url(sid), timeouts={**FAST, "idle": 5.0}).stream(chat()))
    assert caught.value.error_code == "first_token_timeout"


async def test_a_slow_non_streamed_answer_is_a_first_token_timeout(
    replay: ReplayServer, make_provider: ProviderFactory
) -> None:
    reply = json_reply("openai_chat_cached.json")
    reply.header_delay = 1.5
    sid = replay.script(reply)
    with pytest.raises(errors.UpstreamTimeout) as caught:
        await make_provider(replay.url(sid), timeouts={**FAST, "idle": 5.0}).chat(chat())
    assert caught.value.error_code == "first_token_timeout"


async def test_events_just_inside_the_timeouts_complete(replay: ReplayServer, make_provider: ProviderFactory) -> None:
    sid = replay.script(stream_of(0.1, delta("Hel"), 0.1, delta("lo"), 0.1, delta("", "stop"), DONE))
    chunks = await collect(make_provider(replay.url(sid), timeouts=FAST).stream(chat()))
    assert len(chunks) == 3


async def test_a_first_token_timeout_hangs_up_on_the_upstream(
    replay: ReplayServer, make_provider: ProviderFactory
) -> None:
    sid = replay.script(stream_of(1.5, delta("Hel"), delta("", "stop")))
    with pytest.raises(errors.UpstreamTimeout):
        await anext(make_provider(replay.url(sid), timeouts={**FAST, "idle": 5.0}).stream(chat()))
    await asyncio.sleep(0.4)
    assert replay.disconnect(sid).after_s is not None


async def test_a_consumer_that_stops_early_releases_the_upstream(
    replay: ReplayServer, make_provider: ProviderFactory
) -> None:
    sid = replay.script(stream_of(delta("Hel"), 2.0, delta("", "stop")))
    stream = make_provider(replay.url(sid), timeouts={**FAST, "idle": 5.0}).stream(chat())
    first = await anext(stream)
    assert first.body["choices"][0]["delta"]["content"] == "Hel"
    await stream.aclose()  # type: ignore[attr-defined]
    await asyncio.sleep(0.3)
    assert replay.disconnect(sid).after_s is not None


async def test_connection_refused_is_a_retryable_connection_error(make_provider: ProviderFactory) -> None:
    provider = make_provider(f"http://127.0.0.1:{closed_port()}/v1", timeouts=FAST)
    with pytest.raises(errors.UpstreamConnection) as caught:
        await anext(provider.stream(chat()))
    assert (caught.value.retryable, caught.value.failover) == (True, True)
    with pytest.raises(errors.UpstreamConnection):
        await provider.chat(chat())
    assert await provider.health() is False


@pytest.mark.parametrize("reply", [Reply(reset=True), stream_of(ABORT)], ids=["before-headers", "after-headers"])
async def test_a_reset_before_the_first_event_is_a_connection_error(
    replay: ReplayServer, make_provider: ProviderFactory, reply: Reply
) -> None:
    sid = replay.script(reply)
    provider = make_provider(replay.url(sid), timeouts=FAST)
    with pytest.raises(errors.UpstreamConnection) as caught:
        await anext(provider.stream(chat()))
    assert caught.value.retryable is True  # nothing reached the client: retry or fail over freely


async def test_invalid_json_in_a_200_answer_is_a_server_error(
    replay: ReplayServer, make_provider: ProviderFactory
) -> None:
    sid = replay.script(
        Reply(body=b"<html>502 Bad Gateway</html>", headers={"content-type": "text/html"}),
        Reply(body=b"[1, 2, 3]", headers={"content-type": "application/json"}),
    )
    provider = make_provider(replay.url(sid))
    for _ in range(2):
        with pytest.raises(errors.UpstreamServerError) as caught:
            await provider.chat(chat())
        assert caught.value.retryable is True


async def test_health_probes_models(replay: ReplayServer, make_provider: ProviderFactory) -> None:
    sid = replay.script(Reply(body=b'{"object":"list","data":[]}'), Reply(status=503, body=b"{}"))
    provider = make_provider(replay.url(sid))
    assert await provider.health() is True
    assert await provider.health() is False
    assert [s.path for s in replay.seen(sid)] == ["/models", "/models"]
    assert {s.method for s in replay.seen(sid)} == {"GET"}


def test_recorded_streams_decode() -> None:
    """Guard for the fixtures themselves: every data event is JSON and each stream ends [DONE]."""
    for name in (
        "openai_chat_stream.sse",
        "vllm_chat_stream_continuous_usage.sse",
        "llamacpp_chat_stream_usage.sse",
    ):
        raw = sse_bytes(name)
        assert raw.endswith(DONE)
        assert len(data_events(raw)) >= 5
