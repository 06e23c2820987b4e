"""The ledger's SQL statements, written once for SQLite and PostgreSQL.

The dialects differ in four places, given to `LedgerSql`: the parameter marker, how two money
amounts are added and summed (PostgreSQL NUMERIC arithmetic; SQLite calls exact Decimal functions
the backend registers, as its own arithmetic on TEXT would go through floats), and the name of the
physical row id used for batched deletes. `LedgerQueries` holds the store methods that are one
statement on either backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from margin.storage.ledger_ops import (
    audit_from_values,
    audit_params,
    bucket_params,
    bucket_rows,
    bucket_spend_params,
    bucket_spend_rows,
    percentile_points,
    spend_included,
)
from margin.storage.ledger_row import COST_COLUMNS, LedgerRow
from margin.storage.ledger_schema import ATTEMPTS_TABLE, AUDIT_TABLE, COLUMN_NAMES, ROLLUP_TABLE, row_from_values
from margin.storage.protocols import AuditEntry, BucketRow, GroupBy, ReportRow, Timings
from margin.storage.request_log import RequestQuery
from margin.storage.rollups import MINUTE, ROLLUP_INT_COLUMNS, ROLLUP_MONEY_COLUMNS, rollup_segments, timing_segments
from margin.storage.timing import BIN_COLUMNS, TIMING_TABLE, TOTAL_COLUMNS, timing_buckets

ROLLUP_KEY = ("period_s", "bucket_start", "dimension", "value")
REPRICE_READ_COLUMNS = (
    "attempt_id", "ts", "key_id", "team", "tags", "model", "tier", "deployment", "cost_total", "routing_savings",
)  # fmt: skip
COST_UPDATE_COLUMNS = (*COST_COLUMNS, "cost_total", "price_version", "price_basis", "price_unknown")
AUDIT_COLUMNS = (
    "action", "actor", "at", "since", "until", "rows_scanned", "rows_changed",
    "old_total", "new_total", "price_versions", "detail",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class LedgerSql:
    param: str  # "?" or "%s"
    money_add: str  # template over {a} and {b}
    money_sum: str  # aggregate function name
    row_id: str  # "rowid" or "ctid"

    def _params(self, n: int) -> str:
        return ", ".join([self.param] * n)

    def insert_rows(self, *, returning: bool, column_types: Sequence[str] | None = None) -> str:
        sql = (
            f"INSERT INTO {ATTEMPTS_TABLE} ({', '.join(COLUMN_NAMES)}) {self._source(len(COLUMN_NAMES), column_types)} "
            "ON CONFLICT (attempt_id) DO NOTHING"
        )
        return sql + " RETURNING attempt_id" if returning else sql

    def existing_ids(self, n: int) -> str:
        return f"SELECT attempt_id FROM {ATTEMPTS_TABLE} WHERE attempt_id IN ({self._params(n)})"

    def _source(self, n: int, column_types: Sequence[str] | None) -> str:
        """`VALUES (...)` for executemany, or, given SQL types, one `unnest` of column arrays so a
        whole batch is a single statement (PostgreSQL)."""
        if column_types is None:
            return f"VALUES ({self._params(n)})"
        arrays = ", ".join(f"{self.param}::{sql_type}[]" for sql_type in column_types)
        return f"SELECT * FROM unnest({arrays})"

    def rollup_upsert(self, column_types: Sequence[str] | None = None) -> str:
        columns = (*ROLLUP_KEY, *ROLLUP_INT_COLUMNS, *ROLLUP_MONEY_COLUMNS)
        counts = [f"{c} = {ROLLUP_TABLE}.{c} + excluded.{c}" for c in ROLLUP_INT_COLUMNS]
        money = [
            f"{c} = " + self.money_add.format(a=f"{ROLLUP_TABLE}.{c}", b=f"excluded.{c}") for c in ROLLUP_MONEY_COLUMNS
        ]
        return (
            f"INSERT INTO {ROLLUP_TABLE} ({', '.join(columns)}) {self._source(len(columns), column_types)} "
            f"ON CONFLICT ({', '.join(ROLLUP_KEY)}) DO UPDATE SET {', '.join(counts + money)}"
        )

    def timing_upsert(self, bins: Sequence[str] = BIN_COLUMNS, column_types: Sequence[str] | None = None) -> str:
        """Add to a cell's timings; `bins`: the bin columns given (a NULL one leaves the stored count)."""
        columns = (*ROLLUP_KEY, *TOTAL_COLUMNS, *bins)
        t = TIMING_TABLE
        sets = [f"{c} = {t}.{c} + excluded.{c}" for c in TOTAL_COLUMNS]
        sets += [f"{c} = COALESCE({t}.{c} + excluded.{c}, {t}.{c}, excluded.{c})" for c in bins]
        return (
            f"INSERT INTO {t} ({', '.join(columns)}) {self._source(len(columns), column_types)} "
            f"ON CONFLICT ({', '.join(ROLLUP_KEY)}) DO UPDATE SET {', '.join(sets)}"
        )

    def _cells(self, table: str, columns: Sequence[str], segments: int) -> str:
        """The cells of one dimension in each (period_s, [first, end)) segment, as a UNION ALL of
        range scans on the primary key's (dimension, period_s, bucket_start) prefix: the cost follows
        the cells inside the window, never the table's size (an OR of segments was planned as a scan
        of the whole dimension)."""
        p = self.param
        one = (
            f"SELECT {', '.join(columns)} FROM {table} "
            f"WHERE dimension = {p} AND period_s = {p} AND bucket_start >= {p} AND bucket_start < {p}"
        )
        return " UNION ALL ".join([one] * segments)

    def report(self, segments: int) -> str:
        """Totals per value over the segments; parameters: `segment_params`."""
        sums = [f"SUM({c})" for c in ROLLUP_INT_COLUMNS] + [f"{self.money_sum}({c})" for c in ROLLUP_MONEY_COLUMNS]
        cells = self._cells(ROLLUP_TABLE, ("value", *ROLLUP_INT_COLUMNS, *ROLLUP_MONEY_COLUMNS), segments)
        return f"SELECT value, {', '.join(sums)} FROM ({cells}) AS cells GROUP BY value ORDER BY value"

    def bucket_report(self) -> str:
        """Every cell of one dimension and period whose bucket starts in [since, until): the primary key's
        (dimension, period_s, bucket_start) prefix makes this a range scan."""
        p = self.param
        columns = (*ROLLUP_INT_COLUMNS, *ROLLUP_MONEY_COLUMNS)
        return (
            f"SELECT bucket_start, value, {', '.join(columns)} FROM {ROLLUP_TABLE} "
            f"WHERE dimension = {p} AND period_s = {p} AND bucket_start >= {p} AND bucket_start < {p} "
            "ORDER BY bucket_start, value"
        )

    def bucket_spend(self, labels: int, included: int | None) -> str:
        """Spend per bucket of one dimension and period, summed per label in SQL (`labels` CASE
        pairs of value and label, NULL for any other value); with `included`, only cells whose
        value is one of that many values count. A range scan, whatever the labels."""
        p = self.param
        label = ("CASE value " + " ".join([f"WHEN {p} THEN {p}"] * labels) + " ELSE NULL END") if labels else "NULL"
        only = f" AND value IN ({self._params(included)})" if included else ""
        return (
            f"SELECT bucket_start, {label} AS label, {self.money_sum}(cost_total) FROM {ROLLUP_TABLE} "
            f"WHERE dimension = {p} AND period_s = {p} AND bucket_start >= {p} AND bucket_start < {p}{only} "
            "GROUP BY bucket_start, label ORDER BY bucket_start"
        )

    def bucket_timings(self) -> str:
        """Every timing cell of one dimension and period whose bucket starts in [since, until): one row
        per (bucket, value), however many ledger rows it summed. Parameters: `bucket_params`."""
        p = self.param
        return (
            f"SELECT bucket_start, value, {', '.join((*TOTAL_COLUMNS, *BIN_COLUMNS))} FROM {TIMING_TABLE} "
            f"WHERE dimension = {p} AND period_s = {p} AND bucket_start >= {p} AND bucket_start < {p} "
            "ORDER BY bucket_start, value"
        )

    def timing_report(self, segments: int) -> str:
        """Timings per value over the segments, summed by the database: one row per value."""
        columns = (*TOTAL_COLUMNS, *BIN_COLUMNS)
        cells = self._cells(TIMING_TABLE, ("value", *columns), segments)
        sums = ", ".join(f"SUM({c})" for c in columns)
        return f"SELECT value, {sums} FROM ({cells}) AS cells GROUP BY value"

    def page(self) -> str:
        p = self.param
        return (
            f"SELECT {', '.join(COLUMN_NAMES)} FROM {ATTEMPTS_TABLE} "
            f"WHERE ts >= {p} AND ts < {p} AND (ts > {p} OR (ts = {p} AND attempt_id > {p})) "
            f"ORDER BY ts, attempt_id LIMIT {p}"
        )

    def request_rows(self) -> str:
        p = self.param
        return f"SELECT {', '.join(COLUMN_NAMES)} FROM {ATTEMPTS_TABLE} WHERE request_id = {p} ORDER BY attempt_index"

    def list_requests(self, query: RequestQuery) -> tuple[str, list[object]]:
        """Each matching request's last row, newest first (`margin.storage.request_log`), and the
        statement's parameters; only the filters given appear in the statement."""
        p = self.param
        last = f"(SELECT MAX(b.attempt_index) FROM {ATTEMPTS_TABLE} b WHERE b.request_id = a.request_id)"
        where = [f"a.attempt_index = {last}"]
        params: list[object] = []
        for column, value in (("team", query.team), ("status", query.status)):
            if value:
                where.append(f"a.{column} = {p}")
                params.append(value)
        if query.since is not None:
            where.append(f"a.ts >= {p}")
            params.append(query.since)
        if query.before is not None:
            where.append(f"(a.ts < {p} OR (a.ts = {p} AND a.attempt_id < {p}))")
            params.extend([query.before[0], query.before[0], query.before[1]])
        columns = ", ".join(f"a.{name}" for name in COLUMN_NAMES)
        sql = (
            f"SELECT {columns} FROM {ATTEMPTS_TABLE} a WHERE {' AND '.join(where)} "
            f"ORDER BY a.ts DESC, a.attempt_id DESC LIMIT {p}"
        )
        return sql, [*params, query.limit]

    def reprice_read(self, n: int) -> str:
        return f"SELECT {', '.join(REPRICE_READ_COLUMNS)} FROM {ATTEMPTS_TABLE} WHERE attempt_id IN ({self._params(n)})"

    def update_costs(self) -> str:
        sets = ", ".join(f"{c} = {self.param}" for c in COST_UPDATE_COLUMNS)
        # A NULL new saving keeps the stored one (rows of untiered routes have none to recompute).
        savings = f"routing_savings = COALESCE({self.param}, routing_savings)"
        return f"UPDATE {ATTEMPTS_TABLE} SET {sets}, {savings} WHERE attempt_id = {self.param}"

    def count(self) -> str:
        return f"SELECT COUNT(*) FROM {ATTEMPTS_TABLE}"

    def insert_audit(self) -> str:
        return f"INSERT INTO {AUDIT_TABLE} ({', '.join(AUDIT_COLUMNS)}) VALUES ({self._params(len(AUDIT_COLUMNS))})"

    def select_audit(self) -> str:
        return f"SELECT {', '.join(AUDIT_COLUMNS)} FROM {AUDIT_TABLE} ORDER BY id DESC LIMIT {self.param}"

    def prune_rows(self) -> str:
        p = self.param
        return (
            f"DELETE FROM {ATTEMPTS_TABLE} WHERE {self.row_id} IN "
            f"(SELECT {self.row_id} FROM {ATTEMPTS_TABLE} WHERE ts < {p} LIMIT {p})"
        )

    def prune_minutes(self, table: str) -> str:
        p = self.param
        return (
            f"DELETE FROM {table} WHERE {self.row_id} IN "
            f"(SELECT {self.row_id} FROM {table} WHERE period_s = {MINUTE} AND bucket_start < {p} LIMIT {p})"
        )


Segments = list[tuple[int, int, int]]


class LedgerQueries:
    """The ledger store's one-statement reads and writes, the same on SQLite and PostgreSQL. A backend
    gives `sql` (its dialect), `_money` (how it stores a Decimal), `_rows` and `_write` (one statement,
    its rows or its rowcount) and `_report` (a spend report's totals and timings, read in one
    snapshot), and keeps the writes that share a transaction (write, update_costs), health and close."""

    sql: LedgerSql

    if TYPE_CHECKING:

        async def _rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]: ...
        async def _write(self, sql: str, params: Sequence[Any]) -> int: ...
        def _money(self, amount: Decimal) -> Any: ...
        async def _report(self, group_by: GroupBy, segments: Segments, hours: Segments) -> list[ReportRow]: ...

    # -- writes

    async def record_audit(self, entry: AuditEntry) -> None:
        await self._write(self.sql.insert_audit(), audit_params(entry, self._money))

    async def prune(self, before: float, *, batch_size: int = 5000) -> int:
        deleted = 0
        while True:
            n = await self._write(self.sql.prune_rows(), (before, batch_size))
            deleted += n
            if n < batch_size:
                break
        first_kept_minute = int(before // MINUTE) * MINUTE
        params = (first_kept_minute, batch_size)  # timing cells are hours and days: none to prune
        while await self._write(self.sql.prune_minutes(ROLLUP_TABLE), params) >= batch_size:
            pass
        return deleted

    # -- reads

    async def count(self) -> int:
        return int((await self._rows(self.sql.count(), ()))[0][0])

    async def query_rows(self, since: float, until: float, *, page_size: int = 500) -> AsyncIterator[LedgerRow]:
        after: tuple[float, str] = (since, "")
        while True:
            params = (since, until, after[0], after[0], after[1], page_size)
            page = [row_from_values(record) for record in await self._rows(self.sql.page(), params)]
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
        hours = timing_segments(since, until) if histograms else []
        return await self._report(group_by, segments, hours)

    async def bucket_report(self, since: float, until: float, group_by: GroupBy, period_s: int) -> list[BucketRow]:
        params = bucket_params(since, until, group_by, period_s)
        return bucket_rows(await self._rows(self.sql.bucket_report(), params), period_s)

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
        return bucket_spend_rows(await self._rows(self.sql.bucket_spend(len(labels), n), params))

    async def bucket_percentiles(
        self, since: float, until: float, group_by: GroupBy, period_s: int, q: float
    ) -> list[tuple[int, str, str, int]]:
        return percentile_points(await self.bucket_timings(since, until, group_by, period_s), q)

    async def bucket_timings(
        self, since: float, until: float, group_by: GroupBy, period_s: int
    ) -> list[tuple[int, str, Timings]]:
        params = bucket_params(since, until, group_by, period_s)
        return timing_buckets(await self._rows(self.sql.bucket_timings(), params))

    async def request_rows(self, request_id: str) -> list[LedgerRow]:
        return [row_from_values(record) for record in await self._rows(self.sql.request_rows(), (request_id,))]

    async def list_requests(self, query: RequestQuery) -> list[LedgerRow]:
        sql, params = self.sql.list_requests(query)
        return [row_from_values(record) for record in await self._rows(sql, params)]

    async def audit_log(self, limit: int = 100) -> list[AuditEntry]:
        return [audit_from_values(record) for record in await self._rows(self.sql.select_audit(), (limit,))]
