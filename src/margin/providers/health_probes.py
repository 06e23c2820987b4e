"""Deployment health for /readyz, probed at a bounded rate.

/readyz is public (load balancers and orchestrators call it without a key), so it must not be a way
to make the gateway call every upstream on demand: each deployment is probed at most once per
`interval_s`, callers in between get the last answer, and callers that arrive while a probe runs
wait for that one probe instead of starting their own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from margin.providers.base import Provider


@dataclass(frozen=True, slots=True)
class _Probed:
    at: float  # monotonic clock
    healthy: bool


class HealthProbes:
    def __init__(
        self,
        providers: Mapping[str, Provider],
        *,
        interval_s: float,
        timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.providers = providers
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.clock = clock
        self.probes_started = 0  # every upstream probe this process made (tests and debugging)
        self._last: dict[str, _Probed] = {}
        self._running: dict[str, asyncio.Task[bool]] = {}

    async def health(self) -> dict[str, bool]:
        """Every deployment's health, as of its last probe (at most `interval_s` old)."""
        names = list(self.providers)
        results = await asyncio.gather(*(self._healthy(name) for name in names))
        return dict(zip(names, results, strict=True))

    async def _healthy(self, name: str) -> bool:
        last = self._last.get(name)
        if last is not None and self.clock() - last.at < self.interval_s:
            return last.healthy
        probe = self._running.get(name)
        if probe is None:
            probe = asyncio.ensure_future(self._probe(name))
            self._running[name] = probe
            probe.add_done_callback(lambda done: self._finished(name, done))
        # Shielded: a caller that leaves (a client hanging up) does not cancel the others' probe.
        return await asyncio.shield(probe)

    async def _probe(self, name: str) -> bool:
        self.probes_started += 1
        try:
            healthy = await asyncio.wait_for(self.providers[name].health(), self.timeout_s)
        except TimeoutError:
            healthy = False
        self._last[name] = _Probed(self.clock(), healthy)
        return healthy

    def _finished(self, name: str, probe: asyncio.Task[bool]) -> None:
        self._running.pop(name, None)
        if not probe.cancelled():
            probe.exception()  # retrieved here too: every waiter may have left before it failed
