"""What the HTTP layer and the composition root see of tracing: a `Tracer`, which is `NoTracer`
when `tracing.enabled` is off (no trace is started, so nothing on the request path is timed) and
OpenTelemetry's (`margin.pipeline.otel`, the `otel` extra) when it is on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry

from margin.config.model import MarginConfig
from margin.pipeline.record import RequestRecord
from margin.pipeline.trace import RequestTrace


class Tracer(Protocol):
    """What the HTTP layer and the composition root see of tracing."""

    enabled: bool

    def start(self, headers: Mapping[str, str]) -> RequestTrace | None:
        """A trace for a new request, child of the client's `traceparent` when it sent one; None
        when this request is not traced."""
        ...

    def open(self) -> None:
        """Start exporting (the app's start-up)."""
        ...

    def export(self, batch: list[RequestRecord]) -> None:
        """The recorder's sink: the finished requests' spans go to the exporter's queue."""
        ...

    def close(self) -> None:
        """Export what is queued (bounded by the export timeout), then stop."""
        ...


class NoTracer:
    """Tracing off: no trace is ever started, so no stage is timed and no span is made."""

    enabled = False

    def start(self, headers: Mapping[str, str]) -> RequestTrace | None:
        return None

    def open(self) -> None:
        return None

    def export(self, batch: list[RequestRecord]) -> None:
        return None

    def close(self) -> None:
        return None


def build_tracer(config: MarginConfig, registry: CollectorRegistry) -> Tracer:
    """`tracing:` as configured: OpenTelemetry (imported only now, from the `otel` extra, whose
    presence the config checked) with its span counters on `registry`, or `NoTracer`."""
    if not config.tracing.enabled:
        return NoTracer()
    from margin.pipeline.otel import OtelTracer, TracingCollector  # the optional extra

    tracer = OtelTracer(config.tracing, config.deployments)
    registry.register(TracingCollector(tracer))
    return tracer
