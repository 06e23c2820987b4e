"""Named migrations on every database margin creates tables in: the SQLite database, the SQLite
response cache and a real PostgreSQL (tests/support; skipped locally when missing, failing under CI).

Each schema reports pending migrations without creating anything, applies them once, and upgrades
a database made by an older release in place, its rows kept."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest
from tests.support.cache_entries import Clock
from tests.support.postgres import PostgresServer, postgres_server

from margin.caching.backends.sqlite import SqliteCacheBackend
from margin.caching.entry import Invalidation
from margin.errors import ConfigError
from margin.storage.migrations import (
    POSTGRES_DATABASE,
    SQLITE_CACHE,
    SQLITE_DATABASE,
    Migration,
    MigrationSet,
    migration_states,
)
from margin.storage.schema import SchemaTarget, masked_url, schema_status, schema_targets
from margin.storage.sqlite.schema import SqliteSchemaFile
from margin.storage.sqlite.transactions import statements

# What releases before named cache migrations ran on every open of the cache file (verbatim).
OLD_CACHE_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS cache_entries (
        key TEXT PRIMARY KEY, tenant TEXT NOT NULL, model TEXT NOT NULL, tags TEXT NOT NULL,
        created_at REAL NOT NULL, expires_at REAL NOT NULL, last_used REAL NOT NULL,
        size INTEGER NOT NULL, payload BLOB NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS cache_entries_lru ON cache_entries(last_used)",
    "CREATE INDEX IF NOT EXISTS cache_entries_expiry ON cache_entries(expires_at)",
    "CREATE INDEX IF NOT EXISTS cache_entries_tenant ON cache_entries(tenant)",
    "CREATE INDEX IF NOT EXISTS cache_entries_model ON cache_entries(model)",
    """CREATE TABLE IF NOT EXISTS cache_vectors (
        key TEXT PRIMARY KEY REFERENCES cache_entries(key) ON DELETE CASCADE,
        partition TEXT NOT NULL, text TEXT NOT NULL, vector BLOB NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS cache_vectors_partition ON cache_vectors(partition)",
    """CREATE TABLE IF NOT EXISTS cache_tags (
        tag TEXT NOT NULL, key TEXT NOT NULL REFERENCES cache_entries(key) ON DELETE CASCADE,
        PRIMARY KEY (tag, key))""",
    "CREATE INDEX IF NOT EXISTS cache_tags_key ON cache_tags(key)",
)
Make = Callable[[], SchemaTarget]


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "sqlite-cache", "postgres"])
async def make(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Make]:
    """Clients of ONE fresh database for one schema (two calls: two processes on it)."""
    opened: list[SchemaTarget] = []
    url = ""
    if request.param == "postgres":
        url = request.getfixturevalue("pg_server").create_database(f"m_{uuid.uuid4().hex[:12]}")

    def build() -> SchemaTarget:
        target: SchemaTarget
        if request.param == "postgres":
            from margin.storage.postgres.schema import PostgresSchema

            target = PostgresSchema(url, location=url)
        else:
            schema = SQLITE_CACHE if request.param == "sqlite-cache" else SQLITE_DATABASE
            target = SqliteSchemaFile(tmp_path / "data" / "db.sqlite", schema)
        opened.append(target)
        return target

    yield build
    for target in opened:
        await target.close()


async def test_a_fresh_database_has_every_migration_pending(make: Make, tmp_path: Path) -> None:
    target = make()
    status = await schema_status(target)
    shipped = [m.name for m in target.schema.migrations()]
    assert shipped and [s.name for s in status.states] == shipped
    assert status.pending == shipped and all(s.applied_at is None for s in status.states)
    assert not (tmp_path / "data").exists()  # looking creates nothing


async def test_migrate_applies_each_once_and_records_when(make: Make) -> None:
    target = make()
    shipped = [m.name for m in target.schema.migrations()]
    before = time.time()
    assert await target.apply() == shipped
    assert await make().apply() == []  # a second process: nothing left to do
    status = await schema_status(make())
    assert status.pending == [] and all(s.known for s in status.states)
    assert all(before - 1 <= (s.applied_at or 0) <= time.time() + 1 for s in status.states)


async def test_an_older_database_upgrades(make: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database migrated by an older release (every migration but the newest) gets the rest."""
    shipped = make().schema.migrations()
    monkeypatch.setattr(MigrationSet, "migrations", lambda self: shipped[:-1])  # the older release
    assert await make().apply() == [m.name for m in shipped[:-1]]
    monkeypatch.undo()
    assert (await schema_status(make())).pending == [shipped[-1].name]
    assert await make().apply() == [shipped[-1].name]
    assert (await schema_status(make())).pending == []


async def test_a_cache_file_from_before_cache_migrations_keeps_its_entries(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    with closing(sqlite3.connect(path)) as conn:
        for statement in OLD_CACHE_SCHEMA:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO cache_entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ("k", "t1", "chat@a", '["x"]', 1000.0, 2000.0, 1000.0, 7, b"answer"),
        )
        conn.execute("INSERT INTO cache_tags VALUES ('x', 'k')")
        conn.commit()

    backend = SqliteCacheBackend(path, clock=Clock())
    try:
        got = await backend.get("k")
        assert got is not None and got.payload == b"answer" and got.tags == ("x",)
        assert await backend.invalidate(Invalidation(tag="x")) == ["k"]  # the old tag rows still work
    finally:
        await backend.close()
    with closing(sqlite3.connect(path)) as conn:
        recorded = [name for (name,) in conn.execute(f"SELECT name FROM {SQLITE_CACHE.table}")]
    assert recorded == [m.name for m in SQLITE_CACHE.migrations()]


async def test_the_database_and_the_cache_can_share_one_file(tmp_path: Path) -> None:
    """cache.path pointed at margin.db: each schema keeps its own record, neither shadows the other."""
    shared = tmp_path / "margin.db"
    targets = schema_targets(f"sqlite:///{shared}", tmp_path, cache_file=shared)
    for target in targets:
        await target.apply()
    for target in targets:
        assert (await schema_status(target)).pending == []
    with closing(sqlite3.connect(shared)) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"ledger_attempts", "margin_keys", "cache_entries", SQLITE_DATABASE.table, SQLITE_CACHE.table} <= tables


def test_every_shipped_migration_is_complete_sql() -> None:
    """Each file splits into whole statements (the SQLite runner executes them one by one)."""
    for schema in (SQLITE_DATABASE, SQLITE_CACHE, POSTGRES_DATABASE):
        for migration in schema.migrations():
            assert list(statements(migration.sql)), migration.name


def test_sqlite_and_postgres_database_migrations_keep_the_same_names() -> None:
    """One numbered history for the database, whichever engine holds it."""
    assert [m.name for m in SQLITE_DATABASE.migrations()] == [m.name for m in POSTGRES_DATABASE.migrations()]


def test_a_migration_applied_by_a_newer_release_is_listed_not_hidden() -> None:
    shipped = [Migration("0001_a", ""), Migration("0002_b", "")]
    states = migration_states(shipped, {"0001_a": 10.0, "0003_newer": 20.0})
    assert [(s.name, s.applied_at, s.known) for s in states] == [
        ("0001_a", 10.0, True),
        ("0002_b", None, True),
        ("0003_newer", 20.0, False),
    ]


def test_targets_for_a_configuration(tmp_path: Path) -> None:
    targets = schema_targets("sqlite:///{data_dir}/margin.db", tmp_path, cache_file=tmp_path / "cache.db")
    assert [(t.schema.label, t.location) for t in targets] == [
        ("database", str(tmp_path / "margin.db")),
        ("cache", str(tmp_path / "cache.db")),
    ]
    assert len(schema_targets("sqlite:///{data_dir}/margin.db", tmp_path, cache_file=None)) == 1
    with pytest.raises(ConfigError, match="in-memory"):
        schema_targets("sqlite:///:memory:", tmp_path, cache_file=None)
    with pytest.raises(ConfigError, match="unsupported scheme"):
        schema_targets("mysql://db/margin", tmp_path, cache_file=None)


def test_a_database_password_never_reaches_the_screen() -> None:
    assert (
        masked_url("postgresql://margin:s3cret@db.internal:5432/margin")
        == "postgresql://margin:***@db.internal:5432/margin"
    )
    assert masked_url("postgresql://margin@db:5432/m") == "postgresql://margin@db:5432/m"
    assert "s3cret" not in masked_url("postgres://:s3cret@db/m")
