"""Prometheus metrics, owned by the app (no module-level registry, so tests and several apps in one
process never share counters). Updated by the recorder off the request path."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "margin_requests", "Requests answered", ["endpoint", "model_group", "status"], registry=r
        )
        self.errors = Counter(
            "margin_errors",
            "Requests failed, by error (vocabulary: docs/metrics.md)",
            ["endpoint", "error"],
            registry=r,
        )
        self.attempts = Counter(
            "margin_upstream_attempts", "Calls to upstream deployments", ["deployment", "status"], registry=r
        )
        self.tokens = Counter("margin_tokens", "Tokens by deployment and bucket", ["deployment", "bucket"], registry=r)
        self.tokens_per_second = Histogram(
            "margin_output_tokens_per_second",
            "Generation speed of answered requests",
            ["deployment"],
            buckets=(1, 5, 10, 25, 50, 100, 200, 400, 800, 1600),
            registry=r,
        )
        self.cost = Counter(
            "margin_cost_micro_usd",
            "Spend in micro-USD (the ledger holds the exact amounts)",
            ["deployment", "model_group", "cost_rank", "team"],
            registry=r,
        )
        self.price_unknown = Counter(
            "margin_price_unknown", "Attempts metered without a known price", ["deployment"], registry=r
        )
        self.latency = Histogram(
            "margin_request_latency_seconds",
            "End-to-end latency",
            ["deployment"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "margin_ttft_seconds",
            "Time to first token of streamed answers",
            ["deployment"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "margin_overhead_seconds",
            "Latency the gateway adds: request arrival to last byte written, minus upstream time",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )
        self.record_queue_depth = Gauge("margin_record_queue_depth", "Records waiting to be written", registry=r)
        self.record_dropped = Counter("margin_record_dropped", "Records dropped because the queue was full", registry=r)
        # Tiered routing (docs/routing.md). Savings vs all-premium = counterfactual - spend, per group.
        self.route_requests = Counter(
            "margin_route_requests", "Routed requests by the tier that answered", ["model_group", "tier", "policy"],
            registry=r,
        )  # fmt: skip
        self.route_spend = Counter(
            "margin_route_spend_micro_usd", "Spend of routed requests by tier (escalations included)",
            ["model_group", "tier"], registry=r,
        )  # fmt: skip
        self.route_counterfactual = Counter(
            "margin_route_premium_counterfactual_micro_usd", "What routed requests would have cost on the premium tier",
            ["model_group"], registry=r,
        )  # fmt: skip
        self.cascades = Counter(
            "margin_cascade", "Cascade outcomes by starting tier", ["model_group", "tier", "outcome"], registry=r
        )
        self.route_overflow = Counter(
            "margin_route_overflow", "Answers from a higher tier because the chosen one could not answer",
            ["model_group", "from_tier", "to_tier"], registry=r,
        )  # fmt: skip
        self.router_latency = Histogram(
            "margin_router_latency_seconds", "Time the route stage took to choose a tier", ["policy"],
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025), registry=r,
        )  # fmt: skip

        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        # Awaited before each scrape: gauges whose state lives in a store (circuits, budgets).
        self.refreshers: list[Callable[[], Awaitable[None]]] = []

    def child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, cached: prometheus_client's own lookup costs microseconds per call."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    async def refresh(self) -> None:
        for refresher in self.refreshers:
            await refresher()

    def render(self) -> bytes:
        return generate_latest(self.registry)
