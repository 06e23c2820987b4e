"""The local model's generation slots as Prometheus metrics, read at scrape time.

- `margin_local_slots{deployment,state}`: loaded instances that are idle, busy (generating) or
  stuck (a worker that did not stop within its bound; the deployment is unhealthy while any is);
- `margin_local_queue_depth{deployment}`: requests waiting for a slot;
- `margin_local_healthy{deployment}`: 1, or 0 while a slot is stuck;
- `margin_local_slots_stuck_total{deployment}`: slots declared stuck since start;
- `margin_local_generations_stopped_total{deployment}`: generations stopped early (client gone, timeout).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from margin.providers.base import Provider
from margin.providers.local import LocalProvider


class LocalSlotsCollector:
    def __init__(self, providers: Iterable[Provider]) -> None:
        self.locals = [p for p in providers if isinstance(p, LocalProvider)]

    def collect(self) -> Iterator[Metric]:
        slots = GaugeMetricFamily(
            "margin_local_slots", "Generation slots of the local model by state", labels=["deployment", "state"]
        )
        waiting = GaugeMetricFamily(
            "margin_local_queue_depth", "Requests waiting for the local model", labels=["deployment"]
        )
        healthy = GaugeMetricFamily(
            "margin_local_healthy", "1 unless a generation slot is stuck", labels=["deployment"]
        )
        stuck = CounterMetricFamily(
            "margin_local_slots_stuck", "Generation slots declared stuck (worker did not stop)", labels=["deployment"]
        )
        stopped = CounterMetricFamily(
            "margin_local_generations_stopped",
            "Generations stopped before their end (client gone, timeout)",
            labels=["deployment"],
        )
        for provider in self.locals:
            name = provider.deployment.name
            stats = provider.slot_stats()
            for state, value in (("idle", stats.idle), ("busy", stats.busy - stats.stuck), ("stuck", stats.stuck)):
                slots.add_metric([name, state], value)
            waiting.add_metric([name], stats.waiting)
            healthy.add_metric([name], 0 if stats.stuck else 1)
            stuck.add_metric([name], stats.stuck_total)
            stopped.add_metric([name], stats.stop_requests_total)
        yield from (slots, waiting, healthy, stuck, stopped)
