"""Blobs as files in a local directory (`batch.blob_dir`, default `{data_dir}/batch-files`).

Writes go to a temporary file in the same directory and are renamed into place after an fsync, so
a blob is whole or absent, even after a crash. File I/O runs on worker threads in blocks of about
1 MiB: the event loop never waits on the disk and memory stays bounded by one block."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from margin.storage.blobs import BlobNotFound

_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
_FLUSH_BYTES = 1 << 20


def _path(root: Path, key: str) -> Path:
    if not _KEY.match(key) or key.startswith("."):
        raise ValueError(f"blob keys are 1-200 letters, digits, '_', '-' or '.': {key[:64]!r}")
    return root / key


class LocalWriter:
    def __init__(self, root: Path, key: str) -> None:
        self.target = _path(root, key)
        self.root = root
        self.temp = root / f".tmp-{key}-{secrets.token_hex(4)}"
        self._file: BinaryIO | None = None
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._size = 0

    @property
    def size(self) -> int:
        return self._size

    async def __aenter__(self) -> LocalWriter:
        def _open() -> BinaryIO:
            self.root.mkdir(parents=True, exist_ok=True)
            return open(self.temp, "wb")  # closed in __aexit__

        self._file = await asyncio.to_thread(_open)
        return self

    async def write(self, data: bytes) -> None:
        self._buffer.append(data)
        self._buffered += len(data)
        self._size += len(data)
        if self._buffered >= _FLUSH_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        block, self._buffer, self._buffered = b"".join(self._buffer), [], 0
        if block and self._file is not None:
            await asyncio.to_thread(self._file.write, block)

    async def __aexit__(self, kind: object, value: object, tb: object) -> None:
        file, self._file = self._file, None
        if file is None:
            return
        if kind is None:
            self._file = file
            await self._flush()
            self._file = None
            await asyncio.to_thread(self._commit, file)
        else:
            await asyncio.to_thread(self._discard, file)

    def _commit(self, file: BinaryIO) -> None:
        file.flush()
        os.fsync(file.fileno())
        file.close()
        os.replace(self.temp, self.target)

    def _discard(self, file: BinaryIO) -> None:
        file.close()
        self.temp.unlink(missing_ok=True)


class LocalBlobStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def writer(self, key: str) -> LocalWriter:
        return LocalWriter(self.root, key)

    async def read(self, key: str, *, chunk_bytes: int = 1 << 16) -> AsyncIterator[bytes]:
        path = _path(self.root, key)
        try:
            file = await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        try:
            while True:
                block = await asyncio.to_thread(file.read, chunk_bytes)
                if not block:
                    return
                yield block
        finally:
            file.close()

    async def read_range(self, key: str, offset: int, length: int) -> bytes:
        path = _path(self.root, key)

        def _read() -> bytes:
            with open(path, "rb") as file:
                file.seek(offset)
                return file.read(length)

        try:
            return await asyncio.to_thread(_read)
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    async def size(self, key: str) -> int:
        try:
            return (await asyncio.to_thread(_path(self.root, key).stat)).st_size
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    async def delete(self, key: str) -> bool:
        path = _path(self.root, key)
        try:
            await asyncio.to_thread(path.unlink)
        except FileNotFoundError:
            return False
        return True
