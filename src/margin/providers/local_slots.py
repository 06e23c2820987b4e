"""Generation slots of the in-process local model, and the watchdog that notices a slot not coming back.

A slot is one loaded llama.cpp instance (a llama.cpp context is not thread-safe, so one generation
uses it at a time). A request takes a slot with `acquire` and hands it to a worker thread; the slot
comes back only through `release`, which the *worker* calls when its generation has returned. So a
request that is cancelled, timed out or abandoned cannot leak the slot, and cannot give it back
while a thread still uses it: it can only ask the worker to stop (`Lease.stop`).

The watchdog bounds how long that takes. A lease asked to stop must come back within `stop_grace`
seconds (llama.cpp checks between tokens; the slowest uninterruptible step is the prompt's
evaluation); any lease must come back within `max_hold` seconds. One that does not is *stuck*: the
deployment reports itself unhealthy, and once no usable slot is left every waiter and every new
request fails at once with an error that fails over and counts against the circuit, instead of
queueing behind a thread that may never return. A stuck slot that comes back after all is usable again.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from margin import errors

log = logging.getLogger("margin.providers.local")


@dataclass(frozen=True, slots=True)
class SlotStats:
    """A snapshot for /metrics and /admin: where every loaded instance is right now."""

    slots: int  # loaded instances
    idle: int
    busy: int  # held by a generation (stuck ones included)
    stuck: int  # held past the watchdog's bound
    waiting: int  # requests queued for a slot
    stuck_total: int  # slots declared stuck since start
    stop_requests_total: int  # generations asked to stop early (client gone, timeout)


class Lease:
    """One slot held for one generation. `stop_event` is what the worker thread polls between tokens."""

    __slots__ = ("_pool", "_timer", "model", "returned", "started", "stop_event", "stopping", "stuck")

    def __init__(self, pool: SlotPool, model: Any) -> None:
        self._pool = pool
        self.model = model
        self.started = time.monotonic()
        self.stop_event = threading.Event()
        self.stopping = False
        self.stuck = False
        self.returned = False
        self._timer: asyncio.TimerHandle | None = None

    def stop(self) -> None:
        """Ask the worker to stop at its next token. Never waits, so it is safe in any `finally`,
        a cancelled one included; the slot comes back when the worker has actually stopped."""
        self.stop_event.set()
        if self.stopping or self.returned:
            return
        self.stopping = True
        self._pool.stop_requested(self)

    def arm(self, delay: float, callback: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
        try:
            self._timer = asyncio.get_running_loop().call_later(delay, callback, self)
        except RuntimeError:  # no running loop (interpreter shutdown): nothing left to watch
            self._timer = None

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class SlotPool:
    def __init__(self, deployment: str, *, max_queue: int, stop_grace: float, max_hold: float) -> None:
        self.deployment = deployment
        self.max_queue = max_queue
        self.stop_grace = stop_grace
        self.max_hold = max_hold
        self._idle: list[Any] = []
        self._leases: set[Lease] = set()
        self._waiters: collections.deque[asyncio.Future[Lease]] = collections.deque()
        self._slots = 0
        self._stuck_total = 0
        self._stop_requests = 0

    # --- state ------------------------------------------------------------------------------------

    @property
    def stuck(self) -> int:
        return sum(1 for lease in self._leases if lease.stuck)

    @property
    def healthy(self) -> bool:
        """No slot is stuck. (A stuck slot that comes back makes the deployment healthy again.)"""
        return self.stuck == 0

    def stats(self) -> SlotStats:
        return SlotStats(
            slots=self._slots,
            idle=len(self._idle),
            busy=len(self._leases),
            stuck=self.stuck,
            waiting=len(self._waiters),
            stuck_total=self._stuck_total,
            stop_requests_total=self._stop_requests,
        )

    # --- taking and giving back -------------------------------------------------------------------

    def add(self, model: Any) -> None:
        """A newly loaded instance joins the pool (and goes straight to the longest waiter)."""
        self._slots += 1
        self._hand_over(model)

    async def acquire(self, timeout: float) -> Lease:
        """A slot, within `timeout` seconds. Raises `CapacityExceeded` when the queue is full,
        `UpstreamTimeout` when no slot came in time, `LocalWorkerStuck` when every slot is stuck."""
        if self._slots and self.stuck == self._slots:
            raise self._all_stuck()
        if self._idle:
            return self._lease(self._idle.pop())
        if self._slots and len(self._waiters) >= self.max_queue:
            raise errors.CapacityExceeded(
                f"{self.deployment}: the local model's queue is full; retry shortly or use another tier",
                headers={"retry-after": "1"},
            )
        return await self._wait(timeout)

    async def _wait(self, timeout: float) -> Lease:
        waiter: asyncio.Future[Lease] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            # `wait` neither cancels the waiter on timeout nor loses a slot handed over meanwhile.
            await asyncio.wait((waiter,), timeout=max(0.0, timeout))
        except BaseException:  # cleanup, then re-raised as it is: chiefly CancelledError (its client left)
            self._abandon(waiter)  # whatever ends the wait, the waiter leaves the queue (no slot is lost)
            raise
        if not waiter.done():
            self._abandon(waiter)
            raise errors.UpstreamTimeout(
                f"{self.deployment}: no generation slot of the local model came free within {timeout:.1f}s",
                deployment=self.deployment,
                code="first_token_timeout",
            )
        return waiter.result()

    def _abandon(self, waiter: asyncio.Future[Lease]) -> None:
        if not waiter.done():
            waiter.cancel()
            self._waiters.remove(waiter)
        elif not waiter.cancelled() and waiter.exception() is None:
            self.release(waiter.result())  # handed over just as its request gave up: nobody started on it

    def release(self, lease: Lease) -> None:
        """The slot is free again. Called on the event loop once the lease's worker has returned
        (or by the request, for a lease no worker ever started on). Idempotent."""
        if lease.returned:
            return
        lease.returned = True
        lease.disarm()
        self._leases.discard(lease)
        if lease.stuck:
            held = time.monotonic() - lease.started
            log.warning("%s: a stuck generation slot came back after %.1fs", self.deployment, held)
        self._hand_over(lease.model)

    def _lease(self, model: Any) -> Lease:
        lease = Lease(self, model)
        self._leases.add(lease)
        lease.arm(self.max_hold, self._overdue)
        return lease

    def _hand_over(self, model: Any) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(self._lease(model))
                return
        self._idle.append(model)

    def stop_all(self) -> None:
        """Shutdown: ask every worker to stop at its next token (nobody waits for them)."""
        for lease in self._leases:
            lease.stop_event.set()

    # --- the watchdog -----------------------------------------------------------------------------

    def stop_requested(self, lease: Lease) -> None:
        self._stop_requests += 1
        lease.arm(self.stop_grace, self._declare_stuck)

    def _overdue(self, lease: Lease) -> None:
        """Held for `max_hold` seconds: ask the worker to stop; it has `stop_grace` more to do so."""
        if not lease.returned:
            log.warning("%s: a generation held its slot for %.0fs; stopping it", self.deployment, self.max_hold)
            lease.stop()

    def _declare_stuck(self, lease: Lease) -> None:
        if lease.returned or lease.stuck:
            return
        lease.stuck = True
        self._stuck_total += 1
        log.error(
            "%s: a llama.cpp worker did not stop within %.1fs of being asked; its slot is stuck "
            "(%d of %d slots stuck), the deployment reports unhealthy",
            self.deployment,
            self.stop_grace,
            self.stuck,
            self._slots,
        )
        if self.stuck == self._slots:
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_exception(self._all_stuck())

    def _all_stuck(self) -> errors.LocalWorkerStuck:
        return errors.LocalWorkerStuck(
            f"{self.deployment}: every generation slot of the local model is stuck (a llama.cpp worker did "
            f"not stop within {self.stop_grace:.1f}s); use another tier",
            deployment=self.deployment,
        )
