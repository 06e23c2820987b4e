"""Running a `native` batch: the worker hands a validated batch whose every line goes to one of
`batch.native_deployments` to that provider's own Batch API instead of opening chunks, then looks at
it under the batch-level lease every `batch.native_poll_s` (so a restarted process, or another
replica, goes on polling where the last one stopped), forwards a cancel, and once the provider's
batch ended writes each line's result exactly once: a ledger row per line at the batch price (its
request id derived from the batch and the line, so a second look after a crash writes no second row),
then the line's result (a line that already has one is skipped).

A kill between the provider accepting the batch and its id being written to the batch row: OpenAI's
batch carries margin's batch id in its metadata, and the next look finds it there instead of
submitting again; Anthropic's Message Batches keep no label, so there the next look submits again
(the first one then runs unread at the provider)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

import orjson

from margin import errors
from margin.batch.lines import split_lines
from margin.batch.native import NativeBatchAPI, native_deployment, native_result, upstream_lines
from margin.config.batch import BatchConfig
from margin.storage.batches import BatchRecord, BatchStore, Ending, LineResult, NativeAnswer
from margin.storage.blobs import BlobStore
from margin.types import Cost, Usage

log = logging.getLogger("margin.batch")
_PAGE = 1000


@runtime_checkable
class NativeBackend(Protocol):
    """What the composition root tells the native runner (the pipeline's line executor does)."""

    def native_apis(self, deployments: list[str]) -> dict[str, NativeBatchAPI]:
        """A client of each named deployment's provider Batch API (those that have one)."""

    def deployment_of(self, model: str) -> str | None:
        """The deployment a line's `model` goes to first; None if unknown."""

    def upstream_model(self, deployment: str) -> str: ...

    def batch_price(self, deployment: str, usage: Usage) -> Cost:
        """The cost of `usage` at the deployment's batch price."""

    def record_native(self, batch: BatchRecord, deployment: str, result: LineResult, usage: Usage | None) -> None:
        """Queue the line's ledger row (request id `result.request_id`, attempt 0)."""

    async def reserve_native(
        self, batch: BatchRecord, deployment: str, bodies: list[dict[str, Any]]
    ) -> dict[str, Any] | None:
        """Charge the batch's worst case (each line's live worst case at the batch price) to every
        budget of its creator; the hold (JSON), or None when it does not fit."""

    def settle_native(self, hold: dict[str, Any], cost: Decimal, tokens: int) -> None:
        """Correct the budgets charged with `hold` to the batch's billed cost and tokens."""


def native_request_id(batch_id: str, custom_id: str) -> str:
    return "req_" + hashlib.sha256(f"{batch_id}\0{custom_id}".encode()).hexdigest()[:24]


class NativeRunner:
    def __init__(self, store: BatchStore, blobs: BlobStore, backend: NativeBackend, settings: BatchConfig,
                 clock: Callable[[], float]) -> None:  # fmt: skip
        self.store, self.blobs, self.backend, self.settings, self.clock = store, blobs, backend, settings, clock
        self.apis: Mapping[str, NativeBatchAPI] = backend.native_apis(list(settings.native_deployments))

    async def choose(self, record: BatchRecord) -> str | None:
        """The deployment whose Batch API takes this validated batch, or None (it runs `local`)."""
        if not self.apis:
            return None
        models = {str(body.get("model")) for _, body in await self._lines(record)}
        return native_deployment(record.endpoint, models, self.backend.deployment_of, self.apis)

    async def reserve(self, record: BatchRecord, deployment: str) -> dict[str, Any] | None:
        """The batch's budget hold, or None when its worst case does not fit (it then runs `local`,
        line by line, and pauses when the budget runs out)."""
        return await self.backend.reserve_native(record, deployment, [body for _, body in await self._lines(record)])

    async def settle(self, record: BatchRecord) -> None:
        """Settle the batch's hold to its billed cost once (every line has its result, or none will
        run): marked settled on its row first, so a crash can keep the worst case, never count twice."""
        current = await self.store.get_batch(record.batch_id)
        hold = current.native_hold if current is not None else None
        if current is None or hold is None or hold.get("settled"):
            return
        if await self.store.update_batch(record.batch_id, [current.status], {"native_hold": {**hold, "settled": True}}):
            self.backend.settle_native(hold, current.cost, current.input_tokens + current.output_tokens)
            log.info("batch: %s's budget hold settled to $%s", record.batch_id, current.cost)

    async def step(self, record: BatchRecord) -> Ending | None:
        """One look at a native batch: submit it, forward a cancel, or collect its ended results.
        The ending once every line has its result, else None (look again later)."""
        deployment = str(record.native_deployment)
        api = self.apis.get(deployment)
        if api is None:
            raise errors.ConfigError(f"batch {record.batch_id} went native on {deployment}, now not in "
                                     "batch.native_deployments")  # fmt: skip
        if record.native_id is None:
            if record.status == "cancelling":
                await self.settle(record)  # never submitted: nothing ran, the whole hold returns
                return "cancelled"
            native_id = await api.find(record.batch_id)  # submitted before a crash, its id not written
            if native_id is None:
                lines = upstream_lines(await self._lines(record), self.backend.upstream_model(deployment))
                native_id = await api.submit(record.endpoint, lines, record.batch_id)
            await self.store.update_batch(record.batch_id, ["in_progress", "cancelling"], {"native_id": native_id})
            log.info("batch: %s submitted to %s's Batch API as %s", record.batch_id, deployment, native_id)
            return None
        progress = await api.progress(record.native_id)
        if not progress.ended:
            if record.status == "cancelling" and progress.status not in ("cancelling", "canceling"):
                with contextlib.suppress(errors.UpstreamError):  # it ended or is cancelling meanwhile
                    await api.cancel(record.native_id)
            return None
        await self._collect(record, deployment, api)
        await self.settle(record)
        if record.status == "cancelling":
            return "cancelled"
        return "expired" if progress.status == "expired" else "completed"

    async def _collect(self, record: BatchRecord, deployment: str, api: NativeBatchAPI) -> None:
        lines = await self._line_numbers(record.batch_id)
        async for answer in api.answers(str(record.native_id)):
            found = lines.get(answer.custom_id)
            if found is None or found[1]:
                continue  # not a line of this batch, or its result was written by an earlier look
            await self._finish(record, deployment, api, answer, found[0])

    async def _finish(self, record: BatchRecord, deployment: str, api: NativeBatchAPI, answer: NativeAnswer,
                      line_no: int) -> None:  # fmt: skip
        usage: list[Usage] = []

        def price(found: Usage) -> Cost:
            usage.append(found)
            return self.backend.batch_price(deployment, found)

        request_id = native_request_id(record.batch_id, answer.custom_id)
        result = native_result(answer, line_no, provider=api.provider, request_id=request_id,
                               finished_at=self.clock(), price=price)  # fmt: skip
        if answer.status_code is not None:
            self.backend.record_native(record, deployment, result, usage[0] if usage else None)
        await self.store.finish_line(record.batch_id, result)

    async def _line_numbers(self, batch_id: str) -> dict[str, tuple[int, bool]]:
        """custom_id -> (line number, whether it has its result)."""
        found: dict[str, tuple[int, bool]] = {}
        after = 0
        while True:
            rows = await self.store.line_rows(batch_id, after_line=after, limit=_PAGE)
            for row in rows:
                found[row.spec.custom_id] = (row.spec.line_no, row.outcome is not None)
            if len(rows) < _PAGE:
                return found
            after = rows[-1].spec.line_no

    async def _lines(self, record: BatchRecord) -> list[tuple[str, dict[str, Any]]]:
        file = await self.store.get_file(record.input_file_id)
        if file is None:
            return []
        lines: list[tuple[str, dict[str, Any]]] = []
        async for raw in split_lines(self.blobs.read(file.blob), max_line_bytes=self.settings.max_line_bytes):
            if raw.data.strip():
                line = orjson.loads(raw.data)
                lines.append((str(line["custom_id"]), dict(line["body"])))
        return lines
