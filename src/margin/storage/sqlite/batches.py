"""The batch store on SQLite: its own connection thread on the database file. A claim is one
BEGIN IMMEDIATE transaction (pick, then lease), so two workers on the file never take one chunk."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from margin.storage.batch_sql import (
    BatchQueries,
    BatchSql,
    batch_from,
    count_values,
    finish_values,
    line_values,
)
from margin.storage.batches import BatchRecord, ChunkLease, LineResult, LineSpec
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


class SqliteBatchStore(BatchQueries):
    sql = SQL

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

    def _money(self, amount: Decimal) -> str:
        return money_text(amount)  # TEXT: exact, added by dec_add

    # --- batches (what shares a transaction; the rest: BatchQueries) --------------------------------
    async def add_lines(self, batch_id: str, lines: Sequence[LineSpec]) -> None:
        if lines:
            await self.worker.call(_write_many, SQL.insert_line, [line_values(batch_id, s) for s in lines])

    async def open_batch(self, batch_id: str, *, chunk_lines: int, now: float) -> bool:
        return await self.worker.call(_open, batch_id, chunk_lines, now)

    # --- running lines ------------------------------------------------------------------------------
    async def claim_chunk(self, owner: str, *, now: float, lease_s: float) -> ChunkLease | None:
        return await self.worker.call(_claim_chunk, owner, now, lease_s)

    async def finish_line(self, batch_id: str, result: LineResult) -> bool:
        return await self.worker.call(_finish, batch_id, result)

    # --- batch-level leases -------------------------------------------------------------------------
    async def claim_batch(self, owner: str, *, now: float, lease_s: float) -> BatchRecord | None:
        return await self.worker.call(_claim_batch, owner, now, lease_s)

    async def release_owners(self, owners: Collection[str]) -> int:
        return await self.worker.call(_release_owners, list(owners)) if owners else 0

    async def close(self) -> None:
        await self.worker.close()
