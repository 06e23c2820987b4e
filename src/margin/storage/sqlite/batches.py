"""The batch store on SQLite: its own connection thread on the database file. A claim is one
BEGIN IMMEDIATE transaction (pick, then lease), so two workers on the file never take one chunk."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from pathlib import Path
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
from margin.storage.ledger_schema import money_text
from margin.storage.sqlite.functions import MONEY_ADD, register_money_functions
from margin.storage.sqlite.transactions import transaction
from margin.storage.sqlite.worker import SqliteWorker

SQL = BatchSql(param="?", money_add=MONEY_ADD)
Params = Sequence[Any]


def _rows(conn: sqlite3.Connection, sql: str, params: Params) -> list[tuple[Any, ...]]:
    return conn.execute(sql, tuple(params)).fetchall()


def _write(conn: sqlite3.Connection, sql: str, params: Params) -> int:
    with transaction(conn):
        return conn.execute(sql, tuple(params)).rowcount


def _write_many(conn: sqlite3.Connection, sql: str, rows: Sequence[Params]) -> None:
    with transaction(conn):
        conn.executemany(sql, [tuple(r) for r in rows])


def _open(conn: sqlite3.Connection, batch_id: str, chunk_lines: int, now: float) -> bool:
    with transaction(conn):
        if conn.execute(SQL.open_batch, (now, batch_id, batch_id)).rowcount != 1:
            return False
        conn.execute(SQL.assign_chunks, (chunk_lines, batch_id))
        conn.execute(SQL.insert_chunks, (now, batch_id))
    return True


def _claim_chunk(conn: sqlite3.Connection, owner: str, now: float, lease_s: float) -> ChunkLease | None:
    with transaction(conn):
        row = conn.execute(SQL.pick_chunk, (now, now, now)).fetchone()
        if row is None:
            return None
        until = now + lease_s
        conn.execute(SQL.lease_chunk, (owner, until, row[0], row[1]))
    return ChunkLease(str(row[0]), int(row[1]), owner, until)


def _finish(conn: sqlite3.Connection, batch_id: str, result: LineResult) -> bool:
    register_money_functions(conn)
    with transaction(conn):
        if conn.execute(SQL.finish_line, finish_values(batch_id, result, money=money_text)).rowcount != 1:
            return False
        conn.execute(SQL.count_line, count_values(batch_id, result, money=money_text))
    return True


def _claim_batch(conn: sqlite3.Connection, owner: str, now: float, lease_s: float) -> BatchRecord | None:
    with transaction(conn):
        row = conn.execute(SQL.pick_batch, (now, now)).fetchone()
        if row is None:
            return None
        record = batch_from(row)
        conn.execute(SQL.lease_batch, (owner, now + lease_s, record.batch_id))
    return record


def _release_owners(conn: sqlite3.Connection, owners: Sequence[str]) -> int:
    chunks, batches = SQL.release_owners(len(owners))
    with transaction(conn):
        released = conn.execute(chunks, tuple(owners)).rowcount
        released += conn.execute(batches, tuple(owners)).rowcount
    return released


class SqliteBatchStore:
    def __init__(self, path: Path | str | None = None, *, worker: SqliteWorker | None = None) -> None:
        if worker is None:
            if path is None:
                raise ValueError("SqliteBatchStore needs a path or a worker")
            worker = SqliteWorker(path)
        self.worker = worker

    async def migrate(self) -> list[str]:
        return await self.worker.migrate()

    async def _rows(self, sql: str, params: Params) -> list[tuple[Any, ...]]:
        return await self.worker.call(_rows, sql, params)

    async def _write(self, sql: str, params: Params) -> int:
        return await self.worker.call(_write, sql, params)

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
        params = [p for p in (owner, purpose, after) if p is not None]
        rows = [file_from(r) for r in await self._rows(sql, params)]
        return BatchPage(rows[:limit], len(rows) > limit)

    async def delete_file(self, file_id: str) -> bool:
        return await self._write(SQL.delete_file, (file_id,)) == 1

    # --- batches ------------------------------------------------------------------------------------
    async def add_batch(self, record: BatchRecord) -> None:
        await self._write(SQL.insert_batch, batch_values(record, money=money_text))

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
        params = [*change_values(changes, money=money_text), batch_id, *expected]
        return await self._write(sql, params) == 1

    async def add_lines(self, batch_id: str, lines: Sequence[LineSpec]) -> None:
        if lines:
            await self.worker.call(_write_many, SQL.insert_line, [line_values(batch_id, s) for s in lines])

    async def open_batch(self, batch_id: str, *, chunk_lines: int, now: float) -> bool:
        return await self.worker.call(_open, batch_id, chunk_lines, now)

    # --- running lines ------------------------------------------------------------------------------
    async def claim_chunk(self, owner: str, *, now: float, lease_s: float) -> ChunkLease | None:
        return await self.worker.call(_claim_chunk, owner, now, lease_s)

    async def renew_chunk(self, lease: ChunkLease, until: float) -> bool:
        return await self._write(SQL.renew_chunk, (until, lease.batch_id, lease.chunk_no, lease.owner)) == 1

    async def release_chunk(self, lease: ChunkLease, *, done: bool) -> None:
        await self._write(SQL.release_chunk, (done, lease.batch_id, lease.chunk_no, lease.owner))

    async def pending_lines(self, batch_id: str, chunk_no: int) -> list[LineSpec]:
        return [spec_from(r) for r in await self._rows(SQL.pending_lines, (batch_id, chunk_no))]

    async def finish_line(self, batch_id: str, result: LineResult) -> bool:
        return await self.worker.call(_finish, batch_id, result)

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
        return await self.worker.call(_claim_batch, owner, now, lease_s)

    async def renew_batch(self, batch_id: str, owner: str, until: float) -> bool:
        return await self._write(SQL.renew_batch, (until, batch_id, owner)) == 1

    async def release_batch(self, batch_id: str, owner: str) -> None:
        await self._write(SQL.release_batch, (batch_id, owner))

    async def release_owners(self, owners: Collection[str]) -> int:
        return await self.worker.call(_release_owners, list(owners)) if owners else 0

    async def lease_owners(self, now: float) -> list[str]:
        return sorted(str(r[0]) for r in await self._rows(SQL.lease_owners, (now, now)))

    async def close(self) -> None:
        await self.worker.close()
