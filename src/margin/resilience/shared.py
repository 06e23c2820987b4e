"""Circuit breakers shared by every replica through Redis, with a local breaker to fall back on.

When Redis does not answer within its short timeout, each replica keeps protecting its upstreams
with its own in-process breaker (a declared fail-open-to-local policy): a Redis outage never
hangs a request and never stops circuits from opening.

Redis is consulted only where the shared state can change an answer: an ordinary success in the
closed state changes nothing there, so it is not sent; and a closed verdict is reused for
`allow_fresh_s` (a circuit opened by another replica reaches this one within that time, or at
once after this replica sees a failure itself). On the hot path that is one round trip per
deployment per interval instead of two per call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from margin.config.model import CircuitPolicy
from margin.resilience.circuit import Admission, CircuitState, CircuitView, InMemoryCircuits, Outcome
from margin.storage.protocols import StorageError

log = logging.getLogger("margin.resilience")


class CircuitScripts(Protocol):
    async def admit(self, deployment: str, cooldown: float) -> str: ...

    async def record(
        self, deployment: str, *, outcome: str, probe: bool, window: float, failures: int, error: str, ttl_s: int
    ) -> None: ...

    async def read(self, deployment: str, window: float) -> Sequence[str]: ...


class SharedCircuits:
    def __init__(
        self,
        remote: CircuitScripts,
        local: InMemoryCircuits,
        *,
        retry_after_s: float = 5.0,
        allow_fresh_s: float = 0.25,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.remote = remote
        self.local = local
        self.retry_after_s = retry_after_s
        self.allow_fresh_s = allow_fresh_s
        self._monotonic = monotonic
        self._degraded = False
        self._remote_down_until = 0.0
        self._allowed_until: dict[str, float] = {}  # deployment -> when its closed verdict goes stale

    def _fell_back(self, exc: StorageError) -> None:
        if not self._degraded:
            log.warning("circuit state in Redis unavailable, using this replica's breakers: %s", exc)
        self._degraded = True
        # Do not pay Redis's timeout on every request of an outage: try it again in a few seconds.
        self._remote_down_until = self._monotonic() + self.retry_after_s

    def _remote_usable(self) -> bool:
        return self._monotonic() >= self._remote_down_until

    async def admit(self, deployment: str, policy: CircuitPolicy) -> Admission:
        if not policy.enabled:
            return Admission.ALLOW
        if not self._remote_usable():
            return await self.local.admit(deployment, policy)
        if self._monotonic() < self._allowed_until.get(deployment, 0.0):
            return Admission.ALLOW
        try:
            verdict = Admission(await self.remote.admit(deployment, policy.cooldown))
        except StorageError as exc:
            self._fell_back(exc)
            return await self.local.admit(deployment, policy)
        self._degraded = False
        if verdict is Admission.ALLOW and self.allow_fresh_s > 0:
            self._allowed_until[deployment] = self._monotonic() + self.allow_fresh_s
        return verdict

    async def record(
        self, deployment: str, policy: CircuitPolicy, outcome: Outcome, *, probe: bool, error: str | None = None
    ) -> None:
        if not policy.enabled:
            return
        await self.local.record(deployment, policy, outcome, probe=False, error=error)
        if outcome == "failure":
            self._allowed_until.pop(deployment, None)  # look at the shared state before the next call
        elif not probe:
            return  # a success or neutral outcome outside a probe leaves the shared state as it is
        if not self._remote_usable():
            return
        ttl = int(policy.window + policy.cooldown) + 3600  # keep times_opened visible for an hour
        try:
            await self.remote.record(
                deployment,
                outcome=outcome,
                probe=probe,
                window=policy.window,
                failures=policy.failures,
                error=error or "",
                ttl_s=ttl,
            )
        except StorageError as exc:
            self._fell_back(exc)

    async def views(self, policies: Mapping[str, CircuitPolicy]) -> list[CircuitView]:
        if not self._remote_usable():
            return await self.local.views(policies)
        try:
            return [await self._view(name, policy) for name, policy in policies.items()]
        except StorageError as exc:
            self._fell_back(exc)
            return await self.local.views(policies)

    async def _view(self, name: str, policy: CircuitPolicy) -> CircuitView:
        now, state, opened, probe_until, times, error, failures = await self.remote.read(name, policy.window)
        closed = state == CircuitState.CLOSED
        probe_at = max(float(opened) + policy.cooldown, float(probe_until))
        return CircuitView(
            deployment=name,
            state=CircuitState(state),
            failures=int(failures),
            times_opened=int(times),
            opened_s_ago=None if closed else round(float(now) - float(opened), 3),
            probe_in_s=None if closed else round(max(0.0, probe_at - float(now)), 3),
            last_error=error or None,
        )
