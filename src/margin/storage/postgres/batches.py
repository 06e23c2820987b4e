"""The batch store on PostgreSQL, shared by replicas: a claim picks the oldest free chunk (or batch)
`FOR UPDATE SKIP LOCKED` and leases it in the same transaction, so replicas claiming at once take
different chunks and never wait on each other; a lease not renewed expires and is taken again."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from decimal import Decimal
from typing import Any

from margin.storage.batch_sql import (
    BatchSql,
    batch_from,
    batch_values,
    change_values,
    count_values,
    file_from,
    file_values,
    finish_values,
    line_row_from,
    line_values,
    spec_from,
)
from margin.storage.batches import BatchPage, BatchRecord, ChunkLease, FileRecord, LineResult, LineRow, LineSpec
from margin.storage.postgres.session import PgStore

SQL = BatchSql(param="%s", money_add="{a} + {b}", lock=" FOR UPDATE OF c SKIP LOCKED")
BATCH_SQL = BatchSql(param="%s", money_add="{a} + {b}", lock=" FOR UPDATE OF b SKIP LOCKED")
Params = Sequence[Any]


def _money(amount: Decimal) -> Decimal:
    return amount


class PostgresBatchStore(PgStore):
    # --- files --------------------------------------------------------------------------------------
    async def add_file(self, record: FileRecord) -> None:
        await self._write(SQL.insert_file, file_values(record))

    async def get_file(self, file_id: str) -> FileRecord | None:
        rows = await self._rows(SQL.select_file, (file_id,))
        return file_from(rows[0]) if rows else None

    async def list_files(
        self, owner: str | None, *, purpose: str | None, after: str | None, limit: int, descending: bool
    ) -> BatchPage:
        sql = SQL.list_files(
            owner=owner is not None, purpose=purpose is not None, after=after is not None, descending=descending,
            limit=limit,
        )  # fmt: skip
        rows = [file_from(r) for r in await self._rows(sql, [p for p in (owner, purpose, after) if p is not None])]
        return BatchPage(rows[:limit], len(rows) > limit)

    async def delete_file(self, file_id: str) -> bool:
        return await self._write(SQL.delete_file, (file_id,)) == 1

    # --- batches ------------------------------------------------------------------------------------
    async def add_batch(self, record: BatchRecord) -> None:
        await self._write(SQL.insert_batch, batch_values(record, money=_money))

    async def get_batch(self, batch_id: str) -> BatchRecord | None:
        rows = await self._rows(SQL.select_batch, (batch_id,))
        return batch_from(rows[0]) if rows else None

    async def list_batches(
        self, owner: str | None, *, after: str | None, limit: int, api: str | None = None
    ) -> BatchPage:
        sql = SQL.list_batches(owner=owner is not None, after=after is not None, limit=limit, api=api is not None)
        rows = [batch_from(r) for r in await self._rows(sql, [p for p in (owner, api, after) if p is not None])]
        return BatchPage(rows[:limit], len(rows) > limit)

    async def update_batch(self, batch_id: str, expected: Collection[str], changes: dict[str, Any]) -> bool:
        sql = SQL.update_batch(list(changes), len(expected))
        return await self._write(sql, [*change_values(changes, money=_money), batch_id, *expected]) == 1

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

    async def renew_chunk(self, lease: ChunkLease, until: float) -> bool:
        return await self._write(SQL.renew_chunk, (until, lease.batch_id, lease.chunk_no, lease.owner)) == 1

    async def release_chunk(self, lease: ChunkLease, *, done: bool) -> None:
        await self._write(SQL.release_chunk, (done, lease.batch_id, lease.chunk_no, lease.owner))

    async def pending_lines(self, batch_id: str, chunk_no: int) -> list[LineSpec]:
        return [spec_from(r) for r in await self._rows(SQL.pending_lines, (batch_id, chunk_no))]

    async def finish_line(self, batch_id: str, result: LineResult) -> bool:
        async with self.session.session() as conn, conn.transaction():
            cursor = await conn.execute(SQL.finish_line, finish_values(batch_id, result, money=_money))
            if cursor.rowcount != 1:
                return False
            await conn.execute(SQL.count_line, count_values(batch_id, result, money=_money))
        return True

    async def live_leases(self, batch_id: str, now: float) -> int:
        return int((await self._rows(SQL.live_leases, (batch_id, now)))[0][0])

    async def unfinished_chunks(self, batch_id: str) -> int:
        return int((await self._rows(SQL.unfinished_chunks, (batch_id,)))[0][0])

    async def line_rows(self, batch_id: str, *, after_line: int, limit: int) -> list[LineRow]:
        return [line_row_from(r) for r in await self._rows(SQL.line_rows, (batch_id, after_line, limit))]

    async def line_results(self, batch_id: str, line_nos: Sequence[int]) -> list[LineRow]:
        if not line_nos:
            return []
        rows = await self._rows(SQL.line_results(len(line_nos)), (batch_id, *line_nos))
        return [line_row_from(r) for r in rows]

    # --- batch-level leases -------------------------------------------------------------------------
    async def claim_batch(self, owner: str, *, now: float, lease_s: float) -> BatchRecord | None:
        async with self.session.session() as conn, conn.transaction():
            row = await (await conn.execute(BATCH_SQL.pick_batch, (now, now))).fetchone()
            if row is None:
                return None
            record = batch_from(row)
            await conn.execute(SQL.lease_batch, (owner, now + lease_s, record.batch_id))
        return record

    async def renew_batch(self, batch_id: str, owner: str, until: float) -> bool:
        return await self._write(SQL.renew_batch, (until, batch_id, owner)) == 1

    async def release_batch(self, batch_id: str, owner: str) -> None:
        await self._write(SQL.release_batch, (batch_id, owner))

    async def release_owners(self, owners: Collection[str]) -> int:
        if not owners:
            return 0
        chunks, batches = SQL.release_owners(len(owners))
        async with self.session.session() as conn, conn.transaction():
            released = (await conn.execute(chunks, tuple(owners))).rowcount
            released += (await conn.execute(batches, tuple(owners))).rowcount
        return released

    async def lease_owners(self, now: float) -> list[str]:
        return sorted(str(r[0]) for r in await self._rows(SQL.lease_owners, (now, now)))

    async def close(self) -> None:
        await self.session.close()
