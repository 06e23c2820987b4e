"""Spreading one deployment's calls over its replicas (`endpoints:`): power of two choices on the
calls this process has open on each, with prefix affinity (docs/deploy.md, "Several replicas").

- Affinity: the conversation's first `affinity_chars` characters pick a preferred replica by
  rendezvous hashing (highest hash of prefix + replica wins), so requests that share a prefix land
  where the server's prefix cache already holds it, and a replica leaving moves only its own share.
- Power of two choices: two distinct replicas at random, the one with fewer open calls.
- The preferred replica is kept while its load is at most `affinity_slack` above the two-choice
  pick's; past that the call goes to the pick (affinity never piles onto a hot replica).
- Per-replica breaker: `failures` consecutive connection failures take a replica out for
  `cooldown_s`; then one call probes it. With every replica out, the least recently failed is tried.
- Drained replicas (a spot termination notice, `set_drained`) get no new calls while another serves.

All of it is counter arithmetic on the event loop (no I/O, no await): safe on the request path."""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from margin.config.autoscale import BalanceConfig


class NoEndpoints(LookupError):
    """A discovered deployment whose name has not resolved yet."""


@dataclass(slots=True)
class Endpoint:
    base: str
    in_flight: int = 0
    failures: int = 0  # consecutive connection failures
    out_until: float = 0.0  # monotonic; out of rotation until then
    picked: int = 0
    affinity_kept: int = 0  # picks where the preferred replica was taken
    drained: bool = False  # a spot termination notice: no new calls (open ones finish)


class Balancer:
    def __init__(
        self,
        bases: Sequence[str],
        config: BalanceConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        discovered: bool = False,
    ) -> None:
        if not bases and not discovered:
            raise ValueError("a balancer needs at least one endpoint")
        self.discovered = discovered  # `endpoints_from:`: the set follows DNS (`replace`), empty until found
        self.endpoints = [Endpoint(base.rstrip("/")) for base in bases]
        self.config = config
        self.clock = clock
        self.rng = rng or random.Random()
        self.extra_load: Callable[[Endpoint], float] = lambda endpoint: 0.0  # e.g. a scraped queue depth

    def describe(self) -> list[dict[str, object]]:
        """Each replica for /admin/deployments: host and port only (never userinfo or a path)."""
        now = self.clock()
        return [
            {
                "endpoint": urlsplit(e.base).netloc.rpartition("@")[2],
                "in_flight": e.in_flight,
                "load": self.load(e),
                "out_for_s": max(0.0, e.out_until - now),
                "picked": e.picked,
                "affinity_kept": e.affinity_kept,
                "drained": e.drained,
            }
            for e in self.endpoints
        ]

    def load(self, endpoint: Endpoint) -> float:
        return endpoint.in_flight + self.extra_load(endpoint)

    def replace(self, bases: Sequence[str]) -> tuple[list[str], list[str]]:
        """Swap in a discovered set (added, removed bases): replicas that stay keep their object (in-flight
        calls, breaker, drain); removed ones get no new calls while their open calls end on the object
        they hold. A new list is assigned, so a loop over the old one (health probes) is undisturbed."""
        if not bases:
            raise ValueError("an empty set never replaces the endpoints")  # the caller keeps the last set
        kept = {e.base: e for e in self.endpoints}
        wanted = list(dict.fromkeys(base.rstrip("/") for base in bases))
        self.endpoints = [kept.get(base) or Endpoint(base) for base in wanted]
        return [b for b in wanted if b not in kept], [b for b in kept if b not in set(wanted)]

    def pick(self, prefix: str | None) -> Endpoint:
        """The endpoint for the next call; the caller counts it with `begin` and `end`."""
        if not self.endpoints:
            raise NoEndpoints("no replica discovered yet")
        if len(self.endpoints) == 1:
            return self.endpoints[0]
        now = self.clock()
        serving = [e for e in self.endpoints if not e.drained] or self.endpoints
        live = [e for e in serving if e.out_until <= now]
        if not live:
            return min(serving, key=lambda e: e.out_until)
        choice = live[0] if len(live) == 1 else min(self.rng.sample(live, 2), key=self.load)
        if prefix and self.config.affinity_chars:
            preferred = max(live, key=lambda e: _weight(prefix, e.base))
            if self.load(preferred) <= self.load(choice) + self.config.affinity_slack:
                preferred.affinity_kept += 1
                return preferred
        return choice

    def set_drained(self, host: str, drained: bool) -> bool:
        """Drain (or undrain) the replica at `host` (host:port, as `describe` shows it); False: none is there."""
        found = [e for e in self.endpoints if urlsplit(e.base).netloc.rpartition("@")[2] == host]
        for endpoint in found:
            endpoint.drained = drained
        return bool(found)

    @property
    def all_drained(self) -> bool:
        return all(e.drained for e in self.endpoints)

    def begin(self, endpoint: Endpoint) -> None:
        endpoint.in_flight += 1
        endpoint.picked += 1

    def end(self, endpoint: Endpoint) -> None:
        endpoint.in_flight -= 1

    def reached(self, endpoint: Endpoint) -> None:
        """The replica answered (any HTTP status)."""
        endpoint.failures = 0

    def failed(self, endpoint: Endpoint) -> None:
        """The replica could not be connected to."""
        endpoint.failures += 1
        if endpoint.failures >= self.config.failures:
            endpoint.out_until = self.clock() + self.config.cooldown_s


def _weight(prefix: str, base: str) -> int:
    digest = hashlib.blake2b(f"{base}\x00{prefix}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")
