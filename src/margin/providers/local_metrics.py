"""The local model's generation slots as Prometheus metrics, read at scrape time.

- `margin_local_slots{deployment,state}`: loaded instances that are idle, busy (generating) or
  stuck (a worker that did not stop within its bound; the deployment is unhealthy while any is).
  The batched engine is one instance: busy while any of its sequences runs;
- `margin_local_queue_depth{deployment}`: requests waiting for a slot;
- `margin_local_healthy{deployment}`: 1, or 0 while a slot is stuck;
- `margin_local_slots_stuck_total{deployment}`: slots declared stuck since start;
- `margin_local_generations_stopped_total{deployment}`: generations stopped early (client gone, timeout).

The batched engine (`engine: batched`) adds, per deployment:
- `margin_local_sequences{deployment,state}`: sequences `active` in the engine (admitted, prefilling
  or decoding) and, of those, `prefilling`;
- `margin_local_engine_steps_total`, `margin_local_engine_step_seconds_total` and
  `margin_local_engine_decode_seconds_total`: steps of the scheduler loop, their time, and the part
  spent inside `llama_decode` (the rest is the Python loop and sampling);
- `margin_local_generated_tokens_total`, `margin_local_prefilled_tokens_total`;
- `margin_local_prefix_lookups_total{deployment,result}` (`hit`/`miss`),
  `margin_local_prefix_reused_tokens_total`: prompt tokens not prefilled thanks to a cached prefix.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from margin.providers.base import Provider
from margin.providers.local import LocalProvider
from margin.providers.local_slots import SlotStats


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
            for state, value in _slot_states(provider, stats):
                slots.add_metric([name, state], value)
            waiting.add_metric([name], stats.waiting)
            healthy.add_metric([name], 0 if stats.stuck else 1)
            stuck.add_metric([name], stats.stuck_total)
            stopped.add_metric([name], stats.stop_requests_total)
        yield from (slots, waiting, healthy, stuck, stopped)
        yield from self._engines()

    def _engines(self) -> Iterator[Metric]:
        sequences = GaugeMetricFamily(
            "margin_local_sequences", "Sequences in the batched engine", labels=["deployment", "state"]
        )
        lookups = CounterMetricFamily(
            "margin_local_prefix_lookups", "Prompt prefix lookups by result", labels=["deployment", "result"]
        )
        counters = {
            name: CounterMetricFamily(f"margin_local_{name}", text, labels=["deployment"])
            for name, text in (
                ("engine_steps", "Steps of the batched engine's loop"),
                ("engine_step_seconds", "Time in the batched engine's steps"),
                ("engine_decode_seconds", "Time inside llama_decode"),
                ("generated_tokens", "Tokens sampled by the batched engine"),
                ("prefilled_tokens", "Prompt tokens evaluated by the batched engine"),
                ("prefix_reused_tokens", "Prompt tokens taken from cached prefixes instead of prefilled"),
            )
        }
        for provider in self.locals:
            if provider.engine is None:
                continue
            name, stats = provider.deployment.name, provider.engine.stats()
            sequences.add_metric([name, "active"], stats.active)
            sequences.add_metric([name, "prefilling"], stats.prefilling)
            lookups.add_metric([name, "hit"], stats.prefix_hits)
            lookups.add_metric([name, "miss"], stats.prefix_misses)
            for key, value in (
                ("engine_steps", stats.steps),
                ("engine_step_seconds", stats.step_seconds),
                ("engine_decode_seconds", stats.decode_seconds),
                ("generated_tokens", stats.generated_tokens),
                ("prefilled_tokens", stats.prefilled_tokens),
                ("prefix_reused_tokens", stats.prefix_reused_tokens),
            ):
                counters[key].add_metric([name], value)
        yield from (sequences, lookups, *counters.values())


def _slot_states(provider: LocalProvider, stats: SlotStats) -> tuple[tuple[str, int], ...]:
    """Loaded instances by state. The batched engine is one instance: busy while any sequence runs,
    stuck while any of its sequences is (its sequences are in `margin_local_sequences`)."""
    if provider.engine is None:
        return (("idle", stats.idle), ("busy", stats.busy - stats.stuck), ("stuck", stats.stuck))
    if not stats.slots:
        return (("idle", 0), ("busy", 0), ("stuck", 0))
    stuck = 1 if stats.stuck else 0
    busy = 1 if stats.busy and not stuck else 0
    return (("idle", 1 - stuck - busy), ("busy", busy), ("stuck", stuck))
