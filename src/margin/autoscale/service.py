"""The autoscaler: a background task that, every `interval_s`, reads the model servers' pages and
margin's own counters, and computes each configured deployment's signals and desired replicas.

Readers (`/metrics`, `/autoscale` for KEDA, `/admin/deployments`) only read the last result: they
never scrape or compute themselves, so a slow model server or a busy scraper cannot slow them."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from margin.autoscale.policy import Decision, Inputs, desired_replicas, with_idle_after
from margin.autoscale.scraper import Fetch, Scraper, UpstreamView, metrics_url_for
from margin.autoscale.window import Rates, Window, read_totals
from margin.config.autoscale import AutoscalingConfig
from margin.errors import ConfigError
from margin.metrics import Metrics
from margin.periodic import Periodic

log = logging.getLogger("margin.autoscale")


@dataclass(frozen=True, slots=True)
class Signals:
    deployment: str
    in_flight: int
    unserved_total: int
    rates: Rates | None
    upstream: UpstreamView
    decision: Decision

    def as_json(self) -> dict[str, Any]:
        r, u = self.rates, self.upstream
        return {
            "desired_replicas": self.decision.desired,
            "reason": self.decision.reason,
            "load": self.decision.load,
            "load_source": self.decision.load_source,
            "in_flight": self.in_flight,
            "unserved_total": self.unserved_total,
            "window_s": r.seconds if r else None,
            "calls_per_s": r.attempts_per_s if r else None,
            "unserved_per_s": r.unserved_per_s if r else None,
            "tokens_in_per_s": r.tokens_in_per_s if r else None,
            "tokens_out_per_s": r.tokens_out_per_s if r else None,
            "ttft_p95_s": r.ttft_p95_s if r else None,
            "latency_p95_s": r.latency_p95_s if r else None,
            "upstream": {
                "state": u.state, "endpoints": u.endpoints, "fresh": u.fresh, "running": u.running,
                "waiting": u.waiting, "kv_cache_usage": u.kv_cache_usage, "age_s": u.age_s,
            },
        }  # fmt: skip


class Autoscaler:
    def __init__(
        self,
        config: AutoscalingConfig,
        metrics: Metrics,
        *,
        in_flight: Mapping[str, int],
        unserved: Mapping[str, int],
        known: set[str],
        fetch: Fetch,
        clock: Callable[[], float] = time.monotonic,
        aclose: Callable[[], Awaitable[None]] | None = None,  # the fetch's connections, closed by stop()
        default_urls: Mapping[str, list[str]] | None = None,  # pages of deployments with `endpoints:`
        idle_after: Mapping[str, float] | None = None,  # scale_to_zero's idle_after_s per deployment
        idle_s: Callable[[str], float | None] = lambda name: None,  # seconds since its last request
    ) -> None:
        self.idle_after = dict(idle_after or {})
        self.idle_s = idle_s
        unknown = sorted(set(config.deployments) - known)
        if unknown:
            raise ConfigError(f"autoscaling.deployments names unknown deployments: {', '.join(unknown)}")
        self.config = config
        self.metrics = metrics
        self.in_flight = in_flight
        self.unserved = unserved
        self.clock = clock
        self.aclose = aclose
        defaults = default_urls or {}
        targets = {name: (p.server, p.metrics_urls or defaults.get(name, [])) for name, p in config.deployments.items()}
        self.scraper = Scraper(targets, fetch, timeout_s=config.scrape_timeout_s, stale_after_s=config.stale_after_s)
        self.window = Window(config.window_s)
        self.signals: dict[str, Signals] = {}
        self.ticks = 0
        # Broad on purpose: a bug in a tick must not end the signals for good (logged with its traceback).
        self._loop = Periodic(
            "margin-autoscale", self.tick, config.interval_s, handled=(Exception,), on_error=_tick_failed, at_start=True
        )

    async def tick(self) -> None:
        """One round: scrape, read margin's counters, decide. Awaited by the loop (and by tests)."""
        now = self.clock()
        await self.scraper.scrape(now)
        names = list(self.config.deployments)
        self.window.add(now, read_totals(self.metrics, names, self.unserved))
        signals = {}
        for name, policy in self.config.deployments.items():
            upstream = self.scraper.view(name, now)
            load = None if upstream.running is None else upstream.running + (upstream.waiting or 0.0)
            rates = self.window.rates(name)
            inputs = Inputs(self.in_flight.get(name, 0), load, upstream.fresh, rates)
            decision = desired_replicas(policy, inputs)
            if name in self.idle_after:
                decision = with_idle_after(policy, decision, idle_s=self.idle_s(name),
                                           idle_after_s=self.idle_after[name], in_flight=inputs.in_flight)  # fmt: skip
            signals[name] = Signals(name, inputs.in_flight, self.unserved.get(name, 0), rates, upstream, decision)
        self.signals = signals
        self.ticks += 1

    def start(self) -> None:
        if self.config.deployments and not self._loop.running:
            # the window's first edge: calls made before the first tick are counted in it
            self.window.add(self.clock(), read_totals(self.metrics, self.config.deployments, self.unserved))
            self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        if self.aclose is not None:
            await self.aclose()

    def queue_of(self, name: str) -> Callable[[str], float]:
        """base URL -> the queue its replica's fresh page reports: the balancer's extra load."""
        return lambda base: self.scraper.waiting(name, metrics_url_for(base), self.clock())

    def keda(self) -> dict[str, Any]:
        """The body of `/autoscale`: KEDA's metrics-api scaler reads
        `deployments.<name>.desired_replicas` (docs/deploy.md)."""
        return {
            "interval_s": self.config.interval_s,
            "ticks": self.ticks,
            "deployments": {name: s.as_json() for name, s in sorted(self.signals.items())},
        }


def _tick_failed(exc: Exception) -> None:
    log.exception("autoscale: computing the signals failed", exc_info=exc)
