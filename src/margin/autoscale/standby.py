"""Deployments that may be away: scaled to zero (cold) or drained (docs/deploy.md, "Scale to zero"
and "Spot drain"). State and timing only; the gateway injects how to probe a deployment's health
and how to deliver a wake signal, so this never does I/O of its own on the request path.

- Cold: a `scale_to_zero:` deployment that could not be connected to, with none of its replicas
  left in rotation (each replica's breaker, margin.providers.balance). The first such failure of a
  cold period sends one wake signal (`wake(name, body)`, a bounded off-path queue) and starts a
  background probe every `probe_interval_s`; the first healthy probe (or any answer) makes it warm.
- Meanwhile each request waits up to `wait_max_s` of its endpoint class for it to warm, then skips
  it: the route's next deployment (the next tier: overflow, labelled and metered there) answers.
- Drained: an admin call or a spot termination notice; new requests skip it, calls already open
  (streams included) are never touched."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from margin.config.scale_to_zero import ScaleToZeroConfig

log = logging.getLogger(__name__)
STATES = ("cold", "warming", "drained", "ready")  # margin_deployment_standby_state's

Probe = Callable[[str], Awaitable[bool]]  # healthy?; a failure is False or TimeoutError/OSError
Wake = Callable[[str, bytes], None]


class SharedDrains(Protocol):
    """Drains kept in the store, shared by every replica (margin.autoscale.drains.DrainSync)."""

    async def drain(
        self,
        deployment: str,
        endpoint: str | None,
        *,
        reason: str,
        by: str,
        not_after: float | None,
        via: str = ...,
    ) -> None: ...
    async def undrain(self, deployment: str, endpoint: str | None, *, by: str) -> None: ...


class Service(Protocol):
    """Something the standby needs running while the gateway serves (the wake webhooks' queues)."""

    async def start(self) -> None: ...
    async def stop(self, drain_s: float = ...) -> None: ...


@dataclass(slots=True)
class _State:
    cold_since: float | None = None  # monotonic; None: warm (or never seen cold)
    cold_periods: int = 0
    wakes_sent: int = 0
    waited: int = 0  # requests that waited for it to warm
    waiting: int = 0  # requests waiting for it to warm right now (margin's own queue for it)
    skipped_cold: int = 0  # requests that went elsewhere while it was cold
    last_request: float | None = None
    drained: dict[str, Any] | None = None  # why and when, while drained
    skipped_drained: int = 0
    warm: asyncio.Event = field(default_factory=asyncio.Event)
    prober: asyncio.Task[None] | None = None


class Standby:
    def __init__(
        self,
        configs: Mapping[str, ScaleToZeroConfig],
        *,
        probe: Probe,
        wake: Wake,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        services: list[Service] | None = None,
        in_rotation: Callable[[str], bool] = lambda name: False,
        names: Sequence[str] = (),
    ) -> None:
        self.names = [*names, *(n for n in configs if n not in names)]  # every configured deployment
        self.sync: SharedDrains | None = None  # drains shared through the store (margin.autoscale.drains)
        self.in_rotation = in_rotation  # whether some replica of it is still in rotation (its balancer)
        self.services = services or []
        self.configs = dict(configs)
        self.probe = probe
        self.wake = wake
        self.clock = clock
        self.wall = wall
        self._states: dict[str, _State] = {}

    def _state(self, name: str) -> _State:
        state = self._states.get(name)
        if state is None:
            state = self._states[name] = _State()
            state.warm.set()
        return state

    # --- the request path (no I/O; waits only as configured) -------------------------------------

    async def admit(self, name: str, endpoint_class: str) -> str | None:
        """None: call `name`; else why to skip it (`drained`, `cold`)."""
        state = self._state(name)
        state.last_request = self.clock()
        if state.drained is not None:
            state.skipped_drained += 1
            return "drained"
        if state.cold_since is None:
            return None
        config = self.configs[name]
        limit = config.wait_max_s.batch if endpoint_class == "batch" else config.wait_max_s.interactive
        if limit > 0:
            state.waited += 1
            state.waiting += 1
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(limit):
                        await state.warm.wait()
            finally:
                state.waiting -= 1
            if state.cold_since is None:
                return None
        state.skipped_cold += 1
        return "cold"

    def unreachable(self, name: str) -> None:
        """`name` could not be connected to: a scale-to-zero deployment goes cold (once per period)."""
        if name not in self.configs or self.in_rotation(name):
            return  # one replica of several failing is the balancer's business, not a cold start
        state = self._state(name)
        if state.cold_since is not None:
            return
        state.cold_since = self.clock()
        state.cold_periods += 1
        state.warm.clear()
        config = self.configs[name]
        if config.wake == "webhook":
            state.wakes_sent += 1
            self.wake(name, orjson.dumps(self._wake_body(name, config)))
        log.warning("deployment %s is cold (no healthy endpoint): wake=%s", name, config.wake)
        state.prober = asyncio.create_task(self._probe_until_warm(name), name=f"margin-standby-{name}")

    def answered(self, name: str) -> None:
        state = self._states.get(name)
        if state is not None and state.cold_since is not None:
            self._warm(name, state)

    def _wake_body(self, name: str, config: ScaleToZeroConfig) -> dict[str, Any]:
        return {"event": "wake", "deployment": name, "at": self.wall(), "cold_start_s": config.cold_start_s}

    async def _probe_until_warm(self, name: str) -> None:
        state = self._state(name)
        interval = self.configs[name].probe_interval_s
        while state.cold_since is not None:
            await asyncio.sleep(interval)
            try:
                healthy = await asyncio.wait_for(self.probe(name), timeout=max(interval, 2.0))
            except (TimeoutError, OSError):  # a probe that failed or hung is just "not yet"
                healthy = False
            if healthy and state.cold_since is not None:
                self._warm(name, state)

    def _warm(self, name: str, state: _State) -> None:
        took = self.clock() - (state.cold_since or self.clock())
        state.cold_since = None
        state.warm.set()
        log.warning("deployment %s answers again after %.1f s cold: traffic returns", name, took)

    # --- drain ---------------------------------------------------------------------------------

    def drain(
        self, name: str, *, reason: str, by: str, not_after: float | None = None, at: float | None = None
    ) -> dict[str, Any]:
        state = self._state(name)
        state.drained = {"reason": reason, "by": by, "at": self.wall() if at is None else at, "not_after": not_after}
        return self.describe(name)

    def undrain(self, name: str) -> dict[str, Any]:
        self._state(name).drained = None
        return self.describe(name)

    # --- views and lifecycle --------------------------------------------------------------------

    def known(self) -> list[str]:
        return list(self.names)

    def idle_s(self, name: str) -> float | None:
        """Seconds since the last request to `name` on this replica (None: none since start)."""
        state = self._states.get(name)
        return None if state is None or state.last_request is None else self.clock() - state.last_request

    def standby_state(self, name: str) -> str:
        """drained; warming (no healthy endpoint: woken, probed until it answers); cold (scale to
        zero, idle past idle_after_s: it may have no replica); ready."""
        state = self._states.get(name)
        if state is not None and state.drained is not None:
            return "drained"
        if state is not None and state.cold_since is not None:
            return "warming"
        config = self.configs.get(name)
        if config is not None:
            idle_s = self.idle_s(name)
            if idle_s is None or idle_s >= config.idle_after_s:
                return "cold"
        return "ready"

    def wakes_sent(self, name: str) -> int:
        state = self._states.get(name)
        return 0 if state is None else state.wakes_sent

    def waiting(self, name: str) -> int:
        """Requests waiting in margin right now for `name` to warm (the queue an autoscaler reads)."""
        state = self._states.get(name)
        return 0 if state is None else state.waiting

    def describe(self, name: str) -> dict[str, Any]:
        state = self._state(name)
        now = self.clock()
        config = self.configs.get(name)
        idle_s = None if state.last_request is None else now - state.last_request
        return {
            "state": "drained" if state.drained else "cold" if state.cold_since is not None else "warm",
            "drained": state.drained,
            "scale_to_zero": config is not None,
            "cold_for_s": None if state.cold_since is None else now - state.cold_since,
            "cold_periods": state.cold_periods,
            "wakes_sent": state.wakes_sent,
            "waited": state.waited,
            "waiting": state.waiting,
            "skipped_cold": state.skipped_cold,
            "skipped_drained": state.skipped_drained,
            "idle_s": idle_s,
            "idle": config is not None and (idle_s is None or idle_s >= config.idle_after_s),
        }

    async def start(self) -> None:
        for service in self.services:
            await service.start()

    async def stop(self) -> None:
        for service in self.services:
            await service.stop()
        for state in self._states.values():
            if state.prober is not None:
                state.prober.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await state.prober
                state.prober = None
