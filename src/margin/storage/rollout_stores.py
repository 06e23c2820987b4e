"""Opening the rollout store for a config. No I/O here (the driver is imported only for the backend
picked)."""

from __future__ import annotations

from pathlib import Path

from margin.errors import ConfigError
from margin.storage.rollouts import RolloutStore

_SQLITE = "sqlite:///"
_POSTGRES = ("postgresql://", "postgres://")


def open_rollout_store(url: str, data_dir: Path) -> RolloutStore:
    """The rollout store for `database.url`: the ledger's database, because feedback looks requests
    up in the ledger. Call `await store.migrate()` before using it."""
    if url.startswith(_SQLITE):
        from margin.storage.sqlite.rollouts import SqliteRolloutStore

        return SqliteRolloutStore(url.removeprefix(_SQLITE).replace("{data_dir}", str(data_dir)))
    if url.startswith(_POSTGRES):
        try:
            from margin.storage.postgres.rollouts import PostgresRolloutStore
        except ImportError as exc:
            raise ConfigError(f"database.url is PostgreSQL but psycopg is missing ({exc.name})") from None
        return PostgresRolloutStore(url)
    raise ConfigError(f"database.url: unsupported scheme in {url.split(':', 1)[0]!r}")
