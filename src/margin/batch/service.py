"""Batches as the API sees them: create (checked at once: the file exists, is the caller's and is a
batch input; the endpoint and window are supported), retrieve, list and cancel. Creation returns
`validating` at once, as OpenAI does; the worker validates the lines off the request path."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from margin.batch.files import FileService
from margin.batch.ids import new_batch_id
from margin.batch.runner import principal_snapshot
from margin.config.batch import BatchConfig, window_seconds
from margin.errors import Conflict, InvalidRequest, NotFound, shown
from margin.storage.batches import BatchPage, BatchRecord, BatchStore
from margin.types import Principal

OPENAI_ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
MAX_METADATA_KEYS = 16


class WorkerSignals(Protocol):
    def wake(self) -> None: ...

    def halt(self, batch_id: str, halted: bool = True) -> None: ...


@dataclass(frozen=True, slots=True)
class NewBatch:
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None = None
    api: Literal["openai", "anthropic"] = "openai"


def new_batch_from(body: dict[str, Any]) -> NewBatch:
    """The fields of a `POST /v1/batches` body, each checked for its type (unknown fields ignored)."""
    values: dict[str, str] = {}
    for name in ("input_file_id", "endpoint", "completion_window"):
        value = body.get(name)
        if not isinstance(value, str) or not value:
            raise InvalidRequest(f"{name} is required (a string).", param=name)
        values[name] = value
    return NewBatch(
        values["input_file_id"], values["endpoint"], values["completion_window"], _metadata(body.get("metadata"))
    )


def _metadata(value: object) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > MAX_METADATA_KEYS:
        raise InvalidRequest("metadata is an object of at most 16 string values.", param="metadata")
    for key, item in value.items():
        if not isinstance(item, str) or len(key) > 64 or len(item) > 512:
            raise InvalidRequest(
                "metadata keys are at most 64 characters and values strings of at most 512.", param="metadata"
            )
    return {str(k): str(v) for k, v in value.items()}


class BatchService:
    def __init__(
        self, store: BatchStore, files: FileService, settings: BatchConfig, clock: Callable[[], float],
        worker: WorkerSignals | None = None,
    ) -> None:  # fmt: skip
        self.store = store
        self.files = files
        self.settings = settings
        self.clock = clock
        self.worker = worker

    async def create(self, principal: Principal, request: NewBatch) -> BatchRecord:
        endpoints = OPENAI_ENDPOINTS if request.api == "openai" else ("/v1/messages",)
        if request.endpoint not in endpoints:
            raise InvalidRequest(
                f"endpoint {shown(request.endpoint)} is not supported for batches; use one of {', '.join(endpoints)}.",
                param="endpoint", code="unsupported_endpoint",
            )  # fmt: skip
        if request.completion_window not in self.settings.completion_windows:
            windows = ", ".join(self.settings.completion_windows)
            raise InvalidRequest(
                f"completion_window {shown(request.completion_window)} is not supported; use {windows}.",
                param="completion_window",
            )
        file = await self.files.get(principal.key_id, request.input_file_id)
        if file.purpose != "batch":
            raise InvalidRequest(
                f"File {shown(file.file_id)} has purpose {shown(file.purpose)}; a batch needs a file with purpose "
                "'batch'.", param="input_file_id", code="invalid_file_purpose",
            )  # fmt: skip
        now = self.clock()
        record = BatchRecord(
            batch_id=new_batch_id(request.api), owner=principal.key_id, api=request.api, endpoint=request.endpoint,
            input_file_id=file.file_id, completion_window=request.completion_window, status="validating",
            created_at=now, expires_at=now + window_seconds(request.completion_window),
            principal=principal_snapshot(principal), metadata=request.metadata,
        )  # fmt: skip
        await self.store.add_batch(record)
        if self.worker is not None:
            self.worker.wake()
        return record

    async def get(self, owner: str, batch_id: str, *, api: str = "openai") -> BatchRecord:
        """`owner`'s batch of `api`'s shape (each API sees only its own batches)."""
        record = await self.store.get_batch(batch_id)
        if record is None or record.owner != owner or record.api != api:
            raise NotFound(f"No such batch: {shown(batch_id)}.", param="batch_id", code="batch_not_found")
        return record

    async def list(self, owner: str, *, after: str | None, limit: int, api: str = "openai") -> BatchPage:
        if after is not None:
            await self.get(owner, after, api=api)
        return await self.store.list_batches(owner, after=after, limit=limit, api=api)

    async def cancel(self, owner: str, batch_id: str, *, api: str = "openai") -> BatchRecord:
        """No new line starts; what finished is delivered once the lines in flight end."""
        record = await self.get(owner, batch_id, api=api)
        now = self.clock()
        if record.status == "validating":
            changes = {"status": "cancelled", "cancelling_at": now, "cancelled_at": now, "ending": "cancelled"}
            if await self.store.update_batch(batch_id, ["validating"], changes):
                return await self.get(owner, batch_id, api=api)
            record = await self.get(owner, batch_id, api=api)
        if record.status == "in_progress":
            if self.worker is not None:
                self.worker.halt(batch_id)  # before the write: no line of this replica starts meanwhile
            changes = {"status": "cancelling", "cancelling_at": now, "ending": "cancelled"}
            if not await self.store.update_batch(batch_id, ["in_progress"], changes) and self.worker is not None:
                self.worker.halt(batch_id, False)  # it ended another way first
            record = await self.get(owner, batch_id, api=api)
        if record.status in ("cancelling", "cancelled"):
            return record
        raise Conflict(
            f"Batch {shown(batch_id)} is {record.status}; only a validating or in-progress batch can be cancelled.",
            code="batch_not_cancellable",
        )
