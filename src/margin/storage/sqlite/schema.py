"""One SQLite file's schema as `margin migrate` sees it: which migrations of a set it holds, and
applying the pending ones (with the same runner the stores call when they open the file)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import TypeVar

from margin.storage.migrations import MigrationSet
from margin.storage.protocols import StorageError
from margin.storage.sqlite.transactions import applied_migrations, apply_migrations

T = TypeVar("T")


class SqliteSchemaFile:
    """A migration set on one file. Construction does no I/O; each call opens its own connection."""

    def __init__(self, path: Path, schema: MigrationSet, *, busy_timeout_s: float = 5.0) -> None:
        self.path = path
        self.schema = schema
        self.location = str(path)
        self._busy_timeout_s = busy_timeout_s

    async def applied(self) -> dict[str, float]:
        """Read only: a file that does not exist yet is not created, it just has nothing applied."""
        if not self.path.exists():
            return {}
        return await asyncio.to_thread(self._guarded, self._read_applied)

    async def apply(self) -> list[str]:
        return await asyncio.to_thread(self._guarded, self._apply)

    async def close(self) -> None:
        """Nothing is held open between calls."""

    def _guarded(self, work: Callable[[], T]) -> T:
        try:
            return work()
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"sqlite {self.path}: {exc}") from exc

    def _read_applied(self) -> dict[str, float]:
        uri = self.path.resolve().as_uri() + "?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=self._busy_timeout_s)) as conn:
            return applied_migrations(conn, self.schema)

    def _apply(self) -> list[str]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None)
        with closing(conn):
            conn.execute("PRAGMA journal_mode=WAL")  # what every store on the file sets; it persists
            return apply_migrations(conn, self.schema)
