"""Counters on SQLite: each reserve is one BEGIN IMMEDIATE transaction (SQLite's single writer), so
the check and the add are atomic across every connection and process sharing the file.

A reservation's intent is one more row of the same table, `intent:<id>` at bucket 0, whose value is
its state (1 open, 2 swept, 3 settled, 4 released): written in the reserve's transaction, moved by `finish` in
one transaction with the adjustments, pruned with the rest once it expires. SQLite serves one host,
so nobody sweeps these: a restarted gateway's journal replay settles what its predecessor left open."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path

from margin.storage.protocols import HOLD_SUFFIX, Adjust, Charge, Intent, IntentState, StorageError, Verdict
from margin.storage.sqlite.transactions import transaction
from margin.storage.sqlite.worker import SqliteWorker

_SUM = "SELECT COALESCE(SUM(value), 0) FROM margin_counters WHERE name = ? AND bucket BETWEEN ? AND ?"
_ADD = (
    "INSERT INTO margin_counters (name, bucket, value, expires_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (name, bucket) DO UPDATE SET value = value + excluded.value, "
    "expires_at = MAX(expires_at, excluded.expires_at)"
)
_SUBTRACT = (
    "UPDATE margin_counters SET value = MAX(0, value + ?), expires_at = MAX(expires_at, ?) "
    "WHERE name = ? AND bucket = ?"
)


def _sum(conn: sqlite3.Connection, name: str, first: int, last: int) -> int:
    (value,) = conn.execute(_SUM, (name, first, last)).fetchone()
    return int(value)


@functools.cache
def _sums_sql(ranges: int) -> str:
    where = " OR ".join(["(name = ? AND bucket BETWEEN ? AND ?)"] * ranges)
    return f"SELECT name, SUM(value) FROM margin_counters WHERE {where} GROUP BY name"


def _sums(conn: sqlite3.Connection, charges: Sequence[Charge]) -> dict[str, int]:
    """Every sum the charges need, in one statement (one range per counter and per hold)."""
    params: list[object] = []
    for c in charges:
        params += (c.name, c.first, c.last)
        if c.hold is not None:
            params += (c.name + HOLD_SUFFIX, c.hold - 1, c.hold)
    return dict(conn.execute(_sums_sql(len(params) // 3), params).fetchall())


_STATES: dict[IntentState, int] = {"open": 1, "swept": 2, "settled": 3, "released": 4}
_STATE_OF = {code: state for state, code in _STATES.items()}
_SET_MARKER = (
    "INSERT INTO margin_counters (name, bucket, value, expires_at) VALUES (?, 0, ?, ?) "
    "ON CONFLICT (name, bucket) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at"
)


def _marker(intent: str) -> str:
    return f"intent:{intent}"


def _reserve(conn: sqlite3.Connection, charges: Sequence[Charge], intent: Intent | None = None) -> Verdict:
    if not charges and intent is None:
        return Verdict()
    with transaction(conn):
        sums = _sums(conn, charges)
        adds = []
        for index, c in enumerate(charges):
            held = c.name + HOLD_SUFFIX
            used = sums.get(c.name, 0) + (sums.get(held, 0) if c.hold is not None else 0)
            if c.amount > 0:
                if used + c.amount > c.limit:
                    return Verdict(failed=index, used=used)
                adds.append(
                    (c.name, c.last, c.amount, c.expires_at)
                    if c.hold is None
                    else (held, c.hold, c.amount, c.expires_at)
                )
        conn.executemany(_ADD, adds)
        if intent is not None:
            conn.execute(_SET_MARKER, (_marker(intent.id), _STATES["open"], intent.expires_at))
    return Verdict()


def _apply(conn: sqlite3.Connection, adjustments: Sequence[Adjust]) -> None:
    for item in adjustments:
        if item.delta > 0:
            conn.execute(_ADD, (item.name, item.bucket, item.delta, item.expires_at))
        elif item.delta < 0:
            conn.execute(_SUBTRACT, (item.delta, item.expires_at, item.name, item.bucket))


def _adjust(conn: sqlite3.Connection, adjustments: Sequence[Adjust]) -> None:
    with transaction(conn):
        _apply(conn, adjustments)


def _finish(
    conn: sqlite3.Connection,
    intent: str,
    plans: Mapping[IntentState, Sequence[Adjust]],
    to: IntentState,
    keep_until: float,
) -> IntentState | None:
    with transaction(conn):
        row = conn.execute("SELECT value FROM margin_counters WHERE name = ? AND bucket = 0", (_marker(intent),))
        found = row.fetchone()
        state = _STATE_OF.get(int(found[0])) if found is not None else None
        if state is not None and state in plans:
            _apply(conn, plans[state])
            if to == "settled":  # nothing can follow it: a later finish finds nothing and does nothing
                conn.execute("DELETE FROM margin_counters WHERE name = ? AND bucket = 0", (_marker(intent),))
            else:
                conn.execute(_SET_MARKER, (_marker(intent), _STATES[to], keep_until))
    return state


def _sync(conn: sqlite3.Connection, name: str, first: int, last: int, floor: int, expires_at: float) -> None:
    with transaction(conn):
        missing = floor - _sum(conn, name, first, last)
        if missing > 0:
            conn.execute(_ADD, (name, last, missing, expires_at))


def _prune(conn: sqlite3.Connection, now: float) -> int:
    return conn.execute("DELETE FROM margin_counters WHERE expires_at <= ?", (now,)).rowcount


def _ping(conn: sqlite3.Connection) -> bool:
    return bool(conn.execute("SELECT 1").fetchone()[0] == 1)


class SqliteCounters:
    def __init__(self, path: Path | str | None = None, *, worker: SqliteWorker | None = None) -> None:
        if worker is None:
            if path is None:
                raise ValueError("SqliteCounters needs a path or a worker")
            worker = SqliteWorker(path)
        self.worker = worker

    async def migrate(self) -> list[str]:
        return await self.worker.migrate()

    async def reserve(self, charges: Sequence[Charge]) -> Verdict:
        return await self.worker.call_fast(_reserve, list(charges))

    async def reserve_intent(self, charges: Sequence[Charge], intent: Intent) -> Verdict:
        return await self.worker.call_fast(_reserve, list(charges), intent)

    async def adjust(self, adjustments: Sequence[Adjust]) -> None:
        if adjustments:
            await self.worker.call_fast(_adjust, list(adjustments))

    async def finish(
        self, intent: str, owner: str, plans: Mapping[IntentState, Sequence[Adjust]], to: IntentState, keep_until: float
    ) -> IntentState | None:
        return await self.worker.call_fast(_finish, intent, dict(plans), to, keep_until)

    async def read(self, name: str, first: int, last: int) -> int:
        return await self.worker.call_fast(_sum, name, first, last)  # WAL readers never wait

    async def sync(self, name: str, first: int, last: int, floor: int, expires_at: float) -> None:
        await self.worker.call(_sync, name, first, last, floor, expires_at)

    async def prune(self, now: float) -> int:
        return await self.worker.call(_prune, now)

    async def health(self) -> bool:
        try:
            return await self.worker.call(_ping)
        except StorageError:
            return False

    async def close(self) -> None:
        await self.worker.close()
