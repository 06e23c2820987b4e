"""Where batch input and output files' bytes live: a small protocol (local directory by default,
object storage behind the same four calls). Files are streamed in both directions, never held whole."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol


class BlobNotFound(KeyError):
    """No blob under that key (deleted, or never written)."""


class BlobWriter(Protocol):
    """An open blob being written: bytes appended in order, visible under its key only once committed."""

    async def write(self, data: bytes) -> None: ...

    @property
    def size(self) -> int: ...


class BlobStore(Protocol):
    def writer(self, key: str) -> BlobWriterContext:
        """`async with store.writer(key) as out: await out.write(...)`: the blob replaces any old one
        under `key` when the block ends without an error, and is discarded when it raises."""

    def read(self, key: str, *, chunk_bytes: int = 1 << 16) -> AsyncIterator[bytes]:
        """The blob's bytes from the start, `chunk_bytes` at a time (raises BlobNotFound)."""

    async def read_range(self, key: str, offset: int, length: int) -> bytes: ...

    async def size(self, key: str) -> int: ...

    async def delete(self, key: str) -> bool: ...


class BlobWriterContext(Protocol):
    async def __aenter__(self) -> BlobWriter: ...

    async def __aexit__(self, kind: object, value: object, tb: object) -> None: ...
