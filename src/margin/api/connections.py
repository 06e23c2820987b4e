"""What the HTTP protocol (margin.server.guarded) enforces on client connections, and what it counts.

The app owns one `ConnectionGuard`, built from `server:` by create_app, and hands it to the
protocol through the ASGI lifespan state (the one channel uvicorn gives from an app to its
connections); /metrics reads the same counts. Everything here is per worker process.
"""

from __future__ import annotations

import resource
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from margin.config.model import ServerConfig

# The key of the guard in the lifespan state (and so in every request scope's "state").
CONNECTIONS_STATE_KEY = "margin.connections"

# Without `server.max_connections`: half the process's open-file limit, the rest being left for
# upstream connections, the database and the cache; never more than this.
MAX_CONNECTIONS_CEILING = 4096


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout_s: float = 10.0  # from a connection's opening (or a request's first byte) to its headers' end
    idle_timeout_s: float = 65.0  # a keep-alive connection with no request in progress
    max_connections: int = 1024  # open client connections; beyond it a new one is answered 503


@dataclass(slots=True)
class ConnectionCounts:
    open: int = 0
    opened_total: int = 0
    rejected_total: int = 0  # over max_connections: answered 503 and closed
    header_timeouts_total: int = 0  # closed for not finishing their headers in time
    idle_closed_total: int = 0  # keep-alive connections closed after idle_timeout_s


@dataclass(slots=True)
class ConnectionGuard:
    limits: ConnectionLimits
    counts: ConnectionCounts = field(default_factory=ConnectionCounts)

    @classmethod
    def from_config(cls, server: ServerConfig) -> ConnectionGuard:
        cap = server.max_connections if server.max_connections is not None else default_max_connections()
        return cls(ConnectionLimits(server.header_timeout_s, server.idle_timeout_s, cap))


def default_max_connections() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS_CEILING
    return max(1, min(MAX_CONNECTIONS_CEILING, soft // 2))


class ConnectionsCollector:
    """The guard's counts as Prometheus metrics, read at scrape time."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self.guard = guard

    def collect(self) -> Iterator[Metric]:
        counts, limits = self.guard.counts, self.guard.limits
        yield GaugeMetricFamily("margin_connections_open", "Open client connections", value=counts.open)
        allowed = "Open client connections allowed (server.max_connections)"
        yield GaugeMetricFamily("margin_connections_max", allowed, value=limits.max_connections)
        yield CounterMetricFamily("margin_connections_opened", "Client connections accepted", value=counts.opened_total)
        yield CounterMetricFamily(
            "margin_connections_rejected",
            "Connections answered 503 because server.max_connections were open",
            value=counts.rejected_total,
        )
        closed = CounterMetricFamily(
            "margin_connections_closed_by_timeout", "Connections closed by margin, by timeout", labels=["reason"]
        )
        closed.add_metric(["header"], counts.header_timeouts_total)
        closed.add_metric(["idle"], counts.idle_closed_total)
        yield closed
