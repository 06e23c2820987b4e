"""The PostgreSQL ledger store: psycopg 3 async, one connection used under a lock, reconnecting after
a failure. Same schema and statements as SQLite; money is NUMERIC, so SQL arithmetic is exact.

A write is one transaction of three statements, each taking the whole batch as column arrays
(`INSERT ... SELECT * FROM unnest(...)`): the rows, `ON CONFLICT (attempt_id) DO NOTHING RETURNING
attempt_id`; then the rollup and timing upserts for exactly the rows inserted, in key order so
that replicas writing the same cells lock them in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import TupleRow

from margin.storage.ledger_ops import cost_change_params, report_rows, reprice_deltas, rollup_params, segment_params
from margin.storage.ledger_row import USAGE_COLUMNS, LedgerRow
from margin.storage.ledger_schema import COLUMN_KINDS, COLUMN_NAMES, quantize_money, row_values
from margin.storage.ledger_sql import LedgerQueries, LedgerSql, Segments
from margin.storage.postgres.session import PgSession, PgStore
from margin.storage.protocols import CostChange, GroupBy, ReportRow
from margin.storage.rollups import ROLLUP_INT_COLUMNS, ROLLUP_MONEY_COLUMNS, rollup_deltas
from margin.storage.timing import BIN_COLUMNS, TOTAL_COLUMNS, dense_columns, timings_by_value

SQL = LedgerSql(param="%s", money_add="{a} + {b}", money_sum="SUM", row_id="ctid")
_KEY_TYPES = ("integer", "bigint", "text", "text")
_FLOAT_COLUMNS = frozenset({"ts", "latency_ms", "ttft_ms", "tokens_per_s"})
_INT_COLUMNS = frozenset({"attempt_index", "tier", "fallback_index", *USAGE_COLUMNS})
_KIND_TYPES = {"money": "numeric", "bool": "boolean", "tags": "text", "extra": "text"}


def _column_type(name: str, kind: str) -> str:
    if kind != "plain":
        return _KIND_TYPES[kind]
    return "double precision" if name in _FLOAT_COLUMNS else "bigint" if name in _INT_COLUMNS else "text"


INSERT_ROWS = SQL.insert_rows(
    returning=True, column_types=[_column_type(n, k) for n, k in zip(COLUMN_NAMES, COLUMN_KINDS, strict=True)]
)
ROLLUP_UPSERT = SQL.rollup_upsert(
    (*_KEY_TYPES, *["bigint"] * len(ROLLUP_INT_COLUMNS), *["numeric"] * len(ROLLUP_MONEY_COLUMNS))
)
TIMING_UPSERT = SQL.timing_upsert(BIN_COLUMNS, (*_KEY_TYPES, *["bigint"] * (len(TOTAL_COLUMNS) + len(BIN_COLUMNS))))


def _same_bool(value: bool) -> bool:
    return value


def _columns(records: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    """Row tuples -> one list per column: the parameters of an `unnest` statement."""
    return [list(column) for column in zip(*records, strict=True)]


_FLOAT_POSITIONS = [i for i, name in enumerate(COLUMN_NAMES) if name in _FLOAT_COLUMNS]


def _row_columns(rows: Sequence[LedgerRow]) -> list[list[Any]]:
    """Column arrays of rows; float columns made all-float (an int latency would make a mixed array)."""
    columns = _columns([row_values(row, money=quantize_money, boolean=_same_bool) for row in rows])
    for i in _FLOAT_POSITIONS:
        columns[i] = [None if value is None else float(value) for value in columns[i]]
    return columns


async def _upsert(cursor: psycopg.AsyncCursor[TupleRow], sql: str, records: Sequence[tuple[Any, ...]]) -> None:
    if records:
        await cursor.execute(sql, _columns(records))


class PostgresLedgerStore(PgStore, LedgerQueries):
    """LedgerStore on PostgreSQL. Opening does no I/O; the first call connects. The one-statement
    reads and writes: LedgerQueries."""

    sql = SQL

    def __init__(self, url: str, *, connect_timeout_s: int = 5, statement_timeout_ms: int = 30_000) -> None:
        super().__init__(
            session=PgSession(url, connect_timeout_s=connect_timeout_s, statement_timeout_ms=statement_timeout_ms)
        )
        self.url = url

    def _money(self, amount: Decimal) -> Decimal:
        return quantize_money(amount)  # NUMERIC: exact, at the ledger's scale

    # -- writes

    async def write(self, rows: Sequence[LedgerRow]) -> None:
        unique = list({row.attempt_id: row for row in reversed(rows)}.values())[::-1]
        if not unique:
            return
        columns = _row_columns(unique)
        async with self.session.session() as conn, conn.transaction(), conn.cursor() as cursor:
            await cursor.execute(INSERT_ROWS, columns)
            inserted = {attempt_id for (attempt_id,) in await cursor.fetchall()}
            fresh = [row for row in unique if row.attempt_id in inserted]
            if not fresh:
                return
            deltas, timings = rollup_deltas(fresh)
            await _upsert(cursor, ROLLUP_UPSERT, rollup_params(deltas, quantize_money))
            if timings:
                await cursor.execute(TIMING_UPSERT, dense_columns(timings))

    async def update_costs(self, changes: Sequence[CostChange]) -> None:
        latest = list({change.attempt_id: change for change in changes}.values())
        if not latest:
            return
        async with self.session.session() as conn, conn.transaction(), conn.cursor() as cursor:
            await cursor.execute(SQL.reprice_read(len(latest)) + " FOR UPDATE", [c.attempt_id for c in latest])
            stored = await cursor.fetchall()
            found = {str(record[0]) for record in stored}
            present = [c for c in latest if c.attempt_id in found]
            deltas = reprice_deltas(stored, present)
            params = [cost_change_params(c, quantize_money, _same_bool) for c in present]
            await cursor.executemany(SQL.update_costs(), params)
            await _upsert(cursor, ROLLUP_UPSERT, rollup_params(deltas, quantize_money))

    # -- reads

    async def _report(self, group_by: GroupBy, segments: Segments, hours: Segments) -> list[ReportRow]:
        """A spend report's totals and timings, read in one snapshot."""
        timings: list[Any] = []
        async with self.session.session() as conn, conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            totals = await (
                await conn.execute(SQL.report(len(segments)), segment_params(group_by, segments))
            ).fetchall()
            if hours:
                sql = SQL.timing_report(len(hours))
                timings = await (await conn.execute(sql, segment_params(group_by, hours))).fetchall()
        return report_rows(totals, timings_by_value(timings))

    async def health(self) -> bool:
        return await self.session.health()

    async def close(self) -> None:
        await self.session.close()
