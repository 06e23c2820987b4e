"""Stage ⑦: hand the finished request to a bounded queue; a background task does the writing.

Nothing here blocks the request: when the queue is full the record is counted as dropped (and the
ledger's own spill file, once configured, catches what the database cannot take).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from margin.metrics import Metrics
from margin.pipeline.context import RequestContext
from margin.pipeline.error_labels import ErrorLabels
from margin.pipeline.route_labels import observe_route
from margin.types import Attempt, Usage

log = logging.getLogger("margin.record")

Sink = Callable[[list["RequestRecord"]], Awaitable[None] | None]


@dataclass(slots=True)
class RequestRecord:
    ctx: RequestContext
    status: str  # "ok" | error class name | "cancelled"
    usage: Usage | None
    latency_s: float
    ttft_s: float | None
    overhead_s: float


def as_written(record: RequestRecord) -> RequestRecord:
    """`record` timed to the response's last byte, once the HTTP layer has written it."""
    ctx = record.ctx
    if ctx.written_at is None:
        return record
    # Built directly: `dataclasses.replace` inspects the fields on every call (once per request).
    overhead_s = ctx.overhead_ms(ctx.written_at) / 1000
    return RequestRecord(
        ctx=ctx,
        status=record.status,
        usage=record.usage,
        latency_s=ctx.written_at - ctx.started,
        ttft_s=record.ttft_s,
        overhead_s=overhead_s,
    )


class Recorder:
    def __init__(self, metrics: Metrics, *, max_queue: int = 10_000, sinks: list[Sink] | None = None) -> None:
        self.metrics = metrics
        self.queue: asyncio.Queue[RequestRecord] = asyncio.Queue(max_queue)
        self.sinks = list(sinks or [])
        self.error_label = ErrorLabels()  # one vocabulary with docs/failover.md (docs/metrics.md)
        self._task: asyncio.Task[None] | None = None

    def submit(self, record: RequestRecord) -> None:
        """Queue `record`; while the HTTP layer is still writing its response, once that is done, so
        its latency and overhead include serialising and writing the body (or the whole stream)."""
        if not record.ctx.after_written(lambda: self._enqueue(as_written(record))):
            self._enqueue(record)

    def _enqueue(self, record: RequestRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except asyncio.QueueFull:
            self.metrics.record_dropped.inc()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="margin-recorder")

    async def stop(self) -> None:
        """Drain what is queued, then stop."""
        if self._task is None:
            return
        await self.queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < 500 and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            self.metrics.record_queue_depth.set(self.queue.qsize())
            # Sinks first: the ledger must not depend on a metrics update succeeding.
            for sink in self.sinks:
                # Broad on purpose: sinks are pluggable (the ledger's, rollouts'...), so their errors are
                # not ours to enumerate, and the recorder must outlive a failing one.
                try:
                    pending = sink(batch)
                    if pending is not None:
                        await pending
                except Exception:  # a pluggable sink's errors are not ours to enumerate; logged
                    log.exception("a record sink failed on a batch of %d requests", len(batch))
            # Broad on purpose: _observe runs label lookups and prometheus_client code whose errors are
            # not ours to enumerate; metrics are best effort and must not stop the queue's task_done below.
            try:
                for record in batch:
                    self._observe(record)
            except Exception:  # prometheus_client's errors are not ours to enumerate; logged
                log.exception("updating metrics for a batch of %d requests failed", len(batch))
            finally:
                for _ in batch:
                    self.queue.task_done()

    def _observe(self, record: RequestRecord) -> None:
        m, ctx = self.metrics, record.ctx
        group = ctx.decision.model_group if ctx.decision else "-"
        outcome = record.status if record.status in ("ok", "cancelled") else "error"
        m.child(m.requests, ctx.endpoint, group, outcome).inc()
        if outcome == "error":
            m.child(m.errors, ctx.endpoint, self.error_label(record.status)).inc()
        for attempt in ctx.attempts:
            m.child(m.attempts, attempt.deployment, attempt.status).inc()
            self._observe_cost(attempt, group, ctx.principal.team)
        deployment = ctx.deployment or "-"
        if record.usage is not None:
            for bucket in _TOKEN_BUCKETS:
                value = getattr(record.usage, bucket)
                if value:
                    m.child(m.tokens, deployment, bucket).inc(value)
            generating = record.latency_s - (record.ttft_s or 0.0)
            if record.status == "ok" and record.usage.output_total and generating > 0:
                m.child(m.tokens_per_second, deployment).observe(record.usage.output_total / generating)
        m.child(m.latency, deployment).observe(record.latency_s)
        if record.ttft_s is not None:
            m.child(m.ttft, deployment).observe(record.ttft_s)
        m.overhead.observe(record.overhead_s)
        observe_route(m, ctx)

    def _observe_cost(self, attempt: Attempt, group: str, team: str) -> None:
        cost, m = attempt.cost, self.metrics
        if cost is None:
            return
        if cost.basis == "unknown":
            m.child(m.price_unknown, attempt.deployment).inc()
        rank = str(attempt.cost_rank) if attempt.cost_rank is not None else "-"
        m.child(m.cost, attempt.deployment, group, rank, team).inc(cost.total.micro_usd)


_TOKEN_BUCKETS = ("input_uncached", "input_cache_read", "input_cache_write", "output", "output_reasoning")
