"""`margin migrate [--status]` through the installed `margin` entry point (the console script beside
this interpreter), on a fresh data directory with SQLite, then on a real PostgreSQL (tests/support;
skipped when PostgreSQL is not installed, failing under CI)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson

from margin.storage.migrations import POSTGRES_DATABASE, SQLITE_CACHE, SQLITE_DATABASE
from tests.support.postgres import postgres_server
from tests.support.processes import free_port

MARGIN = Path(sys.executable).parent / "margin"


def margin(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    assert MARGIN.exists(), f"the margin entry point is not installed beside {sys.executable}"
    env = {**os.environ, "MARGIN_DATA_DIR": str(data_dir)}
    return subprocess.run([str(MARGIN), *args], capture_output=True, text=True, env=env, timeout=120, check=False)


def status(*args: str, data_dir: Path) -> list[dict[str, Any]]:
    result = margin("migrate", "--status", "--json", *args, data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    body: list[dict[str, Any]] = orjson.loads(result.stdout)
    return body


def names(schema: Any) -> list[str]:
    return [m.name for m in schema.migrations()]


def by_state(report: dict[str, Any]) -> tuple[list[str], list[str]]:
    migrations = report["migrations"]
    return [m["name"] for m in migrations if m["applied"]], [m["name"] for m in migrations if not m["applied"]]


def test_sqlite_status_then_migrate_then_status(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh"
    before = status(data_dir=data_dir)
    assert [(r["schema"], r["location"]) for r in before] == [
        ("database", str(data_dir / "margin.db")),
        ("cache", str(data_dir / "cache.db")),
    ]
    assert by_state(before[0]) == ([], names(SQLITE_DATABASE))
    assert by_state(before[1]) == ([], names(SQLITE_CACHE))
    assert not data_dir.exists()  # --status looked and created nothing

    text = margin("migrate", "--status", data_dir=data_dir)
    assert text.returncode == 0 and f"{len(names(SQLITE_DATABASE)) + len(names(SQLITE_CACHE))} pending" in text.stdout
    assert "0001_ledger" in text.stdout and "0001_response_cache" in text.stdout

    started = time.time()
    applied = margin("migrate", data_dir=data_dir)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.count("(just now)") == len(names(SQLITE_DATABASE)) + len(names(SQLITE_CACHE))
    assert applied.stdout.rstrip().endswith("up to date")

    after = status(data_dir=data_dir)
    assert by_state(after[0]) == (names(SQLITE_DATABASE), [])
    assert by_state(after[1]) == (names(SQLITE_CACHE), [])
    for report in after:
        assert all(started - 1 <= m["applied_at"] <= time.time() + 1 for m in report["migrations"])
    with closing(sqlite3.connect(data_dir / "margin.db")) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"ledger_attempts", "ledger_rollup", "margin_keys", "margin_counters"} <= tables

    again = margin("migrate", data_dir=data_dir)
    assert again.returncode == 0 and "(just now)" not in again.stdout


def test_no_cache_tables_for_a_memory_cache(tmp_path: Path) -> None:
    config = tmp_path / "margin.yaml"
    config.write_text("cache: {backend: memory}\n")
    reports = status("--config", str(config), data_dir=tmp_path / "data")
    assert [r["schema"] for r in reports] == ["database"]


def test_postgres_status_then_migrate_then_status(tmp_path: Path) -> None:
    with postgres_server() as server:
        url = server.create_database(f"mig_{uuid.uuid4().hex[:12]}")
        data_dir = tmp_path / "data"
        config = tmp_path / "margin.yaml"
        config.write_text(f"database: {{url: '{url}'}}\ncache: {{backend: memory}}\n")

        before = status("--config", str(config), data_dir=data_dir)
        assert [(r["schema"], r["location"]) for r in before] == [("database", url)]
        assert by_state(before[0]) == ([], names(POSTGRES_DATABASE))

        # No config this time: the url from the command line, the default SQLite cache beside it.
        applied = margin("migrate", "--database-url", url, data_dir=data_dir)
        assert applied.returncode == 0, applied.stderr
        assert applied.stdout.startswith(f"database: {url}\n")
        assert applied.stdout.count("(just now)") == len(names(POSTGRES_DATABASE)) + len(names(SQLITE_CACHE))

        after = status("--config", str(config), data_dir=data_dir)
        assert by_state(after[0]) == (names(POSTGRES_DATABASE), [])


def test_an_unreachable_database_is_a_clear_error_without_its_password(tmp_path: Path) -> None:
    url = f"postgresql://margin:s3cret-pw@127.0.0.1:{free_port()}/margin"  # nothing listens there
    result = margin("migrate", "--status", "--database-url", url, data_dir=tmp_path)
    assert result.returncode == 1
    assert "cannot reach the database" in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout
