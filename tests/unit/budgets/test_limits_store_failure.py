"""The counter store unreachable: each limit's declared policy, within the timeout; settles replayed
and lost counters synced from the ledger when it answers again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from margin import errors
from margin.budgets.admission import Limiter, Policy
from margin.budgets.estimate import Demand
from margin.budgets.rules import Applied, Rule, RuleBook
from margin.budgets.windows import Lease, RollingWindow, Span
from margin.storage.memory import MemoryCounters
from margin.storage.protocols import HOLD_SUFFIX, Adjust, Charge, StorageError, Verdict
from margin.types import Principal

NOW = 1_800_000_000.0
WHO = Principal(key_id="k1", team="t1")


class Flaky(MemoryCounters):
    """Memory counters that can hang (like a stopped Redis, bounded by a timeout) or lose their data."""

    def __init__(self, timeout_s: float = 0.05) -> None:
        super().__init__()
        self.hanging = False
        self.timeout_s = timeout_s
        self.synced: set[str] = set()
        self.forgetful = False

    async def _maybe_hang(self) -> None:
        if self.hanging:
            await asyncio.sleep(self.timeout_s)
            raise StorageError("timed out")

    async def reserve(self, charges: Sequence[Charge]) -> Verdict:
        await self._maybe_hang()
        for index, charge in enumerate(charges):
            if self.forgetful and charge.sync and charge.name not in self.synced:
                return Verdict(unsynced=index)
        return await super().reserve(charges)

    async def adjust(self, adjustments: Sequence[Adjust]) -> None:
        await self._maybe_hang()
        await super().adjust(adjustments)

    async def sync(self, name: str, first: int, last: int, floor: int, expires_at: float) -> None:
        self.synced.add(name)
        await super().sync(name, first, last, floor, expires_at)


def limiter(store: Flaky, *rules: Rule, share: float = 0.5) -> Limiter:
    policy = Policy(default_failure="fail_closed", fail_open_share=share)
    book = RuleBook(list(rules))
    return Limiter(book, store, lease=Lease(360), policy=policy, clock=lambda: NOW, fallback=MemoryCounters())


def rpm(scope: str, limit: int, on_failure: str | None = None) -> Rule:
    return Rule("rpm", scope, limit, RollingWindow.minute(), (), on_failure)  # type: ignore[arg-type]


async def test_fail_closed_refuses_within_the_timeout() -> None:
    store = Flaky(timeout_s=0.05)
    engine = limiter(store, rpm("key:*", 100))
    store.hanging = True
    started = time.perf_counter()
    with pytest.raises(errors.ServiceUnavailable) as caught:
        await engine.reserve(WHO, engine.applicable(WHO, None, ()), Demand(0, 0))
    assert time.perf_counter() - started < 0.05 + 0.05
    assert caught.value.error_code == "limits_unavailable"
    for _ in range(2):  # three failures in a row: the store is skipped for a second
        with pytest.raises(errors.ServiceUnavailable):
            await engine.reserve(WHO, engine.applicable(WHO, None, ()), Demand(0, 0))
    started = time.perf_counter()  # the next request does not wait on the dead store at all
    with pytest.raises(errors.ServiceUnavailable):
        await engine.reserve(WHO, engine.applicable(WHO, None, ()), Demand(0, 0))
    assert time.perf_counter() - started < 0.01


async def test_fail_open_admits_up_to_a_local_share_of_the_limit() -> None:
    store = Flaky()
    engine = limiter(store, rpm("key:*", 10, "fail_open"), share=0.5)
    store.hanging = True
    applied = engine.applicable(WHO, None, ())
    for _ in range(5):
        await engine.reserve(WHO, applied, Demand(0, 0))
    with pytest.raises(errors.RateLimited):
        await engine.reserve(WHO, applied, Demand(0, 0))


async def test_any_fail_closed_limit_decides_for_the_request() -> None:
    store = Flaky()
    engine = limiter(store, rpm("key:*", 10, "fail_open"), rpm("team:*", 10, "fail_closed"))
    store.hanging = True
    with pytest.raises(errors.ServiceUnavailable):
        await engine.reserve(WHO, engine.applicable(WHO, None, ()), Demand(0, 0))


async def test_settles_are_replayed_when_the_store_answers_again() -> None:
    store = Flaky()
    rule = Rule("tokens", "key:*", 1000, RollingWindow.hours(1), ())
    engine = limiter(store, rule)
    ticket = await engine.reserve(WHO, engine.applicable(WHO, None, ()), Demand(0, 100))
    store.hanging = True
    engine.settle(ticket, cost_nano=0, tokens=40)
    await engine.drain()
    assert len(engine.pending) == 1
    store.hanging = False
    engine._down_until = float("-inf")  # skip the one-second pause
    await engine.reserve(WHO, engine.applicable(WHO, None, ()), Demand(0, 1))
    await engine.drain()
    span = rule.window.span(NOW)  # type: ignore[union-attr]
    assert await store.read("tokens:key:k1:" + rule.window.tag, span.first, span.last) == 40  # type: ignore[union-attr]
    slot = engine.lease.slot(NOW)
    assert await store.read("tokens:key:k1:roll3600s" + HOLD_SUFFIX, slot - 1, slot) == 1


async def test_a_lost_budget_counter_is_synced_from_the_ledger_once() -> None:
    store = Flaky()
    store.forgetful = True
    rule = Rule("usd", "key:*", 1000, RollingWindow.hours(24), (0.5,))
    engine = limiter(store, rule)
    asked: list[str] = []

    async def ledger(applied: Applied, span: Span) -> int:
        asked.append(applied.name)
        await asyncio.sleep(0.01)
        return 900

    engine.ledger_amount = ledger
    applied = engine.applicable(WHO, None, ())
    results = await asyncio.gather(
        *(engine.reserve(WHO, applied, Demand(60, 0)) for _ in range(3)), return_exceptions=True
    )
    assert len(asked) == 1  # one ledger query however many requests waited on it
    assert sum(not isinstance(r, BaseException) for r in results) == 1  # 900 + 60 fits once, not twice
    assert all(isinstance(r, errors.BudgetExceeded) for r in results if isinstance(r, BaseException))
