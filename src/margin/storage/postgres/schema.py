"""The PostgreSQL database's schema as `margin migrate` sees it: its applied migrations and applying
the pending ones, through the runner every PostgreSQL store calls (`PgSession.migrate`)."""

from __future__ import annotations

from margin.storage.migrations import POSTGRES_DATABASE, MigrationSet
from margin.storage.postgres.session import PgSession


class PostgresSchema:
    """Construction does no I/O: the first call connects."""

    def __init__(self, url: str, *, location: str) -> None:
        self.schema: MigrationSet = POSTGRES_DATABASE
        self.location = location  # the url with any password masked
        self._session = PgSession(url)

    async def applied(self) -> dict[str, float]:
        return await self._session.applied_migrations()

    async def apply(self) -> list[str]:
        return await self._session.migrate()

    async def close(self) -> None:
        await self._session.close()
