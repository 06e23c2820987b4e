"""A model group's stream buffer (`streaming.buffer_first_tokens`) through the whole pipeline: a break
inside the window restarts on any fallback invisibly; outside it, the usual continuation or clean break.

The scripted fake answers TEXT in 8 content chunks of about 2 counted tokens each; `Cut(after=4)`
breaks after the role chunk and 3 content chunks (about 6 tokens)."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
from tests.unit.resilience.scripted import Cut, build, ctx, request, text_of

from margin import errors
from margin.types import ChatRequest, Chunk

TEXT = "one two three four five six seven eight"
PREFILL = "capabilities: {prefill: true}"
SLOW = "fake: {chunk_delay_ms: 40}"


def buffered(tokens: int, max_ms: float | None = None) -> str:
    limit = f", buffer_max_ms: {max_ms}" if max_ms is not None else ""
    return f", streaming: {{buffer_first_tokens: {tokens}{limit}}}"


async def read_all(stream: object) -> list[Chunk]:
    return [chunk async for chunk in stream]  # type: ignore[attr-defined]


def roles(chunks: list[Chunk]) -> int:
    return sum(1 for c in chunks for choice in c.body.get("choices") or () if choice["delta"].get("role"))


async def test_a_break_inside_the_window_restarts_on_a_fallback_without_prefill() -> None:
    pipeline, providers, records = build(primary=(Cut(after=4),), chat=buffered(50))
    context = ctx()
    chunks = await read_all(await pipeline.stream(context, request(text=TEXT)))
    assert text_of(chunks) == TEXT  # the fallback's answer, once: nothing of the broken attempt
    assert roles(chunks) == 1
    assert [c.body["choices"][0]["finish_reason"] for c in chunks if c.body.get("choices")][-1] == "stop"
    assert {c.body["model"] for c in chunks} == {"small"}  # every chunk the client got is the fallback's
    assert providers["backup"].requests[0].messages == [{"role": "user", "content": TEXT}]  # no prefill
    broken, final = context.attempts
    assert (broken.deployment, broken.status, final.deployment, final.status) == ("primary", "error", "backup", "ok")
    # The broken attempt generated text the client never saw: it is billed for it all the same.
    assert broken.usage is not None and broken.usage.source == "estimated" and broken.usage.output > 0
    assert final.usage is not None and final.usage.source == "reported"
    assert broken.cost is not None and final.cost is not None and broken.cost.total.usd > 0
    assert context.cost is not None and context.cost.total == broken.cost.total + final.cost.total
    assert context.deployment == "backup"  # the response headers name the deployment that answered
    assert records[0].status == "ok"
    assert pipeline.caller.in_flight == {"primary": 0, "backup": 0, "solo": 0}


async def test_a_break_outside_the_window_ends_as_it_does_without_a_buffer() -> None:
    pipeline, providers, records = build(primary=(Cut(after=4),), chat=buffered(2))
    chunks: list[Chunk] = []
    with pytest.raises(errors.StreamInterrupted):
        async for chunk in await pipeline.stream(ctx(), request(text=TEXT)):
            chunks.append(chunk)
    assert 0 < len(text_of(chunks)) < len(TEXT)
    assert chunks[-1].body["choices"] == [{"index": 0, "delta": {}, "finish_reason": "error"}]
    assert providers["backup"].calls == 0  # no blind restart once text was sent
    assert records[0].status == "StreamInterrupted"


async def test_a_break_outside_the_window_is_continued_by_a_prefill_fallback() -> None:
    pipeline, providers, _ = build(primary=(Cut(after=4),), extra={"backup": PREFILL}, chat=buffered(2))
    chunks = await read_all(await pipeline.stream(ctx(), request(text=TEXT)))
    assert text_of(chunks) == TEXT
    assert providers["backup"].requests[0].messages[-1]["role"] == "assistant"  # a continuation
    assert roles(chunks) == 1


async def test_a_break_of_every_deployment_inside_the_window_is_a_plain_error() -> None:
    pipeline, _, records = build(primary=(Cut(after=4),), backup=(Cut(after=3),), chat=buffered(50))
    context = ctx()
    with pytest.raises(errors.StreamInterrupted) as caught:
        await pipeline.stream(context, request(text=TEXT))  # raised before any chunk: an HTTP error
    assert "cut off" not in caught.value.message  # nothing was cut off for the client: nothing was sent
    assert [(a.deployment, a.status) for a in context.attempts] == [("primary", "error"), ("backup", "error")]
    assert all(a.usage is not None and a.usage.output > 0 for a in context.attempts)  # both billed
    assert records[0].status == "StreamInterrupted"
    assert pipeline.caller.in_flight == {"primary": 0, "backup": 0, "solo": 0}


async def test_an_answer_shorter_than_the_window_is_sent_whole_when_it_ends() -> None:
    pipeline, _, records = build(chat=buffered(4096))
    asked = dataclasses.replace(request(text=TEXT), include_usage=True)
    chunks = await read_all(await pipeline.stream(ctx(), asked))
    assert text_of(chunks) == TEXT
    assert chunks[-1].usage is not None
    assert records[0].status == "ok"


async def test_a_tool_call_inside_the_window_is_restarted_too() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    pipeline, providers, _ = build(primary=(Cut(after=2),), chat=buffered(50))
    chunks = await read_all(await pipeline.stream(ctx(), request(text=TEXT, tools=tools)))
    calls = [c for ch in chunks for c in ch.body["choices"] if c["delta"].get("tool_calls")]
    assert len(calls) == 1 and providers["backup"].calls == 1  # one tool call, the fallback's
    assert roles(chunks) == 1


async def test_the_time_limit_releases_the_first_chunk_early() -> None:
    # 8 content chunks 40 ms apart: a 4096-token window alone would hold the whole answer (~320 ms).
    pipeline, _, _ = build(extra={"primary": SLOW}, chat=buffered(4096, max_ms=60))
    started = time.perf_counter()
    stream = await pipeline.stream(ctx(), request(text=TEXT))
    opened = time.perf_counter() - started
    chunks = await read_all(stream)
    total = time.perf_counter() - started
    assert opened < total / 2, (opened, total)
    assert text_of(chunks) == TEXT and roles(chunks) == 1


async def test_without_a_time_limit_the_window_holds_the_first_chunk() -> None:
    pipeline, _, _ = build(extra={"primary": SLOW}, chat=buffered(6))
    started = time.perf_counter()
    stream = await pipeline.stream(ctx(), request(text=TEXT))
    opened = time.perf_counter() - started
    assert opened >= 0.1  # 3 content chunks (6 counted tokens) 40 ms apart
    assert text_of(await read_all(stream)) == TEXT


async def test_a_client_that_leaves_while_the_window_fills_cancels_the_upstream() -> None:
    pipeline, _, records = build(extra={"primary": SLOW}, chat=buffered(4096))
    context = ctx()
    opening = asyncio.create_task(pipeline.stream(context, request(text=TEXT)))
    await asyncio.sleep(0.1)
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    assert context.attempts[0].status == "cancelled"
    assert records[0].status == "cancelled"
    assert pipeline.caller.in_flight["primary"] == 0


async def test_a_client_that_leaves_after_a_timed_release_cancels_the_pending_read() -> None:
    pipeline, _, records = build(extra={"primary": "fake: {chunk_delay_ms: 300}"}, chat=buffered(4096, max_ms=50))
    context = ctx()
    stream = await pipeline.stream(context, request(text=TEXT))  # released by time, a read still waiting
    started = time.perf_counter()
    await stream.aclose()
    assert time.perf_counter() - started < 0.15  # the read is cancelled, not waited for (300 ms)
    assert records[0].status == "cancelled" and context.attempts[0].status == "cancelled"
    assert pipeline.caller.in_flight["primary"] == 0
    await asyncio.sleep(0)
    reads = [t for t in asyncio.all_tasks() if "CallStream" in getattr(t.get_coro(), "__qualname__", "")]
    assert not reads, reads  # the read that outlived the window was cancelled, not left running


async def test_drain_mode_reads_through_the_window() -> None:
    pipeline, providers, _ = build(primary=(Cut(after=4),), disconnect="drain", chat=buffered(50))
    chunks = await read_all(await pipeline.stream(ctx(), request(text=TEXT)))
    assert text_of(chunks) == TEXT and providers["backup"].calls == 1


async def test_groups_without_a_buffer_are_unchanged() -> None:
    pipeline, providers, _ = build(primary=(Cut(after=4),))  # "chat" has no streaming settings
    with pytest.raises(errors.StreamInterrupted):
        await read_all(await pipeline.stream(ctx(), request(text=TEXT)))
    assert providers["backup"].calls == 0


async def test_legacy_completions_restart_inside_the_window_too() -> None:
    pipeline, providers, _ = build(primary=(Cut(after=4),), chat=buffered(50))
    legacy = ChatRequest(model="chat", messages=[], kind="completion", prompt=TEXT, stream=True)
    chunks = await read_all(await pipeline.stream(ctx(), legacy))
    assert "".join(c["text"] for ch in chunks for c in ch.body.get("choices") or ()) == TEXT
    assert {ch.body["object"] for ch in chunks} == {"text_completion"}
    assert providers["backup"].calls == 1
