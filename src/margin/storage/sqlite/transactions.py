"""Transactions and named migrations on a stdlib sqlite3 connection, shared by every SQLite store."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

from margin.storage.migrations import SQLITE_DATABASE, MigrationSet


@contextmanager
def transaction(conn: sqlite3.Connection, begin: str = "BEGIN IMMEDIATE") -> Iterator[None]:
    """BEGIN IMMEDIATE by default: takes SQLite's single write lock up front, so the reads inside the
    transaction see exactly what the writes will apply to (no other writer can slip between)."""
    conn.execute(begin)
    committed = False
    try:
        yield
        conn.execute("COMMIT")
        committed = True
    finally:
        if not committed and conn.in_transaction:
            conn.execute("ROLLBACK")


def statements(script: str) -> Iterator[str]:
    """Split a migration script into complete statements (sqlite3.complete_statement knows quoting)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer
            buffer = ""
    if buffer.strip() and not all(part.strip().startswith("--") for part in buffer.strip().splitlines()):
        raise ValueError(f"incomplete SQL statement at the end of a migration: {buffer.strip()[:80]!r}")


def apply_migrations(conn: sqlite3.Connection, schema: MigrationSet = SQLITE_DATABASE) -> list[str]:
    """Apply `schema`'s pending migrations in order, once each: every store on a file runs this, so
    whichever opens the file first brings it up to date. Returns the names it applied."""
    conn.execute(f"CREATE TABLE IF NOT EXISTS {schema.table} (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    applied: list[str] = []
    with transaction(conn):
        done = {name for (name,) in conn.execute(f"SELECT name FROM {schema.table}")}
        for migration in schema.migrations():
            if migration.name in done:
                continue
            for statement in statements(migration.sql):
                conn.execute(statement)
            conn.execute(f"INSERT INTO {schema.table} VALUES (?, ?)", (migration.name, time.time()))
            applied.append(migration.name)
    return applied


def applied_migrations(conn: sqlite3.Connection, schema: MigrationSet = SQLITE_DATABASE) -> dict[str, float]:
    """Name -> when it was applied, read only (a file no runner has touched yet has none)."""
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (schema.table,))
    if exists.fetchone() is None:
        return {}
    return {str(name): float(at) for name, at in conn.execute(f"SELECT name, applied_at FROM {schema.table}")}
