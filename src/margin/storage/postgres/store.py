"""The PostgreSQL ledger store: psycopg 3 async, one connection used under a lock, reconnecting after
a failure. Same schema and statements as SQLite; money is NUMERIC, so SQL arithmetic is exact.

A write is one transaction of three statements, each taking the whole batch as column arrays
(`INSERT ... SELECT * FROM unnest(...)`): the rows, `ON CONFLICT (attempt_id) DO NOTHING RETURNING
attempt_id`; then the rollup and timing upserts for exactly the rows inserted, in key order so
that replicas writing the same cells lock them in the same order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import TupleRow

from margin.storage.ledger_ops import (
    audit_from_values,
    audit_params,
    bucket_params,
    bucket_rows,
    bucket_spend_params,
    bucket_spend_rows,
    cost_change_params,
    percentile_points,
    report_rows,
    reprice_deltas,
    rollup_params,
    segment_params,
    spend_included,
)
from margin.storage.ledger_row import USAGE_COLUMNS, LedgerRow
from margin.storage.ledger_schema import (
    COLUMN_KINDS,
    COLUMN_NAMES,
    ROLLUP_TABLE,
    quantize_money,
    row_from_values,
    row_values,
)
from margin.storage.ledger_sql import LedgerSql
from margin.storage.postgres.session import Connection, PgSession
from margin.storage.protocols import AuditEntry, BucketRow, CostChange, GroupBy, ReportRow, Timings
from margin.storage.request_log import RequestQuery
from margin.storage.rollups import (
    MINUTE,
    ROLLUP_INT_COLUMNS,
    ROLLUP_MONEY_COLUMNS,
    rollup_deltas,
    rollup_segments,
    timing_segments,
)
from margin.storage.timing import (
    BIN_COLUMNS,
    TOTAL_COLUMNS,
    dense_columns,
    timing_buckets,
    timings_by_value,
)

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


class PostgresLedgerStore:
    """LedgerStore on PostgreSQL. Opening does no I/O; the first call connects."""

    def __init__(self, url: str, *, connect_timeout_s: int = 5, statement_timeout_ms: int = 30_000) -> None:
        self.url = url
        self._pg = PgSession(url, connect_timeout_s=connect_timeout_s, statement_timeout_ms=statement_timeout_ms)

    def _session(self) -> AbstractAsyncContextManager[Connection]:
        """The connection, held alone; a driver error drops it (the next call reconnects)."""
        return self._pg.session()

    # -- schema

    async def migrate(self) -> list[str]:
        return await self._pg.migrate()

    # -- writes

    async def write(self, rows: Sequence[LedgerRow]) -> None:
        unique = list({row.attempt_id: row for row in reversed(rows)}.values())[::-1]
        if not unique:
            return
        columns = _row_columns(unique)
        async with self._session() as conn, conn.transaction(), conn.cursor() as cursor:
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
        async with self._session() as conn, conn.transaction(), conn.cursor() as cursor:
            await cursor.execute(SQL.reprice_read(len(latest)) + " FOR UPDATE", [c.attempt_id for c in latest])
            stored = await cursor.fetchall()
            found = {str(record[0]) for record in stored}
            present = [c for c in latest if c.attempt_id in found]
            deltas = reprice_deltas(stored, present)
            params = [cost_change_params(c, quantize_money, _same_bool) for c in present]
            await cursor.executemany(SQL.update_costs(), params)
            await _upsert(cursor, ROLLUP_UPSERT, rollup_params(deltas, quantize_money))

    async def record_audit(self, entry: AuditEntry) -> None:
        async with self._session() as conn:
            await conn.execute(SQL.insert_audit(), audit_params(entry, quantize_money))

    async def _delete(self, sql: str, params: Sequence[Any]) -> int:
        async with self._session() as conn:
            cursor = await conn.execute(sql, params)
            return cursor.rowcount

    async def prune(self, before: float, *, batch_size: int = 5000) -> int:
        deleted = 0
        while True:
            n = await self._delete(SQL.prune_rows(), (before, batch_size))
            deleted += n
            if n < batch_size:
                break
        first_kept_minute = int(before // MINUTE) * MINUTE
        params = (first_kept_minute, batch_size)  # timing cells are hours and days: none to prune
        while await self._delete(SQL.prune_minutes(ROLLUP_TABLE), params) >= batch_size:
            pass
        return deleted

    # -- reads

    async def count(self) -> int:
        async with self._session() as conn:
            cursor = await conn.execute(SQL.count())
            found = await cursor.fetchone()
        return int(found[0]) if found is not None else 0

    async def query_rows(self, since: float, until: float, *, page_size: int = 500) -> AsyncIterator[LedgerRow]:
        after: tuple[float, str] = (since, "")
        while True:
            async with self._session() as conn:
                cursor = await conn.execute(SQL.page(), (since, until, after[0], after[0], after[1], page_size))
                page = [row_from_values(record) for record in await cursor.fetchall()]
            for row in page:
                yield row
            if len(page) < page_size:
                return
            after = (page[-1].ts, page[-1].attempt_id)

    async def spend_report(
        self, since: float, until: float, group_by: GroupBy, *, histograms: bool = True
    ) -> list[ReportRow]:
        segments = rollup_segments(since, until)
        if not segments:
            return []
        params = segment_params(group_by, segments)
        hours = timing_segments(since, until) if histograms else []
        timings: list[Any] = []
        async with self._session() as conn, conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            totals = await (await conn.execute(SQL.report(len(segments)), params)).fetchall()
            if hours:
                sql = SQL.timing_report(len(hours))
                timings = await (await conn.execute(sql, segment_params(group_by, hours))).fetchall()
        return report_rows(totals, timings_by_value(timings))

    async def bucket_report(self, since: float, until: float, group_by: GroupBy, period_s: int) -> list[BucketRow]:
        params = bucket_params(since, until, group_by, period_s)
        async with self._session() as conn:
            records = await (await conn.execute(SQL.bucket_report(), params)).fetchall()
        return bucket_rows(records, period_s)

    async def bucket_spend(
        self,
        since: float,
        until: float,
        group_by: GroupBy,
        period_s: int,
        labels: Mapping[str, str],
        included: Sequence[str] | None = None,
    ) -> list[tuple[int, str | None, Decimal]]:
        params = bucket_spend_params(since, until, group_by, period_s, labels, included)
        n = spend_included(labels, included)
        if n == 0:
            return []
        async with self._session() as conn:
            records = await (await conn.execute(SQL.bucket_spend(len(labels), n), params)).fetchall()
        return bucket_spend_rows(records)

    async def bucket_percentiles(
        self, since: float, until: float, group_by: GroupBy, period_s: int, q: float
    ) -> list[tuple[int, str, str, int]]:
        return percentile_points(await self.bucket_timings(since, until, group_by, period_s), q)

    async def bucket_timings(
        self, since: float, until: float, group_by: GroupBy, period_s: int
    ) -> list[tuple[int, str, Timings]]:
        params = bucket_params(since, until, group_by, period_s)
        async with self._session() as conn:
            records = await (await conn.execute(SQL.bucket_timings(), params)).fetchall()
        return timing_buckets(records)

    async def request_rows(self, request_id: str) -> list[LedgerRow]:
        async with self._session() as conn:
            cursor = await conn.execute(SQL.request_rows(), (request_id,))
            return [row_from_values(record) for record in await cursor.fetchall()]

    async def list_requests(self, query: RequestQuery) -> list[LedgerRow]:
        sql, params = SQL.list_requests(query)
        async with self._session() as conn:
            cursor = await conn.execute(sql, params)
            return [row_from_values(record) for record in await cursor.fetchall()]

    async def audit_log(self, limit: int = 100) -> list[AuditEntry]:
        async with self._session() as conn:
            cursor = await conn.execute(SQL.select_audit(), (limit,))
            return [audit_from_values(record) for record in await cursor.fetchall()]

    async def health(self) -> bool:
        return await self._pg.health()

    async def close(self) -> None:
        await self._pg.close()
