"""How a surviving replica settles a dead one's reservations (counter stores every replica sees).

Every `interval_s` each replica renews its heartbeat and asks the store for orphans: open intents
whose owner's heartbeat is gone (the replica died: found within `heartbeat_ttl_s`) or whose lease
has ended without a settle. Each orphan with an attempt mark is settled as spent at its reserved
amount, never released: whether its upstream call was answered is unknown, and if it was, the
provider bills it. One without a mark is released: a mark is written before its attempt goes
upstream, so none went. `finish`
makes that exactly-once across replicas (two sweepers race; one finds it open). The one that swept
it hands it on (`on_swept`) to write one `unreconciled` ledger row per attempt its owner marked.

Sweeping happens while the holds still count (a dead owner is noticed within seconds; a lease is
swept halfway through the hold's second slot: margin.budgets.windows.Lease), so the money is never
free in between. A late settle by a replica that was only slow corrects the amount (see
margin.budgets.admission), and so does a journal replay that knows the outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal

from margin.budgets.admission import Limiter
from margin.budgets.intents import Reservation, release_plan, spent_plan
from margin.budgets.rules import NANO
from margin.periodic import Periodic
from margin.storage.protocols import Adjust, IntentCounters, IntentState, Orphan, SharedIntents, StorageError

log = logging.getLogger("margin.limits")
KEEP_SWEPT_S = 86_400.0  # a swept intent is kept a day, so a late settle can still correct it
OnSwept = Callable[[Orphan, Reservation], Awaitable[None]]


class IntentSweeper:
    def __init__(
        self,
        limiter: Limiter,
        on_swept: OnSwept,
        *,
        interval_s: float = 2.0,
        heartbeat_ttl_s: float = 10.0,
        batch: int = 200,
    ) -> None:
        self.limiter = limiter
        self.on_swept = on_swept
        self.interval_s = interval_s
        self.heartbeat_ttl_s = heartbeat_ttl_s
        self.batch = batch
        self.swept = 0  # reservations this replica settled as spent for another (metrics, tests)
        self._loop = Periodic(
            "margin-intent-sweeper", self._tick, interval_s, handled=(StorageError,), on_error=self._failed
        )

    @property
    def enabled(self) -> bool:
        store = self.limiter.counters
        return isinstance(store, SharedIntents) and isinstance(store, IntentCounters)

    async def start(self) -> None:
        if self.enabled and not self._loop.running:
            await self._heartbeat()  # alive before the first request it reserves
            self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def _tick(self) -> None:
        await self._heartbeat()
        await self.sweep_once()

    def _failed(self, exc: Exception) -> None:
        log.warning("sweeping orphaned reservations failed (retried in %.0fs): %s", self.interval_s, exc)

    async def _heartbeat(self) -> None:
        store = self.limiter.counters
        assert isinstance(store, SharedIntents)
        try:
            await store.heartbeat(self.limiter.owner, self.heartbeat_ttl_s)
        except StorageError as exc:
            log.warning("limits store: heartbeat not renewed: %s", exc)

    async def sweep_once(self) -> int:
        """Settle every orphan found now as spent; returns how many this replica settled."""
        store = self.limiter.counters
        assert isinstance(store, SharedIntents) and isinstance(store, IntentCounters)
        now = self.limiter.clock()
        settled = 0
        for orphan in await store.orphans(now, self.batch):
            intent = orphan.intent
            reservation = Reservation.from_json(intent.payload)
            if not orphan.attempts:  # marks precede their attempts: nothing went upstream
                plans: dict[IntentState, list[Adjust]] = {"open": release_plan(reservation.counters)}
                await store.finish(intent.id, intent.owner, plans, "released", now + KEEP_SWEPT_S)
                continue
            plans = {"open": spent_plan(reservation.counters)}
            found = await store.finish(intent.id, intent.owner, plans, "swept", now + KEEP_SWEPT_S)
            if found != "open":
                continue  # settled meanwhile, or another replica swept it first
            settled += 1
            log.warning(
                "reservation %s of replica %s settled as spent at its reserved $%s (%d attempts, outcome unknown)",
                intent.id, intent.owner, Decimal(reservation.cost_nano) / NANO, len(orphan.attempts),
            )  # fmt: skip
            await self.on_swept(orphan, reservation)
        self.swept += settled
        return settled
