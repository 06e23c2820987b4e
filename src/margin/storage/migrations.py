"""Every table margin creates, as named, ordered SQL migrations shipped as package data.

The one place a schema lives:
- `storage/sqlite/migrations/NNNN_name.sql`: the SQLite database (`database.url`, default
  `{data_dir}/margin.db`): ledger, keys, counters.
- `storage/sqlite/migrations/cache/NNNN_name.sql`: the SQLite response cache (`cache.path`, default
  `{data_dir}/cache.db`), a file of its own so cache writes never queue on the ledger's write lock.
- `storage/postgres/migrations/NNNN_name.sql`: the PostgreSQL database.

Each runner applies the pending ones of a set in name order inside one transaction and records each
name in the set's tracking table, so running it again (or from two processes at once) is a no-op.
Migrations that create what older releases created without a migration use `IF NOT EXISTS`, so a
database made by those releases upgrades in place and keeps its data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

_NAME = re.compile(r"^\d{4}_[a-z0-9_]+\.sql$")
SCHEMA_MIGRATIONS_TABLE = "schema_migrations"


@dataclass(frozen=True, slots=True)
class Migration:
    name: str  # file name without .sql, e.g. "0001_ledger"
    sql: str


@dataclass(frozen=True, slots=True)
class MigrationSet:
    """One schema: the migrations of one kind of database file, and the table that records them.

    Two sets may share one file (a cache configured into margin.db): their tracking tables differ,
    so their names never collide."""

    label: str  # what `margin migrate --status` calls it: "database", "cache"
    package: str  # the package whose folder holds the .sql files
    folder: tuple[str, ...]  # path of that folder inside the package
    table: str = SCHEMA_MIGRATIONS_TABLE

    def migrations(self) -> list[Migration]:
        """The set's migrations, in order (read when called, never at import)."""
        folder = resources.files(self.package)
        for part in self.folder:
            folder = folder.joinpath(part)
        found = [entry for entry in folder.iterdir() if entry.is_file() and entry.name.endswith(".sql")]
        bad = [entry.name for entry in found if not _NAME.match(entry.name)]
        if bad:
            raise ValueError(f"migration files must be named NNNN_name.sql: {', '.join(sorted(bad))}")
        return [
            Migration(entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8"))
            for entry in sorted(found, key=lambda e: e.name)
        ]


SQLITE_DATABASE = MigrationSet("database", "margin.storage.sqlite", ("migrations",))
SQLITE_CACHE = MigrationSet("cache", "margin.storage.sqlite", ("migrations", "cache"), "cache_schema_migrations")
POSTGRES_DATABASE = MigrationSet("database", "margin.storage.postgres", ("migrations",))
MIGRATION_SETS = (SQLITE_DATABASE, SQLITE_CACHE, POSTGRES_DATABASE)


@dataclass(frozen=True, slots=True)
class MigrationState:
    name: str
    applied_at: float | None  # Unix seconds; None while pending
    known: bool = True  # False: recorded by a newer margin, not shipped in this one

    @property
    def applied(self) -> bool:
        return self.applied_at is not None


def migration_states(shipped: list[Migration], applied: Mapping[str, float]) -> list[MigrationState]:
    """Each shipped migration with when it was applied (None: pending), then any recorded migration
    this version does not ship (a newer margin migrated the database: say so rather than hide it)."""
    names = {migration.name for migration in shipped}
    states = [MigrationState(m.name, applied.get(m.name)) for m in shipped]
    states.extend(MigrationState(name, applied[name], known=False) for name in sorted(applied) if name not in names)
    return states
