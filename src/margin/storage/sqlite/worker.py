"""SQLite connections for the key store and the counters (which share them).

Same discipline as the ledger store: one connection owned by one worker thread, so statements never
interleave and the event loop never waits on a lock. Other connections to the ledger's file are fine
under WAL: writers queue on SQLite's write lock (busy timeout), readers never block.

One exception, for reservations (the request path's only store call): `call_fast` first runs the
transaction on the event loop's own connection, which never waits (busy timeout 0) and never
checkpoints; a short write transaction there (~0.1 ms, no fsync under synchronous=NORMAL) is cheaper
than the hop to a thread and back. When another writer holds the lock it goes to the thread."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from margin.storage.protocols import StorageError
from margin.storage.sqlite.transactions import apply_migrations

MEMORY = ":memory:"
T = TypeVar("T")
P = ParamSpec("P")


class SqliteWorker:
    def __init__(self, path: Path | str, *, busy_timeout_s: float = 5.0) -> None:
        self.path = str(path)
        self._busy_timeout_s = busy_timeout_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="margin-sqlite-limits")
        self._conn: sqlite3.Connection | None = None
        self._loop_conn: sqlite3.Connection | None = None
        self._closed = False

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            if self.path != MEMORY:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._conn = conn
        return self._conn

    async def call_fast(self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kw: P.kwargs) -> T:
        """fn(connection, *args) on the event loop when the write lock is free now, else on the thread.
        `fn` must be one read, or start with BEGIN IMMEDIATE: a busy database is detected before any work."""
        if self.path != MEMORY and not self._closed:
            try:
                return fn(self._loop_connection(), *args, **kw)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise StorageError(f"sqlite {self.path}: {exc}") from exc
            except (sqlite3.Error, OSError) as exc:
                raise StorageError(f"sqlite {self.path}: {exc}") from exc
        return await self.call(fn, *args, **kw)

    def _loop_connection(self) -> sqlite3.Connection:
        if self._loop_conn is None:
            conn = sqlite3.connect(self.path, timeout=0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints stay on the worker thread
            self._loop_conn = conn
        return self._loop_conn

    async def call(self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kw: P.kwargs) -> T:
        """Run fn(connection, *args) on the worker thread."""
        if self._closed:
            raise StorageError(f"sqlite {self.path}: store is closed")
        loop = asyncio.get_running_loop()
        job = functools.partial(self._run, fn, *args, **kw)
        try:
            return await loop.run_in_executor(self._executor, job)
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"sqlite {self.path}: {exc}") from exc

    def _run(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        return fn(self._connection(), *args, **kw)

    async def migrate(self) -> list[str]:
        return await self.call(apply_migrations)

    async def close(self) -> None:
        if self._closed:
            return
        await self.call(self._close)
        self._closed = True
        if self._loop_conn is not None:
            self._loop_conn.close()
            self._loop_conn = None
        self._executor.shutdown(wait=False)

    def _close(self, conn: sqlite3.Connection) -> None:
        conn.close()
        self._conn = None
