"""OpenTelemetry traces over OTLP/HTTP, with the `otel` extra (docs/observability.md#opentelemetry).

Imported only when `tracing.enabled` (`build_tracer`); the rest of margin never imports
OpenTelemetry. On the request path: `start` parses the client's `traceparent` with the SDK's W3C
propagator and asks the SDK's sampler (parent-based, then the configured ratio). Off it: the
recorder's task hands finished requests to `export`, which makes their spans with the timestamps
the stages measured and gives them to the SDK's `BatchSpanProcessor`, whose own thread batches and
exports them. Its queue is bounded: a span that would not fit is dropped here and counted
(`margin_trace_spans_total{outcome="dropped"}`), never waited for. The exporter is the SDK's
OTLP/HTTP one, encoding margin's spans with `otel_wire` (a quarter of the SDK encoder's CPU, in the
thread that holds the GIL while it encodes).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from margin.config.model import DeploymentConfig
from margin.config.observability import TracingConfig
from margin.pipeline.otel_spans import Upstream, spans_of
from margin.pipeline.otel_wire import AttributeCache, encode_request
from margin.pipeline.record import RequestRecord
from margin.pipeline.trace import RequestTrace

KINDS = {"server": SpanKind.SERVER, "client": SpanKind.CLIENT, "internal": SpanKind.INTERNAL}
SAMPLED = TraceFlags(TraceFlags.SAMPLED)
SAMPLE = Decision.RECORD_AND_SAMPLE
SCOPE = InstrumentationScope("margin")
UNSET = Status(StatusCode.UNSET)


def new_span_id() -> int:
    return random.getrandbits(64) or 1


class FixedResource(Resource):
    """margin's one resource, hashed once: the SDK's encoder groups every span by its resource, and
    `Resource.__hash__` dumps the attributes to JSON each time (a resource never changes)."""

    def __init__(self, attributes: dict[str, str]) -> None:
        super().__init__(attributes)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return self is other or super().__eq__(other)


class WireSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP exporter (its HTTP client, retries, timeout, headers and metrics), with
    margin's spans encoded by `otel_wire`. A batch it was not made for (spans of several resources
    or scopes, events or links), a request over the size limit, or an SDK whose exporter has changed
    shape goes through the SDK's own `export`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cache = AttributeCache()
        self.wired = all(hasattr(self, name) for name in ("_client", "_metrics", "_shutdown", "_max_request_size"))

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self.wired or self._shutdown or not _plain(spans):
            return super().export(spans)
        data = encode_request(spans, self.cache)
        if len(data) > self._max_request_size:
            return super().export(spans)  # the SDK drops it, and says so
        with self._metrics.export_operation(len(spans)) as result:
            sent = self._client.export(data)
            if not sent.success:
                result.error = sent.error
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS


def _plain(spans: Sequence[ReadableSpan]) -> bool:
    """One resource, one scope, no events or links: what `otel_wire` encodes."""
    if not spans:
        return False
    resource, scope = spans[0].resource, spans[0].instrumentation_scope
    return all(s.resource is resource and s.instrumentation_scope is scope and not s.events and not s.links
               for s in spans)  # fmt: skip


class CountingExporter(SpanExporter):
    """The OTLP exporter, counting what it was handed (in the processor's thread): how many spans
    have left the queue, and how many of them the collector did not take."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.handed = 0  # written by the export thread only
        self.failed = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        finally:
            self.handed += len(spans)
        if result is not SpanExportResult.SUCCESS:
            self.failed += len(spans)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class OtelTracer:
    enabled = True

    def __init__(self, config: TracingConfig, deployments: Sequence[DeploymentConfig]) -> None:
        self.config = config
        self.upstreams = {d.name: Upstream.of(d) for d in deployments}
        self.root = TraceIdRatioBased(config.sample_ratio)
        self.sampler = ParentBased(self.root)
        self.propagator = TraceContextTextMapPropagator()
        # Built directly (Resource.create would read OTEL_* variables: margin's settings are its config).
        self.resource = FixedResource({"service.name": config.service_name})
        self.processor: BatchSpanProcessor | None = None  # started with the app (a thread)
        self.exporter: CountingExporter | None = None
        self.queued = 0  # spans given to the processor (written by the event loop only)
        self.dropped = 0

    def start(self, headers: Mapping[str, str]) -> RequestTrace | None:
        if "traceparent" not in headers:  # a root: ParentBased asks the ratio sampler, whose rule this is
            trace_id = random.getrandbits(128) or 1
            if trace_id & TraceIdRatioBased.TRACE_ID_LIMIT >= self.root.bound:
                return None
            return RequestTrace(trace_id, new_span_id())
        parent_context: Context | None = self.propagator.extract(headers)
        parent = get_current_span(parent_context).get_span_context()
        trace_id = parent.trace_id if parent.is_valid else random.getrandbits(128) or 1
        if self.sampler.should_sample(parent_context, trace_id, "request").decision is not SAMPLE:
            return None
        if not parent.is_valid:
            return RequestTrace(trace_id, new_span_id())
        state = parent.trace_state.to_header() if parent.trace_state else None
        return RequestTrace(trace_id, new_span_id(), parent_id=parent.span_id, tracestate=state or None)

    def open(self) -> None:
        """Start the exporting thread (from the app's start-up: nothing runs before it)."""
        if self.processor is not None:
            return
        config = self.config
        headers = {name: secret.resolve() or "" for name, secret in config.headers.items()}
        otlp = WireSpanExporter(
            endpoint=config.endpoint, headers=headers, timeout=config.export_timeout_s,
            compression=Compression.NoCompression,
        )  # fmt: skip
        self.exporter = CountingExporter(otlp)
        self.processor = BatchSpanProcessor(
            self.exporter,
            max_queue_size=config.max_queue_size,
            schedule_delay_millis=config.schedule_delay_ms,
            max_export_batch_size=config.max_export_batch_size,
            export_timeout_millis=config.export_timeout_s * 1000,
        )

    def export(self, batch: list[RequestRecord]) -> None:
        processor, exporter = self.processor, self.exporter
        if processor is None or exporter is None:
            return
        now = time.perf_counter()
        for record in batch:
            if record.ctx.trace is None:
                continue
            for span in self._spans(record, now):
                if self.queued - exporter.handed >= self.config.max_queue_size:
                    self.dropped += 1  # the processor's queue is full: never wait for it
                    continue
                self.queued += 1
                processor.on_end(span)

    def _spans(self, record: RequestRecord, now: float) -> Iterator[ReadableSpan]:
        ctx, trace = record.ctx, record.ctx.trace
        assert trace is not None
        origin_ns = ctx.wall_started * 1e9 - ctx.started * 1e9  # perf_counter seconds -> epoch ns
        trace_id = trace.trace_id
        parents = {  # the request span's parent is the client's span (if any); every other span's, the request's
            None: SpanContext(trace_id, trace.parent_id, True, SAMPLED) if trace.parent_id is not None else None,
            trace.span_id: SpanContext(trace_id, trace.span_id, False, SAMPLED),
        }
        for plan in spans_of(record, self.upstreams, now, new_span_id):
            yield ReadableSpan(
                plan.name,
                context=SpanContext(trace_id, plan.span_id, False, SAMPLED),
                parent=parents[plan.parent_id],
                resource=self.resource,
                attributes=plan.attributes,
                kind=KINDS[plan.kind],
                status=UNSET if plan.error is None else Status(StatusCode.ERROR, plan.error),
                start_time=int(origin_ns + plan.started * 1e9),
                end_time=int(origin_ns + plan.ended * 1e9),
                instrumentation_scope=SCOPE,
            )

    def close(self) -> None:
        if self.processor is not None:
            self.processor.shutdown()  # type: ignore[no-untyped-call]  # exports what is queued, bounded by the export timeout
            self.processor = None


class TracingCollector(Collector):
    """`margin_trace_spans_total{outcome}`: spans exported, refused by the collector, dropped."""

    def __init__(self, tracer: OtelTracer) -> None:
        self.tracer = tracer

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("margin_trace_spans", "OpenTelemetry spans by outcome", labels=["outcome"])
        exporter = self.tracer.exporter
        handed, failed = (exporter.handed, exporter.failed) if exporter is not None else (0, 0)
        family.add_metric(["exported"], handed - failed)
        family.add_metric(["failed"], failed)
        family.add_metric(["dropped"], self.tracer.dropped)
        yield family
