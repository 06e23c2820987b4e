"""What `margin migrate` works on: every schema a configured margin keeps in a database, each with
its migrations' states and a way to apply the pending ones.

A configuration has one or two: the database (`database.url`: SQLite or PostgreSQL), and the SQLite
response cache when `cache.backend` is sqlite (a memory or Redis cache has no tables). The gateway
needs none of this to start (every store migrates its own file or database when it opens); the
command is there to see where a database stands, and to upgrade it ahead of a rollout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from margin.errors import ConfigError
from margin.storage import sqlite_path
from margin.storage.migrations import SQLITE_CACHE, SQLITE_DATABASE, MigrationSet, MigrationState, migration_states

_SQLITE = "sqlite:///"
_POSTGRES = ("postgresql://", "postgres://")
_MEMORY = ":memory:"


class SchemaTarget(Protocol):
    schema: MigrationSet
    location: str  # a path or a url, never with a password in it

    async def applied(self) -> dict[str, float]:
        """Name -> when it was applied (Unix seconds). Read only: creates nothing."""
        ...

    async def apply(self) -> list[str]:
        """Apply the pending migrations in order; the names applied."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    label: str
    location: str
    states: list[MigrationState]

    @property
    def pending(self) -> list[str]:
        return [state.name for state in self.states if not state.applied]


async def schema_status(target: SchemaTarget) -> SchemaStatus:
    applied = await target.applied()
    shipped = target.schema.migrations()
    return SchemaStatus(target.schema.label, target.location, migration_states(shipped, applied))


def masked_url(url: str) -> str:
    """`url` with its password (if any) replaced, fit for a terminal or a log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def schema_targets(database_url: str, data_dir: Path, *, cache_file: Path | None) -> list[SchemaTarget]:
    """The database behind `database_url`, then the SQLite response cache's file if there is one.
    No I/O here."""
    targets = [_database_target(database_url, data_dir)]
    if cache_file is not None:
        from margin.storage.sqlite.schema import SqliteSchemaFile

        targets.append(SqliteSchemaFile(_file(str(cache_file)), SQLITE_CACHE))
    return targets


def _database_target(url: str, data_dir: Path) -> SchemaTarget:
    if url.startswith(_SQLITE):
        from margin.storage.sqlite.schema import SqliteSchemaFile

        return SqliteSchemaFile(_file(sqlite_path(url, data_dir)), SQLITE_DATABASE)
    if url.startswith(_POSTGRES):
        try:
            from margin.storage.postgres.schema import PostgresSchema
        except ImportError as exc:
            hint = "pip install 'margin[postgres]'"
            raise ConfigError(f"database.url is PostgreSQL but its driver is missing ({exc.name}): {hint}") from None
        return PostgresSchema(url, location=masked_url(url))
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise ConfigError(f"database.url: unsupported scheme {scheme!r} (use sqlite:///PATH or postgresql://...)")


def _file(path: str) -> Path:
    if path == _MEMORY:
        raise ConfigError("an in-memory SQLite database lives and dies with its process: nothing to migrate")
    return Path(path).expanduser()
