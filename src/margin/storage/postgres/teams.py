"""The object store (teams, budgets, rate limits and their audit trail) on PostgreSQL: what every
replica reads, each change and its audit row in one transaction."""

from __future__ import annotations

import psycopg

from margin.storage.postgres.session import PgStore
from margin.storage.protocols import StorageError
from margin.storage.team_sql import ObjectQueries, ObjectSql, change_values, object_values, update_values
from margin.storage.teams import Change, DuplicateObject, ObjectKind, StoredObject

SQL = ObjectSql(param="%s")


def _duplicate(exc: StorageError) -> bool:
    return isinstance(exc.__cause__, psycopg.errors.UniqueViolation)


class PostgresObjectStore(PgStore, ObjectQueries):
    sql = SQL

    # --- what shares a transaction with its audit row (the rest: ObjectQueries) ---------------------
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

    async def close(self) -> None:
        await self.session.close()
