"""The Counters contract, one suite run against every backend: memory, SQLite (temp file), a real
PostgreSQL and a real redis-server (tests/support; skipped locally when missing, failing under CI)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from tests.support.postgres import PostgresServer, postgres_server
from tests.support.redis import RedisServer, redis_server

from margin.storage import Adjust, Charge, Counters
from margin.storage.memory import MemoryCounters
from margin.storage.protocols import HOLD_SUFFIX, Intent, IntentCounters, IntentState, SharedIntents

NOW = 1_800_000_000.0
LATER = NOW + 3600
Factory = Callable[[], Counters]


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(params=["memory", "sqlite", "postgres", "redis"])
async def open_counters(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Factory]:
    """A factory of clients of ONE shared store (two clients = two replicas, except for memory)."""
    opened: list[Counters] = []
    if request.param == "memory":
        shared = MemoryCounters()

        def factory() -> Counters:
            return shared
    elif request.param == "sqlite":
        from margin.storage.sqlite.counters import SqliteCounters

        def factory() -> Counters:
            return SqliteCounters(tmp_path / "counters.db")
    elif request.param == "postgres":
        from margin.storage.postgres.counters import PostgresCounters

        url = request.getfixturevalue("pg_server").create_database(f"c_{uuid.uuid4().hex[:12]}")

        def factory() -> Counters:
            return PostgresCounters(url)
    else:
        from margin.storage.redis import RedisCounters

        server: RedisServer = request.getfixturevalue("redis")
        prefix = f"t{uuid.uuid4().hex[:8]}:"

        def factory() -> Counters:
            return RedisCounters(server.url, prefix=prefix, timeout_s=2.0, clock=lambda: NOW)

    def tracked() -> Counters:
        store = factory()
        opened.append(store)
        return store

    yield tracked
    for store in {id(s): s for s in opened}.values():
        await store.close()


@pytest.fixture
async def counters(open_counters: Factory) -> Counters:
    store = open_counters()
    await store.migrate()
    return store


def charge(name: str, amount: int, limit: int, *, first: int = 10, last: int = 10, hold: int | None = 5) -> Charge:
    return Charge(name=name, first=first, last=last, hold=hold, amount=amount, limit=limit, expires_at=LATER)


async def test_reserve_admits_up_to_the_limit_and_reports_what_was_used(counters: Counters) -> None:
    assert (await counters.reserve([charge("a", 60, 100)])).admitted
    verdict = await counters.reserve([charge("a", 41, 100)])
    assert not verdict.admitted and verdict.failed == 0 and verdict.used == 60
    assert (await counters.reserve([charge("a", 40, 100)])).admitted
    assert await counters.read("a" + HOLD_SUFFIX, 4, 5) == 100


async def test_all_or_nothing_across_charges(counters: Counters) -> None:
    assert (await counters.reserve([charge("team", 90, 100)])).admitted
    verdict = await counters.reserve([charge("key", 20, 1000), charge("team", 20, 100)])
    assert verdict.failed == 1 and verdict.used == 90
    assert await counters.read("key" + HOLD_SUFFIX, 4, 5) == 0  # the first charge was not applied


async def test_zero_amount_always_passes(counters: Counters) -> None:
    assert (await counters.reserve([charge("z", 5, 5)])).admitted
    assert (await counters.reserve([charge("z", 0, 5)])).admitted
    assert not (await counters.reserve([charge("z", 1, 5)])).admitted


async def test_settle_moves_a_hold_to_spent(counters: Counters) -> None:
    assert (await counters.reserve([charge("b", 50, 100)])).admitted
    await counters.adjust([Adjust("b" + HOLD_SUFFIX, 5, -50, LATER), Adjust("b", 10, 30, LATER)])
    assert await counters.read("b", 10, 10) == 30
    assert await counters.read("b" + HOLD_SUFFIX, 4, 5) == 0
    assert (await counters.reserve([charge("b", 70, 100)])).admitted
    assert not (await counters.reserve([charge("b", 1, 100)])).admitted


async def test_adjust_clamps_at_zero_and_ignores_missing_rows(counters: Counters) -> None:
    await counters.adjust([Adjust("c", 10, -5, LATER)])
    assert await counters.read("c", 10, 10) == 0
    await counters.adjust([Adjust("c", 10, 3, LATER), Adjust("c", 10, -10, LATER)])
    assert await counters.read("c", 10, 10) == 0
    assert (await counters.reserve([charge("c", 100, 100)])).admitted


async def test_windows_sum_only_their_buckets(counters: Counters) -> None:
    await counters.adjust([Adjust("r", bucket, 10, LATER) for bucket in (1, 2, 3, 4)])
    assert await counters.read("r", 2, 4) == 30
    assert not (await counters.reserve([charge("r", 11, 40, first=2, last=4, hold=None)])).admitted
    assert (await counters.reserve([charge("r", 10, 40, first=2, last=4, hold=None)])).admitted
    assert await counters.read("r", 4, 4) == 20  # a direct charge lands in the last bucket


async def test_holds_older_than_two_slots_stop_counting(counters: Counters) -> None:
    assert (await counters.reserve([charge("h", 100, 100, hold=5)])).admitted
    assert not (await counters.reserve([charge("h", 1, 100, hold=6)])).admitted
    assert (await counters.reserve([charge("h", 100, 100, hold=7)])).admitted  # slot 5 left the lease


async def test_concurrent_reservations_from_two_clients_never_overshoot(open_counters: Factory) -> None:
    first, second = open_counters(), open_counters()
    await first.migrate()
    await second.migrate()
    charges = [charge("shared", 7, 100), charge("scope", 1, 1000)]
    results = await asyncio.gather(*(c.reserve(charges) for _ in range(30) for c in (first, second)))
    admitted = sum(v.admitted for v in results)
    assert admitted == 14  # 14 x 7 = 98 <= 100 < 105
    assert await first.read("shared" + HOLD_SUFFIX, 4, 5) == 98
    assert await second.read("scope" + HOLD_SUFFIX, 4, 5) == 14


async def test_prune_drops_expired_rows(counters: Counters) -> None:
    await counters.adjust([Adjust("old", 1, 5, NOW - 10), Adjust("new", 1, 5, LATER)])
    await counters.prune(NOW)
    assert await counters.read("new", 1, 1) == 5
    assert await counters.health()


async def test_sync_raises_a_lost_counter_to_the_floor_once(counters: Counters) -> None:
    synced = Charge("s", 10, 10, 5, 30, 100, LATER, sync=True)
    verdict = await counters.reserve([charge("other", 1, 100), synced])
    if verdict.unsynced is None:  # durable stores never lose counters: sync only raises the sum
        assert verdict.admitted
        await counters.sync("s", 10, 10, 80, LATER)
        assert await counters.read("s", 10, 10) == 80
        verdict = await counters.reserve([synced])
        assert verdict.failed == 0 and verdict.used == 110  # 30 held + 80 synced
        return
    # A store that can lose data (Redis) asks for the ledger's figure first, having applied nothing.
    assert verdict.unsynced == 1 and await counters.read("other" + HOLD_SUFFIX, 4, 5) == 0
    await counters.sync("s", 10, 10, 80, LATER)
    verdict = await counters.reserve([charge("other", 1, 100), synced])
    assert verdict.failed == 1 and verdict.used == 80
    await counters.sync("s", 10, 10, 500, LATER)  # already synced in this window: no effect
    assert await counters.read("s", 10, 10) == 80


# --- reservation intents (issue 15, 4): every backend that outlives the process keeps them --------


def _intent(name: str, owner: str = "replica-a", sweep_at: float = NOW + 60) -> Intent:
    return Intent(name, owner, sweep_at, LATER, '{"payload": true}')


SETTLE = [Adjust("i" + HOLD_SUFFIX, 5, -50, LATER), Adjust("i", 10, 30, LATER)]
SPENT = [Adjust("i" + HOLD_SUFFIX, 5, -50, LATER), Adjust("i", 10, 50, LATER)]
CORRECTION = [Adjust("i", 10, -20, LATER)]


async def test_an_intent_settles_exactly_once(counters: Counters) -> None:
    assert isinstance(counters, IntentCounters)
    assert (await counters.reserve_intent([charge("i", 50, 100)], _intent("r1"))).admitted
    assert await counters.finish("r1", "replica-a", {"open": SETTLE}, "settled", LATER) == "open"
    replayed = await counters.finish("r1", "replica-a", {"open": SETTLE}, "settled", LATER)
    assert replayed in ("settled", None)  # nothing applied again (memory forgets a settled intent at once)
    assert (await counters.read("i", 10, 10), await counters.read("i" + HOLD_SUFFIX, 4, 5)) == (30, 0)


async def test_a_swept_intent_is_spent_then_corrected_by_a_late_settle(counters: Counters) -> None:
    assert isinstance(counters, IntentCounters)
    assert (await counters.reserve_intent([charge("i", 50, 100)], _intent("r2"))).admitted
    assert await counters.finish("r2", "replica-a", {"open": SPENT}, "swept", LATER) == "open"
    assert await counters.finish("r2", "replica-b", {"open": SPENT}, "swept", LATER) == "swept"  # a second sweeper
    assert (await counters.read("i", 10, 10), await counters.read("i" + HOLD_SUFFIX, 4, 5)) == (50, 0)
    plans: dict[IntentState, list[Adjust]] = {"open": SETTLE, "swept": CORRECTION}
    assert await counters.finish("r2", "replica-a", plans, "settled", LATER) == "swept"
    assert await counters.read("i", 10, 10) == 30


async def test_a_released_intent_spends_what_a_late_settle_reports(counters: Counters) -> None:
    assert isinstance(counters, IntentCounters)
    assert (await counters.reserve_intent([charge("i", 50, 100)], _intent("r4"))).admitted
    release = [Adjust("i" + HOLD_SUFFIX, 5, -50, LATER)]
    assert await counters.finish("r4", "replica-b", {"open": release}, "released", LATER) == "open"
    assert (await counters.read("i", 10, 10), await counters.read("i" + HOLD_SUFFIX, 4, 5)) == (0, 0)
    plans: dict[IntentState, list[Adjust]] = {"open": SETTLE, "swept": CORRECTION, "released": SETTLE[1:]}
    assert await counters.finish("r4", "replica-a", plans, "settled", LATER) == "released"
    assert (await counters.read("i", 10, 10), await counters.read("i" + HOLD_SUFFIX, 4, 5)) == (30, 0)


async def test_an_unknown_or_refused_intent_changes_nothing(counters: Counters) -> None:
    assert isinstance(counters, IntentCounters)
    assert await counters.finish("never", "replica-a", {"open": SETTLE}, "settled", LATER) is None
    assert (await counters.reserve([charge("i", 100, 100)])).admitted
    assert not (await counters.reserve_intent([charge("i", 1, 100)], _intent("refused"))).admitted
    assert await counters.finish("refused", "replica-a", {"open": SPENT}, "swept", LATER) is None
    assert await counters.read("i", 10, 10) == 0


async def test_shared_intents_name_the_orphans_of_a_dead_replica(counters: Counters) -> None:
    if not isinstance(counters, SharedIntents):
        pytest.skip("no orphan search on this backend (a dead replica's successor replays its journal)")
    assert isinstance(counters, IntentCounters)
    await counters.heartbeat("alive", 30)
    assert (await counters.reserve_intent([charge("o", 1, 100)], _intent("mine", "alive"))).admitted
    assert (await counters.reserve_intent([charge("o", 1, 100)], _intent("late", "alive", NOW - 1))).admitted
    assert (await counters.reserve_intent([charge("o", 1, 100)], _intent("theirs", "dead"))).admitted
    await counters.mark_attempt("theirs", 0, '{"i":0}')
    await counters.mark_attempt("theirs", 1, '{"i":1}')
    found = {o.intent.id: o for o in await counters.orphans(NOW, 100)}
    assert set(found) == {"late", "theirs"}  # the live owner's own is not an orphan before its lease ends
    assert found["theirs"].attempts == ('{"i":0}', '{"i":1}') and found["theirs"].intent.payload == '{"payload": true}'
    await counters.finish("theirs", "dead", {"open": []}, "swept", LATER)
    assert {o.intent.id for o in await counters.orphans(NOW, 100)} == {"late"}
