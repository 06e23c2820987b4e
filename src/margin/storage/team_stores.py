"""Opening the object store (teams, budgets, rate limits) for a config. No I/O here (the driver is
imported only for the backend picked)."""

from __future__ import annotations

from pathlib import Path

from margin.errors import ConfigError
from margin.storage.teams import ObjectStore

_SQLITE = "sqlite:///"
_POSTGRES = ("postgresql://", "postgres://")


def open_object_store(url: str, data_dir: Path) -> ObjectStore:
    """The object store for `database.url` (the keys' database). Call `await store.migrate()` first."""
    if url.startswith(_SQLITE):
        from margin.storage.sqlite.teams import SqliteObjectStore

        return SqliteObjectStore(url.removeprefix(_SQLITE).replace("{data_dir}", str(data_dir)))
    if url.startswith(_POSTGRES):
        try:
            from margin.storage.postgres.teams import PostgresObjectStore
        except ImportError as exc:
            raise ConfigError(f"database.url is PostgreSQL but psycopg is missing ({exc.name})") from None
        return PostgresObjectStore(url)
    raise ConfigError(f"database.url: unsupported scheme in {url.split(':', 1)[0]!r}")
