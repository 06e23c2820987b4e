"""The object store (teams, budgets, rate limits and their audit trail) on PostgreSQL: what every
replica reads, each change and its audit row in one transaction."""

from __future__ import annotations

from typing import Any

import psycopg

from margin.storage.postgres.session import PgStore
from margin.storage.protocols import StorageError
from margin.storage.team_sql import (
    ObjectSql,
    change_from,
    change_params,
    change_values,
    object_from,
    object_values,
    update_values,
)
from margin.storage.teams import Change, DuplicateObject, ObjectKind, StoredObject

SQL = ObjectSql(param="%s")


def _duplicate(exc: StorageError) -> bool:
    return isinstance(exc.__cause__, psycopg.errors.UniqueViolation)


class PostgresObjectStore(PgStore):
    async def create(self, obj: StoredObject, change: Change) -> None:
        try:
            async with self.session.session() as conn, conn.transaction():
                await conn.execute(SQL.insert_object, object_values(obj))
                await conn.execute(SQL.insert_change, change_values(change))
        except StorageError as exc:
            if _duplicate(exc):
                raise DuplicateObject(f"{obj.kind} {obj.object_id!r} ({obj.unique_key}) exists already") from None
            raise

    async def update(self, obj: StoredObject, expected_version: int, change: Change) -> bool:
        try:
            async with self.session.session() as conn, conn.transaction():
                cursor = await conn.execute(SQL.update_object, update_values(obj, expected_version))
                if cursor.rowcount != 1:
                    return False
                await conn.execute(SQL.insert_change, change_values(change))
        except StorageError as exc:
            if _duplicate(exc):
                raise DuplicateObject(f"another {obj.kind} is {obj.unique_key}") from None
            raise
        return True

    async def delete(
        self, kind: ObjectKind, object_id: str, change: Change, expected_version: int | None = None
    ) -> bool:
        async with self.session.session() as conn, conn.transaction():
            cursor = await conn.execute(*SQL.deletion(kind, object_id, expected_version))
            if cursor.rowcount != 1:
                return False
            await conn.execute(SQL.insert_change, change_values(change))
        return True

    async def record(self, change: Change) -> None:
        async with self.session.session() as conn:
            await conn.execute(SQL.insert_change, change_values(change))

    async def get(self, kind: ObjectKind, object_id: str) -> StoredObject | None:
        rows = await self._rows(SQL.select_one, (kind, object_id))
        return object_from(rows[0]) if rows else None

    async def objects(self, kind: ObjectKind | None = None) -> list[StoredObject]:
        params: tuple[Any, ...] = () if kind is None else (kind,)
        return [object_from(r) for r in await self._rows(SQL.select_all(kind is not None), params)]

    async def changes(
        self,
        *,
        kind: ObjectKind | None = None,
        object_id: str | None = None,
        before_seq: int | None = None,
        limit: int = 100,
    ) -> list[Change]:
        sql, _ = SQL.select_changes(kind is not None, object_id is not None, before_seq is not None)
        rows = await self._rows(sql, change_params(kind, object_id, before_seq, limit))
        return [change_from(r) for r in rows]

    async def close(self) -> None:
        await self.session.close()
