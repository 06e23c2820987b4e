"""The running gateway's side of the dashboard (`margin.dashboard.live.LiveSource`): budget counters
as `GET /admin/budgets/status` reads them, the budget alerts this replica sent, circuit states, local-tier
queues, model servers' KV-cache usage (the autoscaler's last scrape) and cache counters. Built by the
composition root; read only when a page asks."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable
from typing import Any

from margin.autoscale.service import Autoscaler
from margin.budgets.alerts import AlertSink
from margin.budgets.rules import Rule, key_rules
from margin.budgets.status import budget_scopes, describe
from margin.caching.group_settings import policy_for
from margin.caching.semantic.shadow_report import ShadowTally, route_quality
from margin.identity.principals import principal_of
from margin.identity.service import policy_of_record
from margin.pipeline.auth import ANONYMOUS
from margin.pipeline.cache import CacheStage
from margin.pipeline.call import Caller
from margin.pipeline.limits import Limits
from margin.providers.base import Provider
from margin.providers.local import LocalProvider

CACHE_RESULTS = ("exact", "semantic", "coalesced", "misses", "bypassed")


async def budget_entries(stage: Limits) -> list[dict[str, Any]]:
    """Every budget scope's spent, reserved, limit and reset time, read live from the counters."""
    limiter = stage.limiter
    if limiter is None:
        return []
    records = [k for k in await stage.keys.list() if k.revoked_at is None] if stage.keys is not None else []
    place = stage.objects.place if stage.objects is not None else None  # teams by their members
    principals = [ANONYMOUS, *(place(principal_of(k)) if place else principal_of(k) for k in records)]
    own: dict[str, tuple[Rule, ...]] = {k.key_id: key_rules(k.key_id, policy_of_record(k), stage.zone) for k in records}
    return [await describe(limiter, applied) for applied in budget_scopes(limiter, principals, own)]


class GatewayLive:
    def __init__(
        self, limits: Limits, caller: Caller, providers: Iterable[Provider], cache: CacheStage | None,
        alerts: AlertSink | None = None, autoscale: Autoscaler | None = None,
    ) -> None:  # fmt: skip
        self._limits, self._caller, self._cache = limits, caller, cache
        self._autoscale = autoscale  # its signals are recomputed off the request path each tick
        self._locals = [p for p in providers if isinstance(p, LocalProvider)]
        self._alerts = alerts  # its `sent` list is replaced on each alert: read it when asked
        self._shadow: ShadowTally | None = None  # the semantic cache's shadow record, read as it grows

    async def budgets(self) -> list[dict[str, Any]]:
        return await budget_entries(self._limits)

    def alerts(self) -> list[dict[str, str]]:
        return [
            {k: str(v) for k, v in dataclasses.asdict(alert).items()}
            for alert in (self._alerts.sent if self._alerts else [])
        ]

    async def circuits(self) -> dict[str, str]:
        resilience = self._caller.resilience
        policies = {name: limits.circuit for name, limits in resilience.limits.items()}
        return {view.deployment: str(view.state.value) for view in await resilience.circuits.views(policies)}

    def local_queues(self) -> dict[str, int]:
        return {p.deployment.name: p.slot_stats().waiting for p in self._locals}

    def gpu_cache_usage(self) -> dict[str, float | str | None]:
        signals = self._autoscale.signals if self._autoscale is not None else {}
        out: dict[str, float | str | None] = {}
        for name, signal in signals.items():
            upstream = signal.upstream
            if upstream.state == "fresh":
                out[name] = upstream.kv_cache_usage
            elif upstream.state in ("stale", "none"):
                out[name] = "stale" if upstream.state == "stale" else "no reading yet"
        return out

    def cache_counters(self) -> dict[str, int] | None:
        if self._cache is None:
            return None
        counters = dataclasses.asdict(self._cache.counters)
        return {result: int(counters[result]) for result in CACHE_RESULTS}

    async def cache_routes(self) -> list[dict[str, Any]] | None:
        cache = self._cache
        if cache is None or cache.shadow is None:
            return None
        if self._shadow is None or self._shadow.path != cache.shadow.path:
            self._shadow = ShadowTally(cache.shadow.path)
        routes = await asyncio.to_thread(self._shadow.routes)  # only the lines appended since the last view
        return [route_quality(s, policy_for(cache.config, r).semantic).as_json() for r, s in sorted(routes.items())]
