"""A successor replays a dead replica's journal (real SQLite counters and ledger): each request ends
by the table in margin.pipeline.recovery, and replaying the same journal twice changes nothing."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from tests.support.ledger_rows import make_row

from margin.budgets.admission import Limiter, Ticket
from margin.budgets.estimate import Demand
from margin.budgets.rules import Rule, RuleBook
from margin.budgets.windows import Lease, RollingWindow
from margin.ledger.journal import Journal
from margin.ledger.spill import SpillFile
from margin.ledger.writer import LedgerWriter
from margin.pipeline.context import RequestContext
from margin.pipeline.durable import DurableIntents
from margin.pipeline.recovery import Recovery
from margin.storage import LedgerStore, open_ledger_store
from margin.storage.memory import MemoryCounters
from margin.storage.protocols import HOLD_SUFFIX
from margin.storage.sqlite.counters import SqliteCounters
from margin.types import Attempt, Principal

NOW = time.time()
WHO = Principal(key_id="k1")
WORST = Demand(cost_nano=50_000_000, tokens=50)  # $0.05 reserved per request
BUDGET = Rule("usd", "key:*", 1_000_000_000, RollingWindow.hours(24))


@dataclass
class Replica:
    journal: Journal
    limiter: Limiter
    writer: LedgerWriter
    durable: DurableIntents


def replica(tmp: Path, counters: SqliteCounters, store: LedgerStore) -> Replica:
    journal = Journal(tmp / "journal")
    limiter = Limiter(RuleBook([BUDGET]), counters, lease=Lease(360), clock=lambda: NOW, fallback=MemoryCounters())
    limiter.owner = journal.owner
    writer = LedgerWriter(store, SpillFile(tmp / f"spill-{journal.owner}.jsonl"), journal=journal)
    return Replica(journal, limiter, writer, DurableIntents(journal, limiter))


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[SqliteCounters, LedgerStore]]:
    counters = SqliteCounters(tmp_path / "counters.db")
    await counters.migrate()
    store = open_ledger_store("sqlite:///{data_dir}/ledger.db", tmp_path)
    await store.migrate()
    yield counters, store
    await store.close()
    await counters.close()


async def admit(dead: Replica, request_id: str) -> tuple[RequestContext, Ticket]:
    ctx = RequestContext(request_id=request_id, endpoint="chat", principal=WHO)
    note = dead.durable.note(ctx)
    ticket = await dead.limiter.reserve(WHO, dead.limiter.applicable(WHO, None, ()), WORST, note)
    ctx.reservation = ticket
    dead.durable.reserved(ctx, ticket, note, WORST)
    return ctx, ticket


async def start_attempt(dead: Replica, ctx: RequestContext) -> None:
    attempt = Attempt(request_id=ctx.request_id, index=0, deployment="dep", model="m", started_at=time.perf_counter())
    ctx.attempts.append(attempt)
    await dead.durable.attempt_started(ctx, attempt)


async def a_replica_dies(tmp: Path, counters: SqliteCounters, store: LedgerStore) -> Ticket:
    """Three requests in flight when the process is killed: one whose rows were journaled, one
    waiting on its upstream, one that never got to its upstream call."""
    dead = replica(tmp, counters, store)
    dead.journal.open()
    finished, ticket = await admit(dead, "finished")
    await start_attempt(dead, finished)
    dead.writer.submit([make_row(0, request_id="finished", attempt_id="finished:0", key_id="k1",
                                 cost_total=Decimal("0.03"), input_uncached=7, output=23)])  # fmt: skip
    dead.durable.ended("finished")
    await start_attempt(dead, (await admit(dead, "in-flight"))[0])
    await admit(dead, "never-sent")
    os.close(dead.journal._lock_fd)  # SIGKILL: no settle, no writer drain, the lock released by the kernel
    dead.journal._stopping.set()
    dead.journal._wakeup.set()
    return ticket


async def successor_replays(tmp: Path, counters: SqliteCounters, store: LedgerStore) -> Recovery:
    successor = replica(tmp, counters, store)
    await successor.writer.start()
    recovery = Recovery(successor.journal, successor.writer, successor.limiter)
    await recovery.start()
    await successor.writer.stop()
    await recovery.stop()
    return recovery


async def ledger(store: LedgerStore) -> dict[str, tuple[str, Decimal]]:
    rows = [row async for row in store.query_rows(NOW - 86400, NOW + 86400)]
    return {row.attempt_id: (row.status, row.cost_total) for row in rows}


async def test_a_successor_settles_and_records_what_a_dead_replica_left(
    tmp_path: Path, stores: tuple[SqliteCounters, LedgerStore]
) -> None:
    counters, store = stores
    ticket = await a_replica_dies(tmp_path, counters, store)
    name, span = ticket.held[0].applied.name, ticket.held[0].span
    assert await counters.read(name + HOLD_SUFFIX, 0, 10**9) == 3 * WORST.cost_nano  # three holds left behind
    recovery = await successor_replays(tmp_path, counters, store)
    result = recovery.replayed[0]
    assert (result.rows, result.unreconciled, result.settled, result.swept, result.released) == (1, 1, 1, 1, 1)
    assert await ledger(store) == {
        "finished:0": ("ok", Decimal("0.03")),  # its journaled row, at its actual cost
        "in-flight:0": ("unreconciled", Decimal("0.05")),  # outcome unknown: the reserved amount
    }  # and nothing for the request that never went upstream
    assert await counters.read(name, span.first, span.last) == 80_000_000  # $0.03 + $0.05, as the ledger says
    assert await counters.read(name + HOLD_SUFFIX, 0, 10**9) == 0  # no hold left to lapse
    assert list((tmp_path / "journal").glob("*.jsonl")) == []  # the dead journal is gone, ours closed empty


async def test_replaying_the_same_journal_twice_changes_nothing(
    tmp_path: Path, stores: tuple[SqliteCounters, LedgerStore]
) -> None:
    counters, store = stores
    ticket = await a_replica_dies(tmp_path, counters, store)
    name, span = ticket.held[0].applied.name, ticket.held[0].span
    kept = tmp_path / "kept"
    shutil.copytree(tmp_path / "journal", kept)  # as if the first replay died before deleting it
    await successor_replays(tmp_path, counters, store)
    first = (await ledger(store), await counters.read(name, span.first, span.last))
    shutil.rmtree(tmp_path / "journal")
    shutil.copytree(kept, tmp_path / "journal")
    again = await successor_replays(tmp_path, counters, store)
    assert (await ledger(store), await counters.read(name, span.first, span.last)) == first
    assert await store.count() == 2  # no duplicate rows
    result = again.replayed[0]
    assert (result.settled, result.swept, result.released) == (0, 0, 0)  # every intent already moved
