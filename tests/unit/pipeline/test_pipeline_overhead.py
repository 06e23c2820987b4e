"""The overhead arithmetic on the request context, records held until the response is written, and
the ledger row that carries the complete figure."""

from __future__ import annotations

from margin.metrics import Metrics
from margin.pipeline.context import RequestContext
from margin.pipeline.ledger_rows import rows_for
from margin.pipeline.record import Recorder, RequestRecord
from margin.types import Attempt


def context(started: float = 100.0) -> RequestContext:
    return RequestContext(request_id="req_1", endpoint="chat", started=started, deployment="d")


def attempt(ctx: RequestContext, *, sent: float | None = None, read: float | None = None) -> Attempt:
    one = Attempt(request_id=ctx.request_id, index=len(ctx.attempts), deployment="d", model="m", started_at=100.0)
    one.upstream.sent_at, one.upstream.read_at = sent, read
    ctx.attempts.append(one)
    return one


def test_overhead_is_elapsed_time_minus_what_each_attempts_upstream_took() -> None:
    ctx = context()
    attempt(ctx, sent=100.010, read=100.050)  # a failed try: 40 ms upstream
    attempt(ctx, sent=100.060, read=100.160)  # the answer: 100 ms upstream
    assert round(ctx.upstream_time(), 6) == 0.140
    assert round(ctx.overhead_ms(at=100.200), 6) == 60.0  # 200 ms elapsed, 140 upstream


def test_an_attempt_in_progress_counts_up_to_its_last_read() -> None:
    ctx = context()
    attempt(ctx, sent=100.010, read=100.030)  # a stream: first event read, more to come
    assert round(ctx.overhead_ms(at=100.050), 6) == 30.0  # the 20 ms since that read are the gateway's


def test_an_adapter_that_marks_nothing_falls_back_to_the_attempts_own_timing() -> None:
    ctx = context()
    unmarked = attempt(ctx)
    unmarked.latency_ms = 80.0
    assert round(ctx.overhead_ms(at=100.100), 6) == 20.0


def test_a_cascade_verifiers_wait_is_upstream_time_too() -> None:
    ctx = context()
    ctx.upstream_seconds = 0.050  # added by the cascade for its verifier call
    attempt(ctx, sent=100.0, read=100.020)
    assert round(ctx.overhead_ms(at=100.100), 6) == 30.0


def test_overhead_is_never_negative() -> None:
    ctx = context()
    attempt(ctx, sent=99.0, read=101.0)
    assert ctx.overhead_ms(at=100.5) == 0.0


async def test_records_wait_for_the_response_and_then_carry_the_complete_figure() -> None:
    recorder = Recorder(Metrics())
    ctx = context()
    attempt(ctx, sent=100.010, read=100.050)
    ctx.hold_until_written()
    recorder.submit(RequestRecord(ctx=ctx, status="ok", usage=None, latency_s=0.06, ttft_s=None, overhead_s=0.02))
    assert recorder.queue.empty()  # the body is still being written
    ctx.written(100.090)
    record = recorder.queue.get_nowait()
    assert round(record.latency_s, 6) == 0.090
    assert round(record.overhead_s, 6) == 0.050  # 90 ms to the last byte, 40 upstream


async def test_a_record_after_the_response_went_out_is_queued_at_once() -> None:
    recorder = Recorder(Metrics())
    ctx = context()
    ctx.hold_until_written()
    ctx.written(100.010)  # the client left; a drained stream is recorded later
    record = RequestRecord(ctx=ctx, status="cancelled", usage=None, latency_s=1.0, ttft_s=None, overhead_s=0.5)
    recorder.submit(record)
    assert recorder.queue.get_nowait() is record


def test_the_requests_last_row_carries_its_overhead() -> None:
    ctx = context()
    attempt(ctx, sent=100.0, read=100.1).status = "error"
    attempt(ctx, sent=100.2, read=100.3)
    rows = rows_for(ctx, overhead_ms=12.3456)
    assert "overhead_ms" not in rows[0].extra
    assert rows[-1].extra["overhead_ms"] == "12.346" and rows[-1].is_final
