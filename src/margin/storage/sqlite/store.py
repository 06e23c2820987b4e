"""The SQLite ledger store: stdlib sqlite3 on one dedicated thread, WAL, synchronous=NORMAL.

Every call runs on the store's own single-thread executor, which owns the connection, so the event
loop never blocks on disk and statements never interleave. A write is one `BEGIN IMMEDIATE`
transaction: skip attempt_ids already stored, executemany the new rows, upsert their rollups.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

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
from margin.storage.ledger_row import LedgerRow
from margin.storage.ledger_schema import ROLLUP_TABLE, money_text, row_from_values, row_values
from margin.storage.ledger_sql import LedgerSql
from margin.storage.protocols import AuditEntry, BucketRow, CostChange, GroupBy, ReportRow, StorageError, Timings
from margin.storage.request_log import RequestQuery
from margin.storage.rollups import MINUTE, rollup_deltas, rollup_segments, timing_segments
from margin.storage.sqlite.functions import MONEY_ADD, MONEY_SUM, register_money_functions
from margin.storage.sqlite.transactions import apply_migrations, transaction
from margin.storage.timing import column_params, timing_buckets, timings_by_value

SQL = LedgerSql(param="?", money_add=MONEY_ADD, money_sum=MONEY_SUM, row_id="rowid")
MEMORY = ":memory:"
_ID_CHUNK = 500  # well under SQLite's bound-parameter limit
STATEMENTS = 512  # prepared statements kept: the timing upserts are one per bin column (timing.BIN_COLUMNS)
T = TypeVar("T")


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SqliteLedgerStore:
    """LedgerStore on one SQLite file (or `:memory:`). Opening does no I/O; the first call connects."""

    def __init__(self, path: Path | str, *, busy_timeout_s: float = 5.0) -> None:
        self.path = str(path)
        self._busy_timeout_s = busy_timeout_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="margin-sqlite")
        self._conn: sqlite3.Connection | None = None

    # -- plumbing (runs on the store's thread)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            if self.path != MEMORY:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=self._busy_timeout_s, isolation_level=None, cached_statements=STATEMENTS
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            register_money_functions(conn)
            self._conn = conn
        return self._conn

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"sqlite ledger {self.path}: {exc}") from exc

    # -- schema

    async def migrate(self) -> list[str]:
        return await self._call(self._migrate)

    def _migrate(self) -> list[str]:
        return apply_migrations(self._connection())

    # -- writes

    async def write(self, rows: Sequence[LedgerRow]) -> None:
        if rows:
            await self._call(self._write, list(rows))

    def _write(self, rows: list[LedgerRow]) -> None:
        conn = self._connection()
        with transaction(conn):
            fresh = self._not_stored(conn, rows)
            if not fresh:
                return
            conn.executemany(
                SQL.insert_rows(returning=False), [row_values(r, money=money_text, boolean=int) for r in fresh]
            )
            deltas, timings = rollup_deltas(fresh)
            conn.executemany(SQL.rollup_upsert(), rollup_params(deltas, money_text))
            for column, params in column_params(timings).items():
                conn.executemany(SQL.timing_upsert((column,)), params)

    @staticmethod
    def _not_stored(conn: sqlite3.Connection, rows: list[LedgerRow]) -> list[LedgerRow]:
        """Rows whose attempt_id is neither stored nor earlier in the batch (the write lock is held)."""
        unique = list({row.attempt_id: row for row in reversed(rows)}.values())[::-1]
        ids = [row.attempt_id for row in unique]
        stored: set[str] = set()
        for chunk in _chunks(ids, _ID_CHUNK):
            stored.update(found for (found,) in conn.execute(SQL.existing_ids(len(chunk)), list(chunk)))
        return [row for row in unique if row.attempt_id not in stored]

    async def update_costs(self, changes: Sequence[CostChange]) -> None:
        if changes:
            await self._call(self._update_costs, list({c.attempt_id: c for c in changes}.values()))

    def _update_costs(self, changes: list[CostChange]) -> None:
        conn = self._connection()
        with transaction(conn):
            stored: list[tuple[Any, ...]] = []
            for chunk in _chunks([c.attempt_id for c in changes], _ID_CHUNK):
                stored.extend(conn.execute(SQL.reprice_read(len(chunk)), list(chunk)))
            found = {str(record[0]) for record in stored}
            present = [c for c in changes if c.attempt_id in found]
            deltas = reprice_deltas(stored, present)
            conn.executemany(SQL.update_costs(), [cost_change_params(c, money_text, int) for c in present])
            conn.executemany(SQL.rollup_upsert(), rollup_params(deltas, money_text))

    async def record_audit(self, entry: AuditEntry) -> None:
        await self._call(self._execute, SQL.insert_audit(), audit_params(entry, money_text))

    def _execute(self, sql: str, params: Sequence[Any]) -> int:
        return self._connection().execute(sql, params).rowcount

    async def prune(self, before: float, *, batch_size: int = 5000) -> int:
        deleted = 0
        while True:
            n = await self._call(self._execute, SQL.prune_rows(), (before, batch_size))
            deleted += n
            if n < batch_size:
                break
        first_kept_minute = int(before // MINUTE) * MINUTE
        params = (first_kept_minute, batch_size)  # timing cells are hours and days: none to prune
        while await self._call(self._execute, SQL.prune_minutes(ROLLUP_TABLE), params) >= batch_size:
            pass
        return deleted

    # -- reads

    async def count(self) -> int:
        return await self._call(self._scalar, SQL.count())

    def _scalar(self, sql: str) -> int:
        (value,) = self._connection().execute(sql).fetchone()
        return int(value)

    async def query_rows(self, since: float, until: float, *, page_size: int = 500) -> AsyncIterator[LedgerRow]:
        after: tuple[float, str] = (since, "")
        while True:
            page = await self._call(self._page, (since, until, after[0], after[0], after[1], page_size))
            for row in page:
                yield row
            if len(page) < page_size:
                return
            after = (page[-1].ts, page[-1].attempt_id)

    def _page(self, params: tuple[Any, ...]) -> list[LedgerRow]:
        return [row_from_values(record) for record in self._connection().execute(SQL.page(), params)]

    async def spend_report(
        self, since: float, until: float, group_by: GroupBy, *, histograms: bool = True
    ) -> list[ReportRow]:
        segments = rollup_segments(since, until)
        if not segments:
            return []
        hours = timing_segments(since, until) if histograms else []
        return await self._call(self._report, group_by, segments, hours)

    def _report(
        self, group_by: GroupBy, segments: list[tuple[int, int, int]], hours: list[tuple[int, int, int]]
    ) -> list[ReportRow]:
        conn = self._connection()
        with transaction(conn, "BEGIN"):  # one snapshot for totals and timings
            totals = conn.execute(SQL.report(len(segments)), segment_params(group_by, segments)).fetchall()
            timings = (
                conn.execute(SQL.timing_report(len(hours)), segment_params(group_by, hours)).fetchall() if hours else []
            )
        return report_rows(totals, timings_by_value(timings))

    async def bucket_report(self, since: float, until: float, group_by: GroupBy, period_s: int) -> list[BucketRow]:
        params = bucket_params(since, until, group_by, period_s)
        return bucket_rows(await self._call(self._fetch_all, SQL.bucket_report(), params), period_s)

    def _fetch_all(self, sql: str, params: Sequence[Any]) -> list[Any]:
        return self._connection().execute(sql, params).fetchall()

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
        return bucket_spend_rows(await self._call(self._fetch_all, SQL.bucket_spend(len(labels), n), params))

    async def bucket_percentiles(
        self, since: float, until: float, group_by: GroupBy, period_s: int, q: float
    ) -> list[tuple[int, str, str, int]]:
        return percentile_points(await self.bucket_timings(since, until, group_by, period_s), q)

    async def bucket_timings(
        self, since: float, until: float, group_by: GroupBy, period_s: int
    ) -> list[tuple[int, str, Timings]]:
        params = bucket_params(since, until, group_by, period_s)
        return timing_buckets(await self._call(self._fetch_all, SQL.bucket_timings(), params))

    async def request_rows(self, request_id: str) -> list[LedgerRow]:
        records = await self._call(self._fetch_all, SQL.request_rows(), (request_id,))
        return [row_from_values(record) for record in records]

    async def list_requests(self, query: RequestQuery) -> list[LedgerRow]:
        sql, params = SQL.list_requests(query)
        return [row_from_values(record) for record in await self._call(self._fetch_all, sql, params)]

    async def audit_log(self, limit: int = 100) -> list[AuditEntry]:
        return await self._call(self._audit_log, limit)

    def _audit_log(self, limit: int) -> list[AuditEntry]:
        return [audit_from_values(record) for record in self._connection().execute(SQL.select_audit(), (limit,))]

    async def health(self) -> bool:
        try:
            return await self._call(self._scalar, "SELECT 1") == 1
        except StorageError:
            return False

    async def close(self) -> None:
        await self._call(self._close)
        self._executor.shutdown(wait=False)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
