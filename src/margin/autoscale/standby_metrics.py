"""The standby's Prometheus series (docs/metrics.md, "Scale to zero and drains"): one gauge per
configured deployment and state (1 for the state it is in, 0 for the others; labels bounded by the
config) and the wake signals sent. Read from memory at scrape time: no I/O."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from margin.autoscale.standby import STATES, Standby


class StandbyCollector:
    def __init__(self, standby: Standby) -> None:
        self.standby = standby

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "margin_deployment_standby_state",
            "1 for the state the deployment is in on this replica (cold, warming, drained, ready), else 0",
            labels=["deployment", "state"],
        )
        wakes = CounterMetricFamily(
            "margin_deployment_wake_signals", "Wake webhooks sent (one per cold period)", labels=["deployment"]
        )
        waiting = GaugeMetricFamily(
            "margin_deployment_requests_waiting",
            "Requests waiting in margin for the deployment to warm (scale_to_zero wait_max_s), on this replica",
            labels=["deployment"],
        )
        for name in self.standby.known():
            now = self.standby.standby_state(name)
            for label in STATES:
                state.add_metric([name, label], 1.0 if label == now else 0.0)
            if name in self.standby.configs:
                wakes.add_metric([name], float(self.standby.wakes_sent(name)))
                waiting.add_metric([name], float(self.standby.waiting(name)))
        yield state
        yield wakes
        yield waiting

    def describe(self) -> Iterator[Metric]:
        return iter(())
