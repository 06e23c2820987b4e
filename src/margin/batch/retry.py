"""`POST /v1/batches/{id}/retry_failed` (a margin extension): a new batch of only the lines of a
finished batch that did not succeed (failed, expired, cancelled, never run), copied byte for byte
from its input file. The successes stay where they are, paid once."""

from __future__ import annotations

from collections.abc import Callable

from margin.batch.files import FileService
from margin.batch.ids import new_file_id
from margin.batch.service import BatchService, NewBatch
from margin.errors import Conflict, InvalidRequest, shown
from margin.storage.batches import BatchRecord, BatchStore, FileRecord
from margin.types import Principal

PAGE_LINES = 1000


class Retries:
    def __init__(
        self, store: BatchStore, files: FileService, batches: BatchService, clock: Callable[[], float]
    ) -> None:
        self.store = store
        self.files = files
        self.batches = batches
        self.clock = clock

    async def retry_failed(self, principal: Principal, batch_id: str) -> BatchRecord:
        record = await self.batches.get(principal.key_id, batch_id)
        if record.status not in ("completed", "expired", "cancelled"):
            raise Conflict(
                f"Batch {shown(batch_id)} is {record.status}; only a completed, expired or cancelled batch is retried.",
                code="batch_not_finished",
            )
        source = await self.store.get_file(record.input_file_id)
        if source is None:
            raise InvalidRequest(f"The input file of batch {shown(batch_id)} was deleted.", param="batch_id")
        file = await self._copy_unfinished(record, source)
        request = NewBatch(file.file_id, record.endpoint, record.completion_window, record.metadata, record.api)
        return await self.batches.create(principal, request)

    async def _copy_unfinished(self, record: BatchRecord, source: FileRecord) -> FileRecord:
        blobs = self.files.blobs
        file_id = new_file_id()
        count = 0
        async with blobs.writer(file_id) as out:
            after = 0
            while rows := await self.store.line_rows(record.batch_id, after_line=after, limit=PAGE_LINES):
                for row in rows:
                    if row.outcome != "completed":
                        await out.write(await blobs.read_range(source.blob, row.spec.offset, row.spec.length) + b"\n")
                        count += 1
                after = rows[-1].spec.line_no
        if count == 0:
            await blobs.delete(file_id)
            raise Conflict(f"Every line of batch {shown(record.batch_id)} succeeded: nothing to retry.",
                           code="nothing_to_retry")  # fmt: skip
        name = f"retry-of-{record.batch_id}.jsonl"
        file = FileRecord(file_id, record.owner, "batch", name, out.size, count, self.clock(), file_id)
        await self.store.add_file(file)
        return file
