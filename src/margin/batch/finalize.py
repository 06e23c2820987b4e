"""Ending a batch: its output and error files written from the lines' stored results (streamed page by
page), then one status change that names them. Run again after a crash, it writes the same files
under the same ids, so a batch is finalised once however often it is tried.

Lines that never ran end in the error file as OpenAI ends them: `batch_expired` when the completion
window closed first, `batch_cancelled` when the batch was cancelled."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from margin.batch.files import OUTPUT_PURPOSE
from margin.batch.ids import new_line_id
from margin.storage.batches import BatchRecord, BatchStore, Ending, FileRecord, LineRow
from margin.storage.blobs import BlobStore

PAGE_LINES = 1000
UNRUN_ERRORS: dict[str, tuple[str, str]] = {
    "expired": ("batch_expired", "This request could not be executed before the completion window expired."),
    "cancelled": ("batch_cancelled", "This request was not executed because the batch was cancelled."),
    "completed": ("batch_incomplete", "This request was not executed."),
}
FINAL_STATUS: dict[str, tuple[str, str]] = {
    "completed": ("completed", "completed_at"),
    "expired": ("expired", "expired_at"),
    "cancelled": ("cancelled", "cancelled_at"),
}


def output_file_id(batch_id: str, kind: str) -> str:
    """Deterministic, so a finalisation run twice names the same files."""
    return f"file-{batch_id.removeprefix('batch_')}-{kind}"


def unrun_line(custom_id: str, ending: str) -> str:
    code, message = UNRUN_ERRORS[ending]
    line = {"id": new_line_id(), "custom_id": custom_id, "response": None, "error": {"code": code, "message": message}}
    return orjson.dumps(line).decode()


class Finalizer:
    def __init__(self, store: BatchStore, blobs: BlobStore, clock: Callable[[], float]) -> None:
        self.store = store
        self.blobs = blobs
        self.clock = clock

    async def finalize(self, batch: BatchRecord, ending: Ending, keep_alive: Callable[[], Awaitable[None]]) -> bool:
        """Write the files and end the batch as `ending`; False when another worker ended it first."""
        out_id, err_id = output_file_id(batch.batch_id, "output"), output_file_id(batch.batch_id, "errors")
        async with self.blobs.writer(out_id) as out, self.blobs.writer(err_id) as err:
            after = 0
            while rows := await self.store.line_rows(batch.batch_id, after_line=after, limit=PAGE_LINES):
                for row in rows:
                    target = out if row.outcome == "completed" else err
                    await target.write(_line_text(row, ending).encode() + b"\n")
                after = rows[-1].spec.line_no
                await keep_alive()
        sizes = {out_id: out.size, err_id: err.size}
        now = self.clock()
        for file_id, size in sizes.items():
            if size:
                record = FileRecord(file_id, batch.owner, OUTPUT_PURPOSE, f"{file_id}.jsonl", size, 0, now, file_id)
                await self.store.add_file(record)
            else:
                await self.blobs.delete(file_id)
        status, stamp = FINAL_STATUS[ending]
        changes: dict[str, Any] = {
            "status": status, stamp: now, "ending": ending, "paused": None, "paused_until": None,
            "output_file_id": out_id if sizes[out_id] else None, "error_file_id": err_id if sizes[err_id] else None,
        }  # fmt: skip
        return await self.store.update_batch(batch.batch_id, ["finalizing", "cancelling", "in_progress"], changes)


def _line_text(row: LineRow, ending: str) -> str:
    if row.result is not None:
        return row.result
    return unrun_line(row.spec.custom_id, ending)
