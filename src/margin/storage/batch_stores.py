"""Opening the batch store and the blob store for a config. No I/O here (the driver is imported only
for the backend picked)."""

from __future__ import annotations

from pathlib import Path

from margin.errors import ConfigError
from margin.storage.batches import BatchStore
from margin.storage.blobs import BlobStore

_SQLITE = "sqlite:///"
_POSTGRES = ("postgresql://", "postgres://")


def open_batch_store(url: str, data_dir: Path) -> BatchStore:
    """The batch store for `database.url` (the ledger's database). Call `await store.migrate()` first."""
    if url.startswith(_SQLITE):
        from margin.storage.sqlite.batches import SqliteBatchStore

        return SqliteBatchStore(url.removeprefix(_SQLITE).replace("{data_dir}", str(data_dir)))
    if url.startswith(_POSTGRES):
        try:
            from margin.storage.postgres.batches import PostgresBatchStore
        except ImportError as exc:
            raise ConfigError(f"database.url is PostgreSQL but psycopg is missing ({exc.name})") from None
        return PostgresBatchStore(url)
    raise ConfigError(f"database.url: unsupported scheme in {url.split(':', 1)[0]!r}")


def open_blob_store(directory: str, data_dir: Path) -> BlobStore:
    """Blobs in a local directory (`{data_dir}` is replaced); replicas share it through a shared volume."""
    from margin.storage.local_blobs import LocalBlobStore

    return LocalBlobStore(Path(directory.replace("{data_dir}", str(data_dir))).expanduser())
