"""What an adapter does with an upstream payload it cannot read, and how those are counted.

A streamed event that is not valid JSON has lost whatever it carried (a piece of text, a tool call's
arguments, a usage report), so the stream is broken at that point: `stream_event` raises
`MalformedUpstreamEvent`, a `StreamInterrupted`, and the call stage continues or ends the answer as
it does for a cut connection. A 200 answer whose body is not a JSON object is a
`MalformedUpstreamResponse`, a 502 that fails over. Each adapter counts both on its own
`MalformedCount`; `MalformedEventsCollector` exports the counts as
`margin_upstream_malformed_events_total{deployment}`, read at scrape time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from prometheus_client.metrics_core import CounterMetricFamily, Metric

from margin import errors


class MalformedCount:
    """Unreadable payloads one deployment's upstream has sent since the process started."""

    __slots__ = ("deployment", "events")

    def __init__(self, deployment: str) -> None:
        self.deployment = deployment
        self.events = 0

    def stream_event(self, data: bytes) -> object:
        """One SSE event's data, decoded; raises (and counts) when it is not valid JSON."""
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            self.events += 1
            name = self.deployment
            # The payload is not quoted: it may hold part of a user's answer.
            raise errors.MalformedUpstreamEvent(
                f"{name}: the upstream sent an event that is not valid JSON ({len(data)} bytes); the answer is "
                "incomplete",
                deployment=name,
            ) from exc

    def body(self, payload: bytes) -> dict[str, Any]:
        """A 200 answer's JSON object; raises (and counts) when the body is anything else."""
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            self.events += 1
            raise errors.MalformedUpstreamResponse(
                f"{self.deployment}: the upstream answered 200 with a body that is not valid JSON",
                deployment=self.deployment,
            ) from exc
        if not isinstance(data, dict):
            self.events += 1
            raise errors.MalformedUpstreamResponse(
                f"{self.deployment}: the upstream answered 200 with a body that is not a JSON object",
                deployment=self.deployment,
            )
        return data


class MalformedEventsCollector:
    """`margin_upstream_malformed_events_total{deployment}` from the adapters that count them (an
    adapter without a `malformed` attribute, such as an in-process one, reads nothing)."""

    def __init__(self, providers: Iterable[object]) -> None:
        self.counts = [count for p in providers if isinstance(count := getattr(p, "malformed", None), MalformedCount)]

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "margin_upstream_malformed_events",
            "Upstream payloads that were not valid JSON (stream events, 200 bodies), by deployment",
            labels=["deployment"],
        )
        for count in self.counts:
            family.add_metric([count.deployment], count.events)
        yield family
