"""SQL of the batch store, shared by SQLite and PostgreSQL: statements written once with `?`
placeholders (PostgreSQL's `%s` substituted) and records <-> column values."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

from margin.storage.batches import (
    UPDATABLE,
    BatchPage,
    BatchRecord,
    ChunkLease,
    FileRecord,
    LineResult,
    LineRow,
    LineSpec,
)

FILE_COLUMNS = "file_id, owner, purpose, filename, bytes, lines, created_at, blob"
BATCH_FIELDS = tuple(f.name for f in fields(BatchRecord))
BATCH_COLUMNS = ", ".join(BATCH_FIELDS)
_JSON_FIELDS = frozenset({"principal", "metadata", "errors", "native_hold"})
LINE_ROW_COLUMNS = "line_no, byte_offset, byte_length, custom_id, outcome, result"
# A batch whose lines may start: running, not past its window, not paused.
_RUNNABLE = (
    "b.status = 'in_progress' AND b.ending IS NULL AND b.expires_at > ? "
    "AND (b.paused_until IS NULL OR b.paused_until <= ?)"
)


@dataclass(frozen=True, slots=True)
class BatchSql:
    """The statements, for one driver's placeholder, exact money addition and row locking."""

    param: str  # "?" or "%s"
    money_add: str  # "dec_add({a}, {b})" (SQLite, exact on text) or "{a} + {b}" (NUMERIC)
    lock: str = ""  # " FOR UPDATE SKIP LOCKED" on PostgreSQL; SQLite's BEGIN IMMEDIATE locks the file

    def _p(self, sql: str) -> str:
        return sql.replace("?", self.param)

    # --- files --------------------------------------------------------------------------------------
    @property
    def insert_file(self) -> str:
        return self._p(
            f"INSERT INTO batch_files ({FILE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
        )

    @property
    def select_file(self) -> str:
        return self._p(f"SELECT {FILE_COLUMNS} FROM batch_files WHERE file_id = ?")

    def list_files(self, *, owner: bool, purpose: bool, after: bool, descending: bool, limit: int) -> str:
        where = ["TRUE"]
        if owner:
            where.append("owner = ?")
        if purpose:
            where.append("purpose = ?")
        if after:
            op = "<" if descending else ">"
            where.append(f"(created_at, file_id) {op} (SELECT created_at, file_id FROM batch_files WHERE file_id = ?)")
        order = "DESC" if descending else "ASC"
        return self._p(
            f"SELECT {FILE_COLUMNS} FROM batch_files WHERE {' AND '.join(where)} "
            f"ORDER BY created_at {order}, file_id {order} LIMIT {int(limit) + 1}"
        )

    @property
    def delete_file(self) -> str:
        return self._p("DELETE FROM batch_files WHERE file_id = ?")

    # --- batches ------------------------------------------------------------------------------------
    @property
    def insert_batch(self) -> str:
        marks = ", ".join("?" for _ in BATCH_FIELDS)
        return self._p(f"INSERT INTO batches ({BATCH_COLUMNS}) VALUES ({marks})")

    @property
    def select_batch(self) -> str:
        return self._p(f"SELECT {BATCH_COLUMNS} FROM batches WHERE batch_id = ?")

    def list_batches(self, *, owner: bool, after: bool, limit: int, api: bool = False) -> str:
        where = ["TRUE"]
        if owner:
            where.append("owner = ?")
        if api:
            where.append("api = ?")
        if after:
            where.append("(created_at, batch_id) < (SELECT created_at, batch_id FROM batches WHERE batch_id = ?)")
        return self._p(
            f"SELECT {BATCH_COLUMNS} FROM batches WHERE {' AND '.join(where)} "
            f"ORDER BY created_at DESC, batch_id DESC LIMIT {int(limit) + 1}"
        )

    def update_batch(self, names: Sequence[str], expected: int) -> str:
        unknown = [n for n in names if n not in UPDATABLE]
        if unknown:
            raise ValueError(f"batch fields that cannot be updated: {', '.join(unknown)}")
        sets = ", ".join(f"{name} = ?" for name in names)
        statuses = ", ".join("?" for _ in range(expected))
        return self._p(f"UPDATE batches SET {sets} WHERE batch_id = ? AND status IN ({statuses})")

    # --- lines and chunks ---------------------------------------------------------------------------
    @property
    def insert_line(self) -> str:
        return self._p(
            "INSERT INTO batch_lines (batch_id, line_no, byte_offset, byte_length, custom_id) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING"
        )

    @property
    def open_batch(self) -> str:
        return self._p(
            "UPDATE batches SET status = 'in_progress', in_progress_at = ?, "
            "total = (SELECT COUNT(*) FROM batch_lines WHERE batch_id = ?) WHERE batch_id = ? AND status = 'validating'"
        )

    @property
    def assign_chunks(self) -> str:
        return self._p("UPDATE batch_lines SET chunk_no = (line_no - 1) / ? WHERE batch_id = ?")

    @property
    def insert_chunks(self) -> str:
        return self._p(
            "INSERT INTO batch_chunks (batch_id, chunk_no, created_at) "
            "SELECT DISTINCT batch_id, chunk_no, ? FROM batch_lines WHERE batch_id = ? ON CONFLICT DO NOTHING"
        )

    @property
    def pick_chunk(self) -> str:
        return self._p(
            "SELECT c.batch_id, c.chunk_no FROM batch_chunks c JOIN batches b ON b.batch_id = c.batch_id "
            f"WHERE c.done = FALSE AND (c.lease_until IS NULL OR c.lease_until < ?) AND {_RUNNABLE} "
            f"ORDER BY c.created_at, c.batch_id, c.chunk_no LIMIT 1{self.lock}"
        )

    @property
    def lease_chunk(self) -> str:
        return self._p("UPDATE batch_chunks SET lease_owner = ?, lease_until = ? WHERE batch_id = ? AND chunk_no = ?")

    @property
    def renew_chunk(self) -> str:
        return self._p(
            "UPDATE batch_chunks SET lease_until = ? WHERE batch_id = ? AND chunk_no = ? AND lease_owner = ?"
        )

    @property
    def release_chunk(self) -> str:
        return self._p(
            "UPDATE batch_chunks SET lease_owner = NULL, lease_until = NULL, done = ? "
            "WHERE batch_id = ? AND chunk_no = ? AND lease_owner = ?"
        )

    @property
    def pending_lines(self) -> str:
        return self._p(
            "SELECT line_no, byte_offset, byte_length, custom_id FROM batch_lines "
            "WHERE batch_id = ? AND chunk_no = ? AND outcome IS NULL ORDER BY line_no"
        )

    @property
    def finish_line(self) -> str:
        return self._p(
            "UPDATE batch_lines SET outcome = ?, result = ?, request_id = ?, finished_at = ?, input_tokens = ?, "
            "output_tokens = ?, cost = ? WHERE batch_id = ? AND line_no = ? AND outcome IS NULL "
            "AND EXISTS (SELECT 1 FROM batches WHERE batch_id = ? AND status IN ('in_progress', 'cancelling'))"
        )

    @property
    def count_line(self) -> str:
        cost = self.money_add.format(a="cost", b="?")
        return self._p(
            "UPDATE batches SET completed = completed + ?, failed = failed + ?, input_tokens = input_tokens + ?, "
            f"output_tokens = output_tokens + ?, cost = {cost} WHERE batch_id = ?"
        )

    @property
    def live_leases(self) -> str:
        return self._p(
            "SELECT COUNT(*) FROM batch_chunks WHERE batch_id = ? AND lease_owner IS NOT NULL AND lease_until >= ?"
        )

    @property
    def unfinished_chunks(self) -> str:
        return self._p("SELECT COUNT(*) FROM batch_chunks WHERE batch_id = ? AND done = FALSE")

    @property
    def line_rows(self) -> str:
        return self._p(
            f"SELECT {LINE_ROW_COLUMNS} FROM batch_lines WHERE batch_id = ? AND line_no > ? ORDER BY line_no LIMIT ?"
        )

    def line_results(self, count: int) -> str:
        marks = ", ".join("?" for _ in range(count))
        return self._p(
            f"SELECT {LINE_ROW_COLUMNS} FROM batch_lines WHERE batch_id = ? AND line_no IN ({marks}) ORDER BY line_no"
        )

    # --- batch-level leases -------------------------------------------------------------------------
    @property
    def pick_batch(self) -> str:
        work = (
            "b.status IN ('validating', 'finalizing', 'cancelling') "
            "OR (b.status = 'in_progress' AND (b.ending IS NOT NULL OR b.expires_at <= ? OR NOT EXISTS "
            "(SELECT 1 FROM batch_chunks c WHERE c.batch_id = b.batch_id AND c.done = FALSE)))"
        )
        return self._p(
            f"SELECT {BATCH_COLUMNS} FROM batches b WHERE ({work}) AND (b.lease_until IS NULL OR b.lease_until < ?) "
            f"ORDER BY b.created_at LIMIT 1{self.lock}"
        )

    @property
    def lease_batch(self) -> str:
        return self._p("UPDATE batches SET lease_owner = ?, lease_until = ? WHERE batch_id = ?")

    @property
    def renew_batch(self) -> str:
        return self._p("UPDATE batches SET lease_until = ? WHERE batch_id = ? AND lease_owner = ?")

    @property
    def release_batch(self) -> str:
        return self._p(
            "UPDATE batches SET lease_owner = NULL, lease_until = NULL WHERE batch_id = ? AND lease_owner = ?"
        )

    def release_owners(self, count: int) -> tuple[str, str]:
        marks = ", ".join("?" for _ in range(count))
        return (
            self._p(f"UPDATE batch_chunks SET lease_owner = NULL, lease_until = NULL WHERE lease_owner IN ({marks})"),
            self._p(f"UPDATE batches SET lease_owner = NULL, lease_until = NULL WHERE lease_owner IN ({marks})"),
        )

    @property
    def lease_owners(self) -> str:
        return self._p(
            "SELECT lease_owner FROM batch_chunks WHERE lease_owner IS NOT NULL AND lease_until >= ? "
            "UNION SELECT lease_owner FROM batches WHERE lease_owner IS NOT NULL AND lease_until >= ?"
        )


# --- records <-> values ------------------------------------------------------------------------------


def file_values(record: FileRecord) -> tuple[Any, ...]:
    r = record
    return (r.file_id, r.owner, r.purpose, r.filename, r.bytes, r.lines, r.created_at, r.blob)


def file_from(row: Sequence[Any]) -> FileRecord:
    return FileRecord(str(row[0]), str(row[1]), str(row[2]), str(row[3]), int(row[4]), int(row[5]), float(row[6]),
                      str(row[7]))  # fmt: skip


def batch_values(record: BatchRecord, *, money: Callable[[Decimal], Any]) -> tuple[Any, ...]:
    return tuple(_column_value(name, getattr(record, name), money) for name in BATCH_FIELDS)


def _column_value(name: str, value: Any, money: Callable[[Decimal], Any]) -> Any:
    if name in _JSON_FIELDS:
        return None if value is None else json.dumps(value, separators=(",", ":"))
    if isinstance(value, Decimal):
        return money(value)
    return value


def change_values(changes: dict[str, Any], *, money: Callable[[Decimal], Any]) -> list[Any]:
    return [_column_value(name, value, money) for name, value in changes.items()]


def batch_from(row: Sequence[Any]) -> BatchRecord:
    values: dict[str, Any] = {}
    for name, value in zip(BATCH_FIELDS, row, strict=True):
        if name in _JSON_FIELDS:
            values[name] = None if value is None else json.loads(value)
        elif name == "cost":
            values[name] = Decimal(str(value)).normalize() if value is not None else Decimal(0)
        else:
            values[name] = value
    return BatchRecord(**values)


def line_values(batch_id: str, spec: LineSpec) -> tuple[Any, ...]:
    return (batch_id, spec.line_no, spec.offset, spec.length, spec.custom_id)


def spec_from(row: Sequence[Any]) -> LineSpec:
    return LineSpec(int(row[0]), int(row[1]), int(row[2]), str(row[3]))


def line_row_from(row: Sequence[Any]) -> LineRow:
    outcome = cast(Any, row[4])
    return LineRow(spec_from(row[:4]), outcome, None if row[5] is None else str(row[5]))


def finish_values(batch_id: str, r: LineResult, *, money: Callable[[Decimal], Any]) -> tuple[Any, ...]:
    return (r.outcome, r.result, r.request_id, r.finished_at, r.input_tokens, r.output_tokens, money(r.cost),
            batch_id, r.line_no, batch_id)  # fmt: skip


def count_values(batch_id: str, r: LineResult, *, money: Callable[[Decimal], Any]) -> tuple[Any, ...]:
    ok = r.outcome == "completed"
    return (int(ok), int(not ok), r.input_tokens, r.output_tokens, money(r.cost), batch_id)


class BatchQueries:
    """The batch store's one-statement reads and writes, the same on SQLite and PostgreSQL. A backend
    gives `sql` (its dialect), `_money` (how it stores a Decimal), `_rows` and `_write` (one statement,
    its rows or its rowcount), and keeps the statements that share a transaction (open, claims,
    finish, release_owners, add_lines)."""

    sql: BatchSql

    if TYPE_CHECKING:

        async def _rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]: ...
        async def _write(self, sql: str, params: Sequence[Any]) -> int: ...
        def _money(self, amount: Decimal) -> Any: ...

    # --- files --------------------------------------------------------------------------------------
    async def add_file(self, record: FileRecord) -> None:
        await self._write(self.sql.insert_file, file_values(record))

    async def get_file(self, file_id: str) -> FileRecord | None:
        rows = await self._rows(self.sql.select_file, (file_id,))
        return file_from(rows[0]) if rows else None

    async def list_files(
        self, owner: str | None, *, purpose: str | None, after: str | None, limit: int, descending: bool
    ) -> BatchPage:
        sql = self.sql.list_files(
            owner=owner is not None, purpose=purpose is not None, after=after is not None, descending=descending,
            limit=limit,
        )  # fmt: skip
        rows = [file_from(r) for r in await self._rows(sql, [p for p in (owner, purpose, after) if p is not None])]
        return BatchPage(rows[:limit], len(rows) > limit)

    async def delete_file(self, file_id: str) -> bool:
        return await self._write(self.sql.delete_file, (file_id,)) == 1

    # --- batches ------------------------------------------------------------------------------------
    async def add_batch(self, record: BatchRecord) -> None:
        await self._write(self.sql.insert_batch, batch_values(record, money=self._money))

    async def get_batch(self, batch_id: str) -> BatchRecord | None:
        rows = await self._rows(self.sql.select_batch, (batch_id,))
        return batch_from(rows[0]) if rows else None

    async def list_batches(
        self, owner: str | None, *, after: str | None, limit: int, api: str | None = None
    ) -> BatchPage:
        sql = self.sql.list_batches(owner=owner is not None, after=after is not None, limit=limit, api=api is not None)
        rows = [batch_from(r) for r in await self._rows(sql, [p for p in (owner, api, after) if p is not None])]
        return BatchPage(rows[:limit], len(rows) > limit)

    async def update_batch(self, batch_id: str, expected: Collection[str], changes: dict[str, Any]) -> bool:
        sql = self.sql.update_batch(list(changes), len(expected))
        return await self._write(sql, [*change_values(changes, money=self._money), batch_id, *expected]) == 1

    # --- running lines ------------------------------------------------------------------------------
    async def renew_chunk(self, lease: ChunkLease, until: float) -> bool:
        return await self._write(self.sql.renew_chunk, (until, lease.batch_id, lease.chunk_no, lease.owner)) == 1

    async def release_chunk(self, lease: ChunkLease, *, done: bool) -> None:
        await self._write(self.sql.release_chunk, (done, lease.batch_id, lease.chunk_no, lease.owner))

    async def pending_lines(self, batch_id: str, chunk_no: int) -> list[LineSpec]:
        return [spec_from(r) for r in await self._rows(self.sql.pending_lines, (batch_id, chunk_no))]

    async def live_leases(self, batch_id: str, now: float) -> int:
        return int((await self._rows(self.sql.live_leases, (batch_id, now)))[0][0])

    async def unfinished_chunks(self, batch_id: str) -> int:
        return int((await self._rows(self.sql.unfinished_chunks, (batch_id,)))[0][0])

    async def line_rows(self, batch_id: str, *, after_line: int, limit: int) -> list[LineRow]:
        return [line_row_from(r) for r in await self._rows(self.sql.line_rows, (batch_id, after_line, limit))]

    async def line_results(self, batch_id: str, line_nos: Sequence[int]) -> list[LineRow]:
        if not line_nos:
            return []
        rows = await self._rows(self.sql.line_results(len(line_nos)), (batch_id, *line_nos))
        return [line_row_from(r) for r in rows]

    # --- batch-level leases -------------------------------------------------------------------------
    async def renew_batch(self, batch_id: str, owner: str, until: float) -> bool:
        return await self._write(self.sql.renew_batch, (until, batch_id, owner)) == 1

    async def release_batch(self, batch_id: str, owner: str) -> None:
        await self._write(self.sql.release_batch, (batch_id, owner))

    async def lease_owners(self, now: float) -> list[str]:
        return sorted(str(r[0]) for r in await self._rows(self.sql.lease_owners, (now, now)))
