"""Uploaded files: streamed into the blob store while their size, encoding and line count are checked,
so a file that breaks a limit is refused as soon as it does and nothing of it is kept. Every file
belongs to the key that uploaded it; another key is told it does not exist."""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Literal

import orjson

from margin.batch.ids import new_file_id
from margin.batch.lines import LineTooLong, split_lines
from margin.config.batch import BatchConfig
from margin.errors import InvalidRequest, NotFound, PayloadTooLarge, shown
from margin.storage.batches import BatchPage, BatchStore, FileRecord
from margin.storage.blobs import BlobStore, BlobWriter

UPLOAD_PURPOSES = ("batch",)
OUTPUT_PURPOSE = "batch_output"


class FileService:
    def __init__(self, store: BatchStore, blobs: BlobStore, settings: BatchConfig, clock: Callable[[], float]) -> None:
        self.store = store
        self.blobs = blobs
        self.settings = settings
        self.clock = clock

    @staticmethod
    def check_purpose(purpose: str | None) -> str:
        if purpose not in UPLOAD_PURPOSES:
            raise InvalidRequest(
                f"purpose {shown(purpose)} is not accepted here: upload files with purpose 'batch'.", param="purpose"
            )
        return purpose

    async def upload(self, owner: str, filename: str, purpose: str, blocks: AsyncIterable[bytes]) -> FileRecord:
        """Store `blocks` as a new file of `owner`'s, or raise (PayloadTooLarge, InvalidRequest) with
        nothing stored."""
        self.check_purpose(purpose)
        if not filename.lower().endswith(".jsonl"):
            raise InvalidRequest(
                f"A batch input file must be JSONL, named *.jsonl (got {shown(filename)}).", param="file"
            )
        file_id = new_file_id()
        async with self.blobs.writer(file_id) as out:
            lines = await self._scan(self._written(blocks, out))
        if lines == 0:
            await self.blobs.delete(file_id)
            raise InvalidRequest("The file is empty: a batch input file has one JSON request per line.", param="file")
        record = FileRecord(file_id, owner, purpose, filename, out.size, lines, self.clock(), file_id)
        await self.store.add_file(record)
        return record

    async def _written(self, blocks: AsyncIterable[bytes], out: BlobWriter) -> AsyncIterator[bytes]:
        limit = self.settings.max_file_bytes
        decoder = codecs.getincrementaldecoder("utf-8")()
        async for block in blocks:
            if out.size + len(block) > limit:
                raise PayloadTooLarge(f"The file is larger than the {limit:,}-byte limit (batch.max_file_bytes).")
            try:
                decoder.decode(block)
            except UnicodeDecodeError:
                raise InvalidRequest("The file is not UTF-8 text, so it is not JSONL.", param="file") from None
            await out.write(block)
            yield block
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise InvalidRequest("The file ends inside a UTF-8 character, so it is not JSONL.", param="file") from None

    async def _scan(self, blocks: AsyncIterator[bytes]) -> int:
        """Count the non-blank lines; the first must be a JSON object (a file that is not JSONL at all
        is refused here; single bad lines fail the batch later, each named)."""
        count = 0
        limit = self.settings.max_requests
        try:
            async for line in split_lines(blocks, max_line_bytes=self.settings.max_line_bytes):
                if not line.data.strip():
                    continue
                count += 1
                if count == 1 and not _json_object(line.data):
                    raise InvalidRequest("The file is not JSONL: its first line is not a JSON object.", param="file")
                if count > limit:
                    raise InvalidRequest(
                        f"The file has more than {limit:,} requests (batch.max_requests).", param="file",
                        code="too_many_requests_in_file",
                    )  # fmt: skip
        except LineTooLong as exc:
            raise InvalidRequest(f"The file's {exc} (batch.max_line_bytes).", param="file") from None
        return count

    async def get(self, owner: str, file_id: str) -> FileRecord:
        record = await self.store.get_file(file_id)
        if record is None or record.owner != owner:
            raise NotFound(f"No such file: {shown(file_id)}.", param="file_id", code="file_not_found")
        return record

    async def list(
        self, owner: str, *, purpose: str | None, after: str | None, limit: int, order: Literal["asc", "desc"]
    ) -> BatchPage:
        if after is not None:
            await self.get(owner, after)
        return await self.store.list_files(owner, purpose=purpose, after=after, limit=limit, descending=order == "desc")

    async def delete(self, owner: str, file_id: str) -> FileRecord:
        record = await self.get(owner, file_id)
        await self.store.delete_file(file_id)
        await self.blobs.delete(record.blob)
        return record

    def content(self, record: FileRecord) -> AsyncIterator[bytes]:
        return self.blobs.read(record.blob)


def _json_object(data: bytes) -> bool:
    try:
        return isinstance(orjson.loads(data), dict)
    except orjson.JSONDecodeError:
        return False
