"""`endpoints_from:`: a deployment's replicas are the A/AAAA records of one DNS name (the pods behind a
Kubernetes headless Service), re-resolved every `refresh_s` by a background task the provider's
start and close own (docs/deploy.md, "Pods behind a headless Service").

Never on the request path: requests pick from the balancer's current set; this task swaps it.
- A replica that stays keeps its in-flight count, breaker and drain state (`Balancer.replace`).
- A removed replica gets no new calls; its open calls finish on the endpoint object they hold.
- A failed resolution, or an answer with no address, keeps the last known set (counted, logged):
  a DNS hiccup or a moment with no ready pod never leaves the deployment with zero replicas.
  Before the first answer the set is empty and calls fail over with a connection error."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable

from margin.config.discovery import EndpointDiscovery
from margin.periodic import Periodic
from margin.providers.balance import Balancer

log = logging.getLogger("margin.providers.discovery")

# (name, port, family) -> the addresses it resolves to; tests inject their own.
Resolver = Callable[[str, int, socket.AddressFamily], Awaitable[list[str]]]

RESOLVE_TIMEOUT_S = 5.0  # one resolution, start-up's included, waits no longer (the last set stays)
FAMILIES = {"any": socket.AF_UNSPEC, "ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}


async def resolve_all(name: str, port: int, family: socket.AddressFamily) -> list[str]:
    """Every address of `name` (A and/or AAAA), in a stable order, through the loop's getaddrinfo."""
    infos = await asyncio.get_running_loop().getaddrinfo(name, port, family=family, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)})


def base_for(config: EndpointDiscovery, address: str) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"{config.scheme}://{host}:{config.port}{config.path}"


class Discovery:
    def __init__(
        self, deployment: str, config: EndpointDiscovery, balancer: Balancer, *, resolver: Resolver = resolve_all
    ) -> None:
        self.deployment = deployment
        self.config = config
        self.balancer = balancer
        self.resolver = resolver
        self.resolutions = 0  # answers that set the endpoints
        self.failures = 0  # resolutions that raised or timed out (the last set was kept)
        self.empty_answers = 0  # answers with no address (the last set was kept)
        self.last_error: str | None = None
        self._loop = Periodic(f"discovery:{deployment}", self.refresh, config.refresh_s)  # refresh logs its failures

    async def refresh(self) -> bool:
        """One resolution; True when it set the endpoints."""
        c = self.config
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_S):
                addresses = await self.resolver(c.dns, c.port, FAMILIES[c.family])
        except (OSError, TimeoutError, UnicodeError, ValueError) as exc:  # gaierror is an OSError: keep the last set
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("%s: resolving %s failed (%s); keeping %d endpoints",
                        self.deployment, c.dns, self.last_error, len(self.balancer.endpoints))  # fmt: skip
            return False
        if not addresses:
            self.empty_answers += 1
            kept = len(self.balancer.endpoints)
            log.warning("%s: %s has no address; keeping %d endpoints", self.deployment, c.dns, kept)
            return False
        added, removed = self.balancer.replace([base_for(c, a) for a in addresses])
        self.resolutions += 1
        self.last_error = None
        if added or removed:
            log.info("%s: %s now has %d endpoints (+%d, -%d)",
                     self.deployment, c.dns, len(self.balancer.endpoints), len(added), len(removed))  # fmt: skip
        return True

    async def start(self) -> None:
        """The first resolution (bounded), then the refresh loop in the background."""
        if not self._loop.running:
            await self.refresh()
            self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    def describe(self) -> dict[str, object]:
        return {
            "dns": self.config.dns,
            "refresh_s": self.config.refresh_s,
            "resolutions": self.resolutions,
            "failures": self.failures,
            "empty_answers": self.empty_answers,
            "last_error": self.last_error,
        }
