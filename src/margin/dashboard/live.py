"""What the dashboard reads from the running process rather than the ledger: budget counters and the
alerts this replica sent, circuit states, local-tier queues, model servers' KV-cache usage, cache lookup
counters. The composition
root hands in an implementation (margin/api/dashboard_live.py); the dashboard never imports the
pipeline, the budgets or the providers itself."""

from __future__ import annotations

from typing import Any, Protocol


class LiveSource(Protocol):
    async def budgets(self) -> list[dict[str, Any]]:
        """Every budget scope as `GET /admin/budgets` lists it (scope, unit, window, limit, spent,
        reserved, remaining, reset_at, ...)."""
        ...

    def alerts(self) -> list[dict[str, str]]:
        """Budget alerts this replica sent (newest last): scope, threshold, used, limit, window, at."""
        ...

    async def circuits(self) -> dict[str, str]:
        """Deployment -> circuit state (closed, open, half_open)."""
        ...

    def local_queues(self) -> dict[str, int]:
        """Local-tier deployment -> requests waiting for a generation slot."""
        ...

    def gpu_cache_usage(self) -> dict[str, float | str | None]:
        """Deployment -> its model servers' KV-cache (GPU memory) usage, 0-1, the fullest fresh page's,
        as the autoscaler's scraper last read it (vLLM's `vllm:kv_cache_usage_perc`); a word when there
        is no fresh reading ("stale": older than `stale_after_s`, "no reading yet"); None when the page
        has no such metric; deployments nothing scrapes are absent. Never scrapes itself."""
        ...

    def cache_counters(self) -> dict[str, int] | None:
        """Cache lookups since start by result (exact, semantic, coalesced, misses, bypassed), or None
        when the cache is off."""
        ...

    async def cache_routes(self) -> list[dict[str, Any]] | None:
        """Per route in the semantic cache's shadow record: mode, decision (cosine or learned) and its
        configured value, lookups, would-be hits, how many agreed with the fresh answer, the estimated
        precision and its one-sided lower bound (`RouteQuality.as_json`); None without a shadow record."""
        ...


class NoLive:
    """No running gateway behind the dashboard (tests of the ledger pages alone)."""

    async def budgets(self) -> list[dict[str, Any]]:
        return []

    def alerts(self) -> list[dict[str, str]]:
        return []

    async def circuits(self) -> dict[str, str]:
        return {}

    def local_queues(self) -> dict[str, int]:
        return {}

    def gpu_cache_usage(self) -> dict[str, float | str | None]:
        return {}

    def cache_counters(self) -> dict[str, int] | None:
        return None

    async def cache_routes(self) -> list[dict[str, Any]] | None:
        return None
