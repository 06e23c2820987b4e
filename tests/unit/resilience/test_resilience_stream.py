"""Streams after their first chunk: restart, prefill continuation, clean break, cancel and drain."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from tests.unit.resilience.scripted import Cut, build, ctx, request, text_of

from margin import errors
from margin.types import Chunk

TEXT = "one two three four five six seven eight"
PREFILL = "capabilities: {prefill: true}"


async def collect(stream: object, into: list[Chunk]) -> None:
    async for chunk in stream:  # type: ignore[attr-defined]
        into.append(chunk)


async def test_a_break_after_text_continues_on_a_prefill_fallback() -> None:
    pipeline, providers, records = build(primary=(Cut(after=4),), extra={"backup": PREFILL})
    context = ctx()
    chunks: list[Chunk] = []
    await collect(await pipeline.stream(context, request(text=TEXT)), chunks)
    assert text_of(chunks) == TEXT  # one whole answer
    assert chunks[-1].body["choices"][0]["finish_reason"] == "stop"
    roles = [c for c in chunks if c.body.get("choices") and c.body["choices"][0]["delta"].get("role")]
    assert len(roles) == 1  # the fallback's role chunk is not repeated
    continuation = providers["backup"].requests[0]
    sent = text_of(chunks[:4])
    assert continuation.messages[-1] == {"role": "assistant", "content": sent}
    broken, final = context.attempts
    assert (broken.deployment, broken.status, final.deployment, final.status) == ("primary", "error", "backup", "ok")
    assert broken.usage is not None and broken.usage.source == "estimated" and broken.usage.output > 0
    assert final.usage is not None and final.usage.source == "reported"
    assert broken.cost is not None and final.cost is not None
    assert context.cost is not None and context.cost.total == broken.cost.total + final.cost.total
    assert records[0].status == "ok"
    assert pipeline.caller.in_flight == {"primary": 0, "backup": 0, "solo": 0}


async def test_a_break_before_any_text_restarts_from_scratch() -> None:
    pipeline, providers, _ = build(primary=(Cut(after=1),))  # only the role chunk went out
    context = ctx()
    chunks: list[Chunk] = []
    await collect(await pipeline.stream(context, request(text=TEXT)), chunks)
    assert text_of(chunks) == TEXT
    assert providers["backup"].requests[0].messages == [{"role": "user", "content": TEXT}]
    # Nothing generated, but the upstream had begun answering, so it read the prompt: billed as an
    # estimate (39 bytes = 10 tokens + 6 of framing), nothing for output, at the primary's $4/M.
    broken = context.attempts[0]
    assert broken.usage is not None and (broken.usage.input_uncached, broken.usage.output) == (16, 0)
    assert broken.usage.estimated_buckets == ("input_uncached", "output")
    assert broken.cost is not None and broken.cost.total.usd == Decimal("0.000064")


async def test_a_break_with_no_continuation_ends_with_a_non_stop_finish_and_the_error() -> None:
    pipeline, providers, records = build(primary=(Cut(after=4),))
    context = ctx()
    chunks: list[Chunk] = []
    with pytest.raises(errors.StreamInterrupted) as caught:
        await collect(await pipeline.stream(context, request(text=TEXT)), chunks)
    assert "cut off after" in caught.value.message
    assert chunks[-1].body["choices"] == [{"index": 0, "delta": {}, "finish_reason": "error"}]
    assert all(c.body["choices"][0]["finish_reason"] != "stop" for c in chunks)
    assert providers["backup"].calls == 0
    assert records[0].status == "StreamInterrupted"
    # Billed by hand: the prompt, 39 bytes = 10 tokens + 6 of framing = 16; the text sent before the
    # cut, "one two three f" (the fake's 5-character pieces) = 15 bytes = 4 tokens; at $4/M and $8/M.
    usage = context.attempts[0].usage
    assert usage is not None and (usage.input_uncached, usage.output) == (16, 4)
    assert context.attempts[0].cost is not None and context.attempts[0].cost.total.usd == Decimal("0.000096")
    assert records[0].usage == usage  # the request's usage is the attempt's, not a second estimate


async def test_tool_calls_are_never_continued_by_prefill() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    pipeline, providers, _ = build(primary=(Cut(after=2),), extra={"backup": PREFILL})
    chunks: list[Chunk] = []
    with pytest.raises(errors.StreamInterrupted):
        await collect(await pipeline.stream(ctx(), request(text=TEXT, tools=tools)), chunks)
    assert providers["backup"].calls == 0


async def test_max_tokens_of_a_continuation_counts_what_was_sent() -> None:
    pipeline, providers, _ = build(primary=(Cut(after=4),), extra={"backup": PREFILL})
    await collect(await pipeline.stream(ctx(), request(text=TEXT, max_tokens=50)), [])
    assert 0 < providers["backup"].requests[0].params["max_tokens"] < 50


async def test_a_client_that_leaves_cancels_the_upstream() -> None:
    pipeline, _, records = build(extra={"primary": "fake: {chunk_delay_ms: 20}"})
    context = ctx()
    stream = await pipeline.stream(context, request(text=TEXT))
    await anext(stream)
    await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    assert records[0].status == "cancelled"
    assert context.attempts[0].status == "cancelled"
    assert records[0].usage is not None and records[0].usage.source == "estimated"
    # The client read the role chunk and "one t" (5 bytes = 2 tokens): 16 * $4/M + 2 * $8/M.
    assert (records[0].usage.input_uncached, records[0].usage.output) == (16, 2)
    assert context.cost is not None and context.cost.total.usd == Decimal("0.00008")
    assert pipeline.caller.in_flight["primary"] == 0 and not pipeline.caller.background


async def test_drain_reads_to_the_end_after_the_client_left() -> None:
    pipeline, _, records = build(disconnect="drain", extra={"primary": "fake: {chunk_delay_ms: 20}"})
    context = ctx()
    stream = await pipeline.stream(context, request(text=TEXT))
    await anext(stream)
    consumer = asyncio.create_task(anext(stream))
    await asyncio.sleep(0.01)
    consumer.cancel()  # what the server does when the client goes away mid-wait
    with pytest.raises(asyncio.CancelledError):
        await consumer
    await stream.aclose()  # type: ignore[attr-defined]
    assert len(pipeline.caller.background) == 1 and not records
    await asyncio.gather(*pipeline.caller.background)
    assert records[0].status == "cancelled"
    assert records[0].usage is not None and records[0].usage.source == "reported"  # the whole answer was read
    assert pipeline.caller.in_flight["primary"] == 0


async def test_shutdown_cancels_a_drain_in_progress() -> None:
    pipeline, _, records = build(disconnect="drain", extra={"primary": "fake: {chunk_delay_ms: 200}"})
    stream = await pipeline.stream(ctx(), request(text=TEXT))
    await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    assert pipeline.caller.background
    await pipeline.caller.aclose()
    assert not pipeline.caller.background
    assert records[0].status == "cancelled" and pipeline.caller.in_flight["primary"] == 0


async def test_a_mid_stream_deadline_ends_the_stream_cleanly() -> None:
    pipeline, _, _ = build(deadline=0.15, extra={"primary": "fake: {chunk_delay_ms: 50}"})
    chunks: list[Chunk] = []
    with pytest.raises(errors.MarginError) as caught:
        await collect(await pipeline.stream(ctx(), request(text=TEXT)), chunks)
    assert caught.value.error_code in ("deadline_exceeded", "stream_interrupted")
    assert chunks[-1].body["choices"][0]["finish_reason"] == "error"
