"""A real OTLP/HTTP trace receiver on loopback (protobuf, as the SDK's exporter sends it), which is
also a tiny OpenAI-shaped upstream that records the headers of each call it answers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

ANSWER = {
    "id": "chatcmpl-recorded",
    "object": "chat.completion",
    "model": "recorded",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "recorded"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8},
}


@dataclass(frozen=True)
class Span:
    name: str
    trace_id: str  # hex, as in a traceparent
    span_id: str
    parent_id: str  # "" for a root
    kind: int  # opentelemetry.proto.trace.v1.Span.SpanKind: 1 internal, 2 server, 3 client
    start_ns: int
    end_ns: int
    status: int  # 0 unset, 1 ok, 2 error
    attributes: dict[str, Any]
    service: str


@dataclass
class Received:
    spans: list[Span] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)  # every export, raw
    export_headers: list[dict[str, str]] = field(default_factory=list)
    upstream_headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def trace(self, trace_id: str) -> list[Span]:
        with self.lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def wait(self, trace_id: str, ready: Callable[[list[Span]], bool], timeout: float = 10) -> list[Span]:
        """The spans of `trace_id` once `ready` says they are all in (or the timeout passed)."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.trace(trace_id)
            if ready(spans) or time.monotonic() > deadline:
                return spans
            time.sleep(0.02)

    def where(self, key: str, value: Any, timeout: float = 10) -> list[Span]:
        """The spans whose attribute `key` is `value`, once there is one (or the timeout passed)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                found = [s for s in self.spans if s.attributes.get(key) == value]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.02)


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind is not None else None


def _decode(body: bytes) -> list[Span]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    Span(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        kind=span.kind,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        status=span.status.code,
                        attributes={a.key: _value(a.value) for a in span.attributes},
                        service=str(resource.get("service.name")),
                    )
                )
    return spans


def _handler(received: Received) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            if self.path == "/v1/traces":
                spans = _decode(body)
                with received.lock:
                    received.bodies.append(body)
                    received.export_headers.append(headers)
                    received.spans.extend(spans)
                self._reply(ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")
            elif self.path == "/v1/chat/completions":
                with received.lock:
                    received.upstream_headers.append(headers)
                self._reply(orjson.dumps(ANSWER), "application/json")
            else:
                self.send_error(404)

        def _reply(self, payload: bytes, content_type: str) -> None:
            self.send_response(200)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler


@contextmanager
def otlp_receiver() -> Iterator[tuple[str, Received]]:
    """Yields the receiver's base URL (`{url}/v1/traces` takes spans, `{url}/v1` is an upstream)."""
    received = Received()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(received))
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
