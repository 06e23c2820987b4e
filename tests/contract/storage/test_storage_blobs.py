"""The BlobStore contract on the local directory: streamed writes that appear whole or not at all,
streamed and ranged reads, deletion, and keys that cannot leave the directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from margin.storage.batch_stores import open_blob_store
from margin.storage.blobs import BlobNotFound, BlobStore


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return open_blob_store("{data_dir}/batch-files", tmp_path)


async def read_all(blobs: BlobStore, key: str, chunk_bytes: int = 1 << 16) -> bytes:
    return b"".join([block async for block in blobs.read(key, chunk_bytes=chunk_bytes)])


async def test_a_streamed_write_reads_back_whole_in_chunks_and_by_range(blobs: BlobStore, tmp_path: Path) -> None:
    parts = [bytes([n % 251]) * 300_000 for n in range(8)]  # 2.4 MB: several flushes
    async with blobs.writer("file-abc") as out:
        for part in parts:
            await out.write(part)
    assert out.size == 2_400_000
    assert (tmp_path / "batch-files" / "file-abc").exists()
    assert await read_all(blobs, "file-abc", chunk_bytes=1000) == b"".join(parts)
    assert await blobs.read_range("file-abc", 299_999, 2) == bytes([0, 1])
    assert await blobs.size("file-abc") == 2_400_000


async def test_a_failed_write_leaves_nothing_and_the_old_blob_stands(blobs: BlobStore, tmp_path: Path) -> None:
    async with blobs.writer("file-x") as out:
        await out.write(b"old")
    with pytest.raises(RuntimeError):
        async with blobs.writer("file-x") as out:
            await out.write(b"new, half written")
            raise RuntimeError("client went away")
    assert await read_all(blobs, "file-x") == b"old"
    assert sorted(p.name for p in (tmp_path / "batch-files").iterdir()) == ["file-x"]  # no temp file left


async def test_delete_and_missing_blobs(blobs: BlobStore) -> None:
    async with blobs.writer("gone") as out:
        await out.write(b"x")
    assert await blobs.delete("gone")
    assert not await blobs.delete("gone")
    with pytest.raises(BlobNotFound):
        await read_all(blobs, "gone")
    with pytest.raises(BlobNotFound):
        await blobs.size("gone")


@pytest.mark.parametrize("key", ["../escape", "a/b", "", ".hidden"])
def test_keys_cannot_leave_the_directory(blobs: BlobStore, key: str) -> None:
    with pytest.raises(ValueError, match="blob keys"):
        blobs.writer(key)
