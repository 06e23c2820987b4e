"""Surviving replicas settle a dead one's reservations as spent (never released), exactly once; a
replica that was only slow corrects the amount when its settle finally comes; a live replica's
reservation is swept only once its lease has ended. Two limiters on one shared store = two replicas."""

from __future__ import annotations

from dataclasses import dataclass, field

from margin.budgets.admission import IntentNote, Limiter, Ticket
from margin.budgets.estimate import Demand
from margin.budgets.intents import Reservation
from margin.budgets.rules import Rule, RuleBook
from margin.budgets.sweeper import IntentSweeper
from margin.budgets.windows import Lease, RollingWindow
from margin.storage.memory import MemoryCounters
from margin.storage.protocols import HOLD_SUFFIX, Orphan
from margin.types import Principal

NOW = 1_800_000_000.0
WHO = Principal(key_id="k1")
WORST = Demand(cost_nano=50_000_000, tokens=50)
BUDGET = Rule("usd", "key:*", 1_000_000_000, RollingWindow.hours(24))
LEASE = Lease(60)


@dataclass
class Clock:
    now: float = NOW

    def __call__(self) -> float:
        return self.now


@dataclass
class Swept:
    orphans: list[tuple[Orphan, Reservation]] = field(default_factory=list)

    async def __call__(self, orphan: Orphan, reservation: Reservation) -> None:
        self.orphans.append((orphan, reservation))


def replica(store: MemoryCounters, owner: str, clock: Clock) -> Limiter:
    limiter = Limiter(RuleBook([BUDGET]), store, lease=LEASE, clock=clock, fallback=MemoryCounters())
    limiter.owner = owner
    return limiter


async def reserve(limiter: Limiter, request_id: str) -> Ticket:
    note = IntentNote(request_id, {"request_id": request_id})
    ticket = await limiter.reserve(WHO, limiter.applicable(WHO, None, ()), WORST, note)
    assert ticket.intent is not None
    return ticket


async def spent_and_held(store: MemoryCounters, ticket: Ticket) -> tuple[int, int]:
    held = ticket.held[0]
    spent = await store.read(held.applied.name, held.span.first, held.span.last)
    return spent, await store.read(held.applied.name + HOLD_SUFFIX, 0, 10**9)


async def test_a_dead_replicas_reservation_is_spent_once_and_a_late_settle_corrects_it() -> None:
    store, clock, swept = MemoryCounters(), Clock(), Swept()
    dead, survivor = replica(store, "dead", clock), replica(store, "survivor", clock)
    ticket = await reserve(dead, "r1")
    await dead.mark_attempt(ticket, 0, '{"i":0,"d":"dep","m":"m","r":null,"t":1}')
    sweeper = IntentSweeper(survivor, swept)
    await sweeper.start()  # the survivor's heartbeat; "dead" never sent one
    try:
        assert await sweeper.sweep_once() == 1
        assert await sweeper.sweep_once() == 0  # exactly once
    finally:
        await sweeper.stop()
    assert await spent_and_held(store, ticket) == (50_000_000, 0)  # spent at the reserved amount, not released
    (orphan, reservation), = swept.orphans  # fmt: skip
    assert orphan.attempts == ('{"i":0,"d":"dep","m":"m","r":null,"t":1}',) and reservation.cost_nano == 50_000_000
    dead.settle(ticket, cost_nano=30_000_000, tokens=30)  # it was only slow after all
    await dead.drain()
    assert await spent_and_held(store, ticket) == (30_000_000, 0)


async def test_a_live_replicas_reservation_is_swept_only_when_its_lease_ends() -> None:
    store, clock, swept = MemoryCounters(), Clock(), Swept()
    live = replica(store, "live", clock)
    sweeper = IntentSweeper(live, swept)
    await sweeper.start()
    try:
        ticket = await reserve(live, "r2")
        await live.mark_attempt(ticket, 0, '{"i":0,"d":"dep","m":"m","r":null,"t":1}')
        assert await sweeper.sweep_once() == 0
        clock.now = LEASE.sweep_at(NOW)  # the lease ends with no settle
        assert await sweeper.sweep_once() == 1
    finally:
        await sweeper.stop()
    assert await spent_and_held(store, ticket) == (50_000_000, 0)


async def test_a_reservation_with_no_attempt_marked_is_released_and_a_late_settle_spends() -> None:
    store, clock, swept = MemoryCounters(), Clock(), Swept()
    stalled, survivor = replica(store, "stalled", clock), replica(store, "survivor", clock)
    ticket = await reserve(stalled, "r4")  # killed (or stalled) before its first attempt's mark
    sweeper = IntentSweeper(survivor, swept)
    await sweeper.start()
    try:
        assert await sweeper.sweep_once() == 0 and swept.orphans == []  # released, not spent: no rows
    finally:
        await sweeper.stop()
    assert await spent_and_held(store, ticket) == (0, 0)
    stalled.settle(ticket, cost_nano=30_000_000, tokens=30)  # it was only stalled, and went upstream after all
    await stalled.drain()
    assert await spent_and_held(store, ticket) == (30_000_000, 0)


async def test_a_normal_settle_leaves_nothing_to_sweep() -> None:
    store, clock, swept = MemoryCounters(), Clock(), Swept()
    gone, survivor = replica(store, "gone", clock), replica(store, "survivor", clock)
    ticket = await reserve(gone, "r3")
    gone.settle(ticket, cost_nano=30_000_000, tokens=30)
    await gone.drain()
    sweeper = IntentSweeper(survivor, swept)
    await sweeper.start()
    try:
        assert await sweeper.sweep_once() == 0  # its replica is dead now, but it settled first
    finally:
        await sweeper.stop()
    assert await spent_and_held(store, ticket) == (30_000_000, 0)
