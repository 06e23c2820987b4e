"""Virtual keys on PostgreSQL, shared by every replica."""

from __future__ import annotations

from typing import Any

import psycopg

from margin.storage.key_rows import SELECT_KEYS, insert_keys_sql, key_from_values, key_values
from margin.storage.postgres.session import PgStore
from margin.storage.protocols import KeyRecord, StorageError

_INSERT = insert_keys_sql("%s")
_FIND = (
    f"({SELECT_KEYS} WHERE secret_hash = %s) UNION ALL "
    f"({SELECT_KEYS} WHERE previous_hash = %s AND previous_expires_at > %s) LIMIT 1"
)
_ROTATE = (
    "UPDATE margin_keys SET previous_hash = CASE WHEN %s > 0 THEN secret_hash END, "
    "previous_expires_at = CASE WHEN %s > 0 THEN %s::float8 END, secret_hash = %s, prefix = %s, rotated_at = %s "
    "WHERE key_id = %s AND revoked_at IS NULL"
)
_REVOKE = (
    "UPDATE margin_keys SET revoked_at = %s, previous_hash = NULL, previous_expires_at = NULL "
    "WHERE key_id = %s AND revoked_at IS NULL"
)


class PostgresKeyStore(PgStore):
    async def insert_key(self, record: KeyRecord) -> None:
        try:
            async with self.session.session() as conn:
                await conn.execute(_INSERT, key_values(record))
        except StorageError as exc:
            if isinstance(exc.__cause__, psycopg.errors.UniqueViolation):
                raise StorageError(f"key {record.key_id} already exists") from None
            raise

    async def _one(self, sql: str, params: tuple[Any, ...]) -> KeyRecord | None:
        async with self.session.session() as conn:
            cursor = await conn.execute(sql, params)
            row = await cursor.fetchone()
        return None if row is None else key_from_values(row)

    async def find_key(self, secret_hash: str, now: float) -> KeyRecord | None:
        return await self._one(_FIND, (secret_hash, secret_hash, now))

    async def get_key(self, key_id: str) -> KeyRecord | None:
        return await self._one(f"{SELECT_KEYS} WHERE key_id = %s", (key_id,))

    async def list_keys(self) -> list[KeyRecord]:
        async with self.session.session() as conn:
            cursor = await conn.execute(f"{SELECT_KEYS} ORDER BY created_at, key_id")
            return [key_from_values(row) for row in await cursor.fetchall()]

    async def count_keys(self) -> int:
        async with self.session.session() as conn:
            cursor = await conn.execute("SELECT count(*) FROM margin_keys")
            row = await cursor.fetchone()
        return int(row[0]) if row is not None else 0

    async def rotate_key(
        self, key_id: str, *, secret_hash: str, prefix: str, now: float, grace_s: float
    ) -> KeyRecord | None:
        async with self.session.session() as conn:
            cursor = await conn.execute(_ROTATE, (grace_s, grace_s, now + grace_s, secret_hash, prefix, now, key_id))
            if cursor.rowcount == 0:
                return None
        return await self.get_key(key_id)

    async def revoke_key(self, key_id: str, now: float) -> KeyRecord | None:
        async with self.session.session() as conn:
            await conn.execute(_REVOKE, (now, key_id))
        return await self.get_key(key_id)

    async def close(self) -> None:
        await self.session.close()
