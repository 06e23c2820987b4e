"""Migration 0021 (issue 21): the old latency histograms (8 bins per doubling, one row per filled bin)
become the timing rollups' fixed bin columns (4 per doubling), merged pairwise, on a real SQLite file
that holds cells written before it."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from margin.storage.migrations import SQLITE_DATABASE
from margin.storage.rollups import FIRST_BIN, N_BINS
from margin.storage.sqlite.store import SqliteLedgerStore
from margin.storage.sqlite.transactions import apply_migrations, statements
from margin.storage.timing import bin_column

HOUR0 = 1_777_852_800


def _database_before_0021(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    for migration in SQLITE_DATABASE.migrations():
        if migration.name >= "0021":
            continue
        for statement in statements(migration.sql):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (migration.name, time.time()))
    old = [  # (metric, old bin, n): old bins 64 and 65 are new bin 32; -60 is below the first new bin
        ("latency", 64, 3), ("latency", 65, 2), ("latency", 70, 1), ("ttft", -60, 4), ("ttft", 200, 5),
    ]  # fmt: skip
    conn.executemany(
        "INSERT INTO ledger_latency_rollup VALUES (3600, ?, 'deployment', 'd1', ?, ?, ?)",
        [(HOUR0, metric, index, n) for metric, index, n in old],
    )
    conn.close()


def test_old_histograms_become_the_fixed_bin_columns(tmp_path: Path) -> None:
    path = tmp_path / "margin.db"
    _database_before_0021(path)
    conn = sqlite3.connect(path, isolation_level=None)
    assert apply_migrations(conn) == ["0021_dashboard_rollups"]
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "ledger_latency_rollup" not in tables
    conn.close()

    async def read() -> None:
        store = SqliteLedgerStore(path)
        try:
            [(start, value, timings)] = await store.bucket_timings(HOUR0, HOUR0 + 3600, "deployment", 3600)
        finally:
            await store.close()
        assert (start, value) == (HOUR0, "d1")
        assert timings.latency == {32: 5, 35: 1}
        assert timings.ttft == {FIRST_BIN: 4, FIRST_BIN + N_BINS - 1: 5}  # clamped into the edge bins
        assert timings.tokens_per_s is None

    asyncio.run(read())
    assert bin_column("latency", FIRST_BIN) == "latency_00"


def test_the_same_on_postgresql() -> None:
    """The PostgreSQL migration over a database holding old histogram rows (its integer division and
    GREATEST/LEAST are not SQLite's): the same bins, through a real server."""
    import psycopg
    from tests.support.postgres import postgres_server

    from margin.storage.migrations import POSTGRES_DATABASE
    from margin.storage.postgres.store import PostgresLedgerStore

    with postgres_server() as server:
        url = server.create_database("timing_migration")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)")
            for migration in POSTGRES_DATABASE.migrations():
                if migration.name < "0021":
                    conn.execute(migration.sql.encode())
                    conn.execute("INSERT INTO schema_migrations VALUES (%s, %s)", (migration.name, time.time()))
            for metric, index, n, period in (("latency", 64, 3, 3600), ("latency", 65, 2, 3600), ("ttft", -60, 4, 3600),
                                             ("ttft", 200, 5, 3600), ("latency", 64, 9, 60)):  # fmt: skip
                conn.execute(
                    "INSERT INTO ledger_latency_rollup VALUES (%s, %s, 'deployment', 'd1', %s, %s, %s)",
                    (period, HOUR0, metric, index, n),
                )

        async def migrate_and_read() -> None:
            store = PostgresLedgerStore(url)
            try:
                assert await store.migrate() == ["0021_dashboard_rollups"]
                [(start, value, timings)] = await store.bucket_timings(HOUR0, HOUR0 + 3600, "deployment", 3600)
                assert await store.bucket_timings(HOUR0, HOUR0 + 60, "deployment", 60) == []  # minute bins dropped
            finally:
                await store.close()
            assert (start, value) == (HOUR0, "d1")
            assert timings.latency == {32: 5} and timings.ttft == {FIRST_BIN: 4, FIRST_BIN + N_BINS - 1: 5}

        asyncio.run(migrate_and_read())
