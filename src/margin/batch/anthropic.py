"""Anthropic's Message Batches (`/v1/messages/batches`) on the same engine: the inline `requests` are
checked at once (Anthropic refuses a bad batch with a 400; there is no `failed` batch), written as a
JSONL input file of `/v1/messages` lines, and run like any batch. The batch and its results are shown
in Anthropic's shapes: `processing_status`, `request_counts` by result type, RFC 3339 times, and
results lines `{custom_id, result: {type: succeeded|errored|canceled|expired, ...}}`."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from margin.batch.files import FileService
from margin.batch.lines import split_lines
from margin.batch.service import BatchService, NewBatch
from margin.batch.validate import BodyChecker
from margin.config.batch import BatchConfig
from margin.errors import Conflict, InvalidRequest
from margin.storage.batches import BatchRecord
from margin.types import Principal

ENDPOINT = "/v1/messages"
API: Literal["anthropic"] = "anthropic"
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_UNRUN = {"batch_expired": {"type": "expired"}, "batch_cancelled": {"type": "canceled"}}


def _lines(requests: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    async def blocks() -> AsyncIterator[bytes]:
        for request in requests:
            line = {"custom_id": request["custom_id"], "method": "POST", "url": ENDPOINT, "body": request["params"]}
            yield orjson.dumps(line) + b"\n"

    return blocks()


class MessageBatches:
    def __init__(self, batches: BatchService, files: FileService, checker: BodyChecker, settings: BatchConfig) -> None:
        self.batches = batches
        self.files = files
        self.checker = checker
        self.settings = settings

    def check(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The requests of a create body, each checked, or the InvalidRequest that names the first bad one."""
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            raise InvalidRequest("requests: a non-empty list of {custom_id, params} is required.", param="requests")
        if len(requests) > self.settings.max_requests:
            raise InvalidRequest(f"requests: at most {self.settings.max_requests:,} per batch.", param="requests")
        seen: set[str] = set()
        for index, request in enumerate(requests):
            where = f"requests.{index}"
            if not isinstance(request, dict) or not isinstance(request.get("params"), dict):
                raise InvalidRequest(f"{where}: each request is {{custom_id, params}}.", param=where)
            custom_id = request.get("custom_id")
            if not isinstance(custom_id, str) or not _CUSTOM_ID.match(custom_id):
                message = f"{where}.custom_id: 1-64 letters, digits, '_' or '-'."
                raise InvalidRequest(message, param=f"{where}.custom_id")
            if custom_id in seen:
                raise InvalidRequest(f"{where}.custom_id: {custom_id!r} is used twice.", param=f"{where}.custom_id")
            seen.add(custom_id)
            problem = self.checker.check(ENDPOINT, request["params"])
            if problem is not None:
                message, param = problem
                raise InvalidRequest(f"{where}.params: {message}", param=f"{where}.params.{param or ''}".rstrip("."))
        return requests

    async def create(self, principal: Principal, body: dict[str, Any]) -> BatchRecord:
        requests = self.check(body)
        file = await self.files.upload(principal.key_id, "message-batch.jsonl", "batch", _lines(requests))
        return await self.batches.create(principal, NewBatch(file.file_id, ENDPOINT, "24h", None, API))

    async def results(self, owner: str, batch_id: str) -> AsyncIterator[bytes]:
        """The results as Anthropic's JSONL, streamed; a batch still processing has none yet (409)."""
        record = await self.batches.get(owner, batch_id, api=API)
        if not record.is_final:
            status = processing_status(record)
            raise Conflict(f"Message Batch {batch_id} is still {status}; its results exist once it has ended.")
        return self._results(owner, [record.output_file_id, record.error_file_id])

    async def _results(self, owner: str, file_ids: list[str | None]) -> AsyncIterator[bytes]:
        for file_id in file_ids:
            if file_id is None:
                continue
            file = await self.files.get(owner, file_id)
            async for line in split_lines(self.files.content(file), max_line_bytes=self.settings.max_line_bytes):
                if line.data.strip():
                    yield orjson.dumps(result_line(orjson.loads(line.data))) + b"\n"


def result_line(line: dict[str, Any]) -> dict[str, Any]:
    """An output or error file line as Anthropic's results line."""
    response, error = line.get("response"), line.get("error")
    if response is None:
        code = (error or {}).get("code", "")
        return {"custom_id": line["custom_id"], "result": _UNRUN.get(code, {"type": "errored", "error": error})}
    if response["status_code"] < 400:
        return {"custom_id": line["custom_id"], "result": {"type": "succeeded", "message": response["body"]}}
    return {"custom_id": line["custom_id"], "result": {"type": "errored", "error": response["body"]}}


def processing_status(record: BatchRecord) -> str:
    if record.is_final:
        return "ended"
    return "canceling" if record.status == "cancelling" else "in_progress"


def _rfc3339(value: float | None) -> str | None:
    return None if value is None else datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")


def message_batch_object(record: BatchRecord, results_url: str) -> dict[str, Any]:
    ended = record.is_final
    ended_at = record.completed_at or record.expired_at or record.cancelled_at or record.failed_at
    unrun = record.total - record.completed - record.failed
    counts = {
        "processing": 0 if ended else record.total,
        "succeeded": record.completed if ended else 0,
        "errored": record.failed if ended else 0,
        "canceled": unrun if ended and record.status == "cancelled" else 0,
        "expired": unrun if ended and record.status == "expired" else 0,
    }
    return {
        "id": record.batch_id,
        "type": "message_batch",
        "processing_status": processing_status(record),
        "request_counts": counts,
        "ended_at": _rfc3339(ended_at) if ended else None,
        "created_at": _rfc3339(record.created_at),
        "expires_at": _rfc3339(record.expires_at),
        "cancel_initiated_at": _rfc3339(record.cancelling_at),
        "archived_at": None,
        "results_url": results_url if ended else None,
    }
