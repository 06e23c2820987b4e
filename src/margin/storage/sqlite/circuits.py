"""Circuit-breaker state in SQLite, shared by every worker process of one host.

The same three operations as the Redis scripts (`margin.storage.redis.circuit`), with the same
meaning, so `margin.resilience.shared.SharedCircuits` runs on either: `margin serve --workers N`
on the embedded default (no `redis:`) keeps one circuit per deployment for all its workers.

Each operation that can change the state is one BEGIN IMMEDIATE transaction (SQLite's single write
lock), so two workers never both claim a half-open circuit's probe. The clock is the host's wall
clock (`time.time()`), which every process on the host shares, as Redis's TIME is shared by its
clients. The state lives in its own small file, `{data_dir}/circuits.db`: ephemeral coordination
state (every row expires like the Redis keys do), kept off the ledger's file so a circuit write
never queues behind a ledger batch; its two tables are created when it is first opened, and the
file may be deleted whenever no gateway runs.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from margin.storage.protocols import StorageError
from margin.storage.sqlite.transactions import transaction
from margin.storage.sqlite.worker import SqliteWorker

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS margin_circuits (deployment TEXT PRIMARY KEY, state TEXT NOT NULL, "
    "opened_at REAL NOT NULL, probe_until REAL NOT NULL, times_opened INTEGER NOT NULL, "
    "last_error TEXT NOT NULL, expires_at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS margin_circuit_failures (deployment TEXT NOT NULL, at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS margin_circuit_failures_at ON margin_circuit_failures (deployment, at)",
)
_ROW = (
    "SELECT state, opened_at, probe_until, times_opened, last_error FROM margin_circuits "
    "WHERE deployment = ? AND expires_at > ?"
)
_CLOSED = ("closed", 0.0, 0.0, 0, "")


def _row(conn: sqlite3.Connection, deployment: str, now: float) -> tuple[str, float, float, int, str]:
    found = conn.execute(_ROW, (deployment, now)).fetchone()
    return _CLOSED if found is None else (str(found[0]), float(found[1]), float(found[2]), int(found[3]), str(found[4]))


def _admit(conn: sqlite3.Connection, deployment: str, cooldown: float, now: float) -> str:
    if _row(conn, deployment, now)[0] == "closed":  # the hot path: one read, no write lock
        return "allow"
    with transaction(conn):
        state, opened, probe_until, _, _ = _row(conn, deployment, now)  # again, under the write lock
        if state == "closed":
            return "allow"
        if now < opened + cooldown or now < probe_until:
            return "reject"
        conn.execute(
            "UPDATE margin_circuits SET state = 'half_open', probe_until = ? WHERE deployment = ?",
            (now + cooldown, deployment),
        )
    return "probe"


def _open(conn: sqlite3.Connection, deployment: str, now: float) -> None:
    conn.execute(
        "UPDATE margin_circuits SET state = 'open', opened_at = ?, probe_until = 0, "
        "times_opened = times_opened + 1 WHERE deployment = ?",
        (now, deployment),
    )
    conn.execute("DELETE FROM margin_circuit_failures WHERE deployment = ?", (deployment,))


def _record(
    conn: sqlite3.Connection, deployment: str, args: tuple[str, bool, float, int, str, int], now: float
) -> None:
    outcome, probe, window, failures, error, ttl_s = args
    with transaction(conn):
        state, opened, probe_until, times, last_error = _row(conn, deployment, now)
        if outcome == "failure" and error:
            last_error = error
        conn.execute(
            "INSERT OR REPLACE INTO margin_circuits VALUES (?, ?, ?, ?, ?, ?, ?)",
            (deployment, state, opened, probe_until, times, last_error, now + ttl_s),
        )
        if probe:
            if outcome == "success":
                closed = "UPDATE margin_circuits SET state = 'closed', probe_until = 0 WHERE deployment = ?"
                conn.execute(closed, (deployment,))
                conn.execute("DELETE FROM margin_circuit_failures WHERE deployment = ?", (deployment,))
            elif outcome == "failure":
                _open(conn, deployment, now)
            else:
                conn.execute("UPDATE margin_circuits SET probe_until = 0 WHERE deployment = ?", (deployment,))
        elif state == "closed" and outcome == "failure":
            conn.execute("INSERT INTO margin_circuit_failures VALUES (?, ?)", (deployment, now))
            stale = "DELETE FROM margin_circuit_failures WHERE deployment = ? AND at <= ?"
            conn.execute(stale, (deployment, now - window))
            (count,) = conn.execute(
                "SELECT COUNT(*) FROM margin_circuit_failures WHERE deployment = ?", (deployment,)
            ).fetchone()
            if count >= failures:
                _open(conn, deployment, now)
        conn.execute("DELETE FROM margin_circuits WHERE expires_at <= ?", (now,))  # what Redis' TTL does


def _read(conn: sqlite3.Connection, deployment: str, window: float, now: float) -> list[str]:
    state, opened, probe_until, times, error = _row(conn, deployment, now)
    (failures,) = conn.execute(
        "SELECT COUNT(*) FROM margin_circuit_failures WHERE deployment = ? AND at > ?", (deployment, now - window)
    ).fetchone()
    return [str(now), state, str(opened), str(probe_until), str(times), error, str(failures)]


def _create(conn: sqlite3.Connection) -> None:
    for statement in SCHEMA:
        conn.execute(statement)


class SqliteCircuitScripts:
    """The `CircuitScripts` operations on a SQLite file; `SharedCircuits` makes them a CircuitStore."""

    def __init__(self, path: Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self.worker = SqliteWorker(path)
        self._clock = clock
        self._created = False

    async def _ready(self) -> None:
        if not self._created:
            await self.worker.call(_create)
            self._created = True

    async def admit(self, deployment: str, cooldown: float) -> str:
        await self._ready()
        return await self.worker.call_fast(_admit, deployment, cooldown, self._clock())

    async def record(
        self, deployment: str, *, outcome: str, probe: bool, window: float, failures: int, error: str, ttl_s: int
    ) -> None:
        await self._ready()
        args = (outcome, probe, window, failures, error[:300], ttl_s)
        await self.worker.call_fast(_record, deployment, args, self._clock())

    async def read(self, deployment: str, window: float) -> Sequence[str]:
        await self._ready()
        return await self.worker.call_fast(_read, deployment, window, self._clock())

    async def close(self) -> None:
        with contextlib.suppress(StorageError):
            await self.worker.close()
