"""margin's own OTLP encoder (margin.pipeline.otel_wire): its bytes parse, with the official protobuf
classes, to exactly the message the OpenTelemetry SDK's `encode_spans` builds for the same spans:
every value type margin sends, an error status, a remote and a local parent, a trace state, a root
span; kept attribute encodings give the same bytes as fresh ones."""

from __future__ import annotations

import random

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState
from opentelemetry.util.types import AnyValue

from margin.pipeline.otel import SCOPE, FixedResource, _plain
from margin.pipeline.otel_wire import AttributeCache, encode_request, varint

SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def spans(rng: random.Random, resource: FixedResource, scope: InstrumentationScope = SCOPE) -> list[ReadableSpan]:
    trace_id = rng.getrandbits(128) or 1
    client = SpanContext(trace_id, rng.getrandbits(64) or 1, True, SAMPLED, TraceState([("vendor", "x=1")]))
    request = SpanContext(trace_id, rng.getrandbits(64) or 1, False, SAMPLED)
    attributes: dict[str, AnyValue] = {
        "gen_ai.operation.name": "chat", "margin.request_id": f"req-{rng.getrandbits(40)}",
        "gen_ai.usage.input_tokens": rng.randint(0, 10**9), "margin.fallback": rng.random() < 0.5,
        "margin.ttft_ms": round(rng.uniform(0, 3000), 3), "margin.cost_rank": -rng.randint(1, 5),
        "gen_ai.usage.cost.amount": "0.000001234", "server.port": 8000, "margin.team": "tëam-ü",
    }  # fmt: skip
    unset = Status(StatusCode.UNSET)
    plans: list[tuple[str, SpanContext, SpanContext | None, SpanKind, dict[str, AnyValue], Status]] = [
        ("chat chat", request, client, SpanKind.SERVER, attributes, unset),
        ("margin.auth", SpanContext(trace_id, 7, False, SAMPLED), request, SpanKind.INTERNAL, {}, unset),
        ("chat m", SpanContext(trace_id, 9, False, SAMPLED), request, SpanKind.CLIENT, {"error.type": "timeout"},
         Status(StatusCode.ERROR, "timeout")),
        ("root", SpanContext(trace_id + 1, 11, False, SAMPLED), None, SpanKind.INTERNAL, {"a": 1.5},
         Status(StatusCode.OK)),
    ]  # fmt: skip
    out = []
    for name, context, parent, kind, attrs, status in plans:
        start, end = rng.getrandbits(62), rng.getrandbits(62)
        span = ReadableSpan(name, context=context, parent=parent, resource=resource, attributes=attrs, kind=kind,
                            status=status, start_time=start, end_time=end, instrumentation_scope=scope)  # fmt: skip
        out.append(span)
    return out


def test_the_wire_bytes_are_the_sdks_message() -> None:
    rng = random.Random(5)
    resource = FixedResource({"service.name": "margin-test"})
    cache = AttributeCache()
    for _ in range(30):
        batch = [span for _ in range(rng.randint(1, 6)) for span in spans(rng, resource)]
        assert _plain(batch)
        mine = ExportTraceServiceRequest.FromString(encode_request(batch, cache))
        assert mine == encode_spans(batch)
    assert encode_request(batch, cache) == encode_request(batch, AttributeCache(limit=0))  # kept == fresh
    assert ("margin.request_id", str) not in {slot[:2] for slot in cache.encoded}  # new every request: not kept


def test_varints_and_what_it_leaves_to_the_sdk() -> None:
    assert [varint(v) for v in (0, 1, 127, 128, 300)] == [b"\x00", b"\x01", b"\x7f", b"\x80\x01", b"\xac\x02"]
    assert len(varint(-1)) == 10  # int64 two's complement
    rng = random.Random(1)
    resource = FixedResource({"service.name": "margin-test"})
    other = InstrumentationScope("other", "1.0")
    assert not _plain(spans(rng, resource) + spans(rng, resource, other))  # two scopes: the SDK encodes them
    assert not _plain([])
    versioned = spans(rng, resource, other)  # a scope with a version, alone
    assert ExportTraceServiceRequest.FromString(encode_request(versioned, AttributeCache())) == encode_spans(versioned)
