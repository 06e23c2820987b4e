"""The SQLite ledger store: stdlib sqlite3 on one dedicated thread, WAL, synchronous=NORMAL.

Every call runs on the store's own single-thread executor, which owns the connection, so the event
loop never blocks on disk and statements never interleave. A write is one `BEGIN IMMEDIATE`
transaction: skip attempt_ids already stored, executemany the new rows, upsert their rollups.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from margin.storage.ledger_ops import cost_change_params, report_rows, reprice_deltas, rollup_params, segment_params
from margin.storage.ledger_row import LedgerRow
from margin.storage.ledger_schema import money_text, row_values
from margin.storage.ledger_sql import LedgerQueries, LedgerSql, Segments
from margin.storage.protocols import CostChange, GroupBy, ReportRow, StorageError
from margin.storage.rollups import rollup_deltas
from margin.storage.sqlite.functions import MONEY_ADD, MONEY_SUM, register_money_functions
from margin.storage.sqlite.transactions import apply_migrations, transaction
from margin.storage.timing import column_params, timings_by_value

SQL = LedgerSql(param="?", money_add=MONEY_ADD, money_sum=MONEY_SUM, row_id="rowid")
MEMORY = ":memory:"
_ID_CHUNK = 500  # well under SQLite's bound-parameter limit
STATEMENTS = 512  # prepared statements kept: the timing upserts are one per bin column (timing.BIN_COLUMNS)
T = TypeVar("T")


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SqliteLedgerStore(LedgerQueries):
    """LedgerStore on one SQLite file (or `:memory:`). Opening does no I/O; the first call connects. The
    one-statement reads and writes: LedgerQueries."""

    sql = SQL

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

    async def _rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return await self._call(self._fetch_all, sql, params)

    def _fetch_all(self, sql: str, params: Sequence[Any]) -> list[Any]:
        return self._connection().execute(sql, params).fetchall()

    async def _write(self, sql: str, params: Sequence[Any]) -> int:
        return await self._call(self._execute, sql, params)

    def _execute(self, sql: str, params: Sequence[Any]) -> int:
        return self._connection().execute(sql, params).rowcount

    def _money(self, amount: Decimal) -> str:
        return money_text(amount)  # TEXT: exact, added and summed by the registered Decimal functions

    # -- schema

    async def migrate(self) -> list[str]:
        return await self._call(self._migrate)

    def _migrate(self) -> list[str]:
        return apply_migrations(self._connection())

    # -- writes

    async def write(self, rows: Sequence[LedgerRow]) -> None:
        if rows:
            await self._call(self._insert, list(rows))

    def _insert(self, rows: list[LedgerRow]) -> None:
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

    # -- reads

    async def _report(self, group_by: GroupBy, segments: Segments, hours: Segments) -> list[ReportRow]:
        return await self._call(self._snapshot_report, group_by, segments, hours)

    def _snapshot_report(self, group_by: GroupBy, segments: Segments, hours: Segments) -> list[ReportRow]:
        conn = self._connection()
        with transaction(conn, "BEGIN"):  # one snapshot for totals and timings
            totals = conn.execute(SQL.report(len(segments)), segment_params(group_by, segments)).fetchall()
            timings = (
                conn.execute(SQL.timing_report(len(hours)), segment_params(group_by, hours)).fetchall() if hours else []
            )
        return report_rows(totals, timings_by_value(timings))

    async def health(self) -> bool:
        try:
            return int((await self._rows("SELECT 1", ()))[0][0]) == 1
        except StorageError:
            return False

    async def close(self) -> None:
        await self._call(self._close)
        self._executor.shutdown(wait=False)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
