"""Files and batches as OpenAI's API shows them (the `openai` SDK's FileObject and Batch), plus one
extension field, `margin`, with what the batch has cost so far."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from margin.storage.batches import BatchRecord, FileRecord

T = TypeVar("T")
_TIMESTAMPS = (
    "in_progress_at", "expires_at", "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at",
    "cancelled_at",
)  # fmt: skip


def _seconds(value: float | None) -> int | None:
    return None if value is None else int(value)


def file_object(record: FileRecord) -> dict[str, Any]:
    return {
        "id": record.file_id,
        "object": "file",
        "bytes": record.bytes,
        "created_at": int(record.created_at),
        "filename": record.filename,
        "purpose": record.purpose,
        "status": "processed",
        "expires_at": None,
        "status_details": None,
    }


def batch_object(record: BatchRecord) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": record.batch_id,
        "object": "batch",
        "endpoint": record.endpoint,
        "errors": None if record.errors is None else {"object": "list", "data": record.errors},
        "input_file_id": record.input_file_id,
        "completion_window": record.completion_window,
        "status": record.status,
        "output_file_id": record.output_file_id,
        "error_file_id": record.error_file_id,
        "created_at": int(record.created_at),
    }
    body.update({name: _seconds(getattr(record, name)) for name in _TIMESTAMPS})
    body["request_counts"] = {"total": record.total, "completed": record.completed, "failed": record.failed}
    body["metadata"] = record.metadata
    body["margin"] = margin_extension(record)
    return body


def margin_extension(record: BatchRecord) -> dict[str, Any]:
    """What margin adds: exact cost and tokens of the lines finished so far, and why it waits."""
    return {
        "cost_usd": format(record.cost, "f"),
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "paused": record.paused,
        "paused_until": _seconds(record.paused_until),
    }


def list_object(items: Sequence[T], render: Callable[[T], dict[str, Any]], id_of: Callable[[T], str], *,
                has_more: bool) -> dict[str, Any]:  # fmt: skip
    return {
        "object": "list",
        "data": [render(item) for item in items],
        "first_id": id_of(items[0]) if items else None,
        "last_id": id_of(items[-1]) if items else None,
        "has_more": has_more,
    }
