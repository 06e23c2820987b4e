"""margin's spans as an OTLP `ExportTraceServiceRequest`, written straight to protobuf's wire format.

The SDK's encoder builds a protobuf object per span, attribute and value (about 17 us a span here)
in the exporter's thread, which holds the GIL while it does: the main cost of tracing. margin's spans
are simple (no events, no links, one resource, one scope), and most of their attributes repeat from
request to request (the operation, the models, the deployment, the provider, the currency), so their
encoded bytes are kept (`AttributeCache`, bounded) and only a request's own values (ids, tokens,
cost) are encoded each time. The bytes parse to the message the SDK's `encode_spans` builds (a test
compares them), and any collector reads them as it reads the SDK's.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

# Field tags (field number << 3 | wire type) are those of opentelemetry/proto/trace/v1/trace.proto and
# common.proto; enums by the SDK's names (this module reads the SDK's spans but imports no OpenTelemetry).
_KINDS = {"INTERNAL": 1, "SERVER": 2, "CLIENT": 3, "PRODUCER": 4, "CONSUMER": 5}
_STATUS = {"UNSET": 0, "OK": 1, "ERROR": 2}
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200  # SpanFlags
_FIXED64 = struct.Struct("<Q")
_DOUBLE = struct.Struct("<d")
_FIXED32 = struct.Struct("<I")
CACHE_LIMIT = 4096  # attribute encodings kept; past it, new ones are encoded each time
# attributes whose value is new on every request (margin.pipeline.otel_spans): never kept
VOLATILE = frozenset({
    "margin.request_id", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "margin.cost_usd",
    "gen_ai.usage.cost.amount", "margin.ttft_ms", "margin.cache.saved_usd",
})  # fmt: skip


def varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64: two's complement, ten bytes
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (`tag` already holds wire type 2)."""
    return bytes((tag,)) + varint(len(payload)) + payload


def _any_value(value: Any) -> bytes:
    if isinstance(value, bool):
        return b"\x10" + (b"\x01" if value else b"\x00")
    if isinstance(value, str):
        return _field(0x0A, value.encode())
    if isinstance(value, int):
        return b"\x18" + varint(value)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)
    raise TypeError(f"a span attribute of type {type(value).__name__} is not encoded")


def key_value(key: str, value: Any) -> bytes:
    """One `KeyValue` message (without the field tag that holds it)."""
    return _field(0x0A, key.encode()) + _field(0x12, _any_value(value))


class AttributeCache:
    """Encoded attributes by (key, value), bounded: margin's repeat from request to request; and the
    few other parts of a span that repeat (its name and kind, its status)."""

    def __init__(self, limit: int = CACHE_LIMIT, volatile: frozenset[str] = VOLATILE) -> None:
        self.limit = limit
        self.volatile = volatile
        self.encoded: dict[tuple[str, type, Any], bytes] = {}
        self.keys: dict[str, bytes] = {}  # a volatile attribute's key field
        self.names: dict[tuple[str, str], bytes] = {}  # (name, kind) -> name and kind fields
        self.statuses: dict[tuple[str, str | None], bytes] = {}

    def attributes(self, attributes: Mapping[str, Any] | None) -> bytes:
        if not attributes:
            return b""
        parts = []
        encoded = self.encoded
        for key, value in attributes.items():
            if key in self.volatile:
                prefix = self.keys.get(key)
                if prefix is None:
                    prefix = self.keys[key] = _field(0x0A, key.encode())
                parts.append(_field(0x4A, prefix + _field(0x12, _any_value(value))))
                continue
            slot = (key, type(value), value)  # True and 1 are equal keys: the type tells them apart
            found = encoded.get(slot)
            if found is None:
                found = _field(0x4A, key_value(key, value))
                if len(encoded) < self.limit:
                    encoded[slot] = found
            parts.append(found)
        return b"".join(parts)

    def name(self, name: str, kind: str) -> bytes:
        found = self.names.get((name, kind))
        if found is None:
            found = _field(0x2A, name.encode()) + b"\x30" + varint(_KINDS[kind])
            if len(self.names) < self.limit:
                self.names[(name, kind)] = found
        return found

    def status(self, code_name: str, description: str | None) -> bytes:
        found = self.statuses.get((code_name, description))
        if found is None:
            code = _STATUS[code_name]
            message = _field(0x12, description.encode()) if description else b""
            found = _field(0x7A, message + (b"\x18" + varint(code) if code else b""))
            if len(self.statuses) < self.limit:
                self.statuses[(code_name, description)] = found
        return found


_LOCAL = b"\x85\x01" + _FIXED32.pack(_HAS_IS_REMOTE)
_REMOTE = b"\x85\x01" + _FIXED32.pack(_HAS_IS_REMOTE | _IS_REMOTE)


def encode_span(span: Any, cache: AttributeCache) -> bytes:
    """One `Span` message from an SDK `ReadableSpan` (no events or links: margin's have none)."""
    context = span.get_span_context()
    parent = span.parent
    parts = [b"\x0a\x10" + context.trace_id.to_bytes(16, "big") + b"\x12\x08" + context.span_id.to_bytes(8, "big")]
    state = context.trace_state
    if state:  # an empty TraceState is falsy
        parts.append(_field(0x1A, state.to_header().encode()))
    if parent is not None:
        parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
    parts += [
        cache.name(span.name, span.kind.name),
        b"\x39" + _FIXED64.pack(span.start_time or 0) + b"\x41" + _FIXED64.pack(span.end_time or 0),
        cache.attributes(span.attributes),
    ]
    status = span.status
    if status is not None:  # the SDK sends a status, even an empty (unset) one
        parts.append(cache.status(status.status_code.name, status.description))
    parts.append(_REMOTE if parent is not None and parent.is_remote else _LOCAL)
    return b"".join(parts)


def encode_request(spans: Sequence[Any], cache: AttributeCache) -> bytes:
    """An `ExportTraceServiceRequest` of `spans`, which share one resource and one scope (margin's)."""
    if not spans:
        return b""
    first = spans[0]
    scope = first.instrumentation_scope
    scope_bytes = b""
    if scope is not None:
        scope_bytes = _field(0x0A, scope.name.encode()) + (
            _field(0x12, scope.version.encode()) if scope.version else b""
        )
    resource = first.resource
    resource_attributes = b"".join(_field(0x0A, key_value(k, v)) for k, v in resource.attributes.items())
    body = b"".join(_field(0x12, encode_span(span, cache)) for span in spans)
    scope_spans = _field(0x0A, scope_bytes) + body
    if scope is not None and scope.schema_url:
        scope_spans += _field(0x1A, scope.schema_url.encode())
    resource_spans = _field(0x0A, resource_attributes) + _field(0x12, scope_spans)
    if resource.schema_url:
        resource_spans += _field(0x1A, resource.schema_url.encode())
    return _field(0x0A, resource_spans)
