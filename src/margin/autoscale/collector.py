"""The autoscaler's Prometheus series (docs/metrics.md, "Autoscaling"): served from its last
result, so a scrape of margin's /metrics never waits on a model server.

A value that is unknown (no answer in the window, no fresh upstream page) is left out, never
written as zero: an absent series reads as "no data", a zero as "idle"."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from margin.autoscale.scraper import RESULTS
from margin.autoscale.service import Autoscaler


class AutoscaleCollector:
    def __init__(self, autoscaler: Autoscaler) -> None:
        self.autoscaler = autoscaler

    def collect(self) -> Iterator[Metric]:
        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=["deployment", *labels])

        desired = gauge("margin_deployment_desired_replicas", "Replicas the autoscaling policy asks for")
        load = gauge("margin_deployment_load", "Requests running + waiting the policy divided", ("source",))
        calls = gauge("margin_deployment_calls_per_second", "Calls to the deployment over the window")
        unserved = gauge(
            "margin_deployment_unserved_per_second", "Requests that found no healthy endpoint, over the window"
        )
        tokens = gauge("margin_deployment_tokens_per_second", "Tokens over the window", ("direction",))
        ttft = gauge("margin_deployment_ttft_p95_seconds", "TTFT p95 over the window")
        latency = gauge("margin_deployment_latency_p95_seconds", "Latency p95 over the window")
        running = gauge("margin_upstream_requests_running", "The model servers' own running requests (fresh pages)")
        waiting = gauge("margin_upstream_requests_waiting", "The model servers' own queued requests (fresh pages)")
        kv = gauge("margin_upstream_kv_cache_usage", "KV-cache usage of the fullest replica, 0..1 (fresh pages)")
        fresh = gauge("margin_upstream_metrics_fresh", "Model-server pages read within stale_after_s")
        stale = gauge("margin_upstream_metrics_stale", "1 when pages are configured but none is fresh")
        for name, s in sorted(self.autoscaler.signals.items()):
            desired.add_metric([name], s.decision.desired)
            load.add_metric([name, s.decision.load_source], s.decision.load)
            if (r := s.rates) is not None:
                calls.add_metric([name], r.attempts_per_s)
                unserved.add_metric([name], r.unserved_per_s)
                tokens.add_metric([name, "in"], r.tokens_in_per_s)
                tokens.add_metric([name, "out"], r.tokens_out_per_s)
                if r.ttft_p95_s is not None:
                    ttft.add_metric([name], r.ttft_p95_s)
                if r.latency_p95_s is not None:
                    latency.add_metric([name], r.latency_p95_s)
            u = s.upstream
            if u.state != "unconfigured":
                fresh.add_metric([name], u.fresh)
                stale.add_metric([name], 0 if u.state == "fresh" else 1)
            if u.running is not None and u.waiting is not None:
                running.add_metric([name], u.running)
                waiting.add_metric([name], u.waiting)
            if u.kv_cache_usage is not None:
                kv.add_metric([name], u.kv_cache_usage)
        yield from (desired, load, calls, unserved, tokens, ttft, latency, running, waiting, kv, fresh, stale)
        yield from self._counters()

    def _counters(self) -> Iterator[Metric]:
        total = CounterMetricFamily(
            "margin_deployment_unserved", "Requests that found no healthy endpoint of the deployment",
            labels=["deployment"],
        )  # fmt: skip
        for name in sorted(self.autoscaler.config.deployments):
            total.add_metric([name], self.autoscaler.unserved.get(name, 0))
        yield total
        scrapes = CounterMetricFamily(
            "margin_upstream_scrapes",
            "Reads of the model servers' /metrics, by result",
            labels=["deployment", "result"],
        )
        results = self.autoscaler.scraper.results
        for name, (_, urls) in sorted(self.autoscaler.scraper.targets.items()):
            if urls:
                for result in RESULTS:
                    scrapes.add_metric([name, result], results[(name, result)])
        yield scrapes
