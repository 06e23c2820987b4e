"""Opening the stage-② stores for a config: keys always in the database; counters in Redis, the
database or memory. No I/O here (drivers are imported only for the backend picked)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from margin.config.model import MarginConfig
from margin.errors import ConfigError
from margin.storage.protocols import Counters, KeyStore

_SQLITE = "sqlite:///"
_POSTGRES = ("postgresql://", "postgres://")


def open_database_stores(url: str, data_dir: Path) -> tuple[KeyStore, Counters]:
    """The key store and database counters for `database.url`, sharing one connection."""
    if url.startswith(_SQLITE):
        from margin.storage.sqlite.counters import SqliteCounters
        from margin.storage.sqlite.keys import SqliteKeyStore
        from margin.storage.sqlite.worker import SqliteWorker

        worker = SqliteWorker(url.removeprefix(_SQLITE).replace("{data_dir}", str(data_dir)))
        return SqliteKeyStore(worker=worker), SqliteCounters(worker=worker)
    if url.startswith(_POSTGRES):
        try:
            from margin.storage.postgres.counters import PostgresCounters
            from margin.storage.postgres.keys import PostgresKeyStore
            from margin.storage.postgres.session import PgSession
        except ImportError as exc:
            raise ConfigError(f"database.url is PostgreSQL but psycopg is missing ({exc.name})") from None
        # Two sessions: a slow key lookup never queues behind reservations, nor the reverse.
        return PostgresKeyStore(session=PgSession(url)), PostgresCounters(session=PgSession(url))
    raise ConfigError(f"database.url: unsupported scheme in {url.split(':', 1)[0]!r}")


def per_worker_counters(config: MarginConfig) -> str | None:
    """Why the budget and rate-limit counters cannot be shared by `server.workers` processes as
    configured; None when they can (or there is one worker). Each worker counting alone would let a
    budget be spent once per worker."""
    if config.server.workers == 1:
        return None
    if config.limits.counters != "memory" and not config.database.url.endswith(":memory:"):
        return None
    return (
        f"server.workers is {config.server.workers} but the budget and rate-limit counters would live in each "
        "worker's memory (limits.counters: memory, or database.url sqlite:///:memory:): use a database file or "
        "redis: so that every worker counts in one place (docs/workers.md)"
    )


if TYPE_CHECKING:
    from margin.storage.redis.circuit import RedisCircuitScripts


def open_redis_counters(url: str, *, prefix: str, timeout_s: float, clock: Callable[[], float]) -> Counters:
    try:
        from margin.storage.redis import RedisCounters
    except ImportError as exc:
        hint = "pip install 'margin[redis]'"
        raise ConfigError(f"redis: is configured but its driver is missing ({exc.name}): {hint}") from None
    return RedisCounters(url, prefix=prefix, timeout_s=timeout_s, clock=clock)


def open_redis_circuits(url: str, *, prefix: str, timeout_s: float) -> RedisCircuitScripts:
    try:
        from margin.storage.redis.circuit import RedisCircuitScripts as Scripts
    except ImportError as exc:
        hint = "pip install 'margin[redis]'"
        raise ConfigError(f"redis: is configured but its driver is missing ({exc.name}): {hint}") from None
    return Scripts(url, prefix=prefix, timeout_s=timeout_s)
