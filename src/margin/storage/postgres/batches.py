"""The batch store on PostgreSQL, shared by replicas: a claim picks the oldest free chunk (or batch)
`FOR UPDATE SKIP LOCKED` and leases it in the same transaction, so replicas claiming at once take
different chunks and never wait on each other; a lease not renewed expires and is taken again."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from decimal import Decimal

from margin.storage.batch_sql import (
    BatchQueries,
    BatchSql,
    batch_from,
    count_values,
    finish_values,
    line_values,
)
from margin.storage.batches import BatchRecord, ChunkLease, LineResult, LineSpec
from margin.storage.postgres.session import PgStore

SQL = BatchSql(param="%s", money_add="{a} + {b}", lock=" FOR UPDATE OF c SKIP LOCKED")
BATCH_SQL = BatchSql(param="%s", money_add="{a} + {b}", lock=" FOR UPDATE OF b SKIP LOCKED")


class PostgresBatchStore(PgStore, BatchQueries):
    sql = SQL

    def _money(self, amount: Decimal) -> Decimal:
        return amount  # NUMERIC: exact as it is

    # --- batches (what shares a transaction; the rest: BatchQueries) --------------------------------
    async def add_lines(self, batch_id: str, lines: Sequence[LineSpec]) -> None:
        if not lines:
            return
        async with self.session.session() as conn, conn.transaction(), conn.cursor() as cursor:
            await cursor.executemany(SQL.insert_line, [line_values(batch_id, s) for s in lines])

    async def open_batch(self, batch_id: str, *, chunk_lines: int, now: float) -> bool:
        async with self.session.session() as conn, conn.transaction():
            cursor = await conn.execute(SQL.open_batch, (now, batch_id, batch_id))
            if cursor.rowcount != 1:
                return False
            await conn.execute(SQL.assign_chunks, (chunk_lines, batch_id))
            await conn.execute(SQL.insert_chunks, (now, batch_id))
        return True

    # --- running lines ------------------------------------------------------------------------------
    async def claim_chunk(self, owner: str, *, now: float, lease_s: float) -> ChunkLease | None:
        async with self.session.session() as conn, conn.transaction():
            row = await (await conn.execute(SQL.pick_chunk, (now, now, now))).fetchone()
            if row is None:
                return None
            until = now + lease_s
            await conn.execute(SQL.lease_chunk, (owner, until, row[0], row[1]))
        return ChunkLease(str(row[0]), int(row[1]), owner, until)

    async def finish_line(self, batch_id: str, result: LineResult) -> bool:
        async with self.session.session() as conn, conn.transaction():
            cursor = await conn.execute(SQL.finish_line, finish_values(batch_id, result, money=self._money))
            if cursor.rowcount != 1:
                return False
            await conn.execute(SQL.count_line, count_values(batch_id, result, money=self._money))
        return True

    # --- batch-level leases -------------------------------------------------------------------------
    async def claim_batch(self, owner: str, *, now: float, lease_s: float) -> BatchRecord | None:
        async with self.session.session() as conn, conn.transaction():
            row = await (await conn.execute(BATCH_SQL.pick_batch, (now, now))).fetchone()
            if row is None:
                return None
            record = batch_from(row)
            await conn.execute(SQL.lease_batch, (owner, now + lease_s, record.batch_id))
        return record

    async def release_owners(self, owners: Collection[str]) -> int:
        if not owners:
            return 0
        chunks, batches = SQL.release_owners(len(owners))
        async with self.session.session() as conn, conn.transaction():
            released = (await conn.execute(chunks, tuple(owners))).rowcount
            released += (await conn.execute(batches, tuple(owners))).rowcount
        return released

    async def close(self) -> None:
        await self.session.close()
