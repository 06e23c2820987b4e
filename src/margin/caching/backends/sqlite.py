"""The SQLite backend: stdlib sqlite3 on one dedicated thread (the event loop never touches disk),
WAL, with LRU by a `last_used` column and vectors in a child table that dies with its entry. Its
tables come from the named cache migrations (`margin.storage.migrations.SQLITE_CACHE`).

Entry and byte counts are kept in memory and re-read from the file every `recount_every` writes,
so a second process writing the same file is absorbed without a COUNT(*) per request. A hit is a
read only: its new `last_used` waits in memory and is written with the next write (or every
`_TOUCH_BATCH` hits), before any eviction picks the least recently used.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

from margin.caching.backend import CacheBackendError
from margin.caching.entry import CacheEntry, CacheStats, Invalidation, VectorChanges, VectorRecord
from margin.storage.migrations import SQLITE_CACHE
from margin.storage.sqlite.transactions import apply_migrations, transaction

MEMORY = ":memory:"
T = TypeVar("T")
_ENTRY_COLUMNS = "key, tenant, model, tags, created_at, expires_at, payload"
_EVICT_CHUNK = 256
_ID_CHUNK = 500  # under SQLite's bound-parameter limit
_TOUCH_BATCH = 1000  # hits whose recency is written in one statement


class SqliteCacheBackend:
    """CacheBackend on one SQLite file (or `:memory:`). Construction does no I/O."""

    def __init__(
        self,
        path: Path | str,
        *,
        max_entries: int = 100_000,
        max_bytes: int = 512 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
        recount_every: int = 1000,
    ) -> None:
        self.path = str(path)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.recount_every = recount_every
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="margin-cache-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._count = 0
        self._bytes = 0
        self._writes = 0
        self._touched: dict[str, float] = {}  # key -> last use not yet written (backend thread only)

    # -- plumbing: everything below `_call` runs on the backend's own thread

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))
        except (sqlite3.Error, OSError) as error:
            raise CacheBackendError(f"sqlite cache {self.path}: {error}") from error

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            if self.path != MEMORY:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            try:
                apply_migrations(conn, SQLITE_CACHE)  # storage/sqlite/migrations/cache/
            except sqlite3.Error:
                conn.close()  # the next call opens (and migrates) afresh
                raise
            self._conn = conn
            self._recount(conn)
        return self._conn

    def _recount(self, conn: sqlite3.Connection) -> None:
        count, size = conn.execute("SELECT count(*), coalesce(sum(size), 0) FROM cache_entries").fetchone()
        self._count, self._bytes = int(count), int(size)

    # -- protocol

    async def get(self, key: str) -> CacheEntry | None:
        return await self._call(self._get, key)

    def _get(self, key: str) -> CacheEntry | None:
        conn = self._connection()
        row = conn.execute(f"SELECT {_ENTRY_COLUMNS} FROM cache_entries WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        now = self._clock()
        if row[5] <= now:
            self._delete_keys(conn, [key])
            return None
        self._touched[key] = now
        if len(self._touched) >= _TOUCH_BATCH:
            self._write_touches(conn)
        return _entry(row)

    def _write_touches(self, conn: sqlite3.Connection) -> None:
        if self._touched:
            touched, self._touched = self._touched, {}
            rows = [(used, key) for key, used in touched.items()]
            conn.executemany("UPDATE cache_entries SET last_used = ? WHERE key = ?", rows)

    async def put(self, entry: CacheEntry) -> list[str]:
        return await self._call(self._put, entry)

    def _put(self, entry: CacheEntry) -> list[str]:
        conn = self._connection()
        with transaction(conn):
            self._write_touches(conn)
            self._delete_keys(conn, [entry.key])
            conn.execute(
                "INSERT INTO cache_entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.key,
                    entry.tenant,
                    entry.model,
                    orjson.dumps(list(entry.tags)).decode(),
                    entry.created_at,
                    entry.expires_at,
                    self._clock(),
                    entry.size,
                    entry.payload,
                ),
            )
            conn.executemany("INSERT INTO cache_tags VALUES (?, ?)", [(tag, entry.key) for tag in set(entry.tags)])
            if entry.vector is not None:
                vector = entry.vector
                conn.execute(
                    "INSERT INTO cache_vectors VALUES (?, ?, ?, ?)",
                    (entry.key, vector.partition, vector.text, vector.vector_bytes()),
                )
            self._count += 1
            self._bytes += entry.size
            self._writes += 1
            if self._writes % self.recount_every == 0:
                self._recount(conn)
            return self._evict(conn)

    def _evict(self, conn: sqlite3.Connection) -> list[str]:
        if self._count <= self.max_entries and self._bytes <= self.max_bytes:
            return []
        # Expired entries go first: they are dead weight whatever their recency.
        doomed = [k for (k,) in conn.execute("SELECT key FROM cache_entries WHERE expires_at <= ?", (self._clock(),))]
        self._delete_keys(conn, doomed)
        while self._count > self.max_entries or self._bytes > self.max_bytes:
            excess = max(1, min(_EVICT_CHUNK, self._count - self.max_entries))
            oldest = [k for (k,) in conn.execute("SELECT key FROM cache_entries ORDER BY last_used LIMIT ?", (excess,))]
            if not oldest:
                break
            self._delete_keys(conn, oldest)
            doomed.extend(oldest)
        return doomed

    def _delete_keys(self, conn: sqlite3.Connection, keys: Sequence[str]) -> int:
        deleted = 0
        for start in range(0, len(keys), _ID_CHUNK):
            chunk = list(keys[start : start + _ID_CHUNK])
            marks = ",".join("?" * len(chunk))
            row = conn.execute(
                f"SELECT count(*), coalesce(sum(size), 0) FROM cache_entries WHERE key IN ({marks})", chunk
            ).fetchone()
            conn.execute(f"DELETE FROM cache_entries WHERE key IN ({marks})", chunk)
            deleted += int(row[0])
            self._count -= int(row[0])
            self._bytes -= int(row[1])
        return deleted

    async def delete(self, keys: Sequence[str]) -> int:
        return await self._call(self._delete, list(keys))

    def _delete(self, keys: list[str]) -> int:
        conn = self._connection()
        with transaction(conn):
            return self._delete_keys(conn, keys)

    async def invalidate(self, selector: Invalidation) -> list[str]:
        if selector.empty:
            return []
        return await self._call(self._invalidate, selector)

    def _invalidate(self, selector: Invalidation) -> list[str]:
        conn = self._connection()
        where, params = _where(selector)
        with transaction(conn):
            doomed = [k for (k,) in conn.execute(f"SELECT key FROM cache_entries WHERE {where}", params)]
            self._delete_keys(conn, doomed)
        return doomed

    async def vectors(self, partition: str) -> list[VectorRecord]:
        return await self._call(self._vectors, partition)

    def _vectors(self, partition: str) -> list[VectorRecord]:
        rows = self._connection().execute(
            "SELECT v.key, v.text, v.vector FROM cache_vectors v JOIN cache_entries e ON e.key = v.key"
            " WHERE v.partition = ? AND e.expires_at > ? ORDER BY v.key",
            (partition, self._clock()),
        )
        return [VectorRecord(key, partition, text, VectorRecord.vector_from(blob)) for key, text, blob in rows]

    async def vector_changes(self, partition: str, cursor: str | None) -> VectorChanges:
        # A second gateway process on the same file sees the other's new vectors only after a
        # restart (its index loads once); replicas that share a semantic cache use Redis.
        return VectorChanges([], cursor or "")

    async def stats(self) -> CacheStats:
        return await self._call(self._stats)

    def _stats(self) -> CacheStats:
        conn = self._connection()
        self._recount(conn)
        by_model = dict(conn.execute("SELECT model, count(*) FROM cache_entries GROUP BY model").fetchall())
        (vectors,) = conn.execute("SELECT count(*) FROM cache_vectors").fetchone()
        return CacheStats(entries=self._count, bytes=self._bytes, vectors=int(vectors), by_model=by_model)

    async def close(self) -> None:
        if self._conn is not None:
            await self._call(self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._conn is not None:
            self._write_touches(self._conn)
            self._conn.close()
            self._conn = None


def _entry(row: tuple[Any, ...]) -> CacheEntry:
    key, tenant, model, tags, created_at, expires_at, payload = row
    return CacheEntry(
        key=key,
        tenant=tenant,
        model=model,
        payload=bytes(payload),
        created_at=created_at,
        expires_at=expires_at,
        tags=tuple(orjson.loads(tags)),
    )


def _where(selector: Invalidation) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if selector.tenant is not None:
        clauses.append("tenant = ?")
        params.append(selector.tenant)
    if selector.model is not None:
        clauses.append("(model = ? OR substr(model, 1, ?) = ?)")
        params.extend([selector.model, len(selector.model) + 1, selector.model + "@"])
    if selector.tag is not None:
        clauses.append("key IN (SELECT key FROM cache_tags WHERE tag = ?)")
        params.append(selector.tag)
    if selector.key_prefix is not None:
        clauses.append("substr(key, 1, ?) = ?")
        params.extend([len(selector.key_prefix), selector.key_prefix])
    return (" AND ".join(clauses) or "1 = 1"), params
