"""One psycopg connection used under a lock, reconnecting after a failure: the ledger store's
discipline, shared by the key store and the counters. A driver error becomes StorageError."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.rows import TupleRow

from margin.storage.migrations import POSTGRES_DATABASE
from margin.storage.protocols import StorageError

Connection = psycopg.AsyncConnection[TupleRow]
MIGRATION_LOCK = 0x6D617267696E  # the ledger store's advisory lock key: both runners serialize on it


class PgSession:
    def __init__(self, url: str, *, connect_timeout_s: int = 5, statement_timeout_ms: int = 10_000) -> None:
        self.url = url
        self._connect_timeout_s = connect_timeout_s
        self._statement_timeout_ms = statement_timeout_ms
        self._conn: Connection | None = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> Connection:
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            await self._discard()
        if self._conn is None:
            self._conn = await psycopg.AsyncConnection.connect(
                self.url,
                autocommit=True,
                connect_timeout=self._connect_timeout_s,
                options=f"-c statement_timeout={self._statement_timeout_ms}",
            )
        return self._conn

    async def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            await conn.close()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Connection]:
        async with self._lock:
            try:
                yield await self._connection()
            except (psycopg.Error, OSError) as exc:
                await self._discard()
                raise StorageError(f"postgresql: {exc}") from exc
            except asyncio.CancelledError:  # a caller's timeout: the connection may be mid-query
                await self._discard()
                raise

    async def migrate(self) -> list[str]:
        """Apply the pending PostgreSQL migrations in order; returns the names it applied."""
        schema = POSTGRES_DATABASE
        applied: list[str] = []
        async with self.session() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {schema.table} "
                "(name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
            )
            cursor = await conn.execute(f"SELECT name FROM {schema.table}")
            done = {name for (name,) in await cursor.fetchall()}
            for migration in schema.migrations():
                if migration.name in done:
                    continue
                await conn.execute(migration.sql.encode())  # no parameters: several statements allowed
                await conn.execute(f"INSERT INTO {schema.table} VALUES (%s, %s)", (migration.name, time.time()))
                applied.append(migration.name)
        return applied

    async def applied_migrations(self) -> dict[str, float]:
        """Name -> when it was applied, read only (a database never migrated has none)."""
        table = POSTGRES_DATABASE.table
        async with self.session() as conn:
            cursor = await conn.execute("SELECT to_regclass(%s)", (table,))
            row = await cursor.fetchone()
            if row is None or row[0] is None:
                return {}
            cursor = await conn.execute(f"SELECT name, applied_at FROM {table}")
            return {str(name): float(at) for name, at in await cursor.fetchall()}

    async def health(self) -> bool:
        try:
            async with asyncio.timeout(self._connect_timeout_s + 1), self.session() as conn:
                await conn.execute("SELECT 1")
        except (StorageError, TimeoutError):
            return False
        return True

    async def close(self) -> None:
        async with self._lock:
            await self._discard()


class PgStore:
    """The base of a PostgreSQL store: its own session (from `url`), or one it shares with the other
    stores of the same database; migrations; one query or write per call under the session."""

    def __init__(self, url: str | None = None, *, session: PgSession | None = None) -> None:
        if session is None:
            if url is None:
                raise ValueError(f"{type(self).__name__} needs a url or a session")
            session = PgSession(url)
        self.session = session

    async def migrate(self) -> list[str]:
        return await self.session.migrate()

    async def _rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        async with self.session.session() as conn:
            cursor = await conn.execute(sql, tuple(params))
            return await cursor.fetchall()

    async def _write(self, sql: str, params: Sequence[Any]) -> int:
        """The rows the statement changed."""
        async with self.session.session() as conn:
            cursor = await conn.execute(sql, tuple(params))
            return cursor.rowcount
