"""Reads each configured model server's /metrics, concurrently, each bounded by the scrape timeout.

Runs in the autoscaler's background task: a model server that hangs costs that task at most
`scrape_timeout_s` per tick and is counted (`margin_upstream_scrapes_total{result="timeout"}`);
no request ever waits on it. Each endpoint keeps its last good reading with its time, so a reading
older than `stale_after_s` is reported stale instead of being taken for the current load."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from margin.autoscale.upstream import Server, UpstreamLoad, UpstreamMetricsError, parse_load

log = logging.getLogger("margin.autoscale")
Fetch = Callable[[str, float], Awaitable[str]]  # (url, timeout_s) -> page text; TimeoutError or OSError
RESULTS = ("ok", "timeout", "error", "invalid")


@dataclass(frozen=True, slots=True)
class Reading:
    load: UpstreamLoad
    at: float  # monotonic clock


@dataclass(frozen=True, slots=True)
class UpstreamView:
    """What the pages of one deployment say now."""

    state: str  # fresh | stale | none (never read) | unconfigured (no metrics_urls)
    endpoints: int
    fresh: int
    running: float | None  # summed over fresh pages; None when none is fresh
    waiting: float | None
    kv_cache_usage: float | None  # the fullest fresh page's
    age_s: float | None  # of the oldest fresh reading, or of the newest when all are stale


def metrics_url_for(base: str) -> str:
    """A replica's /metrics from its OpenAI base URL (`http://pod:8000/v1` -> `http://pod:8000/metrics`)."""
    return base.rstrip("/").removesuffix("/v1") + "/metrics"


class Scraper:
    def __init__(
        self, targets: Mapping[str, tuple[Server, list[str]]], fetch: Fetch, *, timeout_s: float, stale_after_s: float
    ) -> None:
        self.targets = targets
        self.fetch = fetch
        self.timeout_s = timeout_s
        self.stale_after_s = stale_after_s
        self.readings: dict[tuple[str, str], Reading] = {}
        self.results: Counter[tuple[str, str]] = Counter()  # (deployment, result) -> scrapes

    async def scrape(self, now: float) -> None:
        jobs = [(name, server, url) for name, (server, urls) in self.targets.items() for url in urls]
        await asyncio.gather(*(self._one(name, server, url, now) for name, server, url in jobs))

    async def _one(self, name: str, server: Server, url: str, now: float) -> None:
        try:
            text = await asyncio.wait_for(self.fetch(url, self.timeout_s), self.timeout_s)
            load = parse_load(text, server)
        except TimeoutError:
            self.results[(name, "timeout")] += 1
            return
        except UpstreamMetricsError as exc:
            self.results[(name, "invalid")] += 1
            log.warning("autoscale: %s metrics page %s unusable: %s", name, url, exc)
            return
        except (OSError, UnicodeDecodeError) as exc:  # refused, reset, not a 200, not text: counted
            self.results[(name, "error")] += 1
            log.debug("autoscale: %s metrics page %s failed: %r", name, url, exc)
            return
        self.results[(name, "ok")] += 1
        self.readings[(name, url)] = Reading(load, now)

    def waiting(self, name: str, url: str, now: float) -> float:
        """One page's queued requests if its reading is fresh; 0 when unknown (never a guess)."""
        reading = self.readings.get((name, url))
        return reading.load.waiting if reading is not None and now - reading.at <= self.stale_after_s else 0.0

    def view(self, name: str, now: float) -> UpstreamView:
        _, urls = self.targets.get(name, ("vllm", []))
        if not urls:
            return UpstreamView("unconfigured", 0, 0, None, None, None, None)
        readings = [r for url in urls if (r := self.readings.get((name, url))) is not None]
        if not readings:
            return UpstreamView("none", len(urls), 0, None, None, None, None)
        fresh = [r for r in readings if now - r.at <= self.stale_after_s]
        if not fresh:
            newest = max(r.at for r in readings)
            return UpstreamView("stale", len(urls), 0, None, None, None, now - newest)
        caches = [r.load.kv_cache_usage for r in fresh if r.load.kv_cache_usage is not None]
        return UpstreamView(
            state="fresh",
            endpoints=len(urls),
            fresh=len(fresh),
            running=sum(r.load.running for r in fresh),
            waiting=sum(r.load.waiting for r in fresh),
            kv_cache_usage=max(caches) if caches else None,
            age_s=now - min(r.at for r in fresh),
        )
