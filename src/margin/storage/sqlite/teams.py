"""The object store (teams, budgets, rate limits and their audit trail) on SQLite."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from margin.storage.sqlite.transactions import transaction
from margin.storage.sqlite.worker import SqliteWorker
from margin.storage.team_sql import ObjectQueries, ObjectSql, change_values, object_values, update_values
from margin.storage.teams import Change, DuplicateObject, ObjectKind, StoredObject

SQL = ObjectSql(param="?")


def _create(conn: sqlite3.Connection, obj: StoredObject, change: Change) -> None:
    with transaction(conn):
        try:
            conn.execute(SQL.insert_object, object_values(obj))
        except sqlite3.IntegrityError as exc:
            raise DuplicateObject(f"{obj.kind} {obj.object_id!r} ({obj.unique_key}) exists already") from exc
        conn.execute(SQL.insert_change, change_values(change))


def _update(conn: sqlite3.Connection, obj: StoredObject, expected_version: int, change: Change) -> bool:
    with transaction(conn):
        try:
            cursor = conn.execute(SQL.update_object, update_values(obj, expected_version))
        except sqlite3.IntegrityError as exc:
            raise DuplicateObject(f"another {obj.kind} is {obj.unique_key}") from exc
        if cursor.rowcount != 1:
            return False
        conn.execute(SQL.insert_change, change_values(change))
    return True


def _delete(
    conn: sqlite3.Connection, kind: ObjectKind, object_id: str, change: Change, expected_version: int | None
) -> bool:
    with transaction(conn):
        if conn.execute(*SQL.deletion(kind, object_id, expected_version)).rowcount != 1:
            return False
        conn.execute(SQL.insert_change, change_values(change))
    return True


def _rows(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(sql, tuple(params)).fetchall()


def _write(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> int:
    return conn.execute(sql, tuple(params)).rowcount


class SqliteObjectStore(ObjectQueries):
    sql = SQL

    def __init__(self, path: Path | str | None = None, *, worker: SqliteWorker | None = None) -> None:
        if worker is None:
            if path is None:
                raise ValueError("SqliteObjectStore needs a path or a worker")
            worker = SqliteWorker(path)
        self.worker = worker

    async def migrate(self) -> list[str]:
        return await self.worker.migrate()

    async def _rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return await self.worker.call(_rows, sql, params)

    async def _write(self, sql: str, params: Sequence[Any]) -> int:
        return await self.worker.call(_write, sql, params)

    # --- what shares a transaction with its audit row (the rest: ObjectQueries) ---------------------
    async def create(self, obj: StoredObject, change: Change) -> None:
        await self.worker.call(_create, obj, change)

    async def update(self, obj: StoredObject, expected_version: int, change: Change) -> bool:
        return await self.worker.call(_update, obj, expected_version, change)

    async def delete(
        self, kind: ObjectKind, object_id: str, change: Change, expected_version: int | None = None
    ) -> bool:
        return await self.worker.call(_delete, kind, object_id, change, expected_version)

    async def close(self) -> None:
        await self.worker.close()
